//! `trainer --validation V --select-by METRIC@K --patience N` on real rows (the first users
//! of ML-1M, their validation lists held out): the saved network is the best validation
//! epoch's (the metrics log and the log say which; `predictor --evaluate` measures the
//! logged value on it), patience stops the run, a resumed run keeps the same network, and
//! bad flags are refused naming them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use moira::checkpoint::load_model;

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");
const PREDICTOR: &str = env!("CARGO_BIN_EXE_predictor");
const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/ml-1m-lightgcnpp"
);
const USERS: u32 = 1000;

/// A wide softmax autoencoder without dropout, trained hard: it overfits 1,000 users within
/// a few epochs, so the validation metric peaks and falls.
const NET: &str = r#"{
  "Version": 0.9, "Name": "select", "Kind": "AutoEncoder", "ErrorFunction": "CrossEntropy",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 256, "Activation": "Tanh" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax" }
  ]
}"#;

struct Fixture(tempfile::TempDir);

impl Fixture {
    /// `input.nc`/`output.nc` from the training lists of the first users, `valid.nc` from
    /// their validation lists, and `net.json`.
    fn new() -> Self {
        let f = Fixture(tempfile::tempdir().unwrap());
        for split in ["train", "valid"] {
            let text = std::fs::read_to_string(format!("{DATA}/{split}.txt"))
                .expect("../shared/data/ml-1m-lightgcnpp must be present");
            let lines: String = text
                .lines()
                .filter(|l| l.split(' ').next().unwrap().parse::<u32>().unwrap() < USERS)
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(f.path(&format!("{split}.txt")), lines).unwrap();
        }
        f.convert("input", "train.txt", "input.nc", &["-c", "--l2-normalize"]);
        f.convert("output", "train.txt", "output.nc", &[]);
        f.convert("valid", "valid.txt", "valid.nc", &[]);
        std::fs::write(f.path("net.json"), NET).unwrap();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn convert(&self, dataset: &str, input: &str, output: &str, extra: &[&str]) {
        let p = |n: &str| self.path(n).display().to_string();
        let out = Command::new(CONVERTER)
            .args([
                "--format",
                "lists",
                "-d",
                dataset,
                "-i",
                &p(input),
                "-o",
                &p(output),
            ])
            .args(["-f", &p("features"), "-s", &p("samples")])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn trainer<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        let p = |n: &str| self.path(n).display().to_string();
        Command::new(TRAINER)
            .args([&p("net.json"), "-i", &p("input.nc"), "-o", &p("output.nc")])
            .args([
                "-b",
                "200",
                "--optimizer",
                "adam",
                "--alpha",
                "0.01",
                "--lambda",
                "0",
            ])
            .args(["--seed", "7", "--no-brake", "--threads", "2"])
            .args(args)
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    }

    fn train<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = self.trainer(args);
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    }

    fn fails<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = self.trainer(args);
        assert!(!out.status.success(), "succeeded: {}", stderr(&out));
        stderr(&out)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `(epoch, ndcg@20, selected epoch, selected value)` of each line of a metrics log.
fn log(path: &Path) -> Vec<(u64, f64, u64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ndcg = v["validation"]["metrics"][0]["ndcg"].as_f64().unwrap();
            let s = &v["selected"];
            (
                v["epoch"].as_u64().unwrap(),
                ndcg,
                s["epoch"].as_u64().unwrap(),
                s["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_saved_network_is_the_best_validation_epoch_and_patience_stops() {
    let f = Fixture::new();
    let p = |n: &str| f.path(n).display().to_string();
    let args = [
        "-n",
        &p("model.nc"),
        "-e",
        "30",
        "--validation",
        &p("valid.nc"),
        "--select-by",
        "ndcg@20",
        "--patience",
        "3",
        "--checkpoint-every",
        "1",
    ];
    let text = f.train(&args);
    let lines = log(&f.path("model.metrics.jsonl"));
    let (last, _, best, value) = *lines.last().unwrap();
    assert!(lines.len() < 30, "no early stop: {} epochs", lines.len());
    assert_eq!(
        last - best,
        3,
        "stopped {} epochs after the best",
        last - best
    );
    let max = lines.iter().map(|l| l.1).fold(f64::MIN, f64::max);
    assert_eq!(value, max);
    assert_eq!(lines.iter().find(|l| l.1 == max).unwrap().0, best);
    assert!(
        text.contains(&format!("kept epoch {best} (ndcg@20 {value:.4}")),
        "{text}"
    );
    assert!(
        !f.path("model.best.nc").exists(),
        "the best model was renamed"
    );
    let model = load_model(&f.path("model.nc")).unwrap();
    assert_eq!(model.extras.scalar("selected_epoch"), Some(best));

    // predictor measures the logged value on the saved network.
    let out = Command::new(PREDICTOR)
        .args(["-n", &p("model.nc"), "-i", &p("input.nc"), "-k", "20"])
        .args(["--evaluate", &p("valid.nc"), "--evaluate-k", "20"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let ndcg = json["metrics"][0]["ndcg"].as_f64().unwrap();
    assert!((ndcg - value).abs() < 1e-9, "predictor {ndcg}, log {value}");

    // Resumed from the checkpoint before the best epoch, with the best model that
    // checkpoint kept: the same network, the same stop.
    let resumed_out = f.path("resumed.nc");
    let from = f.path(&format!("model.epoch{best}.nc"));
    std::fs::copy(&from, f.path("resumed.best.nc")).unwrap();
    let (out_s, from_s) = (
        resumed_out.display().to_string(),
        from.display().to_string(),
    );
    let mut again = args[..args.len() - 2].to_vec();
    again[1] = &out_s;
    again.extend(["--resume", &from_s]);
    f.train(&again);
    assert_eq!(load_model(&resumed_out).unwrap(), model);
    let resumed_log = log(&f.path("resumed.metrics.jsonl"));
    assert_eq!(resumed_log.last().unwrap().0, last);
}

#[test]
fn bad_selection_flags_are_refused_naming_them() {
    let f = Fixture::new();
    let p = |n: &str| f.path(n).display().to_string();
    let (out, valid) = (p("m.nc"), p("valid.nc"));
    let base = ["-n", out.as_str(), "-e", "1"];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let e = f.fails(&with(&["--patience", "2"]));
    assert!(e.contains("--patience needs --select-by"), "{e}");
    let e = f.fails(&with(&["--select-by", "ndcg@20"]));
    assert!(e.contains("--select-by needs --validation"), "{e}");
    let e = f.fails(&with(&["--validation", &valid, "--select-by", "map@20"]));
    assert!(
        e.contains("`map@20`") && e.contains("unknown metric"),
        "{e}"
    );
    let e = f.fails(&with(&[
        "--validation",
        &valid,
        "--select-by",
        "ndcg@20",
        "--patience",
        "0",
    ]));
    assert!(e.contains("--patience 0"), "{e}");
    std::fs::write(f.path("m.best.nc"), "a file of the user's").unwrap();
    let e = f.fails(&with(&["--validation", &valid, "--select-by", "recall@10"]));
    assert!(e.contains("m.best.nc") && e.contains("--force"), "{e}");
    // The cutoff of the selection is measured even when --validation-k lacks it.
    f.train(&with(&[
        "--validation",
        &valid,
        "--select-by",
        "recall@10",
        "--force",
    ]));
    let line = std::fs::read_to_string(f.path("m.metrics.jsonl")).unwrap();
    assert!(line.contains("\"k\":10"), "{line}");
}
