//! `mpirun -np N trainer --parallel data|auto` and `mpirun -np N predictor` in real processes,
//! on MovieLens-1M's first users: data parallelism trains the one-rank model on 2 and 4 ranks
//! (after 8 minibatches of 64 the loss within 1e-6 relative and the weights within 1e-5 with
//! every stochastic feature, bit for bit run to run; after 2 epochs on 1,500 users the same
//! top-10 sets for ≥ 99% of users), its model file is the one-rank schema, `auto` logs the
//! traffic of each mode and trains as the one it chose, the predictor splits the users
//! across ranks with the one-rank output, and exact sums (`--exact-chunk`) write the one-rank
//! model file byte for byte on 2 and 3 ranks and after resuming on another rank count.
//! Skipped, with a message, when `mpirun` is absent or the tools were built without the `mpi`
//! feature.

mod mpi_common;

use mpi_common::{assert_agrees, available, recs, same_sets, Fixture, Trained};

/// Denoising, dropout on both hidden layers, the sparseness penalty and a SoftMax output.
const EVERYTHING: &str = r#"{ "Version": 0.8, "Name": "dp", "Kind": "FeedForward",
  "ShuffleIndices": true, "ErrorFunction": "CrossEntropy",
  "Denoising": { "p": 0.3 }, "SparsenessPenalty": { "p": 0.3, "beta": 0.5 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128, "Activation": "Sigmoid",
      "Sparse": true, "pDropout": 0.2 },
    { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 96, "Activation": "Relu",
      "pDropout": 0.1 },
    { "Name": "Output", "Kind": "Output", "Source": "H2", "N": "auto", "DataSet": "output",
      "Sparse": true, "Activation": "SoftMax" } ] }"#;

/// Trains on `np` ranks into `out` with `args` ([`Fixture::train_adam`]).
fn run(f: &Fixture, np: usize, out: &str, args: &[&str]) -> Trained {
    f.train_adam(np, out, args)
}

#[test]
fn data_parallel_training_agrees_with_one_rank_after_eight_minibatches() {
    if !available() {
        return;
    }
    let f = Fixture::new(512, EVERYTHING);
    let short = ["-b", "64", "-e", "1", "--parallel", "data"];
    let one = run(&f, 1, "one.nc", &short);
    for np in [2, 4] {
        let got = run(&f, np, &format!("np{np}.nc"), &short);
        let log = &got.2;
        assert!(
            log.contains(&format!("rank 0 of {np} (data parallelism)")),
            "{log}"
        );
        assert_agrees(np, &got, &one);
    }
    f.assert_repeats(2, "np2.nc", &short);
}

#[test]
fn two_epochs_on_any_rank_count_recommend_the_same_top_ten() {
    if !available() {
        return;
    }
    let f = Fixture::new(1500, EVERYTHING);
    let long = ["-b", "128", "-e", "2", "--parallel", "data"];
    run(&f, 1, "one.nc", &long);
    let alone = f.top10("one.nc");
    assert_eq!(alone.len(), 1500);
    for np in [2, 4] {
        run(&f, np, &format!("np{np}.nc"), &long);
        let got = f.top10(&format!("np{np}.nc"));
        let same = same_sets(&alone, &got);
        eprintln!("{np} ranks: the same top-10 set for {same} of 1500 users");
        assert!(same * 100 >= 99 * 1500, "{np} ranks: {same} of 1500");
    }
}

#[test]
fn auto_logs_its_choice_and_trains_as_the_chosen_mode() {
    if !available() {
        return;
    }
    let f = Fixture::new(512, EVERYTHING);
    let short = ["-b", "128", "-e", "1"];
    let auto = run(
        &f,
        2,
        "auto.nc",
        &[&short[..], &["--parallel", "auto"]].concat(),
    );
    let log = &auto.2;
    assert!(
        log.contains("--parallel auto: traffic per minibatch"),
        "{log}"
    );
    let chosen = ["data", "hybrid", "model"]
        .into_iter()
        .find(|m| log.contains(&format!("-> {m}")))
        .unwrap_or("model");
    assert!(log.contains(&format!("({chosen} parallelism)")), "{log}");
    f.assert_trains_as(2, chosen, &short, &auto);
}

#[test]
fn the_predictor_splits_the_users_across_ranks_with_the_one_rank_output() {
    if !available() {
        return;
    }
    let f = Fixture::new(1500, EVERYTHING);
    run(&f, 1, "model.nc", &["-b", "128", "-e", "1"]);
    let input = f.p("input.nc");
    let predict = |np: usize, out: &str| {
        let extra = ["-b", "100", "--evaluate", &input, "--evaluate-k", "10"];
        let o = f.predict(
            np,
            "model.nc",
            out,
            &[&extra[..], &["--no-exclude-input"]].concat(),
        );
        assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
        if np > 1 {
            assert!(o.stderr.contains("data parallelism on"), "{}", o.stderr);
        }
        (std::fs::read_to_string(f.path(out)).unwrap(), o.stdout)
    };
    let (alone, metrics) = predict(1, "recs1");
    assert_eq!(recs(&alone).len(), 1500);
    for np in [2, 3] {
        let (got, got_metrics) = predict(np, &format!("recs{np}"));
        assert!(got == alone, "{np} ranks: recommendations differ");
        assert_eq!(got_metrics, metrics, "{np} ranks: metrics");
    }
    assert!(metrics.contains("\"users\":1500"), "{metrics}");
}

#[test]
fn a_diverging_run_stops_every_rank_with_the_reason() {
    if !available() {
        return;
    }
    let f = Fixture::new(512, EVERYTHING);
    let args = [
        "-b",
        "64",
        "-e",
        "2",
        "--parallel",
        "data",
        "--alpha",
        "1e9",
        "--no-brake",
    ];
    let o = f.train(2, "diverged.nc", &args);
    assert_ne!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("training stopped"), "{}", o.stderr);
    assert!(
        o.elapsed < std::time::Duration::from_secs(60),
        "{:?}",
        o.elapsed
    );
    assert!(!f.path("diverged.nc").exists());
}

/// [`EVERYTHING`] without the sparseness penalty, which exact sums refuse.
const EXACT: &str = r#"{ "Version": 0.8, "Name": "exact", "Kind": "FeedForward",
  "ShuffleIndices": true, "ErrorFunction": "CrossEntropy", "Denoising": { "p": 0.3 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128, "Activation": "Sigmoid",
      "pDropout": 0.2 },
    { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 96, "Activation": "Relu",
      "pDropout": 0.1 },
    { "Name": "Output", "Kind": "Output", "Source": "H2", "N": "auto", "DataSet": "output",
      "Sparse": true, "Activation": "SoftMax" } ] }"#;

/// `--exact-chunk`: the same losses and the same model file, byte for byte, on 1, 2 and 3
/// ranks (`auto` taking data parallelism), with denoising and dropout, in chunks of 24 of
/// minibatches of 64 (the last of 2 rows); model parallelism refused with the reason.
#[test]
fn exact_sums_write_the_same_model_file_on_one_two_and_three_ranks() {
    if !available() {
        return;
    }
    let f = Fixture::new(514, EXACT);
    let args = ["-b", "64", "-e", "1", "--exact-chunk", "24"];
    let one = run(
        &f,
        1,
        "one.nc",
        &[&args[..], &["--parallel", "data"]].concat(),
    );
    let one_file = std::fs::read(f.path("one.nc")).unwrap();
    for np in [2, 3] {
        let out = format!("np{np}.nc");
        let got = run(&f, np, &out, &[&args[..], &["--parallel", "auto"]].concat());
        let log = &got.2;
        assert!(
            log.contains(&format!("rank 0 of {np} (data parallelism)")),
            "{log}"
        );
        assert!(
            log.contains("exact sums: each minibatch in chunks of 24"),
            "{log}"
        );
        assert_eq!(got.0, one.0, "{np} ranks: losses");
        assert!(
            std::fs::read(f.path(&out)).unwrap() == one_file,
            "{np} ranks: model file"
        );
    }
    let refused = f.train(
        2,
        "model.nc",
        &[&args[..], &["--parallel", "model"]].concat(),
    );
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("exact sums need data parallelism"),
        "{}",
        refused.stderr
    );
}

/// Exact sums across checkpoints: 2 epochs on 2 ranks, resumed after the first on 3 ranks
/// and on 1, write the uninterrupted run's model file byte for byte; resuming without
/// `--exact-chunk` warns that the result will differ.
#[test]
fn exact_sums_resume_on_any_rank_count_to_the_same_model_file() {
    if !available() {
        return;
    }
    let f = Fixture::new(300, EXACT);
    let args = [
        "-b",
        "64",
        "-e",
        "2",
        "--exact-chunk",
        "24",
        "--parallel",
        "data",
    ];
    let every = [&args[..], &["--checkpoint-every", "1"]].concat();
    run(&f, 2, "straight.nc", &every);
    let straight = std::fs::read(f.path("straight.nc")).unwrap();
    let checkpoint = f.p("straight.epoch1.nc");
    for np in [3, 1] {
        let out = format!("resumed{np}.nc");
        let resumed = [&args[..], &["--resume", &checkpoint]].concat();
        let got = run(&f, np, &out, &resumed);
        assert!(!got.2.contains("will differ"), "{}", got.2);
        assert!(
            std::fs::read(f.path(&out)).unwrap() == straight,
            "resumed on {np}"
        );
    }
    let plain = [
        "-b",
        "64",
        "-e",
        "2",
        "--parallel",
        "data",
        "--resume",
        &checkpoint,
    ];
    let got = run(&f, 2, "plain.nc", &plain);
    assert!(
        got.2
            .contains("exact sums: chunks of 24 in the checkpoint, off now"),
        "{}",
        got.2
    );
}
