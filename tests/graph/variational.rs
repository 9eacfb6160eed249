//! Variational bottlenecks (descriptor `Variational`): ordering, defaults and refusals.

use super::{compile, graph_error, names};

/// The log-variance layer's fields in [`vae`] when a case does not change them.
const LV: &str = r#""N": 4, "Activation": "Linear", "Source": "enc""#;

/// A Mult-VAE bottleneck: `Variational` on the mean layer naming its log-variance layer
/// (whose fields are `log_var`, e.g. [`LV`]).
fn vae(mean_extra: &str, log_var: &str, decoder_extra: &str) -> String {
    format!(
        r#"{{ "Layers": [
          {{ "Name": "in", "Kind": "Input", "N": 10 }},
          {{ "Name": "enc", "Kind": "Hidden", "N": 6, "Activation": "Tanh" }},
          {{ "Name": "mu", "Kind": "Hidden", "N": 4, "Activation": "Linear", "Source": "enc",
             "Variational": {{ "LogVariance": "lv", "Beta": 0.2 }} {mean_extra} }},
          {{ "Name": "lv", "Kind": "Hidden", {log_var} }},
          {{ "Name": "dec", "Kind": "Hidden", "N": 6, "Activation": "Tanh", "Source": "mu" {decoder_extra} }},
          {{ "Name": "out", "Kind": "Output", "N": 10 }} ] }}"#
    )
}

#[test]
fn a_variational_layer_comes_after_its_log_variance_layer() {
    // Written after the mean layer, the log-variance layer is still computed before it.
    let g = compile(&vae("", LV, ""), &[]);
    assert_eq!(names(&g), ["in", "enc", "lv", "mu", "dec", "out"]);
    let (mu, lv) = (
        g.layer_by_name("mu").unwrap(),
        g.layer_by_name("lv").unwrap(),
    );
    let v = mu.variational.as_ref().expect("mu is variational");
    assert_eq!((v.log_variance, v.schedule.beta), (lv.id, 0.2));
    assert_eq!(lv.log_variance_of, Some(mu.id));
    // The defaults: Beta 0.01, no annealing.
    let g = compile(&vae("", LV, "").replace(r#", "Beta": 0.2"#, ""), &[]);
    let v = g.layer_by_name("mu").unwrap().variational.clone().unwrap();
    assert_eq!((v.schedule.beta, v.schedule.anneal_steps), (0.01, 0));
    assert!(lv.outgoing.is_empty());
    assert!(
        g.layer_table()
            .contains("Linear, sampled (log variance lv)"),
        "{}",
        g.layer_table()
    );
}

#[test]
fn variational_layers_are_checked() {
    let lv = |fields: &str| vae("", fields, "");
    let named = |name: &str| vae("", LV, "").replace(r#""LogVariance": "lv""#, name);
    let cases = [
        (
            lv(r#""N": 5, "Activation": "Linear", "Source": "enc""#),
            "mu",
            "has 5 units but this layer has 4",
        ),
        (
            vae(r#", "pDropout": 0.2"#, LV, ""),
            "mu",
            "has pDropout 0.2",
        ),
        (
            lv(r#""N": 4, "Activation": "Tanh", "Source": "enc""#),
            "lv",
            "has activation Tanh",
        ),
        (
            lv(&format!(r#"{LV}, "BatchNormalization": true"#)),
            "lv",
            "has batch normalisation",
        ),
        (
            vae("", LV, "").replace(
                r#""Name": "dec", "Kind": "Hidden", "N": 6"#,
                r#""Name": "dec", "Kind": "Hidden", "N": 4, "Skip": "lv""#,
            ),
            "lv",
            "is read by `dec`",
        ),
        (
            vae("", LV, "").replace(r#""Source": "mu""#, r#""Source": ["mu", "lv"]"#),
            "lv",
            "only the sampling may read it",
        ),
        (
            named(r#""LogVariance": "lvv""#),
            "mu",
            "`lvv` is not a layer of the network; did you mean `lv`?",
        ),
        (
            named(r#""LogVariance": "mu""#),
            "mu",
            "names the layer itself",
        ),
        (
            // The log-variance layer fed by the mean layer: a cycle through the sampling.
            lv(r#""N": 4, "Activation": "Linear", "Source": "mu""#),
            "mu",
            "the layers form a cycle",
        ),
    ];
    for (text, layer, expected) in cases {
        let (got_layer, message) = graph_error(&text, &[]);
        assert!(message.contains(expected), "{message}");
        assert_eq!(got_layer, layer, "{message}");
    }
}
