//! Parquet through the binaries: `converter --format parquet` on MovieLens latest-small
//! (written as Parquet at test time) gives the CSV's dataset; bad Parquet fails naming the
//! file and column and writes nothing; `predictor` reads Parquet input (`-r`, detected by its
//! magic bytes) like the NetCDF input and writes recommendations and layer outputs as Parquet
//! with the values of its text outputs.

mod common;
mod predictor_fixture;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use predictor_fixture::*;

const ML_SMALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/ml-latest-small/ratings.csv"
);

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn read_parquet(path: &Path) -> RecordBatch {
    let f = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 1, "the test files fit one batch");
    batches.remove(0)
}

fn run(dir: &Path, bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[test]
fn converter_reads_movielens_parquet_like_the_csv() {
    let text = std::fs::read_to_string(ML_SMALL).expect("../shared/data must be present");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let users = Int64Array::from_iter_values(rows.iter().map(|r| r[0].parse::<i64>().unwrap()));
    let movies = Int64Array::from_iter_values(rows.iter().map(|r| r[1].parse::<i64>().unwrap()));
    let ratings = Float64Array::from_iter_values(rows.iter().map(|r| r[2].parse::<f64>().unwrap()));
    write_parquet(
        &d.join("ratings.parquet"),
        vec![
            ("userId", Arc::new(users) as ArrayRef),
            ("movieId", Arc::new(movies)),
            ("rating", Arc::new(ratings)),
        ],
    );
    let common = ["-d", "input", "-t", "analog", "-c", "--min-rating", "3"];
    ok(run(
        d,
        CONVERTER,
        &[
            &common[..],
            &["--format", "csv", "-i", ML_SMALL, "-o", "csv.nc"],
            &["-f", "f_csv", "-s", "s_csv"],
        ]
        .concat(),
    ));
    let pq = [
        "--format",
        "parquet",
        "--user-column",
        "userId",
        "--item-column",
        "movieId",
        "--value-column",
        "rating",
    ];
    let out = ok(run(
        d,
        CONVERTER,
        &[
            &common[..],
            &pq[..],
            &[
                "-i",
                "ratings.parquet",
                "-o",
                "pq.nc",
                "-f",
                "f_pq",
                "-s",
                "s_pq",
                "-v",
            ],
        ]
        .concat(),
    ));
    // A Parquet table has rows, not lines.
    let summary = stderr(&out);
    assert!(summary.contains("entries/s"), "{summary}");
    assert!(
        summary.contains(" rows in ") && !summary.contains("lines"),
        "{summary}"
    );
    let a = moira::dataset::io::netcdf::read(&d.join("csv.nc")).unwrap();
    let b = moira::dataset::io::netcdf::read(&d.join("pq.nc")).unwrap();
    assert_eq!(a[0].sparse_data().unwrap(), b[0].sparse_data().unwrap());
    for (x, y) in [("f_csv", "f_pq"), ("s_csv", "s_pq")] {
        assert_eq!(
            std::fs::read(d.join(x)).unwrap(),
            std::fs::read(d.join(y)).unwrap()
        );
    }
    // Errors name the file and the column; nothing is written.
    for (args, want) in [
        (
            &["--item-column", "movieId"][..],
            "needs --user-column and --item-column",
        ),
        (
            &["--user-column", "user", "--item-column", "movieId"][..],
            "ratings.parquet: column `user`: no such column",
        ),
        (
            &["--user-column", "userId", "--item-column", "rating"][..],
            "ratings.parquet: column `rating`: has type Float64",
        ),
    ] {
        let out = run(
            d,
            CONVERTER,
            &[
                &[
                    "-d",
                    "x",
                    "-c",
                    "--format",
                    "parquet",
                    "-i",
                    "ratings.parquet",
                ][..],
                &["-o", "bad.nc", "-f", "f_bad", "-s", "s_bad"],
                args,
            ]
            .concat(),
        );
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(!d.join("bad.nc").exists() && !d.join("s_bad").exists());
    }
}

#[test]
fn predictor_reads_and_writes_parquet() {
    let f = Fixture::new();
    // The training lists as a Parquet log: string ids, one row per (user, item).
    let (mut users, mut items) = (Vec::new(), Vec::new());
    for line in f.read("train.txt").lines() {
        let mut t = line.split_whitespace();
        let u = t.next().unwrap().to_owned();
        for i in t {
            users.push(u.clone());
            items.push(i.to_owned());
        }
    }
    write_parquet(
        &f.path("train.parquet"),
        vec![
            ("u", Arc::new(StringArray::from(users)) as ArrayRef),
            ("i", Arc::new(StringArray::from(items))),
        ],
    );
    let out = ["-n", "net.nc", "-o", "features.idx", "-k", "7", "-p", "9"];
    // The reference: NetCDF input, TSV output.
    f.predict(
        &[
            &out[..],
            &["-i", "input.nc", "--samples", "samples.idx"],
            &["--format", "tsv", "-s", "ref.tsv"],
        ]
        .concat(),
    );
    // Parquet in (detected), TSV out: the same lines.
    let pq_in = [
        "-r",
        "train.parquet",
        "-i",
        "features.idx",
        "--user-column",
        "u",
        "--item-column",
        "i",
    ];
    f.predict(&[&out[..], &pq_in[..], &["--format", "tsv", "-s", "pq.tsv"]].concat());
    assert_eq!(f.read("pq.tsv"), f.read("ref.tsv"));
    // Spark's layout, detected through its first part file (`_SUCCESS` sorts first).
    std::fs::create_dir(f.path("spark")).unwrap();
    std::fs::copy(f.path("train.parquet"), f.path("spark/part-00000.parquet")).unwrap();
    std::fs::write(f.path("spark/_SUCCESS"), "").unwrap();
    let mut dir_in = pq_in;
    dir_in[1] = "spark";
    f.predict(&[&out[..], &dir_in[..], &["--format", "tsv", "-s", "dir.tsv"]].concat());
    assert_eq!(f.read("dir.tsv"), f.read("ref.tsv"));
    // Parquet out: the TSV's rows, scores unrounded.
    f.predict(
        &[
            &out[..],
            &pq_in[..],
            &["--format", "parquet", "-s", "recs.parquet"],
        ]
        .concat(),
    );
    let b = read_parquet(&f.path("recs.parquet"));
    let tsv = f.read("ref.tsv");
    let lines: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(b.num_rows(), lines.len());
    assert_eq!(b.num_rows(), USERS as usize * 7);
    let (s, r, i) = (
        b.column(0).as_string::<i32>(),
        b.column(1).as_primitive::<Int32Type>(),
        b.column(2).as_string::<i32>(),
    );
    let score = b.column(3).as_primitive::<Float32Type>();
    for (n, l) in lines.iter().enumerate() {
        assert_eq!(
            (s.value(n), r.value(n).to_string().as_str(), i.value(n)),
            (l[0], l[1], l[2])
        );
        let want: f32 = l[3].parse().unwrap();
        assert!((score.value(n) - want).abs() < 1e-8, "row {n}");
    }
    // The hidden layer as Parquet (by extension): the NetCDF output's values exactly.
    let base = ["-n", "net.nc", "-i", "input.nc", "--samples", "samples.idx"];
    f.predict(&[&base[..], &["--layer", "Hidden", "-s", "h.parquet"]].concat());
    f.predict(&[&base[..], &["--layer", "Hidden", "-s", "h.nc"]].concat());
    let sets = moira::dataset::io::netcdf::read(&f.path("h.nc")).unwrap();
    let dense = sets[0].dense_data().unwrap();
    let b = read_parquet(&f.path("h.parquet"));
    let lists = b.column(1).as_list::<i32>();
    assert_eq!(lists.len(), USERS as usize);
    for row in 0..lists.len() {
        let v = lists.value(row);
        let v = v.as_primitive::<Float32Type>().values();
        assert_eq!(v.as_ref(), &dense[row * 16..(row + 1) * 16], "row {row}");
    }
    // A Parquet input without its column flags is refused by name.
    let bad = f.predictor(
        &[
            &out[..],
            &["-r", "train.parquet", "-i", "features.idx", "-s", "x"],
        ]
        .concat(),
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("needs --user-column and --item-column"),
        "{}",
        stderr(&bad)
    );
    assert!(!f.path("x").exists());
}
