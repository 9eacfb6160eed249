//! The predictor tests' fixture: a small clustered dataset converted by `converter` (lists
//! format, one features and one samples index), a network trained by `trainer`, and helpers
//! to run the binaries in the fixture's directory.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::Clusters;

pub const PREDICTOR: &str = env!("CARGO_BIN_EXE_predictor");
pub const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
pub const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");

pub const USERS: u64 = 120;
pub const ITEMS: u64 = 200;
pub const CLUSTERS: u64 = 4;
pub const TRAIN: usize = 12;
pub const HELD: usize = 4;

pub const NET: &str = r#"{
  "Version": 0.9, "Name": "predict-test", "Kind": "FeedForward", "ShuffleIndices": true,
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 16, "Activation": "Sigmoid" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

pub const DATA: Clusters = Clusters {
    items: ITEMS,
    clusters: CLUSTERS,
    per_user: TRAIN + HELD,
};

/// A directory with input.nc/output.nc (train rows), held.nc, features.idx, samples.idx and
/// a network `net.nc` trained 5 epochs with validation on held.nc @5,10.
pub struct Fixture(pub tempfile::TempDir);

/// A network whose every weight and bias is 0: all outputs tie at sigmoid(0) = 0.5.
pub const TIED_NET: &str = r#"{
  "Version": 0.9, "Name": "tied", "Kind": "FeedForward",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 8, "Activation": "Sigmoid",
      "WeightInit": { "Scheme": "Constant", "Scale": 0.0 } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true, "WeightInit": { "Scheme": "Constant", "Scale": 0.0 } }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

impl Fixture {
    /// The default fixture: `NET` trained 5 epochs.
    pub fn new() -> Self {
        Self::with_net(
            NET,
            &[
                "-e",
                "5",
                "-b",
                "32",
                "--optimizer",
                "nesterov",
                "--alpha",
                "0.2",
            ],
        )
    }

    /// The data, and `net_json` trained with `train_args` (validation on held.nc @5,10).
    pub fn with_net(net_json: &str, train_args: &[&str]) -> Self {
        let f = Fixture(tempfile::tempdir().unwrap());
        f.write("train.txt", &DATA.lists(USERS, 0..TRAIN));
        f.write("held.txt", &DATA.lists(USERS, TRAIN..TRAIN + HELD));
        f.convert("input", "train.txt", "input.nc", true);
        f.convert("output", "train.txt", "output.nc", false);
        f.convert("held", "held.txt", "held.nc", false);
        f.write("net.json", net_json);
        let out = Command::new(TRAINER)
            .current_dir(f.0.path())
            .env_remove("RUST_LOG")
            .args([
                "net.json",
                "-i",
                "input.nc",
                "-o",
                "output.nc",
                "-n",
                "net.nc",
            ])
            .args(train_args)
            .args(["--validation", "held.nc", "--validation-k", "5,10"])
            .args(["--validate-every", "0", "--threads", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "trainer: {}", stderr(&out));
        f
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    pub fn convert(&self, dataset: &str, input: &str, output: &str, create: bool) {
        let mut cmd = Command::new(CONVERTER);
        cmd.current_dir(self.0.path())
            .args([
                "--format", "lists", "-d", dataset, "-i", input, "-o", output,
            ])
            .args(["-f", "features.idx", "-s", "samples.idx"]);
        if create {
            cmd.arg("-c");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "converter: {}", stderr(&out));
    }

    pub fn predictor(&self, args: &[&str]) -> Output {
        Command::new(PREDICTOR)
            .current_dir(self.0.path())
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .unwrap()
    }

    pub fn predict(&self, args: &[&str]) -> Output {
        let out = self.predictor(args);
        assert!(out.status.success(), "predictor {args:?}: {}", stderr(&out));
        out
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub const BASE: [&str; 8] = [
    "-n",
    "net.nc",
    "-i",
    "input.nc",
    "-o",
    "features.idx",
    "--samples",
    "samples.idx",
];

/// Each user's training items, as labels.
pub fn inputs() -> HashMap<String, Vec<String>> {
    (0..USERS)
        .map(|u| {
            let items = DATA.user_items(u)[..TRAIN]
                .iter()
                .map(|i| format!("i{i}"))
                .collect();
            (format!("u{u}"), items)
        })
        .collect()
}
