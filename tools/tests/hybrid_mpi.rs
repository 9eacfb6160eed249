//! `mpirun -np N trainer --parallel hybrid` in real processes, on MovieLens-1M's first users:
//! a deep autoencoder whose narrow middle weights the cost model replicates (those layers
//! split by examples, the wide ends by units) logs its plan and
//! trains the one-rank model on 2, 3 and 4 ranks (after 4 minibatches of 256 the loss within
//! 1e-6 relative and the weights within 1e-5, with dropout and denoising; bit for bit run to
//! run); `--parallel tune` logs each mode's time and trains as the one it chose. Skipped,
//! with a message, when `mpirun` is absent or the tools were built without the `mpi` feature.

mod mpi_common;

use mpi_common::{assert_agrees, available, Fixture, Trained};

/// I → 128 → 32 → 32 → 128 → I: at minibatches of 256 the 32-unit weights move fewer bytes
/// as gradients than as activations.
const DEEP: &str = r#"{ "Version": 0.8, "Name": "hybrid", "Kind": "FeedForward",
  "ShuffleIndices": true, "ErrorFunction": "CrossEntropy", "Denoising": { "p": 0.2 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128, "Activation": "Tanh" },
    { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 32, "Activation": "Relu",
      "pDropout": 0.1 },
    { "Name": "H3", "Kind": "Hidden", "Source": "H2", "N": 32, "Activation": "Tanh" },
    { "Name": "H4", "Kind": "Hidden", "Source": "H3", "N": 128, "Activation": "Relu" },
    { "Name": "Output", "Kind": "Output", "Source": "H4", "N": "auto", "DataSet": "output",
      "Sparse": true, "Activation": "SoftMax" } ] }"#;

/// Trains on `np` ranks into `out` with minibatches of 256 and `args`.
fn run(f: &Fixture, np: usize, out: &str, args: &[&str]) -> Trained {
    f.train_adam(np, out, &with_batch(args))
}

/// `args` with minibatches of 256.
fn with_batch<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["-b", "256"], args].concat()
}

#[test]
fn hybrid_training_agrees_with_one_rank_and_logs_its_plan() {
    if !available() {
        return;
    }
    let f = Fixture::new(1024, DEEP);
    let one = run(&f, 1, "one.nc", &["-e", "1"]);
    for np in [2, 3, 4] {
        let args = ["-e", "1", "--parallel", "hybrid"];
        let got = run(&f, np, &format!("np{np}.nc"), &args);
        let log = &got.2;
        assert!(
            log.contains(&format!("rank 0 of {np} (hybrid parallelism)")),
            "{log}"
        );
        assert!(
            log.contains("--parallel hybrid: traffic per minibatch"),
            "{log}"
        );
        // The three small middle weights are replicated on every rank count (their sharded
        // update moves fewer bytes than their activations would), the two wide ones sharded.
        let (by_examples, relaid) = (
            "Input, H1, Output; by examples (each rank its rows, all units): H2, H3, H4",
            "H1",
        );
        let layouts = format!("layers split by units: {by_examples}");
        assert!(log.contains(&layouts), "{log}");
        assert!(
            log.contains(&format!("all-to-all activations {relaid}")),
            "{log}"
        );
        assert_agrees(np, &got, &one);
    }
    f.assert_repeats(
        2,
        "np2.nc",
        &with_batch(&["-e", "1", "--parallel", "hybrid"]),
    );
}

/// `--parallel tune` times each way of splitting the work on the first minibatches, logs the
/// times and trains exactly as the mode it chose.
#[test]
fn tune_times_each_mode_and_trains_as_the_fastest() {
    if !available() {
        return;
    }
    let f = Fixture::new(512, DEEP);
    let tuned = run(&f, 2, "tune.nc", &["-e", "1", "--parallel", "tune"]);
    let log = &tuned.2;
    let line = log
        .lines()
        .find(|l| l.contains("--parallel tune: seconds per step"))
        .unwrap_or_else(|| panic!("{log}"));
    for mode in ["model ", "data ", "hybrid "] {
        assert!(line.contains(mode), "{line}");
    }
    let chosen = line.rsplit("-> ").next().unwrap().trim();
    assert!(log.contains(&format!("({chosen} parallelism)")), "{log}");
    f.assert_trains_as(2, chosen, &with_batch(&["-e", "1"]), &tuned);
}
