//! Converting the real data sets in ../shared/data: MovieLens latest-small ratings (CSV) and
//! the LightGCN ML-1M split (lists). Counts are checked against the published shapes and
//! against an independent pass over the file.

use std::path::PathBuf;

use moira::dataset::convert::{convert, ConvertOptions, FeatureIndexMode, InputFormat, ValueType};
use moira::dataset::index::Index;
use moira::dataset::io::csv::{CsvOptions, ValueColumn};
use moira::dataset::io::netcdf::read;

const RATINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-latest-small/ratings.csv"
);
const ML1M_TRAIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-1m-lightgcnpp/train.txt"
);

fn options(dir: &tempfile::TempDir, input: &str, format: InputFormat) -> ConvertOptions {
    ConvertOptions {
        dataset_name: "input".into(),
        input: PathBuf::from(input),
        output: dir.path().join("out.nc"),
        features_index: dir.path().join("features.idx"),
        samples_index: dir.path().join("samples.idx"),
        feature_mode: FeatureIndexMode::Create,
        value_type: ValueType::Analog,
        format,
        exact_width: false,
        l2_normalize: false,
    }
}

#[test]
fn movielens_small_ratings_csv() {
    let text = std::fs::read_to_string(RATINGS).expect("../shared/data must be present");
    // Independent pass: (ratings, sum of ratings, ratings >= 4).
    let ratings: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    let sum: f64 = ratings.iter().sum();
    let high = ratings.iter().filter(|&&r| r >= 4.0).count();

    let dir = tempfile::tempdir().unwrap();
    let o = options(&dir, RATINGS, InputFormat::Csv(CsvOptions::default()));
    let report = convert(&o, &mut |_| {}).unwrap();
    assert_eq!((report.examples, report.features), (610, 9_724));
    assert_eq!((report.nnz, report.width), (100_836, 9_728));
    assert_eq!(report.nnz as usize, ratings.len());
    let ds = read(&o.output).unwrap().remove(0);
    let csr = ds.sparse_data().unwrap();
    let got: f64 = csr.values().unwrap().iter().map(|&v| v as f64).sum();
    assert!((got - sum).abs() < 1e-6 * sum, "{got} vs {sum}");
    // User "1" is row 0 and rated 232 movies, the first being movie "1" with 4.0.
    let samples = Index::load(&o.samples_index).unwrap();
    let features = Index::load(&o.features_index).unwrap();
    assert_eq!(samples.get(b"1"), Some(0));
    assert_eq!(csr.row(0).0.len(), 232);
    assert_eq!(csr.row(0).0[0], features.get(b"1").unwrap());
    assert_eq!(csr.row(0).1.unwrap()[0], 4.0);

    // The timestamp as the value, ratings below 4 dropped.
    let mut o2 = options(
        &dir,
        RATINGS,
        InputFormat::Csv(CsvOptions {
            value_column: ValueColumn::Timestamp,
            min_rating: Some(4.0),
        }),
    );
    o2.output = dir.path().join("high.nc");
    o2.features_index = dir.path().join("features_high.idx");
    o2.samples_index = dir.path().join("samples_high.idx");
    let report = convert(&o2, &mut |_| {}).unwrap();
    assert_eq!(report.nnz as usize, high);
    assert_eq!(report.stats.below_min_rating as usize, ratings.len() - high);
    let ds = read(&o2.output).unwrap().remove(0);
    let first = ds.sparse_data().unwrap().values().unwrap()[0];
    assert_eq!(
        first, 964_982_703.0_f32,
        "user 1, movie 1: timestamp as f32"
    );
}

#[test]
fn ml1m_lightgcn_train_lists() {
    let text = std::fs::read_to_string(ML1M_TRAIN).expect("../shared/data must be present");
    let first_line_items = text.lines().next().unwrap().split_whitespace().count() - 1;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&dir, ML1M_TRAIN, InputFormat::Lists);
    o.value_type = ValueType::Indicator;
    let report = convert(&o, &mut |_| {}).unwrap();
    assert_eq!((report.examples, report.nnz), (6_039, 590_733));
    // Item ids 0..=3582 occur in train (3,628 items overall in the split).
    assert_eq!((report.features, report.width), (3_583, 3_584));
    assert!(report.features <= 3_628);
    let ds = read(&o.output).unwrap().remove(0);
    assert!(ds.is_boolean());
    assert_eq!(ds.shape_parts(), ("input".into(), vec![3_584], 6_039, true));
    let samples = Index::load(&o.samples_index).unwrap();
    assert_eq!(samples.get(b"0"), Some(0));
    assert_eq!(ds.sparse_data().unwrap().row(0).0.len(), first_line_items);
}
