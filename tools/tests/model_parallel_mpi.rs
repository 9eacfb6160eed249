//! `mpirun -np N trainer` and `mpirun -np N predictor` in real processes, on MovieLens-1M
//! (the first 1,500 users of ../shared/data's training lists): 1, 2 and 4 ranks train the same
//! model (weights within 1e-5 relative after two epochs), a rank count repeats itself bit for
//! bit, a model trained on 4 ranks predicts the same top-10 alone and on 3 ranks, and a
//! failing or killed rank ends the whole job, non-zero, within seconds. Skipped, with a
//! message, when `mpirun` is absent or the tools were built without the `mpi` feature.

mod mpi_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mpi_common::{available, recs, relative_difference, weights, Fixture, ML1M_TRAIN};

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");

/// Input → H1 (128, input-sharded: reduce-scatter) → H2 (96, output-sharded: all-gather) →
/// Output (output-sharded), dropout on both hidden layers.
const NET: &str = r#"{ "Version": 0.8, "Name": "mp", "Kind": "FeedForward", "ShuffleIndices": true,
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128, "Activation": "Sigmoid",
      "pDropout": 0.2 },
    { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 96, "Activation": "Relu",
      "pDropout": 0.1 },
    { "Name": "Output", "Kind": "Output", "Source": "H2", "N": "auto", "DataSet": "output",
      "Sparse": true, "Activation": "Sigmoid" } ],
  "ErrorFunction": "CrossEntropy" }"#;

/// ML-1M's first 1,500 users and [`NET`].
fn fixture() -> Fixture {
    Fixture::new(1500, NET)
}

/// `mpirun -np N trainer` two epochs of Adam into `out`, with `extra` arguments.
fn train_two_epochs(f: &Fixture, np: usize, out: &str, extra: &[&str]) -> mpi_common::Outcome {
    let mut args = vec![
        "-b",
        "128",
        "-e",
        "2",
        "--optimizer",
        "adam",
        "--alpha",
        "0.002",
    ];
    args.extend(extra);
    f.train(np, out, &args)
}

#[test]
fn one_two_and_four_ranks_train_the_same_model() {
    if !available() {
        return;
    }
    let f = fixture();
    let one = train_two_epochs(&f, 1, "one.nc", &[]);
    assert_eq!(one.code, Some(0), "{}", one.stderr);
    assert!(
        !one.stderr.contains("shard plan"),
        "one rank runs alone: {}",
        one.stderr
    );
    let reference = weights(&f.path("one.nc"));
    for np in [2, 4] {
        let o = train_two_epochs(&f, np, &format!("np{np}.nc"), &[]);
        assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
        assert!(
            o.stderr.contains(&format!("shard plan: {np} ranks"))
                && o.stderr
                    .contains("reduce-scatter partial pre-activations H1"),
            "np {np}: the log shows the plan: {}",
            o.stderr
        );
        let got = weights(&f.path(&format!("np{np}.nc")));
        let rel = relative_difference(&got, &reference);
        assert!(rel < 1e-5, "np {np}: weights differ by {rel:e}");
    }
    // The same rank count repeats itself bit for bit.
    let again = train_two_epochs(&f, 2, "np2-again.nc", &[]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(weights(&f.path("np2.nc")), weights(&f.path("np2-again.nc")));
}

#[test]
fn a_model_trained_on_four_ranks_predicts_alike_on_any_rank_count() {
    if !available() {
        return;
    }
    let f = fixture();
    let o = train_two_epochs(&f, 4, "model.nc", &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let predict = |np: usize, out: &str| {
        let o = f.predict(np, "model.nc", out, &["--parallel", "model"]);
        assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
        recs(&std::fs::read_to_string(f.path(out)).unwrap())
    };
    let alone = predict(1, "recs1");
    let three = predict(3, "recs3");
    assert_eq!(alone.len(), 1500);
    assert_eq!(three.len(), 1500);
    let same = alone.iter().zip(&three).filter(|(a, b)| a == b).count();
    assert!(
        same * 100 >= 99 * 1500,
        "same top-10 for {same} of 1500 users"
    );
}

#[test]
fn a_bad_data_file_fails_every_rank_with_the_reason() {
    if !available() {
        return;
    }
    let f = fixture();
    let bytes = std::fs::read(f.path("input.nc")).unwrap();
    std::fs::write(f.path("input.nc"), &bytes[..bytes.len() / 3]).unwrap();
    let o = train_two_epochs(&f, 2, "bad.nc", &[]);
    assert_ne!(o.code, Some(0));
    assert!(o.elapsed < Duration::from_secs(30), "{:?}", o.elapsed);
    for r in 0..2 {
        let line = o
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("error: rank {r} of 2:")))
            .unwrap_or_else(|| panic!("no error line from rank {r} in\n{}", o.stderr));
        assert!(line.contains("input.nc"), "{line}");
    }
    assert!(!f.path("bad.nc").exists());
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds() {
    if !available() {
        return;
    }
    let f = fixture();
    let (net, input, output, out) = (
        f.p("net.json"),
        f.p("input.nc"),
        f.p("output.nc"),
        f.p("killed.nc"),
    );
    let args = [
        net.as_str(),
        "-i",
        &input,
        "-o",
        &output,
        "-n",
        &out,
        "--force",
        "-b",
        "64",
        "-e",
        "1000",
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    let start = Instant::now();
    let child = mpi_common::spawn(2, TRAINER, &args);
    // Wait for both ranks to be training, then kill one (as the OOM killer would).
    let mut victim = None;
    while start.elapsed() < Duration::from_secs(60) && victim.is_none() {
        std::thread::sleep(Duration::from_millis(500));
        let ps = Command::new("pgrep")
            .args(["-f", &format!("{TRAINER}.*killed.nc")])
            .output();
        let pids: Vec<u32> = ps
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if pids.len() >= 2 {
            std::thread::sleep(Duration::from_secs(1));
            victim = pids.last().copied();
        }
    }
    let victim = victim.expect("two trainer ranks running");
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let o = mpi_common::wait(child, start, "mpirun -np 2 trainer (one rank killed)");
    assert_ne!(o.code, Some(0), "{}", o.stderr);
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "{:?}",
        killed.elapsed()
    );
    assert!(!f.path("killed.nc").exists());
}

#[test]
fn validation_under_mpirun_ranks_like_a_single_run() {
    if !available() {
        return;
    }
    let f = fixture();
    let held = std::fs::read_to_string(ML1M_TRAIN.replace("train.txt", "test.txt"))
        .expect("../shared/data must be present");
    // The held-out items of the fixture's users (rows aligned through the samples index).
    let train = std::fs::read_to_string(f.path("train.txt")).unwrap();
    let users: std::collections::HashSet<&str> = train
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let held: String = held
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|u| users.contains(u))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(f.path("held.txt"), held).unwrap();
    let o = Command::new(CONVERTER)
        .current_dir(f.dir.path())
        .args([
            "--format", "lists", "-d", "held", "-i", "held.txt", "-o", "held.nc",
        ])
        .args(["-f", "features", "-s", "samples"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let held = f.p("held.nc");
    let recall = |np: usize| {
        let log = f.p(&format!("v{np}.jsonl"));
        let o = train_two_epochs(
            &f,
            np,
            &format!("v{np}.nc"),
            &["--validation", &held, "--metrics-log", &log],
        );
        assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
        let last = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        v["validation"]["metrics"][0]["recall"]
            .as_f64()
            .unwrap_or_else(|| panic!("no recall@20 in {last}"))
    };
    let (one, two) = (recall(1), recall(2));
    assert!(one > 0.05, "recall@20 {one}");
    assert!(
        (one - two).abs() < 0.005,
        "recall@20 alone {one}, 2 ranks {two}"
    );
}

#[test]
fn checkpoints_resume_on_the_same_and_on_other_rank_counts() {
    if !available() {
        return;
    }
    let f = fixture();
    let full = train_two_epochs(&f, 2, "full.nc", &[]);
    assert_eq!(full.code, Some(0), "{}", full.stderr);
    let ck = train_two_epochs(&f, 2, "ck.nc", &["--checkpoint-every", "1"]);
    assert_eq!(ck.code, Some(0), "{}", ck.stderr);
    let checkpoint = f.p("ck.epoch1.nc");
    assert!(Path::new(&checkpoint).exists(), "{}", ck.stderr);
    // Same rank count: the resumed run ends with the uninterrupted run's bits.
    let same = train_two_epochs(&f, 2, "resumed2.nc", &["--resume", &checkpoint]);
    assert_eq!(same.code, Some(0), "{}", same.stderr);
    assert_eq!(weights(&f.path("resumed2.nc")), weights(&f.path("full.nc")));
    // Another rank count (and alone): the same model up to the cross-rank sums' rounding.
    for np in [1, 4] {
        let out = format!("resumed{np}.nc");
        let o = train_two_epochs(&f, np, &out, &["--resume", &checkpoint]);
        assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
        let rel = relative_difference(&weights(&f.path(&out)), &weights(&f.path("full.nc")));
        assert!(rel < 1e-5, "np {np}: {rel:e}");
    }
}
