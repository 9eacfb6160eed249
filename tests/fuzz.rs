//! Property-based fuzzing of every reader of user files: the descriptor parser (and the graph
//! compiler after it), the converter's text, CSV, lists and Parquet readers, and the NetCDF dataset and
//! model readers. Random inputs, and valid inputs mutated (bytes flipped, inserted, deleted,
//! cut short, lines repeated), give an error or a valid result: never a panic, an abort or a
//! hang. The case count is bounded for CI (`MOIRA_FUZZ_CASES`, default 64 per property, from
//! a fixed seed); a longer run: `MOIRA_FUZZ_CASES=5000 cargo test --release --test fuzz`.

use std::path::Path;

use moira::checkpoint::{load_model, save_model};
use moira::dataset::convert::{convert, ConvertOptions, FeatureIndexMode, InputFormat, ValueType};
use moira::dataset::io::csv::{CsvOptions, ValueColumn};
use moira::dataset::io::netcdf;
use moira::dataset::io::parquet::ParquetOptions;
use moira::dataset::Dataset;
use moira::descriptor::{Descriptor, Size};
use moira::graph::{DataShape, Graph};
use moira::network::Network;
use moira::ops::Optimizer;
use moira::sparse::Csr;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A runner of `MOIRA_FUZZ_CASES` cases (default 64) from a fixed seed.
fn runner() -> TestRunner {
    let cases = std::env::var("MOIRA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

/// One mutation of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    RepeatLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::RepeatLine),
    ]
}

/// `base` with `mutations` applied (positions modulo the length).
fn mutate(base: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = base.to_vec();
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] ^= x | 1;
            }
            Mutation::Insert(i, x) => {
                let i = at(i, b.len() + 1);
                b.insert(i, x);
            }
            Mutation::Delete(i) if !b.is_empty() => {
                let i = at(i, b.len());
                b.remove(i);
            }
            Mutation::Truncate(i) => b.truncate(at(i, b.len() + 1)),
            Mutation::RepeatLine(i) => {
                let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
                let line = lines[at(i, lines.len())].to_vec();
                b.extend_from_slice(b"\n");
                b.extend_from_slice(&line);
            }
            _ => {}
        }
    }
    b
}

/// Bytes of a valid input mutated a few times, or random bytes.
fn inputs(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(mutation(), 1..6).prop_map(move |m| mutate(base, &m)),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

const DESCRIPTOR: &[u8] = br#"{ "Version": 0.8, "Name": "f", "Kind": "FeedForward",
  "Denoising": { "p": 0.2 }, "SparsenessPenalty": { "p": 0.5, "beta": 2.0 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "Type": "FullyConnected", "N": 8, "Activation": "Sigmoid",
      "pDropout": 0.1, "WeightInit": { "Scheme": "Gaussian", "Scale": 0.5 } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax",
      "SharedWeights": { "SourceInputLayer": "Input", "SourceOutputLayer": "Hidden",
                         "InputLayer": "Hidden", "Transposed": true } } ],
  "ErrorFunction": "CrossEntropy" }"#;

/// Each data-bound layer at its fixed size, or 5 units for "auto".
fn shapes(d: &Descriptor) -> Vec<DataShape> {
    let mut shapes: Vec<DataShape> = Vec::new();
    for l in &d.layers {
        if let Some(name) = l
            .dataset
            .clone()
            .filter(|n| !shapes.iter().any(|s| &s.name == n))
        {
            let dims = match &l.size {
                Size::Fixed(d) if d.iter().product::<u32>() <= 4096 => d.clone(),
                _ => vec![5],
            };
            shapes.push(DataShape {
                name,
                dims,
                examples: 2,
                sparse: l.sparse,
            });
        }
    }
    shapes
}

#[test]
fn descriptors_parse_or_fail_cleanly() {
    runner()
        .run(&inputs(DESCRIPTOR), |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(d) = Descriptor::from_str(&text, "fuzz.json") {
                if let Ok(graph) = Graph::compile(&d, &shapes(&d)) {
                    let _ = Network::build(
                        moira::backend::Cpu::new(1).unwrap(),
                        graph,
                        4,
                        Optimizer::Adam,
                        1,
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

const TEXT: &[u8] = b"u1\t10,1.5:20:30,2\nu2\t20\nu3\t10:40,0.5:50\n\nu1\t60\n";
const CSV: &[u8] =
    b"userId,movieId,rating,timestamp\n1,10,4.5,100\n1,20,3,101\n2,10,5,102\n3,30,1.0,103\n";
const LISTS: &[u8] = b"u1 10 20 30\nu2 20\nu3\t10 40 50\n";

/// Converts `bytes` in `format` into a fresh directory: an error or a dataset.
fn convert_bytes(bytes: &[u8], format: InputFormat, value_type: ValueType) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, bytes).unwrap();
    let options = ConvertOptions {
        dataset_name: "x".into(),
        input,
        output: dir.path().join("x.nc"),
        features_index: dir.path().join("features"),
        samples_index: dir.path().join("samples"),
        feature_mode: FeatureIndexMode::Create,
        value_type,
        format,
        exact_width: false,
        l2_normalize: value_type == ValueType::Analog,
    };
    if convert(&options, &mut |_| {}).is_ok() {
        let sets = netcdf::read(&dir.path().join("x.nc")).expect("a converted file reads back");
        assert_eq!(sets.len(), 1);
    }
}

#[test]
fn text_csv_and_lists_inputs_convert_or_fail_cleanly() {
    let csv = || {
        InputFormat::Csv(CsvOptions {
            value_column: ValueColumn::Rating,
            min_rating: Some(2.0),
        })
    };
    for (base, format) in [
        (TEXT, InputFormat::Text),
        (CSV, csv()),
        (LISTS, InputFormat::Lists),
    ] {
        runner()
            .run(&(inputs(base), any::<bool>()), |(bytes, analog)| {
                let value_type = if analog {
                    ValueType::Analog
                } else {
                    ValueType::Indicator
                };
                convert_bytes(&bytes, format.clone(), value_type);
                Ok(())
            })
            .unwrap();
    }
}

/// A valid Parquet log (int users, string items, float values; dictionary pages, two row
/// groups), as bytes.
fn parquet_bytes() -> &'static [u8] {
    use std::sync::Arc;
    let users = arrow_array::Int64Array::from(vec![1, 1, 2, 3, 3, 3]);
    let items = arrow_array::StringArray::from(vec!["a", "b", "a", "c", "d", "a"]);
    let values = arrow_array::Float32Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let batch = arrow_array::RecordBatch::try_from_iter([
        ("u", Arc::new(users) as arrow_array::ArrayRef),
        ("i", Arc::new(items)),
        ("v", Arc::new(values)),
    ])
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(3))
        .build();
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Box::leak(out.into_boxed_slice())
}

#[test]
fn parquet_input_converts_or_fails_cleanly() {
    let format = InputFormat::Parquet(ParquetOptions {
        user_column: "u".into(),
        item_column: "i".into(),
        value_column: Some("v".into()),
        min_rating: None,
    });
    let base = parquet_bytes();
    convert_bytes(base, format.clone(), ValueType::Analog);
    runner()
        .run(&(inputs(base), any::<bool>()), |(bytes, analog)| {
            let value_type = if analog {
                ValueType::Analog
            } else {
                ValueType::Indicator
            };
            convert_bytes(&bytes, format.clone(), value_type);
            Ok(())
        })
        .unwrap();
}

/// A valid dataset file and model file, as bytes.
fn valid_files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let rows = Csr::try_new(
        6,
        vec![0, 2, 3, 5],
        vec![0, 4, 2, 1, 5],
        Some(vec![1.0, 0.5, 2.0, 1.5, 3.0]),
    )
    .unwrap();
    let data = Dataset::sparse("input", vec![6], rows.clone()).unwrap();
    let out = Dataset::sparse("output", vec![6], rows).unwrap();
    netcdf::write(&dir.join("d.nc"), &[&data]).unwrap();
    let d = Descriptor::from_str(&String::from_utf8_lossy(DESCRIPTOR), "f.json").unwrap();
    let graph = Graph::compile(&d, &moira::train::shapes(&[data, out])).unwrap();
    let net = Network::build(
        moira::backend::Cpu::new(1).unwrap(),
        graph,
        4,
        Optimizer::Sgd,
        3,
    )
    .unwrap();
    save_model(
        &dir.join("m.nc"),
        &net.to_model(Default::default()).unwrap(),
    )
    .unwrap();
    (
        std::fs::read(dir.join("d.nc")).unwrap(),
        std::fs::read(dir.join("m.nc")).unwrap(),
    )
}

#[test]
fn damaged_netcdf_datasets_and_models_read_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, model) = valid_files(dir.path());
    let dataset: &'static [u8] = Box::leak(dataset.into_boxed_slice());
    let model: &'static [u8] = Box::leak(model.into_boxed_slice());
    let path = dir.path().join("fuzzed.nc");
    runner()
        .run(&(inputs(dataset), inputs(model)), |(d, m)| {
            std::fs::write(&path, &d).unwrap();
            let _ = netcdf::read(&path);
            std::fs::write(&path, &m).unwrap();
            let _ = load_model(&path);
            Ok(())
        })
        .unwrap();
}
