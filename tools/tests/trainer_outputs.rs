//! The trainer's per-epoch outputs beside the metrics log: `--tensorboard DIR` (the event file
//! parsed back here: record framing, masked CRC-32C of length and data, Event and Summary
//! protobufs, tags and values equal to the metrics log's) and `--plot FILE` / `moira-plot`
//! (SVG and PNG pictures of the loss and validation curves).

mod common;
mod predictor_fixture;

use std::collections::BTreeMap;
use std::path::Path;

use moira_tools::tensorboard::masked_crc;
use predictor_fixture::*;

const PLOT: &str = env!("CARGO_BIN_EXE_moira-plot");

/// A protobuf field: (number, value).
#[derive(Debug)]
enum Field {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(Vec<u8>),
    Fixed32([u8; 4]),
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
    }
    panic!("varint too long");
}

fn fields(b: &[u8]) -> Vec<(u64, Field)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut at)),
            1 => {
                at += 8;
                Field::Fixed64(b[at - 8..at].try_into().unwrap())
            }
            2 => {
                let n = varint(b, &mut at) as usize;
                at += n;
                Field::Bytes(b[at - n..at].to_vec())
            }
            5 => {
                at += 4;
                Field::Fixed32(b[at - 4..at].try_into().unwrap())
            }
            w => panic!("wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

/// The TFRecords of an event file, checked: length, masked CRCs.
fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(
            crc,
            masked_crc(len_bytes),
            "length CRC of record {}",
            out.len()
        );
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked_crc(data), "data CRC of record {}", out.len());
        out.push(data.to_vec());
        at += 16 + len;
    }
    assert_eq!(at, bytes.len());
    out
}

/// An Event: (wall_time, step, file_version, scalars by tag).
type Event = (f64, u64, Option<String>, BTreeMap<String, f32>);

fn event(data: &[u8]) -> Event {
    let (mut wall, mut step, mut version, mut scalars) = (0.0, 0, None, BTreeMap::new());
    for (n, f) in fields(data) {
        match (n, f) {
            (1, Field::Fixed64(b)) => wall = f64::from_le_bytes(b),
            (2, Field::Varint(v)) => step = v,
            (3, Field::Bytes(b)) => version = Some(String::from_utf8(b).unwrap()),
            (5, Field::Bytes(summary)) => {
                for (n, value) in fields(&summary) {
                    let (1, Field::Bytes(value)) = (n, value) else {
                        panic!("Summary field {n}")
                    };
                    let (mut tag, mut simple) = (String::new(), None);
                    for (n, f) in fields(&value) {
                        match (n, f) {
                            (1, Field::Bytes(t)) => tag = String::from_utf8(t).unwrap(),
                            (2, Field::Fixed32(v)) => simple = Some(f32::from_le_bytes(v)),
                            other => panic!("Summary.Value field {other:?}"),
                        }
                    }
                    scalars.insert(tag, simple.expect("simple_value"));
                }
            }
            other => panic!("Event field {other:?}"),
        }
    }
    (wall, step, version, scalars)
}

fn train(f: &Fixture, epochs: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(TRAINER)
        .current_dir(f.0.path())
        .env_remove("RUST_LOG")
        .args([
            "net.json",
            "-i",
            "input.nc",
            "-o",
            "output.nc",
            "-n",
            "run.nc",
            "-b",
            "32",
        ])
        .args([
            "--validation",
            "held.nc",
            "--validation-k",
            "5,10",
            "--threads",
            "2",
        ])
        .args(["--force", "--device", "cpu", "-e", epochs])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn tensorboard_events_hold_the_metrics_log() {
    let f = Fixture::new();
    let out = train(&f, "3", &["--tensorboard", "tb/run1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files: Vec<_> = std::fs::read_dir(f.path("tb/run1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let events: Vec<Event> = records(&std::fs::read(&files[0]).unwrap())
        .iter()
        .map(|r| event(r))
        .collect();
    assert_eq!(events.len(), 4, "file_version + 3 epochs");
    assert_eq!(events[0].2.as_deref(), Some("brain.Event:2"));
    assert!(events[0].0 > 1.5e9, "wall time in seconds: {}", events[0].0);
    let log = f.read("run.metrics.jsonl");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (e, line) in events[1..].iter().zip(&lines) {
        let (_, step, version, scalars) = e;
        assert_eq!(*step, line["epoch"].as_u64().unwrap());
        assert!(version.is_none());
        let want = |key: &str| line[key].as_f64().unwrap() as f32;
        assert_eq!(scalars["loss"], want("loss"));
        assert_eq!(scalars["learning_rate"], want("learning_rate"));
        assert_eq!(scalars["examples_per_second"], want("examples_per_s"));
        let metrics = line["validation"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        for m in metrics {
            let k = m["k"].as_u64().unwrap();
            for name in ["precision", "recall", "ndcg"] {
                let tag = format!("validation/{name}@{k}");
                assert_eq!(scalars[&tag], m[name].as_f64().unwrap() as f32, "{tag}");
            }
        }
        assert_eq!(scalars.len(), 4 + 6);
    }
    // A second run in the same directory adds a file; the first is kept.
    let out = train(&f, "1", &["--tensorboard", "tb/run1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(f.path("tb/run1")).unwrap().count(), 2);
}

fn is_png(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn plots_of_the_loss_and_validation_curves() {
    let f = Fixture::new();
    let out = train(&f, "3", &["--plot", "curves.svg"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = f.read("curves.svg");
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    for text in [
        "training loss",
        "validation",
        "epoch",
        "recall@5",
        "ndcg@10",
        "loss",
    ] {
        assert!(svg.contains(text), "{text} missing from the SVG");
    }
    // moira-plot draws the same log, as PNG and SVG.
    let plot = |args: &[&str]| {
        std::process::Command::new(PLOT)
            .current_dir(f.0.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = plot(&["run.metrics.jsonl", "-o", "curves.png"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(is_png(&f.path("curves.png")), (1000, 420));
    let out = plot(&["run.metrics.jsonl", "-o", "again.svg"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.read("again.svg"), svg);
    // Errors: another extension (before training), a malformed log (file:line), the log as
    // the output.
    let out = train(&f, "3", &["--plot", "curves.jpg"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--plot curves.jpg: expected an .svg or a .png"),
        "{}",
        stderr(&out)
    );
    f.write(
        "bad.jsonl",
        "{\"epoch\": 0, \"loss\": 1.0}\n{\"epoch\": 1}\n",
    );
    let out = plot(&["bad.jsonl", "-o", "bad.svg"]);
    assert!(
        stderr(&out).contains("bad.jsonl:2: `loss` is missing"),
        "{}",
        stderr(&out)
    );
    assert!(!f.path("bad.svg").exists());
    let out = plot(&["run.metrics.jsonl", "-o", "run.metrics.jsonl"]);
    assert!(!out.status.success());
    assert!(f.read("run.metrics.jsonl").lines().count() == 3);
}
