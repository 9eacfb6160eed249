//! Parsing of DSSTNE JSON network descriptors: accepted dialect, defaults and rejections.

use std::path::{Path, PathBuf};

use moira::descriptor::{
    Descriptor, LayerDescriptor, LayerKind, LayerType, NetworkKind, PoolingFunction, Size,
};
use moira::ops::{Activation, ErrorFunction, WeightInitScheme};
use moira::Error;

fn parse(text: &str) -> Descriptor {
    match Descriptor::from_str(text, "test.json") {
        Ok(d) => d,
        Err(e) => panic!("expected to parse, got: {e}"),
    }
}

/// The `(json_path, message)` of a descriptor that must be rejected.
fn reject(text: &str) -> (String, String) {
    match Descriptor::from_str(text, "test.json") {
        Ok(d) => panic!("expected an error, parsed {d:?}"),
        Err(Error::Descriptor {
            file,
            json_path,
            message,
        }) => {
            assert_eq!(file, Path::new("test.json"));
            (json_path, message)
        }
        Err(e) => panic!("expected Error::Descriptor, got {e:?}"),
    }
}

/// A three-layer network whose middle layer has the extra members `hidden`.
fn with_hidden(hidden: &str) -> String {
    format!(
        r#"{{ "Layers": [
            {{ "Name": "in", "N": 10 }},
            {{ "Name": "h", "N": 4 {hidden} }},
            {{ "Name": "out", "N": 10 }} ] }}"#
    )
}

fn assert_rejected(text: &str, path: &str, fragments: &[&str]) {
    let (p, m) = reject(text);
    assert_eq!(p, path, "json path (message: {m})");
    for f in fragments {
        assert!(m.contains(f), "message `{m}` should contain `{f}`");
    }
}

fn network_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("networks/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_network_parses() {
    let files = network_files();
    assert!(
        files.len() >= 3,
        "expected the example networks, found {files:?}"
    );
    for f in files {
        let d = Descriptor::from_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // At least an input and an output (the linear autoencoder has nothing between).
        assert!(d.layers.len() >= 2, "{}", f.display());
        assert!(!d.name.is_empty(), "{}", f.display());
    }
}

#[test]
fn movielens_autoencoder_has_dsstne_settings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/movielens-ae.json");
    let d = Descriptor::from_file(path).unwrap();
    assert_eq!(d.sparseness_penalty.p, 0.5);
    assert_eq!(d.sparseness_penalty.beta, 2.0);
    assert!(!d.shuffle_indices);
    assert_eq!(d.denoising_p, 0.2);
    assert_eq!(
        (
            d.smce.one_target,
            d.smce.zero_target,
            d.smce.one_scale,
            d.smce.zero_scale
        ),
        (1.0, 0.0, 1.0, 1.0)
    );
    assert_eq!(d.error_function, ErrorFunction::ScaledMarginalCrossEntropy);
    let kinds: Vec<LayerKind> = d.layers.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [LayerKind::Input, LayerKind::Hidden, LayerKind::Output]
    );
    assert_eq!(d.layers[0].size, Size::Auto);
    assert_eq!(d.layers[0].dataset.as_deref(), Some("input"));
    assert!(d.layers[0].sparse);
    assert_eq!(d.layers[1].size, Size::units(128));
    assert_eq!(d.layers[1].sources, ["Input"]);
    assert_eq!(d.layers[2].dataset.as_deref(), Some("output"));
    assert_eq!(d.layers[2].sources, ["Hidden"]);
}

#[test]
fn deep_recommender_has_benchmark_settings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/deep-recommender.json");
    let d = Descriptor::from_file(path).unwrap();
    assert_eq!(d.layers.len(), 5);
    for h in &d.layers[1..4] {
        assert_eq!(h.size, Size::units(1024));
        assert_eq!(h.p_dropout, 0.5);
        assert_eq!(h.weight_init.scheme, WeightInitScheme::Gaussian);
        assert_eq!(h.weight_init.scale, 0.01);
    }
    assert_eq!(d.layers[4].weight_init.bias, -10.2);
}

#[test]
fn defaults_are_dsstne_defaults() {
    let d = parse(r#"{ "Layers": [ { "N": 10 }, { "N": 5 }, { "N": 7 }, { "N": 10 } ] }"#);
    assert_eq!(d.version, 0.9);
    assert_eq!(d.name, "");
    assert_eq!(d.kind, NetworkKind::FeedForward);
    assert_eq!(d.error_function, ErrorFunction::CrossEntropy);
    assert!(d.shuffle_indices);
    assert_eq!(
        (d.relu_slope, d.elu_alpha, d.selu_lambda),
        (1.0, 1.0, 1.050701)
    );
    assert_eq!(
        (
            d.smce.one_target,
            d.smce.zero_target,
            d.smce.one_scale,
            d.smce.zero_scale
        ),
        (0.9, 0.1, 1.0, 1.0)
    );
    assert_eq!((d.delta_boost.one, d.delta_boost.zero), (1.0, 1.0));
    assert_eq!(
        (d.lrn.k, d.lrn.n, d.lrn.alpha, d.lrn.beta),
        (2.0, 5, 1e-4, 0.75)
    );
    assert_eq!(d.maxout_k, 2);
    assert_eq!(d.denoising_p, 0.0);
    assert_eq!(
        (d.sparseness_penalty.p, d.sparseness_penalty.beta),
        (0.0, 0.0)
    );
    assert_eq!(d.decay, 0.0);

    let names: Vec<&str> = d.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Input0", "Hidden1", "Hidden2", "Output3"]);
    let kinds: Vec<LayerKind> = d.layers.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [
            LayerKind::Input,
            LayerKind::Hidden,
            LayerKind::Hidden,
            LayerKind::Output
        ]
    );
    assert!(d.layers[0].sources.is_empty());
    assert_eq!(d.layers[1].sources, ["Input0"]);
    assert_eq!(d.layers[3].sources, ["Hidden2"]);
    let h = &d.layers[1];
    assert_eq!(h.layer_type, LayerType::FullyConnected);
    assert_eq!(h.activation, Activation::Sigmoid);
    assert_eq!(h.weight_init.scheme, WeightInitScheme::Xavier);
    assert_eq!((h.weight_init.scale, h.weight_init.bias), (1.0, 0.0));
    assert_eq!((h.p_dropout, h.weight_norm, h.delta_norm), (0.0, 0.0, 0.0));
    assert!(!h.sparse && !h.batch_normalization);
    assert!(h.skips.is_empty() && h.shared_weights.is_empty());
    assert_eq!(h.pooling_function, None);
}

#[test]
fn default_names_use_the_kind_given() {
    let d = parse(
        r#"{ "Layers": [ { "N": 3 }, { "Kind": "Target", "N": 3 }, { "Kind": "Hidden", "N": 3 } ] }"#,
    );
    let names: Vec<&str> = d.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Input0", "Target1", "Hidden2"]);
}

#[test]
fn layers_may_be_a_single_object() {
    let d = parse(r#"{ "Layers": { "N": 10, "DataSet": "input" } }"#);
    assert_eq!(d.layers.len(), 1);
    assert_eq!(d.layers[0].kind, LayerKind::Input);
    assert_eq!(d.layers[0].name, "Input0");
}

#[test]
fn keys_and_values_are_case_insensitive_with_dsstne_aliases() {
    let d = parse(
        r#"{
        "VERSION": 0.8, "kind": "autoencoder", "errorfunction": "cross entropy",
        "localresponsenormalization": { "K": 3, "N": 7, "ALPHA": 0.5, "Beta": 0.25 },
        "datascaledmarginalcrossentropy": { "ONETARGET": 0.8, "zerotarget": 0.2, "OneScale": 2, "zeroSCALE": 3 },
        "slope": 0.3, "shuffleindices": false, "MAXOUT": { "K": 4 }, "deltaboost": { "ONE": 2, "ZERO": 0.5 },
        "lAyErS": [
            { "KIND": "input", "n": 10, "DATASET": "input", "SPARSE": true },
            { "name": "h", "kind": "HIDDEN", "activation": "rElU", "n": [2, 3], "PDROPOUT": 0.25,
              "weightinit": { "SCHEME": "caffexavier", "scale": 2 } },
            { "Name": "p", "Kind": "Hidden", "TYPE": "pooling", "FUNCTION": "LocalResponseNormalization" },
            { "kind": "output", "N": "AUTO", "dataset": "output", "Activation": "LRELU", "RELUSLOPE": 0.1 }
        ] }"#,
    );
    assert_eq!(d.version, 0.8);
    assert_eq!(d.kind, NetworkKind::AutoEncoder);
    assert_eq!(d.error_function, ErrorFunction::CrossEntropy);
    assert_eq!(
        (d.lrn.k, d.lrn.n, d.lrn.alpha, d.lrn.beta),
        (3.0, 7, 0.5, 0.25)
    );
    assert_eq!(
        (
            d.smce.one_target,
            d.smce.zero_target,
            d.smce.one_scale,
            d.smce.zero_scale
        ),
        (0.8, 0.2, 2.0, 3.0)
    );
    assert_eq!(d.relu_slope, 0.3);
    assert!(!d.shuffle_indices);
    assert_eq!(d.maxout_k, 4);
    assert_eq!((d.delta_boost.one, d.delta_boost.zero), (2.0, 0.5));
    assert!(d.layers[0].sparse);
    assert_eq!(d.layers[1].activation, Activation::RectifiedLinear);
    assert_eq!(d.layers[1].size, Size::Fixed(vec![2, 3]));
    assert_eq!(
        d.layers[1].weight_init.scheme,
        WeightInitScheme::CaffeXavier
    );
    assert_eq!(d.layers[2].layer_type, LayerType::Pooling);
    assert_eq!(d.layers[2].pooling_function, Some(PoolingFunction::Lrn));
    assert_eq!(d.layers[3].size, Size::Auto);
    assert_eq!(d.layers[3].activation, Activation::LeakyRectifiedLinear);
    assert_eq!(d.layers[3].relu_slope, 0.1);
}

#[test]
fn activation_parameters_inherit_the_network_values() {
    let d = parse(
        r#"{ "RELUSlope": 0.2, "ELUAlpha": 0.5, "SELULambda": 1.5, "Layers": [
            { "N": 4 },
            { "N": 4, "Slope": 0.3 },
            { "N": 4, "ELUAlpha": 2.0, "SELULambda": 3.0 } ] }"#,
    );
    let params: Vec<(f32, f32, f32)> = d
        .layers
        .iter()
        .map(|l| (l.relu_slope, l.elu_alpha, l.selu_lambda))
        .collect();
    assert_eq!(params, [(0.2, 0.5, 1.5), (0.3, 0.5, 1.5), (0.2, 2.0, 3.0)]);
    for l in &d.layers {
        assert!(!l.relu_slope.is_nan() && !l.elu_alpha.is_nan() && !l.selu_lambda.is_nan());
    }
    // The network keys may follow the layers in the file: inheritance still applies.
    let d = parse(r#"{ "Layers": [ { "N": 4 }, { "N": 4 } ], "Slope": 0.7 }"#);
    assert_eq!(d.layers[1].relu_slope, 0.7);
}

#[test]
fn sources_skips_kernels_and_shared_weights_parse() {
    let d = parse(
        r#"{ "Layers": [
            { "Name": "a", "N": 8 },
            { "Name": "b", "Kind": "Hidden", "N": 8, "Source": "a" },
            { "Name": "c", "Kind": "Hidden", "N": 8, "Source": ["a", "b"], "Skip": "a",
              "SharedWeights": { "InputLayer": "a", "SourceInputLayer": "a", "SourceOutputLayer": "b" } },
            { "Name": "d", "Kind": "Hidden", "Type": "Convolutional", "N": 4, "Kernel": [3, 5], "KernelStride": 2 },
            { "Name": "e", "Kind": "Output", "N": 8, "Source": "c",
              "SharedWeights": [ { "InputLayer": "c", "SourceInputLayer": "b", "SourceOutputLayer": "c", "Transposed": true } ] }
        ] }"#,
    );
    assert_eq!(d.layers[2].sources, ["a", "b"]);
    assert_eq!(d.layers[2].skips, ["a"]);
    assert_eq!(d.layers[2].shared_weights.len(), 1);
    assert!(!d.layers[2].shared_weights[0].transposed);
    assert_eq!(d.layers[3].layer_type, LayerType::Convolutional);
    assert_eq!(d.layers[3].kernel.size, [3, 5, 1]);
    assert_eq!(d.layers[3].kernel.dimensions, 2);
    assert_eq!(d.layers[3].kernel.stride, [2, 1, 1]);
    assert_eq!(d.layers[3].sources, ["c"]);
    let sw = &d.layers[4].shared_weights[0];
    assert_eq!(
        (
            sw.input_layer.as_str(),
            sw.source_input_layer.as_str(),
            sw.source_output_layer.as_str()
        ),
        ("c", "b", "c")
    );
    assert!(sw.transposed);
}

#[test]
fn a_descriptor_built_in_code_equals_the_parsed_one() {
    let parsed = parse(
        r#"{ "Name": "tiny", "Slope": 0.5, "Layers": [
            { "Name": "in", "N": "auto", "DataSet": "input", "Sparse": true },
            { "Name": "h", "N": 16, "Activation": "Tanh" },
            { "Name": "out", "N": "auto", "DataSet": "output" } ] }"#,
    );
    let mut built = Descriptor {
        name: "tiny".into(),
        relu_slope: 0.5,
        ..Descriptor::default()
    };
    built
        .push_layer_inheriting(
            LayerDescriptor::new("in", LayerKind::Input)
                .with_size(Size::Auto)
                .with_dataset("input")
                .with_sparse(true),
        )
        .push_layer_inheriting(
            LayerDescriptor::new("h", LayerKind::Hidden)
                .with_size(Size::units(16))
                .with_sources(["in"])
                .with_activation(Activation::Tanh),
        )
        .push_layer_inheriting(
            LayerDescriptor::new("out", LayerKind::Output)
                .with_size(Size::Auto)
                .with_sources(["h"])
                .with_dataset("output"),
        );
    assert_eq!(built, parsed);
}

#[path = "descriptor/rejections.rs"]
mod rejections;
