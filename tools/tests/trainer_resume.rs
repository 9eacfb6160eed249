//! Integration tests of `trainer --checkpoint-every` / `--resume` and of bad model files given
//! to `trainer --resume` and `predictor -n`: a run killed with SIGKILL and resumed from its
//! last checkpoint ends with the bits of an uninterrupted run, on any thread count;
//! checkpoints respect `--force`; a diverging run stops naming the epoch and the batch and
//! keeps its last good checkpoint; damaged or mismatched files are refused naming the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Clusters;
use moira::checkpoint::load_model;

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");
const PREDICTOR: &str = env!("CARGO_BIN_EXE_predictor");

/// An I→HIDDEN→I sigmoid autoencoder with hidden dropout and input denoising.
const NET: &str = r#"{
  "Version": 0.9, "Name": "resume-test", "Kind": "FeedForward", "ShuffleIndices": true,
  "Denoising": { "p": 0.2 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": HIDDEN, "Activation": "Sigmoid", "pDropout": 0.2 },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// A linear network with an L2 loss: it diverges to infinity under a large learning rate.
const LINEAR: &str = r#"{
  "Version": 0.9, "Name": "linear", "Kind": "FeedForward",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 16, "Activation": "Linear" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Linear", "Sparse": true }
  ],
  "ErrorFunction": "L2"
}"#;

/// A temporary directory with `input.nc`/`output.nc` (the same rows, datasets `input` and
/// `output`) converted from clustered lists, and `net.json` with 32 hidden units.
struct Fixture(tempfile::TempDir);

impl Fixture {
    fn new(users: u64, items: u64) -> Self {
        let f = Fixture(tempfile::tempdir().unwrap());
        let data = Clusters {
            items,
            clusters: 5,
            per_user: 15,
        };
        f.write("train.txt", &data.lists(users, 0..15));
        f.convert("input", "train.txt", "input.nc", "features.idx", true);
        f.convert("output", "train.txt", "output.nc", "features.idx", false);
        f.write("net.json", &NET.replace("HIDDEN", "32"));
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs the converter (lists format) with features index `features`.
    fn convert(&self, dataset: &str, input: &str, output: &str, features: &str, create: bool) {
        let mut cmd = Command::new(CONVERTER);
        cmd.current_dir(self.0.path())
            .args([
                "--format", "lists", "-d", dataset, "-i", input, "-o", output,
            ])
            .args(["-f", features, "-s", "samples.idx"]);
        if create {
            cmd.arg("-c");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "converter: {}", stderr(&out));
    }

    fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.current_dir(self.0.path())
            .env_remove("RUST_LOG")
            .args(args);
        cmd
    }

    fn trainer(&self, args: &[&str]) -> Output {
        self.command(TRAINER, args).output().unwrap()
    }

    /// Runs the trainer expecting success; returns its stderr (the log).
    fn train(&self, args: &[&str]) -> String {
        let out = self.trainer(args);
        assert!(out.status.success(), "trainer {args:?}: {}", stderr(&out));
        stderr(&out)
    }

    /// Runs the trainer expecting failure; returns its stderr.
    fn train_fails(&self, args: &[&str]) -> String {
        let out = self.trainer(args);
        assert!(!out.status.success(), "trainer {args:?} succeeded");
        stderr(&out)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every weight and bias of a saved network as bits, with its layer names.
fn params(path: &Path) -> Vec<(String, String, Vec<u32>, Vec<u32>)> {
    let model = load_model(path).unwrap_or_else(|e| panic!("{e}"));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    model
        .weights
        .iter()
        .map(|w| {
            let names = (w.input_layer.clone(), w.output_layer.clone());
            (names.0, names.1, bits(&w.data), bits(&w.bias))
        })
        .collect()
}

/// The epochs of a metrics log, in order.
fn logged_epochs(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["epoch"].as_u64().unwrap()
        })
        .collect()
}

/// The data and schedule flags of the runs compared bit for bit: a step schedule (the
/// learning rate depends on the epoch), with the network's dropout, denoising and shuffling.
const BASE: [&str; 11] = [
    "net.json",
    "-i",
    "input.nc",
    "-o",
    "output.nc",
    "-b",
    "64",
    "--alpha-interval",
    "3",
    "--alpha-multiplier",
    "0.5",
];

/// Adam: two moment tensors per weight and bias, and the update count in its bias correction.
const ADAM: [&str; 4] = ["--optimizer", "adam", "--alpha", "0.01"];

#[test]
fn a_killed_run_resumed_from_its_last_checkpoint_ends_bit_identical() {
    // Large enough that an epoch takes a noticeable time, so that the kill lands mid-run.
    let f = Fixture::new(3000, 2000);
    const EPOCHS: u32 = 12;
    let e = EPOCHS.to_string();
    let run = [&BASE[..], &ADAM, &["-e", &e]].concat();
    f.train(&[&run[..], &["--threads", "1", "-n", "full.nc"]].concat());

    let args = [
        &run[..],
        &["--threads", "1", "-n", "run.nc", "--checkpoint-every", "1"],
    ]
    .concat();
    let mut child = f
        .command(TRAINER, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let k = 2;
    let started = Instant::now();
    while !f.path(&format!("run.epoch{k}.nc")).exists() {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().ok(); // SIGKILL
    let status = child.wait().unwrap();
    let checkpoints: Vec<u32> = (1..=EPOCHS)
        .filter(|e| f.path(&format!("run.epoch{e}.nc")).exists())
        .collect();
    let finished = status.success();
    let last = if finished {
        // The whole run finished before the kill (a very fast machine): resume from k.
        eprintln!("the run finished before SIGKILL; resuming from epoch {k}");
        k
    } else {
        assert!(!f.path("run.nc").exists(), "a killed run wrote its output");
        let expected: Vec<u32> = (1..=checkpoints.len() as u32).collect();
        assert_eq!(checkpoints, expected);
        *checkpoints.last().unwrap()
    };
    assert!(last >= k && last < EPOCHS, "checkpoints {checkpoints:?}");
    let from = format!("run.epoch{last}.nc");
    // The same command plus --resume (no --force needed), on another thread count.
    let mut resumed = [&run[..], &["--threads", "2", "-n", "run.nc"]].concat();
    resumed.extend(["--checkpoint-every", "1", "--resume", &from]);
    if finished {
        resumed.push("--force");
    }
    f.train(&resumed);
    assert!(
        params(&f.path("full.nc")) == params(&f.path("run.nc")),
        "the resumed run differs from the uninterrupted one"
    );
    assert_eq!(
        logged_epochs(&f.path("run.metrics.jsonl")),
        (0..u64::from(EPOCHS)).collect::<Vec<_>>(),
        "one metrics line per epoch"
    );
    // Every checkpoint is a DSSTNE model with the training state in `moira_*` extras.
    let m = load_model(&f.path(&format!("run.epoch{EPOCHS}.nc"))).unwrap();
    assert_eq!(m.extras.scalar("epoch"), Some(u64::from(EPOCHS)));
    assert_eq!(m.extras.string("optimizer"), Some("Adam"));
}

#[test]
fn resuming_with_another_thread_count_gives_the_same_bits_for_each_optimizer() {
    let f = Fixture::new(300, 500);
    for (opt, alpha) in [("nesterov", "0.2"), ("rmsprop", "0.01"), ("sgd", "0.5")] {
        let run = [
            &BASE[..],
            &["-e", "4", "--optimizer", opt, "--alpha", alpha, "--force"],
        ]
        .concat();
        let one = [&run[..], &["--threads", "1", "-n", "a.nc"]].concat();
        f.train(&[&one[..], &["--checkpoint-every", "2"]].concat());
        let two = [&run[..], &["--threads", "2", "-n", "b.nc"]].concat();
        f.train(&[&two[..], &["--resume", "a.epoch2.nc"]].concat());
        assert!(
            params(&f.path("a.nc")) == params(&f.path("b.nc")),
            "{opt}: resumed on 2 threads differs from 1 thread uninterrupted"
        );
    }
}

#[test]
fn checkpoints_and_resume_respect_force() {
    let f = Fixture::new(300, 500);
    let common = [&BASE[..], &ADAM, &["-e", "2"]].concat();
    let run = [&common[..], &["-n", "c.nc"]].concat();
    let precious = f.write("c.epoch1.nc", "precious");
    let err = f.train_fails(&[&run[..], &["--checkpoint-every", "1"]].concat());
    assert!(
        err.contains("c.epoch1.nc") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious");
    assert!(!f.path("c.nc").exists());
    // Without checkpoints the stale file does not matter; with --force it is replaced.
    f.train(&run);
    std::fs::remove_file(f.path("c.nc")).unwrap();
    f.train(&[&run[..], &["--checkpoint-every", "1", "--force"]].concat());
    assert_eq!(
        load_model(&precious).unwrap().extras.scalar("epoch"),
        Some(1)
    );

    // Resume writes a new final output: an existing one needs --force.
    let resume = [&run[..], &["--resume", "c.epoch1.nc"]].concat();
    let err = f.train_fails(&resume);
    assert!(
        err.contains("c.nc exists") && err.contains("--force"),
        "{err}"
    );
    f.train(&[&resume[..], &["--force"]].concat());
    // Never over the checkpoint it resumes from.
    let mut same = resume.clone();
    let n = same.iter().position(|a| *a == "c.nc").unwrap();
    same[n] = "c.epoch1.nc";
    let err = f.train_fails(&[&same[..], &["--force"]].concat());
    assert!(err.contains("same file"), "{err}");
    // -e counts all epochs: a run killed after its last checkpoint finishes by writing the
    // final network, the checkpoint's weights; a checkpoint past -e is refused.
    f.train(&[&common[..], &["-n", "d.nc", "--resume", "c.epoch2.nc"]].concat());
    let (last, done) = (
        load_model(&f.path("c.epoch2.nc")).unwrap(),
        load_model(&f.path("d.nc")).unwrap(),
    );
    for (a, b) in last.weights.iter().zip(&done.weights) {
        assert!(a.data == b.data && a.bias == b.bias, "{}", a.output_layer);
    }
    let one = [&BASE[..], &ADAM, &["-e", "1"]].concat();
    let err = f.train_fails(&[&one[..], &["-n", "e.nc", "--resume", "c.epoch2.nc"]].concat());
    assert!(err.contains("already done 2 epochs"), "{err}");
}

#[test]
fn a_diverging_run_stops_naming_epoch_and_batch_and_keeps_its_last_good_checkpoint() {
    let f = Fixture::new(300, 500);
    f.write("linear.json", LINEAR);
    // The learning rate grows 1000-fold per epoch.
    let err = f.train_fails(&[
        "linear.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "d.nc",
        "-e",
        "8",
        "-b",
        "32",
        "--alpha",
        "0.001",
        "--alpha-interval",
        "1",
        "--alpha-multiplier",
        "1000",
        "--checkpoint-every",
        "1",
    ]);
    let tail = err
        .split("training diverged in epoch ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    let (epoch, rest) = tail.split_once(", batch ").expect(&err);
    let epoch: u32 = epoch.parse().expect(&err);
    assert!(rest.contains("NaN or infinite"), "{err}");
    let good = format!("d.epoch{epoch}.nc");
    assert!(
        err.contains(&format!("the last good checkpoint is {good}")),
        "{err}"
    );
    let model = load_model(&f.path(&good)).unwrap();
    assert!(model
        .weights
        .iter()
        .all(|w| w.data.iter().chain(&w.bias).all(|x| x.is_finite())));
    assert!(!f.path(&format!("d.epoch{}.nc", epoch + 1)).exists());
    assert!(!f.path("d.nc").exists(), "a diverged network was saved");
}

#[test]
fn bad_model_files_are_refused_by_resume_and_predictor_naming_the_file() {
    let f = Fixture::new(300, 500);
    let run = [
        &BASE[..],
        &ADAM,
        &["-e", "2", "--checkpoint-every", "1", "-n", "m.nc"],
    ]
    .concat();
    f.train(&run);
    let good = std::fs::read(f.path("m.epoch1.nc")).unwrap();
    std::fs::write(f.path("garbage.nc"), "not a model at all").unwrap();
    std::fs::write(f.path("truncated.nc"), &good[..good.len() / 3]).unwrap();
    let mut header = good.clone();
    header[..256].fill(0xAB);
    std::fs::write(f.path("header.nc"), &header).unwrap();
    // Data of another width (more items, its own features index).
    let wide = Clusters {
        items: 1000,
        clusters: 5,
        per_user: 15,
    };
    f.write("wide.txt", &wide.lists(300, 0..15));
    f.convert("input", "wide.txt", "wide-in.nc", "wide.idx", true);
    f.convert("output", "wide.txt", "wide-out.nc", "wide.idx", false);
    f.write("net16.json", &NET.replace("HIDDEN", "16"));

    let resume = |file: &str, extra: &[&str]| {
        let base = [
            &BASE[..],
            &ADAM,
            &["-e", "3", "-n", "r.nc", "--resume", file],
        ]
        .concat();
        f.train_fails(&[&base[..], extra].concat())
    };
    const UNREADABLE: &str = "not a readable NetCDF file";
    let unreadable = UNREADABLE;
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("garbage.nc", resume("garbage.nc", &[]), &[UNREADABLE]),
        ("truncated.nc", resume("truncated.nc", &[]), &[UNREADABLE]),
        ("header.nc", resume("header.nc", &[]), &[UNREADABLE]),
        // A dataset file is NetCDF but no model.
        (
            "input.nc",
            resume("input.nc", &[]),
            &["`version`", "missing"],
        ),
        ("m.nc", resume("m.nc", &[]), &["no training state"]),
        (
            "m.epoch1.nc",
            f.train_fails(&[
                "net.json",
                "-i",
                "wide-in.nc",
                "-o",
                "wide-out.nc",
                "-n",
                "r.nc",
                "-e",
                "3",
                "--optimizer",
                "adam",
                "--resume",
                "m.epoch1.nc",
            ]),
            &["512 x 32 in the model but 1024 x 32 in the network"],
        ),
        (
            "m.epoch1.nc",
            f.train_fails(&[
                "net16.json",
                "-i",
                "input.nc",
                "-o",
                "output.nc",
                "-n",
                "r.nc",
                "-e",
                "3",
                "--optimizer",
                "adam",
                "--resume",
                "m.epoch1.nc",
            ]),
            &["`Input` -> `Hidden`", "512 x 32 in the model but 512 x 16"],
        ),
        (
            "m.epoch1.nc",
            f.train_fails(&[
                "net.json",
                "-i",
                "input.nc",
                "-o",
                "output.nc",
                "-n",
                "r.nc",
                "-e",
                "3",
                "--optimizer",
                "momentum",
                "--resume",
                "m.epoch1.nc",
            ]),
            &["optimizer `Adam`", "`Momentum`"],
        ),
    ];
    for (file, err, expected) in cases {
        assert!(err.contains(file), "{file}: the file is not named: {err}");
        for e in expected {
            assert!(err.contains(e), "{file}: no `{e}` in: {err}");
        }
        assert!(!f.path("r.nc").exists());
    }

    let predict = |model: &str, input: &str| {
        let out = f
            .command(
                PREDICTOR,
                &["-n", model, "-i", input, "-k", "5", "-s", "recs.txt"],
            )
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "predictor -n {model} -i {input} succeeded"
        );
        stderr(&out)
    };
    for file in ["garbage.nc", "truncated.nc", "header.nc"] {
        let err = predict(file, "input.nc");
        assert!(err.contains(file) && err.contains(unreadable), "{err}");
    }
    let err = predict("input.nc", "input.nc");
    assert!(err.contains("input.nc: `version`: missing"), "{err}");
    // Layer sizes that do not fit the data: the data file and both widths are named.
    let err = predict("m.nc", "wide-in.nc");
    assert!(
        err.contains("wide-in.nc") && err.contains("1024") && err.contains("512"),
        "{err}"
    );
    // A checkpoint is a model like any other for the predictor.
    let out = f
        .command(
            PREDICTOR,
            &[
                "-n",
                "m.epoch1.nc",
                "-i",
                "input.nc",
                "-k",
                "5",
                "-s",
                "recs.txt",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Temporary files an interrupted save left (a checkpoint's and the final network's, of a
/// process that no longer runs) are removed when the run starts, and the log says so; one of
/// a running process stays.
#[test]
fn stale_temporaries_of_the_outputs_are_removed_at_the_start() {
    let f = Fixture::new(300, 500);
    let stale = [".s.epoch1.nc.4000000.0.tmp", ".s.nc.4000001.7.tmp"];
    for name in stale {
        f.write(name, "half a model");
    }
    let alive = format!(".s.epoch2.nc.{}.0.tmp", std::process::id());
    f.write(&alive, "being written");
    let run = [
        &BASE[..],
        &ADAM,
        &["-e", "2", "-n", "s.nc", "--checkpoint-every", "1"],
    ]
    .concat();
    let log = f.train(&run);
    for name in stale {
        assert!(!f.path(name).exists(), "{name} is still there");
        assert!(log.contains(name), "{log}");
    }
    assert!(f.path(&alive).exists());
}

/// A file of the run that cannot be written (here: the output directory disappears during
/// training, so the next checkpoint fails) does not lose the trained network: it is saved to
/// the temporary directory and the message says where.
#[test]
fn a_failed_write_rescues_the_trained_network() {
    let f = Fixture::new(300, 500);
    std::fs::create_dir(f.path("out")).unwrap();
    let tmp = f.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let run = [
        &BASE[..],
        &["-e", "3000", "-n", "out/r.nc", "--checkpoint-every", "1"],
    ]
    .concat();
    let child = Command::new(TRAINER)
        .current_dir(f.0.path())
        .env("TMPDIR", &tmp)
        .args(&run)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !f.path("out/r.epoch1.nc").exists() {
        assert!(start.elapsed().as_secs() < 60, "no first checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The trainer may be creating a file there at that moment: try again until it is gone.
    while std::fs::remove_dir_all(f.path("out")).is_err() && f.path("out").exists() {
        assert!(start.elapsed().as_secs() < 60, "out/ cannot be removed");
    }
    let out = child.wait_with_output().unwrap();
    let e = stderr(&out);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("training stopped") && e.contains("r.nc.rescued.nc"),
        "{e}"
    );
    let rescued = load_model(&tmp.join("r.nc.rescued.nc")).unwrap();
    assert!(!rescued.weights.is_empty());
}
