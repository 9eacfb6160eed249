//! The ML-1M quality gate (EVALUATION.md's protocol, with honest model selection), end to end
//! through the library:
//! 1. train the shipped `networks/ml1m-dlae.json` (a denoising linear autoencoder) with the
//!    weight decay `LAMBDA` the quality benchmark selected on valid, on train.txt (input
//!    L2-normalised, the same rows as targets), validate on valid.txt every epoch, keep the
//!    best NDCG@20 epoch and stop after `PATIENCE` epochs without improvement ([`Selection`]);
//! 2. train again on train + valid for the selected number of epochs, rank every item with
//!    the user's own items excluded, and measure test.txt once: require the gate below, the
//!    issue's target past EASE (Recall@20 0.3865, NDCG@20 0.3873 on this split).
//!
//! Training is bit-reproducible on one machine and build, so this measures one fixed number
//! (Recall@20 0.3947, NDCG@20 0.3943, BENCHMARKS.md); the margin below it absorbs other CPUs'
//! kernels (this network has only sparse products and element-wise steps, all in fixed point
//! or per element, so it should not move at all).

use std::path::{Path, PathBuf};

use moira::backend::Cpu;
use moira::dataset::convert::{convert, ConvertOptions, FeatureIndexMode, InputFormat, ValueType};
use moira::dataset::io::netcdf::read;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::train::{
    shapes, train_with, DataBinding, EpochReport, Quiet, Selection, TrainConfig, TrainState,
    Validation,
};

/// Test Recall@20 and NDCG@20 required.
const GATE: (f64, f64) = (0.39, 0.39);

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-1m-lightgcnpp"
);
const NET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/networks/ml1m-dlae.json");

/// The L2 weight decay the quality benchmark selected on valid for `NET` (`--lambda`).
const LAMBDA: f32 = 0.001;

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

/// The most epochs of the selection run, and its patience.
const EPOCHS: u32 = 60;
const PATIENCE: u32 = 6;

fn config(epochs: u32, shuffle: bool) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: 500,
        optimizer: Optimizer::Adam,
        hyper: Hyper {
            alpha: 0.003,
            lambda: LAMBDA,
            lambda1: 0.0,
            mu: 0.9,
            mu1: 0.999,
        },
        schedule: LrSchedule::Constant,
        seed: 12134,
        shuffle,
        first_epoch: 0,
        brake: true,
    }
}

/// Trains the shipped network on `input`/`output`, validating on `held_out` (with `select`,
/// keeping the best epoch); returns the reports and the selected epoch.
fn fit(
    input: &Path,
    output: &Path,
    held_out: &Path,
    epochs: u32,
    select: Option<Selection>,
) -> (Vec<EpochReport>, Option<u32>) {
    let mut datasets = read(input).unwrap();
    datasets.extend(read(output).unwrap());
    let held_out = read(held_out)
        .unwrap()
        .remove(0)
        .sparse_data()
        .unwrap()
        .clone();
    let descriptor = Descriptor::from_file(NET).unwrap();
    let graph = Graph::compile(&descriptor, &shapes(&datasets)).unwrap();
    let binding = DataBinding::new(&graph, &datasets, false).unwrap();
    let config = config(epochs, descriptor.shuffle_indices);
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
        every: if select.is_some() { 1 } else { 0 },
        batch: 500,
        select,
    };
    let mut state = TrainState::default();
    let reports = train_with(
        &mut network,
        &binding,
        &config,
        Some(&validation),
        &mut Quiet,
        &mut state,
        None,
    )
    .unwrap();
    (reports, state.best.map(|b| b.epoch))
}

#[test]
fn ml1m_recommender_selected_on_valid_reaches_the_gate_on_test() {
    let data = Path::new(DATA);
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    // 1. Select the epoch count on valid.
    std::fs::create_dir(d("tune")).unwrap();
    let tune = d("tune");
    let input = convert_lists(&tune, "input", data.join("train.txt"), true, true);
    let output = convert_lists(&tune, "output", data.join("train.txt"), false, false);
    let valid = convert_lists(&tune, "valid", data.join("valid.txt"), false, false);
    let selection = Selection {
        by: "ndcg@20".parse().unwrap(),
        patience: Some(PATIENCE),
        best_model: tune.join("best.nc"),
    };
    let (reports, best) = fit(&input, &output, &valid, EPOCHS, Some(selection));
    let best = best.expect("an epoch was selected");
    assert!(tune.join("best.nc").exists());
    eprintln!(
        "selected epoch {best} of {} (validation NDCG@20 {:.4})",
        reports.len(),
        reports[best as usize]
            .validation
            .as_ref()
            .unwrap()
            .mean_at(20)
            .unwrap()
            .ndcg
    );

    // 2. Train on train + valid for that many epochs; measure test once.
    let history = d("history");
    std::fs::create_dir(&history).unwrap();
    for (from, to) in [("train.txt", "1-train.txt"), ("valid.txt", "2-valid.txt")] {
        std::fs::copy(data.join(from), history.join(to))
            .expect("../shared/data/ml-1m-lightgcnpp must be present");
    }
    let input = convert_lists(dir.path(), "input", history.clone(), true, true);
    let output = convert_lists(dir.path(), "output", history, false, false);
    let test = convert_lists(dir.path(), "test", data.join("test.txt"), false, false);
    let (reports, _) = fit(&input, &output, &test, best + 1, None);
    let metrics = reports.last().unwrap().validation.as_ref().unwrap();
    let at20 = metrics.mean_at(20).unwrap();
    eprintln!(
        "test: Recall@20 {:.4}, NDCG@20 {:.4}",
        at20.recall, at20.ndcg
    );
    assert_eq!(metrics.users(), 6_038, "users with held-out items");
    assert!(
        at20.recall >= GATE.0 && at20.ndcg >= GATE.1,
        "Recall@20 {:.4}, NDCG@20 {:.4}",
        at20.recall,
        at20.ndcg
    );
}
