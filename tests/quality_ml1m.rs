//! The ML-1M quality gate (EVALUATION.md's protocol), end to end through the library: convert
//! train + valid (input, L2-normalised), the same rows as targets, and test as held-out items;
//! train the shipped `networks/ml1m-multdae.json`; rank every item with the user's own items
//! excluded; require Recall@20 ≥ 0.36 and NDCG@20 ≥ 0.35 (the Mult-DAE / ALS level).
//!
//! Training is bit-reproducible on one machine and build, so this measures one fixed number;
//! the margin below the measured value (BENCHMARKS.md) absorbs other CPUs' GEMM kernels.

use std::path::{Path, PathBuf};

use moira::backend::Cpu;
use moira::dataset::convert::{convert, ConvertOptions, FeatureIndexMode, InputFormat, ValueType};
use moira::dataset::io::netcdf::read;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::train::{shapes, train, DataBinding, Quiet, TrainConfig, Validation};

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-1m-lightgcnpp"
);
const NET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/networks/ml1m-multdae.json");

fn convert_lists(dir: &Path, name: &str, input: PathBuf, create: bool, normalize: bool) -> PathBuf {
    let output = dir.join(format!("{name}.nc"));
    let options = ConvertOptions {
        dataset_name: name.into(),
        input,
        output: output.clone(),
        features_index: dir.join("features"),
        samples_index: dir.join("samples"),
        feature_mode: if create {
            FeatureIndexMode::Create
        } else {
            FeatureIndexMode::Existing
        },
        value_type: ValueType::Indicator,
        format: InputFormat::Lists,
        exact_width: false,
        l2_normalize: normalize,
    };
    convert(&options, &mut |_| {}).unwrap();
    output
}

#[test]
fn ml1m_recommender_reaches_the_mult_dae_level() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    std::fs::create_dir(&history).unwrap();
    for (from, to) in [("train.txt", "1-train.txt"), ("valid.txt", "2-valid.txt")] {
        std::fs::copy(Path::new(DATA).join(from), history.join(to))
            .expect("../shared/data/ml-1m-lightgcnpp must be present");
    }
    let input = convert_lists(dir.path(), "input", history.clone(), true, true);
    let output = convert_lists(dir.path(), "output", history, false, false);
    let test = convert_lists(
        dir.path(),
        "test",
        Path::new(DATA).join("test.txt"),
        false,
        false,
    );

    let mut datasets = read(&input).unwrap();
    datasets.extend(read(&output).unwrap());
    let held_out = read(&test)
        .unwrap()
        .remove(0)
        .sparse_data()
        .unwrap()
        .clone();
    let descriptor = Descriptor::from_file(NET).unwrap();
    let graph = Graph::compile(&descriptor, &shapes(&datasets)).unwrap();
    let binding = DataBinding::new(&graph, &datasets, false).unwrap();
    let config = TrainConfig {
        epochs: 40,
        batch: 500,
        optimizer: Optimizer::Adam,
        hyper: Hyper {
            alpha: 0.003,
            lambda: 0.0001,
            lambda1: 0.0,
            mu: 0.9,
            mu1: 0.999,
        },
        schedule: LrSchedule::Constant,
        seed: 12134,
        shuffle: descriptor.shuffle_indices,
        first_epoch: 0,
        brake: true,
    };
    let mut network = Network::build(
        Cpu::new(2).unwrap(),
        graph,
        500,
        Optimizer::Adam,
        config.seed,
    )
    .unwrap();
    let validation = Validation {
        held_out,
        ks: vec![20],
        every: 0,
        batch: 500,
        select: None,
    };
    let reports = train(
        &mut network,
        &binding,
        &config,
        Some(&validation),
        &mut Quiet,
    )
    .unwrap();
    let metrics = reports.last().unwrap().validation.as_ref().unwrap();
    let at20 = metrics.mean_at(20).unwrap();
    assert_eq!(metrics.users(), 6_038, "users with held-out items");
    assert!(
        at20.recall >= 0.36 && at20.ndcg >= 0.35,
        "Recall@20 {:.4}, NDCG@20 {:.4}",
        at20.recall,
        at20.ndcg
    );
}
