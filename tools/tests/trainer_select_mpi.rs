//! `mpirun -np 2 trainer --select-by ndcg@20 --patience N` on the first users of ML-1M (their
//! validation lists held out): the ranks take the same decisions (the job ends, early, on
//! every rank), the network saved is the best logged epoch's, and `predictor --evaluate`
//! measures the logged value on it. Skipped, with a message, when `mpirun` is absent or the
//! tools were built without the `mpi` feature.

mod mpi_common;

use std::process::Command;

use moira::checkpoint::load_model;
use mpi_common::{available, Fixture};

const PREDICTOR: &str = env!("CARGO_BIN_EXE_predictor");
const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");
const VALID: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/ml-1m-lightgcnpp/valid.txt"
);
const USERS: usize = 600;

/// Input → 128 (output-sharded) → Output (output-sharded), softmax, no dropout: it overfits.
const NET: &str = r#"{ "Version": 0.9, "Name": "select", "Kind": "AutoEncoder",
  "ErrorFunction": "CrossEntropy",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 128, "Activation": "Tanh" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "SoftMax" } ] }"#;

#[test]
fn ranks_select_the_same_epoch_and_stop_together() {
    if !available() {
        return;
    }
    let f = Fixture::new(USERS, NET);
    // The first users' validation lists, over the fixture's features index.
    let text = std::fs::read_to_string(VALID).expect("../shared/data must be present");
    let lists: String = text
        .lines()
        .filter(|l| l.split(' ').next().unwrap().parse::<usize>().unwrap() < USERS)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(f.path("valid.txt"), lists).unwrap();
    let o = Command::new(CONVERTER)
        .current_dir(f.dir.path())
        .args([
            "--format",
            "lists",
            "-d",
            "valid",
            "-i",
            "valid.txt",
            "-o",
            "valid.nc",
        ])
        .args(["-f", "features", "-s", "samples"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let valid = f.p("valid.nc");
    let args = [
        "-b",
        "100",
        "-e",
        "30",
        "--optimizer",
        "adam",
        "--alpha",
        "0.01",
        "--lambda",
        "0",
        "--no-brake",
        "--validation",
        &valid,
        "--select-by",
        "ndcg@20",
        "--patience",
        "2",
    ];
    let run = f.train(2, "model.nc", &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let log = std::fs::read_to_string(f.path("model.metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() < 30, "no early stop");
    let ndcg = |v: &serde_json::Value| v["validation"]["metrics"][0]["ndcg"].as_f64().unwrap();
    let max = lines.iter().map(ndcg).fold(f64::MIN, f64::max);
    let selected = &lines.last().unwrap()["selected"];
    let best = selected["epoch"].as_u64().unwrap();
    assert_eq!(selected["value"].as_f64().unwrap(), max);
    assert_eq!(lines.last().unwrap()["epoch"].as_u64().unwrap() - best, 2);
    let model = load_model(&f.path("model.nc")).unwrap();
    assert_eq!(model.extras.scalar("selected_epoch"), Some(best));

    let out = Command::new(PREDICTOR)
        .args(["-n", &f.p("model.nc"), "-i", &f.p("input.nc"), "-k", "20"])
        .args([
            "--evaluate",
            &valid,
            "--evaluate-k",
            "20",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().rfind(|l| l.starts_with('{')).unwrap()).unwrap();
    let measured = json["metrics"][0]["ndcg"].as_f64().unwrap();
    // One process ranks the scores of the 2-rank model: equal up to the order of near ties.
    assert!(
        (measured - max).abs() < 1e-3,
        "predictor {measured}, log {max}"
    );
}
