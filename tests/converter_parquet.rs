//! Parquet input of the converter on real data: MovieLens latest-small's ratings.csv is
//! written as Parquet part files at test time (Spark's directory layout, several row groups,
//! snappy and zstd), and the dataset and indices converted from them must equal those
//! converted from the CSV. Bad Parquet (missing or mistyped columns, truncated files, other
//! files) fails naming the file and the column, and writes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use moira::dataset::convert::{convert, ConvertOptions, FeatureIndexMode, InputFormat, ValueType};
use moira::dataset::io::csv::CsvOptions;
use moira::dataset::io::netcdf::read;
use moira::dataset::io::parquet::ParquetOptions;
use moira::sparse::Csr;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const RATINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-latest-small/ratings.csv"
);

/// The ratings: (user, movie, rating, timestamp).
fn ratings() -> Vec<(i64, i64, f64, i64)> {
    let text = std::fs::read_to_string(RATINGS).expect("../shared/data must be present");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

/// Writes `columns` as one Parquet file with row groups of 10,000 rows.
fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, compression: Compression) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(10_000))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Columns of `rows`: integer user ids, string movie ids, float ratings, integer times.
fn columns(rows: &[(i64, i64, f64, i64)]) -> Vec<(&'static str, ArrayRef)> {
    let users = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
    let movies = StringArray::from_iter_values(rows.iter().map(|r| r.1.to_string()));
    let ratings = Float64Array::from_iter_values(rows.iter().map(|r| r.2));
    let times = Int64Array::from_iter_values(rows.iter().map(|r| r.3));
    vec![
        ("userId", Arc::new(users) as ArrayRef),
        ("movieId", Arc::new(movies)),
        ("rating", Arc::new(ratings)),
        ("timestamp", Arc::new(times)),
    ]
}

/// Spark's layout: two part files, `_SUCCESS` and a hidden checksum file.
fn spark_dir(dir: &Path) -> PathBuf {
    let rows = ratings();
    let out = dir.join("ratings.parquet");
    std::fs::create_dir(&out).unwrap();
    let (a, b) = rows.split_at(60_000);
    write_parquet(
        &out.join("part-00000.snappy.parquet"),
        columns(a),
        Compression::SNAPPY,
    );
    write_parquet(
        &out.join("part-00001.zstd.parquet"),
        columns(b),
        Compression::ZSTD(ZstdLevel::default()),
    );
    std::fs::write(out.join("_SUCCESS"), "").unwrap();
    std::fs::write(out.join(".part-00000.snappy.parquet.crc"), "not parquet").unwrap();
    out
}

fn options(dir: &Path, tag: &str, input: &Path, format: InputFormat) -> ConvertOptions {
    ConvertOptions {
        dataset_name: "input".into(),
        input: input.to_owned(),
        output: dir.join(format!("{tag}.nc")),
        features_index: dir.join(format!("{tag}.features")),
        samples_index: dir.join(format!("{tag}.samples")),
        feature_mode: FeatureIndexMode::Create,
        value_type: ValueType::Analog,
        format,
        exact_width: false,
        l2_normalize: false,
    }
}

fn parquet(value: Option<&str>, min_rating: Option<f32>) -> InputFormat {
    InputFormat::Parquet(ParquetOptions {
        user_column: "userId".into(),
        item_column: "movieId".into(),
        value_column: value.map(str::to_owned),
        min_rating,
    })
}

fn dataset(o: &ConvertOptions) -> Csr {
    read(&o.output).unwrap()[0].sparse_data().unwrap().clone()
}

/// Converts the CSV and the Parquet copy with the same options; both must agree exactly.
fn same_as_csv(dir: &Path, input: &Path, csv: CsvOptions, pq: InputFormat, kind: ValueType) {
    let mut a = options(dir, "csv", Path::new(RATINGS), InputFormat::Csv(csv));
    let mut b = options(dir, "pq", input, pq);
    a.value_type = kind;
    b.value_type = kind;
    let ra = convert(&a, &mut |_| {}).unwrap();
    let rb = convert(&b, &mut |_| {}).unwrap();
    assert_eq!(
        (ra.examples, ra.features, ra.nnz, ra.width),
        (rb.examples, rb.features, rb.nnz, rb.width)
    );
    assert_eq!(ra.stats.below_min_rating, rb.stats.below_min_rating);
    assert_eq!(dataset(&a), dataset(&b));
    for (x, y) in [
        (&a.samples_index, &b.samples_index),
        (&a.features_index, &b.features_index),
    ] {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
    }
}

#[test]
fn spark_part_files_convert_like_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = spark_dir(dir.path());
    // Ratings as values.
    same_as_csv(
        dir.path(),
        &input,
        CsvOptions::default(),
        parquet(Some("rating"), None),
        ValueType::Analog,
    );
    // Ratings below 4 dropped, the timestamp as the value.
    let csv = CsvOptions {
        value_column: moira::dataset::io::csv::ValueColumn::Timestamp,
        min_rating: Some(4.0),
    };
    let dir2 = tempfile::tempdir().unwrap();
    let mut a = options(
        dir2.path(),
        "csv",
        Path::new(RATINGS),
        InputFormat::Csv(csv),
    );
    a.value_type = ValueType::Indicator;
    let ra = convert(&a, &mut |_| {}).unwrap();
    let b = ConvertOptions {
        value_type: ValueType::Indicator,
        ..options(
            dir2.path(),
            "pq",
            &input,
            parquet(Some("rating"), Some(4.0)),
        )
    };
    let rb = convert(&b, &mut |_| {}).unwrap();
    assert_eq!(
        (ra.nnz, ra.stats.below_min_rating),
        (rb.nnz, rb.stats.below_min_rating)
    );
    assert!(ra.stats.below_min_rating > 0);
    assert_eq!(dataset(&a), dataset(&b));
    // Without a value column: boolean data, even with -t analog.
    let c = options(dir2.path(), "bool", &input, parquet(None, None));
    let rc = convert(&c, &mut |_| {}).unwrap();
    assert_eq!(rc.nnz, 100_836);
    assert!(dataset(&c).values().is_none());
}

#[test]
fn null_rows_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let users = Int64Array::from(vec![Some(1), None, Some(2), Some(2), Some(3)]);
    let items = StringArray::from(vec![Some("a"), Some("b"), None, Some("c"), Some("d")]);
    let values = Float64Array::from(vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), None]);
    let path = dir.path().join("nulls.parquet");
    write_parquet(
        &path,
        vec![
            ("u", Arc::new(users) as ArrayRef),
            ("i", Arc::new(items)),
            ("v", Arc::new(values)),
        ],
        Compression::UNCOMPRESSED,
    );
    let format = InputFormat::Parquet(ParquetOptions {
        user_column: "u".into(),
        item_column: "i".into(),
        value_column: Some("v".into()),
        min_rating: None,
    });
    let o = options(dir.path(), "n", &path, format);
    let r = convert(&o, &mut |_| {}).unwrap();
    assert_eq!((r.stats.lines, r.stats.null_rows, r.nnz), (5, 3, 2));
    assert_eq!(r.examples, 2);
    let csr = dataset(&o);
    assert_eq!(csr.values().unwrap(), &[1.0, 4.0]);
}

#[test]
fn bad_parquet_names_the_file_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rows = ratings();
    let good = dir.path().join("good.parquet");
    write_parquet(&good, columns(&rows[..5_000]), Compression::SNAPPY);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let fake = dir.path().join("fake.parquet");
    std::fs::write(&fake, "userId,movieId\n1,2\n").unwrap();
    let with = |user: &str, item: &str, value: Option<&str>| {
        InputFormat::Parquet(ParquetOptions {
            user_column: user.into(),
            item_column: item.into(),
            value_column: value.map(str::to_owned),
            min_rating: None,
        })
    };
    let cases = [
        (
            &good,
            with("user", "movieId", None),
            "column `user`: no such column",
        ),
        (
            &good,
            with("userId", "movieId", Some("rank")),
            "column `rank`: no such column",
        ),
        (
            &good,
            with("rating", "movieId", None),
            "column `rating`: has type Float64",
        ),
        (
            &good,
            with("userId", "movieId", Some("movieId")),
            "column `movieId`: has type Utf8",
        ),
        (
            &truncated,
            with("userId", "movieId", None),
            "not a readable Parquet file",
        ),
        (
            &fake,
            with("userId", "movieId", None),
            "not a readable Parquet file",
        ),
    ];
    for (path, format, what) in cases {
        let o = options(dir.path(), "bad", path, format);
        let err = convert(&o, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(what), "{err}");
        assert!(!o.output.exists() && !o.samples_index.exists() && !o.features_index.exists());
    }
    // The missing column's message lists the file's columns.
    let o = options(dir.path(), "bad", &good, with("user", "movieId", None));
    let err = convert(&o, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains(r#"["userId", "movieId", "rating", "timestamp"]"#),
        "{err}"
    );
}
