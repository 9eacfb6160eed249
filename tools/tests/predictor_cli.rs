//! Integration tests of the `predictor` binary: a small clustered dataset converted by
//! `converter`, a network trained by `trainer`, then recommendations in every format,
//! evaluation equal to the trainer's validation, and error messages.

mod common;
mod predictor_fixture;

use std::collections::HashMap;
use std::process::Command;

use predictor_fixture::*;
use serde_json::Value;

#[test]
fn recs_file_is_dsstnes_format_without_input_items_and_sorted() {
    let f = Fixture::new();
    let k = 7;
    f.predict(&[&BASE[..], &["-k", "7", "-s", "recs.txt", "-b", "50"]].concat());
    let text = f.read("recs.txt");
    let inputs = inputs();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), USERS as usize);
    let mut seen_users = Vec::new();
    for line in &lines {
        let (user, recs) = line.split_once('\t').expect(line);
        assert!(recs.ends_with(':'), "{line}");
        let items: Vec<(&str, f64)> = recs
            .trim_end_matches(':')
            .split(':')
            .map(|p| {
                let (label, score) = p.split_once(',').expect(p);
                assert_eq!(score.split('.').nth(1).map(str::len), Some(3), "{p}");
                (label, score.parse().unwrap())
            })
            .collect();
        assert_eq!(items.len(), k, "{line}");
        let own = &inputs[user];
        for (label, _) in &items {
            assert!(label.starts_with('i'), "{line}");
            assert!(
                !own.iter().any(|o| o == label),
                "{user} got own item {label}"
            );
        }
        assert!(items.windows(2).all(|w| w[0].1 >= w[1].1), "{line}");
        seen_users.push(user.to_owned());
    }
    seen_users.sort();
    seen_users.dedup();
    assert_eq!(seen_users.len(), USERS as usize);
    // No temporary file is left beside the output.
    let names: Vec<_> = std::fs::read_dir(f.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // --no-exclude-input lets own items back; -p changes the decimals.
    f.predict(
        &[
            &BASE[..],
            &["-k", "7", "-s", "all.txt", "--no-exclude-input", "-p", "5"],
        ]
        .concat(),
    );
    let all = f.read("all.txt");
    let own_hits = all
        .lines()
        .filter(|l| {
            let (u, r) = l.split_once('\t').unwrap();
            inputs[u].iter().any(|o| r.contains(&format!("{o},")))
        })
        .count();
    assert!(
        own_hits > 0,
        "own items never recommended without exclusion"
    );
    assert!(all.lines().next().unwrap().contains(&format!(",{}", "0.")));
}

#[test]
fn evaluate_matches_the_trainers_validation() {
    let f = Fixture::new();
    let log = f.read("net.metrics.jsonl");
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let expected = &last["validation"];
    let out = f.predict(&[
        "-n",
        "net.nc",
        "-i",
        "input.nc",
        "--evaluate",
        "held.nc",
        "--evaluate-k",
        "5,10",
        "-b",
        "32",
        "--threads",
        "2",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("Recall@K") && text.contains("NDCG@K"),
        "{text}"
    );
    let json: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(json["users"], expected["users"], "{json} vs {expected}");
    let (a, b) = (
        json["metrics"].as_array().unwrap(),
        expected["metrics"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 2);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["k"], y["k"]);
        for key in ["precision", "recall", "ndcg"] {
            let (x, y) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9, "{key}: {x} vs {y}");
        }
    }
    // With recs at the same time: the same metrics.
    let out2 = f.predict(
        &[
            &BASE[..],
            &["-k", "3", "-s", "r.txt", "--evaluate", "held.nc"],
            &["--evaluate-k", "5,10", "-b", "32", "--threads", "2"],
        ]
        .concat(),
    );
    assert_eq!(stdout(&out2), text);
    assert_eq!(f.read("r.txt").lines().count(), USERS as usize);
}

#[test]
fn tsv_and_jsonl_formats_parse() {
    let f = Fixture::new();
    f.predict(&[&BASE[..], &["-k", "4", "-s", "r.tsv", "--format", "tsv"]].concat());
    let tsv = f.read("r.tsv");
    assert_eq!(tsv.lines().count(), USERS as usize * 4);
    for (n, line) in tsv.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert!(
            fields[0].starts_with('u') && fields[2].starts_with('i'),
            "{line}"
        );
        assert_eq!(fields[1].parse::<usize>().unwrap(), n % 4 + 1, "{line}");
        fields[3].parse::<f64>().unwrap();
    }
    f.predict(
        &[
            &BASE[..],
            &["-k", "4", "-s", "r.jsonl", "--format", "jsonl"],
        ]
        .concat(),
    );
    let jsonl = f.read("r.jsonl");
    assert_eq!(jsonl.lines().count(), USERS as usize);
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(v["sample"].as_str().unwrap().starts_with('u'));
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 4);
        for it in items {
            assert!(it["label"].as_str().unwrap().starts_with('i'));
            assert!(it["score"].as_f64().is_some());
        }
    }
}

#[test]
fn filter_excludes_its_items_and_numeric_labels_without_indexes() {
    let f = Fixture::new();
    // Filter = the held-out rows: none of them may be recommended.
    f.predict(&[
        "-n", "net.nc", "-i", "input.nc", "-k", "10", "-s", "r.txt", "--filter", "held.nc",
    ]);
    let text = f.read("r.txt");
    let features: HashMap<String, String> = f
        .read("features.idx")
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (b.to_owned(), a.to_owned())
        })
        .collect();
    let samples: HashMap<String, String> = f
        .read("samples.idx")
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (b.to_owned(), a.to_owned())
        })
        .collect();
    assert_eq!(text.lines().count(), USERS as usize);
    for line in text.lines() {
        let (row, recs) = line.split_once('\t').unwrap();
        let user: u64 = samples[row][1..].parse().unwrap();
        let items = DATA.user_items(user);
        for pair in recs.trim_end_matches(':').split(':') {
            let (idx, _) = pair.split_once(',').unwrap();
            let label = &features[idx];
            let item: u64 = label[1..].parse().unwrap();
            assert!(
                !items.contains(&item),
                "{line}: {label} is input or filtered"
            );
        }
    }
}

#[test]
fn errors_name_the_problem() {
    let f = Fixture::new();
    let out = f.predictor(&[&BASE[..], &["-k", "1000", "-s", "r.txt"]].concat());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: ") && err.contains("1000"), "{err}");
    assert!(err.contains("`Output`"), "{err}");
    assert!(!f.path("r.txt").exists());
    // With an output index, the candidates are its items (not the padding units): K up to
    // their number works, one more is refused.
    let known = f.read("features.idx").lines().count();
    let (ok, over) = (known.to_string(), (known + 1).to_string());
    f.predict(
        &[
            &BASE[..],
            &["-k", &ok, "-s", "all.txt", "--no-exclude-input"],
        ]
        .concat(),
    );
    for line in f.read("all.txt").lines() {
        let recs = line.split_once('\t').unwrap().1;
        assert_eq!(recs.matches(':').count(), known, "{line}");
        assert!(recs
            .split(':')
            .filter(|p| !p.is_empty())
            .all(|p| p.starts_with('i')));
    }
    let out = f.predictor(&[&BASE[..], &["-k", &over, "-s", "r.txt"]].concat());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("output index"), "{}", stderr(&out));

    // An input converted with another features index: another width.
    f.write("other.txt", "u0 a b c\nu1 d\n");
    let out = Command::new(CONVERTER)
        .current_dir(f.0.path())
        .args([
            "--format",
            "lists",
            "-d",
            "input",
            "-i",
            "other.txt",
            "-o",
            "other.nc",
        ])
        .args(["-f", "other.idx", "-s", "other_s.idx", "-c"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = f.predictor(&["-n", "net.nc", "-i", "other.nc", "-k", "3", "-s", "r.txt"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("other.nc") && err.contains("`Input`"), "{err}");
    assert!(err.contains("wide"), "{err}");

    // A missing or corrupt network file.
    let out = f.predictor(&["-n", "nope.nc", "-i", "input.nc", "-k", "3", "-s", "r.txt"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.nc"), "{}", stderr(&out));
    f.write("bad.nc", "not a network");
    let out = f.predictor(&["-n", "bad.nc", "-i", "input.nc", "-k", "3", "-s", "r.txt"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.nc"), "{}", stderr(&out));

    // A broken index file is named with its line.
    f.write("broken.idx", "i0\t0\ni1 1\n");
    let out = f.predictor(&[
        "-n",
        "net.nc",
        "-i",
        "input.nc",
        "-k",
        "3",
        "-s",
        "r.txt",
        "-o",
        "broken.idx",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.idx:2"), "{}", stderr(&out));
    assert!(!f.path("r.txt").exists());
}
