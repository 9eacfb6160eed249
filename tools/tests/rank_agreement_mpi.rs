//! `mpirun -np N trainer` in real processes trains the same model on 1, 2 and 4 ranks with
//! every stochastic feature (each rank keeping only its columns of the data): on
//! MovieLens-1M's first 512 users in 8 minibatches of 64, the loss agrees within 1e-6
//! relative and the weights within 1e-5, and a rank count repeats itself bit for bit; after
//! 2 epochs on 1,500 users, the models' top-10 sets agree for ≥ 99% of users. Features:
//! dropout, denoising, the sparseness penalty, a SoftMax output, all of them at once, and
//! DSSTNE's MovieLens descriptor (networks/movielens-ae.json). Skipped, with a message,
//! when `mpirun` is absent or the tools were built without the `mpi` feature.

mod mpi_common;

use mpi_common::{available, losses, relative_difference, same_sets, weights, Fixture};

/// Input → H1 (128, input-sharded) → H2 (96, output-sharded) → Output, with `top` keys on
/// the network and `h1`, `h2`, `output` keys on the layers.
fn net(top: &str, h1: &str, h2: &str, output: &str) -> String {
    format!(
        r#"{{ "Version": 0.8, "Name": "agree", "Kind": "FeedForward", "ShuffleIndices": true,
        "ErrorFunction": "CrossEntropy", {top}
        "Layers": [
          {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
          {{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128 {h1} }},
          {{ "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 96 {h2} }},
          {{ "Name": "Output", "Kind": "Output", "Source": "H2", "N": "auto", "DataSet": "output",
             "Sparse": true {output} }}
        ] }}"#
    )
}

fn features() -> Vec<(&'static str, String)> {
    let (sigmoid, tanh) = (r#", "Activation": "Sigmoid""#, r#", "Activation": "Tanh""#);
    let relu = r#", "Activation": "Relu""#;
    vec![
        (
            "dropout",
            net(
                "",
                r#", "Activation": "Sigmoid", "pDropout": 0.2"#,
                r#", "Activation": "Relu", "pDropout": 0.1"#,
                sigmoid,
            ),
        ),
        (
            "denoising",
            net(r#""Denoising": { "p": 0.2 },"#, tanh, relu, sigmoid),
        ),
        (
            "sparseness penalty",
            net(
                r#""SparsenessPenalty": { "p": 0.3, "beta": 0.5 },"#,
                r#", "Activation": "Sigmoid", "Sparse": true"#,
                r#", "Activation": "Sigmoid", "Sparse": true"#,
                sigmoid,
            ),
        ),
        (
            "softmax output",
            net("", tanh, relu, r#", "Activation": "SoftMax""#),
        ),
        ("everything stochastic", everything()),
        (
            "DSSTNE's MovieLens autoencoder",
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../networks/movielens-ae.json"
            ))
            .unwrap(),
        ),
    ]
}

/// Denoising, dropout, the sparseness penalty and a SoftMax output at once.
fn everything() -> String {
    net(
        r#""Denoising": { "p": 0.3 }, "SparsenessPenalty": { "p": 0.3, "beta": 0.5 },"#,
        r#", "Activation": "Sigmoid", "Sparse": true, "pDropout": 0.2"#,
        r#", "Activation": "Relu", "pDropout": 0.1"#,
        r#", "Activation": "SoftMax""#,
    )
}

/// Trains `f`'s descriptor on `np` ranks into `out` (and `out`'s metrics log) with `args`,
/// with DSSTNE's optimizer (SGD, fused into the backward pass); returns the epochs' losses
/// and the weights. (Adam, and every other optimizer, are compared across rank counts in
/// tests/rank_agreement.rs; through Adam a weight whose true gradient is 0 up to rounding
/// takes full-size steps of either sign, which makes single weights noisy there.)
fn run(f: &Fixture, np: usize, out: &str, args: &[&str]) -> (Vec<f64>, Vec<Vec<f32>>) {
    let log = f.p(&format!("{out}.jsonl"));
    let mut all = vec!["--optimizer", "sgd", "--alpha", "0.05", "--seed", "3"];
    all.extend(["--metrics-log", &log]);
    all.extend(args);
    let o = f.train(np, out, &all);
    assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
    if np > 1 {
        assert!(
            o.stderr.contains(&format!("shard plan: {np} ranks")),
            "np {np}: {}",
            o.stderr
        );
    }
    (
        losses(&f.path(&format!("{out}.jsonl"))),
        weights(&f.path(out)),
    )
}

#[test]
fn every_stochastic_feature_agrees_across_rank_counts_after_eight_minibatches() {
    if !available() {
        return;
    }
    for (what, json) in features() {
        let f = Fixture::new(512, &json);
        let short = ["-b", "64", "-e", "1"];
        let (loss, w) = run(&f, 1, "one.nc", &short);
        for np in [2, 4] {
            let (l, v) = run(&f, np, &format!("np{np}.nc"), &short);
            let loss_err = (l[0] - loss[0]).abs() / loss[0].abs();
            let weight_err = relative_difference(&v, &w);
            eprintln!("{what}, {np} ranks: loss {loss_err:.1e}, weights {weight_err:.1e}");
            assert!(
                loss_err < 1e-6,
                "{what}, {np} ranks: loss {l:?} against {loss:?}"
            );
            assert!(
                weight_err < 1e-5,
                "{what}, {np} ranks: weights {weight_err:e}"
            );
        }
        let (again, v) = run(&f, 2, "np2-again.nc", &short);
        let (first, w2) = (losses(&f.path("np2.nc.jsonl")), weights(&f.path("np2.nc")));
        assert_eq!(again, first, "{what}: loss run to run on 2 ranks");
        assert!(v == w2, "{what}: weights run to run on 2 ranks");
    }
}

#[test]
fn two_epochs_on_any_rank_count_recommend_the_same_top_ten() {
    if !available() {
        return;
    }
    let movielens = features().pop().unwrap().1;
    for (what, json) in [
        ("everything stochastic", everything()),
        ("MovieLens", movielens),
    ] {
        let f = Fixture::new(1500, &json);
        let long = ["-b", "128", "-e", "2"];
        run(&f, 1, "one.nc", &long);
        let alone = f.top10("one.nc");
        assert_eq!(alone.len(), 1500);
        for np in [2, 4] {
            run(&f, np, &format!("np{np}.nc"), &long);
            let got = f.top10(&format!("np{np}.nc"));
            let same = same_sets(&alone, &got);
            eprintln!("{what}, {np} ranks: the same top-10 set for {same} of 1500 users");
            assert!(
                same * 100 >= 99 * 1500,
                "{what}, {np} ranks: {same} of 1500"
            );
        }
    }
}
