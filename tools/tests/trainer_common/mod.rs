//! The fixture of the `trainer` CLI tests (tools/tests/trainer_cli.rs,
//! tools/tests/trainer_refusals.rs): small clustered data converted by the `converter` binary.
//!
//! The data: `USERS` users in `CLUSTERS` clusters; user `u` likes `TRAIN + HELD` distinct items
//! of cluster `u % CLUSTERS` (each cluster owns `ITEMS / CLUSTERS` items). `TRAIN` of them form
//! the training rows, the other `HELD` the held-out rows. A model that learns the clusters
//! ranks held-out items far above random; one that does not cannot.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::Clusters;
use moira::checkpoint::load_model;

pub const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
pub const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");

pub const USERS: u64 = 300;
pub const ITEMS: u64 = 500;
pub const CLUSTERS: u64 = 5;
pub const TRAIN: usize = 15;
pub const HELD: usize = 5;

/// An I→32→I sigmoid autoencoder with hidden dropout and input denoising. `INPUT` and
/// `OUTPUT` are replaced by dataset names.
pub const NET: &str = r#"{
  "Version": 0.9, "Name": "cli-test", "Kind": "FeedForward", "ShuffleIndices": true,
  "Denoising": { "p": 0.2 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "INPUT", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 32, "Activation": "Sigmoid", "pDropout": 0.2 },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "OUTPUT",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

pub const DATA: Clusters = Clusters {
    items: ITEMS,
    clusters: CLUSTERS,
    per_user: TRAIN + HELD,
};

/// A temporary directory with `train.txt`, `held.txt`, their conversions `input.nc`
/// (dataset `input`), `output.nc` (dataset `output`, the same rows) and `held.nc` (dataset
/// `held`), the indexes, and `net.json` (`input` → `output`).
pub struct Fixture(pub tempfile::TempDir);

impl Fixture {
    pub fn new() -> Self {
        let f = Fixture(tempfile::tempdir().unwrap());
        f.write("train.txt", &DATA.lists(USERS, 0..TRAIN));
        f.write("held.txt", &DATA.lists(USERS, TRAIN..TRAIN + HELD));
        f.convert("input", "train.txt", "input.nc", "samples.idx", true);
        f.convert("output", "train.txt", "output.nc", "samples.idx", false);
        f.convert("held", "held.txt", "held.nc", "samples.idx", false);
        f.write("net.json", &net("input", "output"));
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

    /// Runs the converter (lists format, shared features index `features.idx`).
    pub fn convert(&self, dataset: &str, input: &str, output: &str, samples: &str, create: bool) {
        let mut cmd = Command::new(CONVERTER);
        cmd.current_dir(self.0.path())
            .args([
                "--format", "lists", "-d", dataset, "-i", input, "-o", output,
            ])
            .args(["-f", "features.idx", "-s", samples]);
        if create {
            cmd.arg("-c");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "converter: {}", stderr(&out));
    }

    /// Runs the trainer in the fixture's directory.
    pub fn trainer(&self, args: &[&str]) -> Output {
        Command::new(TRAINER)
            .current_dir(self.0.path())
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the trainer and asserts that it succeeded.
    pub fn train(&self, args: &[&str]) {
        let out = self.trainer(args);
        assert!(out.status.success(), "trainer {args:?}: {}", stderr(&out));
    }

    /// Trains `net.json` on input.nc/output.nc into `out` with `extra` flags (3 epochs of 64
    /// unless `extra` says otherwise).
    pub fn train_ae(&self, out: &str, extra: &[&str]) -> Params {
        let mut args = vec!["net.json", "-i", "input.nc", "-o", "output.nc", "-n", out];
        for (flag, default) in [("-e", "3"), ("-b", "64")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend(extra);
        self.train(&args);
        params(&self.path(out))
    }
}

pub fn net(input: &str, output: &str) -> String {
    NET.replace("INPUT", input).replace("OUTPUT", output)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every weight and bias of a saved network as bits, with its layer names.
pub type Params = Vec<(String, String, Vec<u32>, Vec<u32>)>;

pub fn params(path: &Path) -> Params {
    let model = load_model(path).unwrap();
    assert!(!model.weights.is_empty());
    model
        .weights
        .into_iter()
        .map(|w| {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (w.input_layer, w.output_layer, bits(&w.data), bits(&w.bias))
        })
        .collect()
}

pub fn example_networks() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../networks");
    let mut nets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    nets.sort();
    assert!(nets.len() >= 3, "example networks in {}", dir.display());
    nets
}
