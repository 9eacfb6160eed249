//! Running the tools under a real `mpirun` in the CLI tests: the launcher command (as root
//! when need be, oversubscribed), a time limit that turns a hang into a failure, whether MPI
//! can be tested here at all, and MovieLens-1M users converted for the trainer ([`Fixture`]).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
const PREDICTOR: &str = env!("CARGO_BIN_EXE_predictor");
const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");
const CHECK: &str = env!("CARGO_BIN_EXE_collective-check");
/// MovieLens-1M's training lists (`user item item …`).
pub const ML1M_TRAIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/ml-1m-lightgcnpp/train.txt"
);

/// A run's losses per epoch, its model's weights and its log ([`Fixture::train_adam`]).
pub type Trained = (Vec<f64>, Vec<Vec<f32>>, String);

/// Asserts that `got`, trained on `np` ranks, trains the one-rank model `one`: the first
/// epoch's loss within 1e-6 relative, the weights within 1e-5.
pub fn assert_agrees(np: usize, got: &Trained, one: &Trained) {
    let ((l, v, _), (loss, w, _)) = (got, one);
    let loss_err = (l[0] - loss[0]).abs() / loss[0].abs();
    let weight_err = relative_difference(v, w);
    eprintln!("{np} ranks: loss {loss_err:.1e}, weights {weight_err:.1e}");
    assert!(loss_err < 1e-6, "{np} ranks: loss {l:?} against {loss:?}");
    assert!(weight_err < 1e-5, "{np} ranks: weights {weight_err:e}");
}

/// Whether the tools were built with the `mpi` feature and `mpirun` exists; prints why not.
pub fn available() -> bool {
    let transport = Command::new(CHECK).arg("--transport").output();
    if !transport.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "mpi") {
        eprintln!("skipped: the tools were built without the `mpi` feature");
        return false;
    }
    mpirun_found()
}

/// ML-1M's first users converted to `input.nc` / `output.nc` (with `features` and `samples`
/// indices) in a temporary folder, with a descriptor `net.json`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// The first `users` users of ML-1M's training lists, and the descriptor `net`.
    pub fn new(users: usize, net: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(ML1M_TRAIN).expect("../shared/data must be present");
        let lists: String = text.lines().take(users).map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.path().join("train.txt"), lists).unwrap();
        std::fs::write(dir.path().join("net.json"), net).unwrap();
        let f = Fixture { dir };
        for (name, create) in [("input", true), ("output", false)] {
            let out = format!("{name}.nc");
            let mut args = vec!["--format", "lists", "-d", name, "-i", "train.txt"];
            args.extend(["-f", "features", "-s", "samples", "-o", &out]);
            if create {
                args.push("-c");
            }
            let o = Command::new(CONVERTER)
                .current_dir(f.dir.path())
                .args(&args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        f
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Asserts that training into `out` on `np` ranks with `args` repeats bit for bit: trains
    /// again beside it and compares the losses and weights.
    pub fn assert_repeats(&self, np: usize, out: &str, args: &[&str]) {
        let (again, v, _) = self.train_adam(np, &format!("{out}-again"), args);
        assert_eq!(
            again,
            losses(&self.path(&format!("{out}.jsonl"))),
            "loss run to run"
        );
        assert!(v == weights(&self.path(out)), "weights run to run");
    }

    /// Asserts that `got`, trained on `np` ranks with `args` and a mode of choosing, trains
    /// bit for bit as `--parallel chosen` does.
    pub fn assert_trains_as(&self, np: usize, chosen: &str, args: &[&str], got: &Trained) {
        let args = [args, &["--parallel", chosen]].concat();
        let (other, w, _) = self.train_adam(np, "chosen.nc", &args);
        assert_eq!(got.0, other, "trains as {chosen}");
        assert!(got.1 == w, "trains as {chosen}");
    }

    /// Trains on `np` ranks into `out` with Adam at α 0.001, seed 3, a metrics log beside
    /// `out` and `args`; asserts success; returns the epochs' losses, the model's weights and
    /// the log.
    pub fn train_adam(&self, np: usize, out: &str, args: &[&str]) -> Trained {
        let log = self.p(&format!("{out}.jsonl"));
        let mut all = vec!["--optimizer", "adam", "--alpha", "0.001", "--seed", "3"];
        all.extend(["--metrics-log", &log]);
        all.extend(args);
        let o = self.train(np, out, &all);
        assert_eq!(o.code, Some(0), "np {np}: {}", o.stderr);
        (
            losses(&self.path(&format!("{out}.jsonl"))),
            weights(&self.path(out)),
            o.stderr,
        )
    }

    /// `mpirun -np N trainer net.json` on the fixture's data into `out`, on the CPU with one
    /// thread per rank, with `args` (batch, epochs, optimizer…; model parallelism unless they
    /// say `--parallel`); returns the run's outcome.
    pub fn train(&self, np: usize, out: &str, args: &[&str]) -> Outcome {
        let (net, input, output, out) = (
            self.p("net.json"),
            self.p("input.nc"),
            self.p("output.nc"),
            self.p(out),
        );
        let mut all = vec![net.as_str(), "-i", &input, "-o", &output, "-n", &out];
        all.extend(["--force", "--device", "cpu", "--threads", "1"]);
        if !args.contains(&"--parallel") {
            all.extend(["--parallel", "model"]);
        }
        all.extend(args);
        mpirun(np, TRAINER, &all)
    }

    /// `mpirun -np N predictor` of `model` on the fixture's input: the top 10 of every user
    /// into `out`, on the CPU, with `extra` arguments; returns the run's outcome.
    pub fn predict(&self, np: usize, model: &str, out: &str, extra: &[&str]) -> Outcome {
        let (model, input, features, out) = (
            self.p(model),
            self.p("input.nc"),
            self.p("features"),
            self.p(out),
        );
        let mut args = vec!["-n", &model, "-r", &input, "-i", &features, "-k", "10"];
        args.extend(["-s", &out, "--device", "cpu", "--quiet"]);
        args.extend(extra);
        mpirun(np, PREDICTOR, &args)
    }

    /// Each user's top-10 item labels (in rank order) of `model` on the fixture's input,
    /// predicted by one process.
    pub fn top10(&self, model: &str) -> Vec<Vec<String>> {
        let (model, input, features, out) = (
            self.p(model),
            self.p("input.nc"),
            self.p("features"),
            self.p("recs.txt"),
        );
        let args = [
            "-n", &model, "-r", &input, "-i", &features, "-k", "10", "-s", &out, "--device", "cpu",
            "--quiet",
        ];
        let o = Command::new(PREDICTOR).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        recs(&std::fs::read_to_string(&out).unwrap())
    }
}

/// The item labels of each line of a recs file (`sample\tlabel,score:label,score:…`).
pub fn recs(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split('\t')
                .nth(1)
                .unwrap_or("")
                .split(':')
                .filter(|s| !s.is_empty())
                .map(|e| e.split(',').next().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The mean loss of each epoch in a metrics log.
pub fn losses(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["loss"].as_f64().unwrap()
        })
        .collect()
}

/// How many users have the same set of recommended items (in any order) in `a` and `b`.
pub fn same_sets(a: &[Vec<String>], b: &[Vec<String>]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(a, b)| {
            let (mut a, mut b) = ((*a).clone(), (*b).clone());
            a.sort();
            b.sort();
            a == b
        })
        .count()
}

/// Every weight and bias of a model file, in file order.
pub fn weights(path: &Path) -> Vec<Vec<f32>> {
    moira::checkpoint::load_model(path)
        .unwrap()
        .weights
        .into_iter()
        .flat_map(|w| [w.data, w.bias])
        .collect()
}

/// `‖a − b‖ / ‖b‖` over every value.
pub fn relative_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            diff += (*p as f64 - *q as f64).powi(2);
            norm += (*q as f64).powi(2);
        }
    }
    (diff / norm).sqrt()
}

/// Far above what these runs take; a hang fails the test instead of stalling the suite.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// How an `mpirun` ended.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Whether `mpirun` exists here; prints why not.
pub fn mpirun_found() -> bool {
    if Command::new("mpirun").arg("--version").output().is_err() {
        eprintln!("skipped: mpirun not found (install openmpi-bin)");
        return false;
    }
    true
}

/// `mpirun -np N --oversubscribe BIN ARGS`, started (stdout and stderr piped).
pub fn spawn(np: usize, bin: &str, args: &[&str]) -> Child {
    Command::new("mpirun")
        .args(["-np", &np.to_string(), "--oversubscribe", bin])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts")
}

/// Waits for `child` (started at `start`) to end, killing it and failing after `TIMEOUT`.
pub fn wait(mut child: Child, start: Instant, what: &str) -> Outcome {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        let _ = out.read_to_string(&mut o);
        let _ = err.read_to_string(&mut e);
        (o, e)
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {TIMEOUT:?}: a rank hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let (stdout, stderr) = reader.join().unwrap();
    Outcome {
        code,
        stdout,
        stderr,
        elapsed,
    }
}

/// `mpirun -np N --oversubscribe BIN ARGS` to the end.
pub fn mpirun(np: usize, bin: &str, args: &[&str]) -> Outcome {
    let start = Instant::now();
    let child = spawn(np, bin, args);
    wait(child, start, &format!("mpirun -np {np} {bin} {args:?}"))
}
