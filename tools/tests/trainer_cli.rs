//! Integration tests of the `trainer` binary, on small clustered data converted by the
//! `converter` binary: descriptor checks, bit-reproducibility across thread counts, overwrite
//! protection, DSSTNE's flag forms, the metrics log with validation, and error messages about
//! the data (the fixture: tests/trainer_common; refusals of flags, sizes and outputs:
//! tests/trainer_refusals.rs).

mod common;
mod trainer_common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use trainer_common::*;

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
