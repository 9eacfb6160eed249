//! Integration tests of the predictor's DSSTNE-style input (`-r`, `-i`, `-d`), text and
//! multiplicative filters (`-f`, `--filter-mode`), layer output (`--layer`), full-width and
//! tied top-K, consistency errors, and text input on the real MovieLens data when present.

mod common;
mod predictor_fixture;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use predictor_fixture::*;

/// `sample → [(label, score)]` of a recs file.
fn parse_recs(text: &str) -> Vec<(String, Vec<(String, f64)>)> {
    text.lines()
        .map(|line| {
            let (user, recs) = line.split_once('\t').expect(line);
            let items = recs
                .split(':')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (l, s) = p.split_once(',').expect(p);
                    (l.to_owned(), s.parse().unwrap())
                })
                .collect();
            (user.to_owned(), items)
        })
        .collect()
}

/// The training rows in DSSTNE's text format and as a ratings CSV.
fn write_text_and_csv(f: &Fixture) {
    let (mut text, mut csv) = (String::new(), String::from("userId,movieId,rating\n"));
    for line in f.read("train.txt").lines() {
        let mut it = line.split(' ');
        let user = it.next().unwrap();
        let items: Vec<&str> = it.collect();
        text.push_str(&format!("{user}\t{}\n", items.join(":")));
        for i in &items {
            csv.push_str(&format!("{user},{i},4\n"));
        }
    }
    f.write("train.dsstne", &text);
    f.write("train.csv", &csv);
}

#[test]
fn text_csv_and_lists_input_give_the_netcdf_results() {
    let f = Fixture::new();
    write_text_and_csv(&f);
    let common = ["-n", "net.nc", "-o", "features.idx", "-k", "6", "-p", "6"];
    f.predict(
        &[
            &common[..],
            &["-i", "input.nc", "--samples", "samples.idx", "-s", "nc.txt"],
        ]
        .concat(),
    );
    let want = f.read("nc.txt");
    assert_eq!(want.lines().count(), USERS as usize);
    for (input, extra) in [
        ("train.txt", &[][..]),
        ("train.dsstne", &["-d", "input"][..]),
        ("train.csv", &["--samples", "samples.idx"][..]),
        ("train.txt", &["--input-format", "lists", "-d", "input"][..]),
    ] {
        let args = [
            &common[..],
            &["-r", input, "-i", "features.idx", "-s", "t.txt"],
            extra,
        ]
        .concat();
        f.predict(&args);
        assert_eq!(f.read("t.txt"), want, "{args:?}");
    }
    // The long forms, and the earlier `-i INPUT.nc` equal to `-r INPUT.nc`.
    f.predict(
        &[
            &common[..],
            &[
                "--input",
                "input.nc",
                "--samples",
                "samples.idx",
                "-s",
                "r.txt",
            ],
        ]
        .concat(),
    );
    assert_eq!(f.read("r.txt"), want);

    // Unknown features are counted and named, not silently dropped.
    let mut text = f.read("train.txt");
    text.push_str("u0 zz1 zz2 zz1\n");
    f.write("unknown.txt", &text);
    let out = f.predict(
        &[
            &common[..],
            &["-r", "unknown.txt", "-i", "features.idx", "-s", "u.txt"],
        ]
        .concat(),
    );
    let err = stderr(&out);
    assert!(
        err.contains("3 input entries dropped") && err.contains("`zz1`, `zz2`"),
        "{err}"
    );
    assert!(
        err.contains("unknown.txt") && err.contains("features.idx"),
        "{err}"
    );
    assert_eq!(f.read("u.txt"), want);

    // -d picks the input layer by DataSet, or DataSet + `_input`; others are refused.
    let out = f.predictor(
        &[
            &common[..],
            &[
                "-r",
                "train.txt",
                "-i",
                "features.idx",
                "-d",
                "gl",
                "-s",
                "x.txt",
            ],
        ]
        .concat(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gl_input") && err.contains("`Input` (DataSet `input`)"),
        "{err}"
    );
}

#[test]
fn text_filter_in_exclude_and_multiply_modes() {
    let f = Fixture::new();
    let base = [
        "-n",
        "net.nc",
        "-i",
        "input.nc",
        "-o",
        "features.idx",
        "--samples",
        "samples.idx",
    ];
    let known = f.read("features.idx").lines().count();
    let all = known.to_string();
    let plain = [&base[..], &["-k", &all, "-p", "6", "--no-exclude-input"]].concat();
    f.predict(&[&plain[..], &["-s", "plain.txt"]].concat());
    let plain_recs: HashMap<_, _> = parse_recs(&f.read("plain.txt")).into_iter().collect();
    let u0: HashMap<_, _> = plain_recs["u0"].iter().cloned().collect();
    // DSSTNE text filter: u0's i1 doubled, i2 (no value: 0) removed; u1's i3 halved.
    f.write("filter.txt", "u0\ti1,2:i2\nu1\ti3,0.5\nnobody\ti4\n");
    let out = f.predict(
        &[
            &plain[..],
            &[
                "-s",
                "mul.txt",
                "-f",
                "filter.txt",
                "--filter-mode",
                "multiply",
            ],
        ]
        .concat(),
    );
    assert!(
        stderr(&out).contains("1 filter samples are not in the input"),
        "{}",
        stderr(&out)
    );
    let mul: HashMap<_, _> = parse_recs(&f.read("mul.txt")).into_iter().collect();
    let m0: HashMap<_, _> = mul["u0"].iter().cloned().collect();
    assert!(!m0.contains_key("i2"));
    assert_eq!(m0.len(), known - 1);
    assert!(
        (m0["i1"] - 2.0 * u0["i1"]).abs() < 2e-6,
        "{} vs {}",
        m0["i1"],
        u0["i1"]
    );
    let m1: HashMap<_, _> = mul["u1"].iter().cloned().collect();
    let p1: HashMap<_, _> = plain_recs["u1"].iter().cloned().collect();
    assert!((m1["i3"] - 0.5 * p1["i3"]).abs() < 2e-6);
    assert_eq!(mul["u2"], plain_recs["u2"]);
    // The ranking follows the multiplied scores.
    assert!(mul["u0"].windows(2).all(|w| w[0].1 >= w[1].1));
    // Exclude mode drops every filtered item, whatever its value.
    f.predict(&[&plain[..], &["-s", "ex.txt", "-f", "filter.txt"]].concat());
    let ex: HashMap<_, _> = parse_recs(&f.read("ex.txt")).into_iter().collect();
    let e0: Vec<&str> = ex["u0"].iter().map(|(l, _)| l.as_str()).collect();
    assert!(!e0.contains(&"i1") && !e0.contains(&"i2") && e0.len() == known - 2);
    // `-f` is `--filter`; a boolean NetCDF filter excludes in multiply mode too.
    f.predict(&[&base[..], &["-k", "5", "-s", "a.txt", "-f", "held.nc"]].concat());
    f.predict(
        &[
            &base[..],
            &[
                "-k",
                "5",
                "-s",
                "b.txt",
                "--filter",
                "held.nc",
                "--filter-mode",
                "multiply",
            ],
        ]
        .concat(),
    );
    assert_eq!(f.read("a.txt"), f.read("b.txt"));
    // A text filter needs the output index.
    let out = f.predictor(&[
        "-n",
        "net.nc",
        "-i",
        "input.nc",
        "-k",
        "3",
        "-s",
        "c.txt",
        "-f",
        "filter.txt",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("-o"), "{}", stderr(&out));
}

#[test]
fn layer_output_as_netcdf_and_tsv() {
    let f = Fixture::new();
    let base = [
        "-n",
        "net.nc",
        "-i",
        "input.nc",
        "--samples",
        "samples.idx",
        "-b",
        "50",
    ];
    f.predict(&[&base[..], &["--layer", "Hidden", "-s", "hidden.nc"]].concat());
    let sets = moira::dataset::io::netcdf::read(&f.path("hidden.nc")).unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].name(), "Hidden");
    assert_eq!((sets[0].examples(), sets[0].stride()), (USERS as usize, 16));
    let values = sets[0].dense_data().unwrap();
    assert!(values.iter().all(|&v| v > 0.0 && v < 1.0));
    // TSV by extension: the same values, exactly, with the sample names.
    f.predict(&[&base[..], &["-l", "Hidden", "-s", "hidden.tsv"]].concat());
    let tsv = f.read("hidden.tsv");
    let samples = f.read("samples.idx");
    let names: Vec<&str> = samples
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(tsv.lines().count(), USERS as usize);
    for (r, line) in tsv.lines().enumerate() {
        let (name, vals) = line.split_once('\t').unwrap();
        assert_eq!(name, names[r]);
        let v: Vec<f32> = vals.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v, &values[r * 16..(r + 1) * 16], "row {r}");
    }
    // --layer-format overrides the extension; -p sets the decimals; the output layer works.
    f.predict(
        &[
            &base[..],
            &[
                "-l",
                "Output",
                "--layer-format",
                "tsv",
                "-p",
                "2",
                "-s",
                "out.nc",
            ],
        ]
        .concat(),
    );
    let first = f.read("out.nc").lines().next().unwrap().to_owned();
    let vals: Vec<&str> = first.split_once('\t').unwrap().1.split(' ').collect();
    assert_eq!(vals.len(), 256);
    assert!(vals.iter().all(|v| v.len() == 4), "{first}");
    // With --evaluate at the same time.
    let out = f.predict(
        &[
            &base[..],
            &["-l", "Output", "-s", "o2.nc", "--evaluate", "held.nc"],
        ]
        .concat(),
    );
    assert!(stdout(&out).contains("Recall@K"));
    // Errors: a sparse input layer, an unknown layer, no -s.
    for (args, want) in [
        (&["-l", "Input", "-s", "x.nc"][..], "sparse input"),
        (&["-l", "Nope", "-s", "x.nc"][..], "\"Hidden\""),
        (&["-l", "Hidden", "--evaluate", "held.nc"][..], "-s"),
    ] {
        let out = f.predictor(&[&base[..], args].concat());
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    assert!(!f.path("x.nc").exists());
}

#[test]
fn top_k_up_to_the_full_width_with_ties_to_the_lower_index() {
    // Every weight 0: all scores tie at 0.5, so the ranking is the index order.
    let f = Fixture::with_net(TIED_NET, &["-e", "1", "-b", "32", "--alpha", "0"]);
    let width = 256; // 200 items, rounded up to 128s
    f.predict(&[
        "-n",
        "net.nc",
        "-i",
        "input.nc",
        "-k",
        "256",
        "-s",
        "all.txt",
        "--no-exclude-input",
        "-b",
        "7",
    ]);
    let want: Vec<String> = (0..width).map(|i| i.to_string()).collect();
    for (_, items) in parse_recs(&f.read("all.txt")) {
        let got: Vec<&String> = items.iter().map(|(l, _)| l).collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>());
        assert!(items.iter().all(|(_, s)| *s == 0.5));
    }
    // With the own items excluded: the lowest remaining indices, in order.
    f.predict(&[
        "-n", "net.nc", "-i", "input.nc", "-k", "256", "-s", "ex.txt",
    ]);
    let samples = f.read("samples.idx");
    let features = f.read("features.idx");
    let feature: HashMap<&str, usize> = features
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a, b.parse().unwrap())
        })
        .collect();
    let user_of: Vec<u64> = samples
        .lines()
        .map(|l| l[1..l.find('\t').unwrap()].parse().unwrap())
        .collect();
    for (row, items) in parse_recs(&f.read("ex.txt")) {
        let user = user_of[row.parse::<usize>().unwrap()];
        let own: Vec<usize> = DATA.user_items(user)[..TRAIN]
            .iter()
            .map(|i| feature[format!("i{i}").as_str()])
            .collect();
        let expected: Vec<String> = (0..width)
            .filter(|i| !own.contains(i))
            .map(|i| i.to_string())
            .collect();
        let got: Vec<String> = items.into_iter().map(|(l, _)| l).collect();
        assert_eq!(got, expected, "row {row}");
    }
    let out = f.predictor(&["-n", "net.nc", "-i", "input.nc", "-k", "257", "-s", "x.txt"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("1..=256"), "{}", stderr(&out));
}

#[test]
fn disagreeing_network_index_and_input_are_named() {
    let f = Fixture::new();
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
        .args([
            "-f",
            "other.idx",
            "-s",
            "other_s.idx",
            "-c",
            "--exact-width",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cases: [(&[&str], &[&str]); 6] = [
        // An index of another network, for the input and for the output.
        (
            &["-r", "train.txt", "-i", "other.idx", "-k", "3", "-s", "x"],
            &["other.idx", "4 features", "`Input` has 256"],
        ),
        (
            &["-i", "input.nc", "-o", "other.idx", "-k", "3", "-s", "x"],
            &["other.idx", "another network", "`Output`"],
        ),
        // Text input without its index; text given as -i without -r.
        (
            &["-r", "train.txt", "-k", "3", "-s", "x"],
            &["train.txt", "-i FEATURES_INDEX"],
        ),
        (
            &["-i", "train.txt", "-k", "3", "-s", "x"],
            &["train.txt", "not a NetCDF file", "-r"],
        ),
        // A NetCDF input of another width, with -r.
        (
            &["-r", "other.nc", "-k", "3", "-s", "x"],
            &["other.nc", "4 wide", "`Input` has 256"],
        ),
        // A filter of another width.
        (
            &["-i", "input.nc", "-f", "other.nc", "-k", "3", "-s", "x"],
            &["other.nc", "4 wide", "`Output` has 256"],
        ),
    ];
    for (args, wants) in cases {
        let out = f.predictor(&[&["-n", "net.nc"][..], args].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        for want in wants {
            assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        }
        assert!(!f.path("x").exists());
    }
}

const ML_SMALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/ml-latest-small/ratings.csv"
);

/// Real data: MovieLens latest-small ratings given as CSV text to the predictor equal the
/// same ratings converted to NetCDF, and the hidden layer of all 610 users reads back.
#[test]
fn movielens_csv_input_matches_the_converted_dataset() {
    let ratings = Path::new(ML_SMALL);
    if !ratings.exists() {
        eprintln!("skipping: {} not found (../shared/data)", ratings.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |bin: &str, args: &[&str]| {
        let out = Command::new(bin)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} {args:?}: {}", stderr(&out));
        out
    };
    let csv = ratings.to_str().unwrap();
    for (name, extra) in [("input", &["-c"][..]), ("output", &[][..])] {
        let out = format!("{name}.nc");
        let args = [
            &["--format", "csv", "-d", name, "-i", csv, "-o", &out][..],
            &["-f", "features", "-s", "samples"],
            extra,
        ]
        .concat();
        run(CONVERTER, &args);
    }
    std::fs::write(dir.path().join("net.json"), NET).unwrap();
    run(
        TRAINER,
        &[
            "net.json",
            "-i",
            "input.nc",
            "-o",
            "output.nc",
            "-n",
            "net.nc",
            "-e",
            "1",
            "-b",
            "64",
            "--threads",
            "2",
        ],
    );
    let common = [
        "-n",
        "net.nc",
        "-o",
        "features",
        "-k",
        "10",
        "-p",
        "6",
        "--threads",
        "2",
    ];
    run(
        PREDICTOR,
        &[
            &common[..],
            &["-i", "input.nc", "--samples", "samples", "-s", "nc.txt"],
        ]
        .concat(),
    );
    run(
        PREDICTOR,
        &[&common[..], &["-r", csv, "-i", "features", "-s", "csv.txt"]].concat(),
    );
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    assert_eq!(read("csv.txt"), read("nc.txt"));
    assert_eq!(read("nc.txt").lines().count(), 610);
    run(
        PREDICTOR,
        &[
            "-n", "net.nc", "-r", csv, "-i", "features", "-l", "Hidden", "-s", "h.nc",
        ],
    );
    let sets = moira::dataset::io::netcdf::read(&dir.path().join("h.nc")).unwrap();
    assert_eq!((sets[0].examples(), sets[0].stride()), (610, 16));
}
