//! Integration tests of the `trainer` binary, on small clustered data converted by the
//! `converter` binary: descriptor checks, bit-reproducibility across thread counts, overwrite
//! protection, DSSTNE's flag forms, the metrics log with validation, and error messages.
//!
//! The data: `USERS` users in `CLUSTERS` clusters; user `u` likes `TRAIN + HELD` distinct items
//! of cluster `u % CLUSTERS` (each cluster owns `ITEMS / CLUSTERS` items). `TRAIN` of them form
//! the training rows, the other `HELD` the held-out rows. A model that learns the clusters
//! ranks held-out items far above random; one that does not cannot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Clusters;
use moira::checkpoint::load_model;
use serde_json::Value;

const TRAINER: &str = env!("CARGO_BIN_EXE_trainer");
const CONVERTER: &str = env!("CARGO_BIN_EXE_converter");

const USERS: u64 = 300;
const ITEMS: u64 = 500;
const CLUSTERS: u64 = 5;
const TRAIN: usize = 15;
const HELD: usize = 5;

/// An I→32→I sigmoid autoencoder with hidden dropout and input denoising. `INPUT` and
/// `OUTPUT` are replaced by dataset names.
const NET: &str = r#"{
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

const DATA: Clusters = Clusters {
    items: ITEMS,
    clusters: CLUSTERS,
    per_user: TRAIN + HELD,
};

/// A temporary directory with `train.txt`, `held.txt`, their conversions `input.nc`
/// (dataset `input`), `output.nc` (dataset `output`, the same rows) and `held.nc` (dataset
/// `held`), the indexes, and `net.json` (`input` → `output`).
struct Fixture(tempfile::TempDir);

impl Fixture {
    fn new() -> Self {
        let f = Fixture(tempfile::tempdir().unwrap());
        f.write("train.txt", &DATA.lists(USERS, 0..TRAIN));
        f.write("held.txt", &DATA.lists(USERS, TRAIN..TRAIN + HELD));
        f.convert("input", "train.txt", "input.nc", "samples.idx", true);
        f.convert("output", "train.txt", "output.nc", "samples.idx", false);
        f.convert("held", "held.txt", "held.nc", "samples.idx", false);
        f.write("net.json", &net("input", "output"));
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

    /// Runs the converter (lists format, shared features index `features.idx`).
    fn convert(&self, dataset: &str, input: &str, output: &str, samples: &str, create: bool) {
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
    fn trainer(&self, args: &[&str]) -> Output {
        Command::new(TRAINER)
            .current_dir(self.0.path())
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the trainer and asserts that it succeeded.
    fn train(&self, args: &[&str]) {
        let out = self.trainer(args);
        assert!(out.status.success(), "trainer {args:?}: {}", stderr(&out));
    }

    /// Trains `net.json` on input.nc/output.nc into `out` with `extra` flags (3 epochs of 64
    /// unless `extra` says otherwise).
    fn train_ae(&self, out: &str, extra: &[&str]) -> Params {
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

fn net(input: &str, output: &str) -> String {
    NET.replace("INPUT", input).replace("OUTPUT", output)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every weight and bias of a saved network as bits, with its layer names.
type Params = Vec<(String, String, Vec<u32>, Vec<u32>)>;

fn params(path: &Path) -> Params {
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

fn example_networks() -> Vec<PathBuf> {
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

#[test]
fn check_accepts_every_example_network_and_prints_its_layer_table() {
    let f = Fixture::new();
    for net in example_networks() {
        let path = net.to_str().unwrap();
        let out = f.trainer(&["--check", path]);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        assert!(stdout(&out).contains("a valid descriptor"), "{path}");
        // Every example binds `input` and `output`: with data it compiles to a layer table.
        let out = f.trainer(&["--check", path, "-i", "input.nc", "-o", "output.nc"]);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        let table = stdout(&out);
        for name in ["Input", "Output"] {
            let line = table.lines().find(|l| l.contains(name)).expect(name);
            assert!(
                line.contains("512"),
                "{path}: `{name}` not 512 wide:\n{table}"
            );
        }
    }
    assert!(!f.path("net.nc").exists());
}

#[test]
fn check_prints_resolved_sizes_of_the_test_network() {
    let f = Fixture::new();
    let out = f.trainer(&["--check", "net.json", "-i", "input.nc", "-o", "output.nc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let line = |name: &str| {
        let l = table.lines().find(|l| l.contains(name));
        let l = l.unwrap_or_else(|| panic!("no `{name}` in\n{table}"));
        l.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    assert!(line("Input").contains(&"512".to_owned()), "{table}");
    assert!(line("Hidden").contains(&"32".to_owned()), "{table}");
    assert!(line("Output").contains(&"512".to_owned()), "{table}");
    assert!(
        line("Hidden").contains(&"0.2".to_owned()),
        "dropout: {table}"
    );
}

#[test]
fn check_rejects_misspelt_keys_naming_the_path_and_the_right_key() {
    let f = Fixture::new();
    let cases = [
        (
            net("input", "output").replace(r#""N": 32, "Activation""#, r#""N": 32, "Activaton""#),
            "Layers[1].Activaton",
            "`Activation`",
        ),
        (
            net("input", "output").replace("\"ErrorFunction\"", "\"ErrorFuncton\""),
            "ErrorFuncton",
            "`ErrorFunction`",
        ),
        (
            net("input", "output").replace(r#"{ "p": 0.2 }"#, r#"{ "pp": 0.2 }"#),
            "Denoising.pp",
            "`p`",
        ),
    ];
    for (text, path, suggestion) in cases {
        assert!(!text.contains(NET), "the misspelling was not applied");
        f.write("bad.json", &text);
        let out = f.trainer(&["--check", "bad.json"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{path} accepted");
        assert!(err.contains("bad.json"), "{err}");
        assert!(err.contains(path), "no JSON path {path}: {err}");
        assert!(err.contains(&format!("did you mean {suggestion}")), "{err}");
    }
}

#[test]
fn weights_are_bit_identical_across_thread_counts_for_every_optimizer() {
    let f = Fixture::new();
    let mut results = Vec::new();
    for (opt, alpha) in [("sgd", "0.5"), ("adam", "0.01"), ("nesterov", "0.2")] {
        let run = |out: &str, threads: &str, seed: &str| {
            let args = ["--optimizer", opt, "--alpha", alpha, "--threads", threads];
            f.train_ae(out, &[&args[..], &["--seed", seed, "--force"]].concat())
        };
        let one = run("t1.nc", "1", "12134");
        let two = run("t2.nc", "2", "12134");
        let again = run("t2b.nc", "2", "12134");
        assert!(one == two, "{opt}: 1 and 2 threads differ");
        assert!(two == again, "{opt}: two runs on 2 threads differ");
        let other_seed = run("s.nc", "2", "7");
        assert!(one != other_seed, "{opt}: --seed has no effect");
        results.push(one);
    }
    assert!(results[0] != results[1] && results[1] != results[2]);
}

#[test]
fn refuses_to_overwrite_the_network_file_without_force() {
    let f = Fixture::new();
    let target = f.write("model.nc", "precious");
    let args = [
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "model.nc",
        "-e",
        "1",
    ];
    let out = f.trainer(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(stderr(&out).contains("model.nc"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert!(!f.path("model.metrics.jsonl").exists());

    let out = f.trainer(&[&args[..], &["--force"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(params(&target).len(), 2);
}

#[test]
fn dsstne_flag_forms_and_datasets_beside_the_descriptor() {
    let f = Fixture::new();
    // Run from another directory: NAME.nc must be found beside the descriptor, not in cwd.
    let elsewhere = f.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let descriptor = f.path("net.json");
    let run = |out: &str, flags: &[&str]| {
        let out_path = f.path(out);
        let mut args = vec!["-c", descriptor.to_str().unwrap()];
        args.extend(["-n", out_path.to_str().unwrap(), "-e", "2", "-b", "64"]);
        args.extend(["--optimizer", "momentum"]);
        args.extend(flags);
        let o = Command::new(TRAINER)
            .current_dir(&elsewhere)
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        params(&out_path)
    };
    let dsstne = run("a.nc", &["-alpha", "0.01", "-lambda", "0", "-mu", "0.9"]);
    let long = f.train_ae(
        "b.nc",
        &["-e", "2", "--optimizer", "momentum"]
            .into_iter()
            .chain(["--alpha", "0.01", "--lambda", "0", "--mu", "0.9"])
            .collect::<Vec<_>>(),
    );
    assert!(
        dsstne == long,
        "-alpha/-lambda/-mu differ from --alpha/--lambda/--mu"
    );
    // Each single-dash flag takes effect.
    for (i, flags) in [
        ["-alpha", "0.02", "-lambda", "0", "-mu", "0.9"],
        ["-alpha", "0.01", "-lambda", "0.01", "-mu", "0.9"],
        ["-alpha", "0.01", "-lambda", "0", "-mu", "0.5"],
    ]
    .iter()
    .enumerate()
    {
        assert!(dsstne != run(&format!("v{i}.nc"), flags), "{flags:?}");
    }
    // A dataset file missing beside the descriptor is named with its path.
    std::fs::remove_file(f.path("output.nc")).unwrap();
    let o = Command::new(TRAINER)
        .current_dir(&elsewhere)
        .args(["-c", descriptor.to_str().unwrap(), "-n", "x.nc"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let missing = f.path("output.nc");
    assert!(
        stderr(&o).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
}

/// The lines of a JSON-lines file.
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn metrics_log_has_one_line_per_epoch() {
    let f = Fixture::new();
    f.train_ae("m.nc", &["-e", "4"]);
    let lines = json_lines(&f.path("m.metrics.jsonl"));
    assert_eq!(lines.len(), 4);
    for (e, line) in lines.iter().enumerate() {
        assert_eq!(line["epoch"].as_u64(), Some(e as u64), "{line}");
        let loss = line["loss"].as_f64().expect("loss");
        assert!(loss.is_finite() && loss > 0.0, "{line}");
        assert!(line["examples_per_s"].as_f64().expect("examples_per_s") > 0.0);
        assert!(line.get("validation").is_none(), "{line}");
    }
    // --metrics-log moves it.
    f.train_ae("m2.nc", &["-e", "2", "--metrics-log", "log.jsonl"]);
    assert_eq!(json_lines(&f.path("log.jsonl")).len(), 2);
    assert!(!f.path("m2.metrics.jsonl").exists());
}

#[test]
fn validation_recall_beats_a_random_ranking_by_far() {
    let f = Fixture::new();
    let epochs = 20;
    let args = ["--optimizer", "nesterov", "--alpha", "0.2", "-b", "32"];
    let extra = ["--validation", "held.nc", "--validation-k", "5,10"];
    f.train_ae("v.nc", &[&args[..], &extra, &["-e", "20"]].concat());
    let lines = json_lines(&f.path("v.metrics.jsonl"));
    assert_eq!(lines.len(), epochs);
    let recall10 = |line: &Value| {
        let v = &line["validation"];
        assert_eq!(v["users"].as_u64(), Some(USERS), "{line}");
        let metrics = v["metrics"].as_array().expect("metrics");
        let ks: Vec<u64> = metrics.iter().map(|m| m["k"].as_u64().unwrap()).collect();
        assert_eq!(ks, [5, 10], "{line}");
        for m in metrics {
            for key in ["precision", "recall", "ndcg"] {
                let x = m[key].as_f64().expect(key);
                assert!((0.0..=1.0).contains(&x), "{line}");
            }
        }
        metrics[1]["recall"].as_f64().unwrap()
    };
    let first = recall10(&lines[0]);
    let last = recall10(&lines[epochs - 1]);
    for line in &lines {
        recall10(line);
    }
    // A random ranking of the candidates (known items not in the input) puts each held-out
    // item in the top 10 with probability 10 / candidates; Recall@10 = hits / |H| (|H| ≤ 10).
    let known = std::fs::read_to_string(f.path("features.idx"))
        .unwrap()
        .lines()
        .count();
    let random = 10.0 / (known - TRAIN) as f64;
    assert!(last > 2.0 * random, "recall@10 {last} vs random {random}");
    assert!(last > first, "recall@10 did not grow: {first} → {last}");
    let (loss0, loss_n) = (&lines[0]["loss"], &lines[epochs - 1]["loss"]);
    assert!(loss_n.as_f64() < loss0.as_f64(), "{loss0} → {loss_n}");
}

#[test]
fn a_dataset_missing_from_the_data_files_names_the_layer_and_the_dataset() {
    let f = Fixture::new();
    f.write("ratings.json", &net("input", "ratings"));
    let out = f.trainer(&[
        "ratings.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "r.nc",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`Output`") && err.contains("`ratings`"),
        "{err}"
    );
    assert!(
        err.contains("output"),
        "available datasets not listed: {err}"
    );
    assert!(!f.path("r.nc").exists());
}

#[test]
fn input_and_output_with_different_example_counts_are_refused() {
    let f = Fixture::new();
    f.write("fewer.txt", &DATA.lists(USERS - 50, 0..TRAIN));
    f.convert("output", "fewer.txt", "fewer.nc", "fewer.idx", false);
    let out = f.trainer(&["net.json", "-i", "input.nc", "-o", "fewer.nc", "-n", "r.nc"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("250") && err.contains("300"), "{err}");
    assert!(err.contains("`output`") && err.contains("`input`"), "{err}");
    assert!(!f.path("r.nc").exists());
}

#[test]
fn a_missing_data_file_is_reported_once() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("output.nc")).unwrap();
    let out = f.trainer(&["net.json", "-n", "x.nc"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("output.nc"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

/// No tool writes an output over one of its inputs, whatever the spelling of the path (a
/// symbolic link, `./`), even with `--force`: each refuses naming both flags, and the input
/// is unchanged.
#[test]
fn no_output_replaces_an_input() {
    let f = Fixture::new();
    f.train_ae("model.nc", &["-e", "1"]);
    let bytes = |name: &str| std::fs::read(f.path(name)).unwrap();
    let (input, model) = (bytes("input.nc"), bytes("model.nc"));
    std::os::unix::fs::symlink(f.path("input.nc"), f.path("link.nc")).unwrap();
    let refused = |out: &Output, flags: [&str; 2]| {
        let e = stderr(out);
        assert!(!out.status.success(), "{e}");
        assert!(
            e.contains("would replace an input") && flags.iter().all(|fl| e.contains(fl)),
            "{e}"
        );
    };
    // trainer: -n over the input (through a link), the metrics log over the output data.
    let base = [
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-e",
        "1",
        "--force",
    ];
    let o = f.trainer(&[&base[..], &["-n", "link.nc"]].concat());
    refused(&o, ["-n", "-i/-o"]);
    let o = f.trainer(&[&base[..], &["-n", "m2.nc", "--metrics-log", "./output.nc"]].concat());
    refused(&o, ["--metrics-log", "-i/-o"]);
    let o = f.trainer(&[&base[..], &["-n", "m3.nc", "--validation", "held.nc"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = f.trainer(&[&base[..], &["-n", "./held.nc", "--validation", "held.nc"]].concat());
    refused(&o, ["-n", "--validation"]);
    // predictor: -s over the model, over the input.
    let predictor = |s: &str| {
        Command::new(env!("CARGO_BIN_EXE_predictor"))
            .current_dir(f.0.path())
            .args([
                "-n", "model.nc", "-i", "input.nc", "-k", "3", "-s", s, "--quiet",
            ])
            .output()
            .unwrap()
    };
    refused(&predictor("model.nc"), ["-s", "-n"]);
    refused(&predictor("link.nc"), ["-s", "-i"]);
    // converter: -o over its input text or an index, the samples index over the input.
    let convert = |extra: &[&str]| {
        Command::new(CONVERTER)
            .current_dir(f.0.path())
            .args(["--format", "lists", "-d", "x", "-i", "train.txt"])
            .args(extra)
            .output()
            .unwrap()
    };
    refused(
        &convert(&["-o", "train.txt", "-f", "features.idx", "-s", "samples.idx"]),
        ["-o", "-i"],
    );
    refused(
        &convert(&["-o", "x.nc", "-f", "features.idx", "-s", "train.txt"]),
        ["-s", "-i"],
    );
    assert_eq!(bytes("input.nc"), input);
    assert_eq!(bytes("model.nc"), model);
}

/// A conversion whose output is a directory fails before any index changes.
#[test]
fn a_conversion_into_a_directory_changes_no_index() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("dir")).unwrap();
    let (features, samples) = (
        std::fs::read(f.path("features.idx")).unwrap(),
        std::fs::read(f.path("samples.idx")).unwrap(),
    );
    f.write("more.txt", "new-user 9001 9002\n");
    let o = Command::new(CONVERTER)
        .current_dir(f.0.path())
        .args([
            "--format", "lists", "-d", "x", "-i", "more.txt", "-o", "dir",
        ])
        .args(["-f", "features.idx", "-s", "samples.idx", "-m"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read(f.path("features.idx")).unwrap(), features);
    assert_eq!(std::fs::read(f.path("samples.idx")).unwrap(), samples);
}

/// Numeric flags outside their ranges are refused naming the flag, before anything is read
/// or written.
#[test]
fn numeric_flags_out_of_range_are_refused() {
    let f = Fixture::new();
    let base = [
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "m.nc",
    ];
    for (flag, value) in [
        ("--alpha", "nan"),
        ("--alpha", "inf"),
        ("--alpha", "-1"),
        ("--lambda", "-0.1"),
        ("--lambda1", "nan"),
        ("--mu", "1"),
        ("--mu1", "-0.5"),
        ("--alpha-multiplier", "0"),
        ("-e", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let o = f.trainer(&[&base[..], &[arg.as_str()]].concat());
        assert!(!o.status.success(), "{arg} was accepted");
        assert!(stderr(&o).contains(flag), "{arg}: {}", stderr(&o));
        assert!(!f.path("m.nc").exists());
    }
}

/// `--check` without data runs the graph's checks (a source that is no layer, a cycle, no
/// Output layer), naming the descriptor file; every example network passes.
#[test]
fn check_without_data_refuses_broken_graphs_naming_the_file() {
    let f = Fixture::new();
    let layers = |hidden: &str, output: bool| {
        format!(
            r#"{{ "Kind": "FeedForward", "Layers": [
              {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
              {hidden}{}] }}"#,
            if output {
                r#", { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Source": "H" }"#
            } else {
                ""
            }
        )
    };
    for (name, json, want) in [
        (
            "nosource.json",
            layers(
                r#"{ "Name": "H", "Kind": "Hidden", "N": 8, "Source": "Nope" }"#,
                true,
            ),
            "`Nope` is not a layer",
        ),
        (
            "cycle.json",
            layers(
                r#"{ "Name": "H", "Kind": "Hidden", "N": 8, "Source": "G" },
                   { "Name": "G", "Kind": "Hidden", "N": 8, "Source": "H" }"#,
                true,
            ),
            "cycle",
        ),
        (
            "nooutput.json",
            layers(
                r#"{ "Name": "H", "Kind": "Hidden", "N": 8, "Source": "Input" }"#,
                false,
            ),
            "no Output layer",
        ),
    ] {
        f.write(name, &json);
        let o = f.trainer(&["--check", name]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{name} passed --check");
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    for net in example_networks() {
        let o = f.trainer(&["--check", net.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", net.display(), stderr(&o));
    }
}

/// Sizes that cannot fit are refused before anything is allocated, naming the largest part
/// and the bytes (no abort); a batch larger than the data is one minibatch of all of it.
#[test]
fn sizes_that_cannot_fit_are_refused_and_huge_batches_shrink_to_the_data() {
    let f = Fixture::new();
    f.write(
        "huge.json",
        &NET.replace("INPUT", "input")
            .replace("OUTPUT", "output")
            .replace(r#""N": 32"#, r#""N": 100000000"#),
    );
    let o = f.trainer(&[
        "huge.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "h.nc",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("GiB") && e.contains("`Hidden`"), "{e}");
    assert!(!f.path("h.nc").exists());
    let base = ["net.json", "-i", "input.nc", "-o", "output.nc", "-e", "1"];
    let o = f.trainer(&[&base[..], &["-n", "b.nc", "-b", "4000000000"]].concat());
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("-b 4000000000 exceeds the 300 examples"), "{e}");
    // The same model as a batch of exactly the data.
    let o = f.trainer(&[&base[..], &["-n", "c.nc", "-b", "300"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(params(&f.path("b.nc")), params(&f.path("c.nc")));
}

/// A run whose files do not fit the free space of their file system is refused before it
/// trains, naming the directory and the sizes (a 64 KiB tmpfs; skipped where mounting is not
/// allowed).
#[test]
fn a_run_whose_files_cannot_fit_is_refused_before_training() {
    let f = Fixture::new();
    let tiny = f.path("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&tiny)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let o = f.trainer(&[
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "tiny/m.nc",
    ]);
    let _ = Command::new("umount").arg(&tiny).status();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("tiny") && e.contains("MiB free"), "{e}");
    assert!(!e.contains("epoch 0"), "it trained first: {e}");
}
