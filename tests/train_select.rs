//! Model selection at the library level, on real rows (the first users of ML-1M's training
//! lists, their validation lists held out): the best model kept is the epoch whose
//! validation metric is the maximum of the run, patience stops training, and a run resumed
//! from a checkpoint selects the same epoch and keeps bit-identical weights.

#[path = "ml1m_common/mod.rs"]
mod ml1m_common;

use std::path::Path;

use moira::backend::Cpu;
use moira::checkpoint::load_model;
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::sparse::Csr;
use moira::train::{
    self, resume, shapes, train_with, CheckpointPlan, DataBinding, EpochReport, Quiet, SelectBy,
    Selection, TrainConfig, TrainState, Validation,
};

const USERS: usize = 1200;
const BATCH: usize = 200;

/// A wide softmax autoencoder without dropout, trained hard: it overfits 1,200 users within
/// a few epochs, so the validation metric peaks and falls.
const NET: &str = r#"{
  "Version": 0.9, "Name": "select", "Kind": "AutoEncoder", "ErrorFunction": "CrossEntropy",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 256, "Activation": "Tanh" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax" }
  ]
}"#;

const VALID: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-1m-lightgcnpp/valid.txt"
);

/// The validation items of the first `USERS` users, over the training rows' columns (items
/// the training rows never name are dropped: no output unit scores them).
fn held_out(cols: u32) -> Csr {
    let text = std::fs::read_to_string(VALID).expect("../shared/data must be present");
    let mut rows = vec![Vec::new(); USERS];
    for line in text.lines() {
        let mut t = line.split_whitespace().map(|x| x.parse::<u32>().unwrap());
        let user = t.next().unwrap() as usize;
        if user < USERS {
            rows[user].extend(t.filter(|&i| i < cols));
        }
    }
    let mut offsets = vec![0u64];
    let mut all = Vec::new();
    for mut r in rows {
        r.sort_unstable();
        r.dedup();
        all.extend(r);
        offsets.push(all.len() as u64);
    }
    Csr::try_new(cols, offsets, all, None).unwrap()
}

fn datasets() -> Vec<Dataset> {
    let rows = ml1m_common::ml1m(USERS);
    let cols = rows.n_cols();
    vec![
        Dataset::sparse("input", vec![cols], rows.clone()).unwrap(),
        Dataset::sparse("output", vec![cols], rows).unwrap(),
    ]
}

fn config(epochs: u32) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: BATCH,
        optimizer: Optimizer::Adam,
        hyper: Hyper {
            alpha: 0.01,
            lambda: 0.0,
            mu: 0.9,
            mu1: 0.999,
            ..Hyper::default()
        },
        schedule: LrSchedule::Constant,
        seed: 7,
        shuffle: true,
        first_epoch: 0,
        brake: false,
    }
}

fn network(data: &[Dataset]) -> Network<Cpu> {
    let descriptor = Descriptor::from_str(NET, "select.json").unwrap();
    let graph = Graph::compile(&descriptor, &shapes(data)).unwrap();
    Network::build(Cpu::new(2).unwrap(), graph, BATCH, Optimizer::Adam, 7).unwrap()
}

fn validation(data: &[Dataset], best_model: &Path, patience: u32) -> Validation {
    let cols = data[0].stride() as u32;
    Validation {
        held_out: held_out(cols),
        ks: vec![20],
        every: 1,
        batch: BATCH,
        select: Some(Selection {
            by: "ndcg@20".parse::<SelectBy>().unwrap(),
            patience: Some(patience),
            best_model: best_model.to_path_buf(),
        }),
    }
}

fn ndcg(r: &EpochReport) -> f64 {
    r.validation.as_ref().unwrap().mean_at(20).unwrap().ndcg
}

const EPOCHS: u32 = 30;
const PATIENCE: u32 = 3;

/// An uninterrupted selecting run: its reports and state.
fn run(dir: &Path, data: &[Dataset]) -> (Vec<EpochReport>, TrainState) {
    let binding = DataBinding::new(network(data).graph(), data, false).unwrap();
    let mut net = network(data);
    let v = validation(data, &dir.join("best.nc"), PATIENCE);
    let mut state = TrainState::default();
    let reports = train_with(
        &mut net,
        &binding,
        &config(EPOCHS),
        Some(&v),
        &mut Quiet,
        &mut state,
        Some(&CheckpointPlan {
            every: 1,
            stem: dir.join("ck"),
        }),
    )
    .unwrap();
    (reports, state)
}

#[test]
fn the_best_epoch_is_kept_patience_stops_and_a_resumed_run_keeps_the_same() {
    let data = datasets();
    let dir = tempfile::tempdir().unwrap();
    let (reports, state) = run(dir.path(), &data);

    // Patience stopped the run: the last epoch is PATIENCE past the best, before EPOCHS.
    let best = state.best.expect("an epoch was selected");
    let last = reports.last().unwrap();
    assert!(
        reports.len() < EPOCHS as usize,
        "ran all {EPOCHS} epochs: no early stop"
    );
    assert_eq!(last.epoch - best.epoch, PATIENCE);
    assert!(best.epoch > 0, "the metric never improved after epoch 0");
    // The best epoch is the maximum over the log (the first one on ties), with its value.
    let max = reports.iter().map(ndcg).fold(f64::MIN, f64::max);
    let first_max = reports.iter().find(|r| ndcg(r) == max).unwrap();
    assert_eq!((best.epoch, best.value), (first_max.epoch, max));
    assert_eq!(last.best, Some(best));

    // The saved model is that epoch's: it scores exactly the logged value.
    let kept = load_model(&dir.path().join("best.nc")).unwrap();
    assert_eq!(
        kept.extras.scalar("selected_epoch"),
        Some(best.epoch as u64)
    );
    let mut fresh = network(&data);
    fresh.load_weights(&kept).unwrap();
    let binding = DataBinding::new(fresh.graph(), &data, false).unwrap();
    let mut plain = validation(&data, Path::new("unused"), PATIENCE);
    plain.select = None;
    let metrics = train::evaluate(&mut fresh, &binding, &plain).unwrap();
    assert_eq!(metrics.mean_at(20).unwrap().ndcg, best.value);
    // ... and differs from the last epoch's model.
    let checkpoint = |e: u32| dir.path().join(format!("ck.epoch{e}.nc"));
    let last_model = load_model(&checkpoint(last.epoch + 1)).unwrap();
    assert_ne!(last_model.weights[0].data, kept.weights[0].data);

    // Resume from the checkpoint taken before the best epoch, with the best model that
    // checkpoint had kept: the run trains the best epoch again, saves the same bits, and
    // stops at the same epoch.
    let other = tempfile::tempdir().unwrap();
    let best_file = other.path().join("best.nc");
    let from = checkpoint(best.epoch);
    std::fs::copy(&from, &best_file).unwrap();
    let mut net = network(&data);
    let mut config = config(EPOCHS);
    let resumed = resume(&from, &mut net, &config).unwrap();
    let before = resumed.state.best.expect("epoch 0 at least was kept");
    assert!(before.epoch < best.epoch);
    let v = validation(&data, &best_file, PATIENCE);
    let selection = v.select.as_ref().unwrap();
    train::check_best_model(selection, resumed.state.best, resumed.epochs_done, &from).unwrap();
    config.first_epoch = resumed.epochs_done;
    config.epochs = EPOCHS - resumed.epochs_done;
    let mut state = resumed.state;
    let binding = DataBinding::new(net.graph(), &data, false).unwrap();
    let again = train_with(
        &mut net,
        &binding,
        &config,
        Some(&v),
        &mut Quiet,
        &mut state,
        None,
    )
    .unwrap();
    assert_eq!(state.best, Some(best));
    assert_eq!(again.last().unwrap().epoch, last.epoch);
    let out = other.path().join("model.nc");
    train::keep_best(selection, best, &out).unwrap();
    assert_eq!(load_model(&out).unwrap(), kept);

    // A best model of another epoch than the checkpoint's is refused, naming both files.
    std::fs::copy(checkpoint(1), &best_file).unwrap();
    let after = checkpoint(best.epoch + 2);
    let err = train::check_best_model(selection, Some(best), best.epoch + 2, &after)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("best.nc") && err.contains(&format!("epoch {}", best.epoch)),
        "{err}"
    );
}
