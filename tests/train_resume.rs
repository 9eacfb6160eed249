//! Training checkpoints at the library level: `train_with` + `resume` continue bit for bit
//! (on another thread count too), the divergence guard sees NaN outputs that the fixed-point
//! loss hides, and damaged or unsuitable model files are refused naming the file.

use std::path::{Path, PathBuf};

use moira::backend::Cpu;
use moira::checkpoint::{load_model, save_model, Extras, Model};
use moira::dataset::Dataset;
use moira::dense::Matrix;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{
    self, resume, shapes, CheckpointPlan, DataBinding, Quiet, TrainConfig, TrainState,
};
use moira::Error;

const USERS: usize = 240;
const ITEMS: u32 = 200;
const BATCH: usize = 16;

/// An I→24→I sigmoid autoencoder with dropout and denoising, and a variational bottleneck
/// whose `β` is still annealing when the run is interrupted (its noise and `β` follow the
/// update count).
const NET: &str = r#"{
  "Version": 0.9, "Name": "resume", "Kind": "FeedForward", "Denoising": { "p": 0.2 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 24, "Activation": "Sigmoid", "pDropout": 0.2 },
    { "Name": "LogVar", "Kind": "Hidden", "N": 8, "Activation": "Linear", "Source": "Hidden" },
    { "Name": "Latent", "Kind": "Hidden", "N": 8, "Activation": "Linear", "Source": "Hidden",
      "Variational": { "LogVariance": "LogVar", "Beta": 0.5, "AnnealSteps": 100 } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true, "Source": "Latent" }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// `USERS` rows of 4..16 distinct items, clustered by `user % 4`.
fn rows() -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for u in 0..USERS as u64 {
        let n = 4 + u64_at(9, 0, u) % 12;
        let base = (u % 4) as u32 * (ITEMS / 4);
        let mut row: Vec<u32> = (0..n)
            .map(|k| base + (u64_at(9, 1, u * 64 + k) % (ITEMS as u64 / 4)) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, None).unwrap()
}

fn datasets() -> Vec<Dataset> {
    vec![
        Dataset::sparse("input", vec![ITEMS], rows()).unwrap(),
        Dataset::sparse("output", vec![ITEMS], rows()).unwrap(),
    ]
}

fn graph(datasets: &[Dataset]) -> Graph {
    let descriptor = Descriptor::from_str(NET, "resume.json").unwrap();
    Graph::compile(&descriptor, &shapes(datasets)).unwrap()
}

/// Adam with a step schedule: every piece of state a resume must restore matters.
fn config(epochs: u32) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: BATCH,
        optimizer: Optimizer::Adam,
        hyper: Hyper {
            alpha: 0.01,
            mu: 0.9,
            mu1: 0.999,
            ..Hyper::default()
        },
        schedule: LrSchedule::Step {
            interval: 2,
            multiplier: 0.5,
        },
        seed: 77,
        ..TrainConfig::default()
    }
}

fn network(datasets: &[Dataset], threads: usize, optimizer: Optimizer) -> Network<Cpu> {
    Network::build(
        Cpu::new(threads).unwrap(),
        graph(datasets),
        BATCH,
        optimizer,
        77,
    )
    .unwrap()
}

/// Every weight and bias as bits.
fn param_bits(network: &Network<Cpu>) -> Vec<Vec<u32>> {
    network
        .download_params()
        .unwrap()
        .into_iter()
        .flat_map(|(w, b)| [w.data().to_vec(), b])
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Trains 4 epochs with checkpoints every 2 into `dir`; returns the network.
fn uninterrupted(dir: &Path, data: &[Dataset]) -> Network<Cpu> {
    let mut net = network(data, 1, Optimizer::Adam);
    let binding = DataBinding::new(net.graph(), data, false).unwrap();
    let plan = CheckpointPlan::beside(&dir.join("run.nc"), 2);
    let mut state = TrainState::default();
    let config = config(4);
    assert_eq!(
        plan.planned(&config),
        [dir.join("run.epoch2.nc"), dir.join("run.epoch4.nc")]
    );
    train::train_with(
        &mut net,
        &binding,
        &config,
        None,
        &mut Quiet,
        &mut state,
        Some(&plan),
    )
    .unwrap();
    net
}

#[test]
fn resuming_from_a_checkpoint_continues_bit_for_bit_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = datasets();
    let full = uninterrupted(dir.path(), &data);
    let checkpoint = dir.path().join("run.epoch2.nc");
    let saved = load_model(&checkpoint).unwrap();
    assert_eq!(saved.extras.scalar("epoch"), Some(2));
    assert_eq!(saved.extras.scalar("batch_position"), Some(0));
    let batches = USERS.div_ceil(BATCH) as u64;
    assert_eq!(saved.extras.scalar("update_count"), Some(2 * batches));
    assert_eq!(saved.extras.string("optimizer"), Some("Adam"));
    // Adam: two slots for each of four weights and biases.
    assert_eq!(saved.extras.tensors.len(), 16);

    for threads in [1, 2] {
        let mut net = network(&data, threads, Optimizer::Adam);
        let mut config = config(4);
        let resumed = resume(&checkpoint, &mut net, &config).unwrap();
        assert_eq!(resumed.epochs_done, 2);
        assert!(resumed.differences.is_empty(), "{:?}", resumed.differences);
        assert_eq!(net.step_count(), 2 * batches);
        config.first_epoch = resumed.epochs_done;
        config.epochs = 2;
        let mut state = resumed.state;
        let binding = DataBinding::new(net.graph(), &data, false).unwrap();
        let plan = CheckpointPlan::beside(&dir.path().join(format!("t{threads}.nc")), 2);
        train::train_with(
            &mut net,
            &binding,
            &config,
            None,
            &mut Quiet,
            &mut state,
            Some(&plan),
        )
        .unwrap();
        assert!(
            param_bits(&net) == param_bits(&full),
            "{threads} threads: the resumed run differs"
        );
        assert_eq!(
            net.download_optimizer_state().unwrap(),
            full.download_optimizer_state().unwrap()
        );
        // The resumed run's checkpoint is the uninterrupted run's, extras included.
        let a = load_model(&dir.path().join("run.epoch4.nc")).unwrap();
        let b = load_model(&plan.path(4)).unwrap();
        assert!(!plan.path(2).exists(), "epoch 2 was not run again");
        assert_eq!(a.extras, b.extras);
        assert_eq!(a.weights, b.weights);
    }

    // Changed settings are reported, not refused.
    let mut net = network(&data, 1, Optimizer::Adam);
    let mut other = config(4);
    other.hyper.alpha = 0.02;
    other.seed = 5;
    let resumed = resume(&checkpoint, &mut net, &other).unwrap();
    assert_eq!(
        resumed.differences,
        [
            "seed: 77 in the checkpoint, 5 now",
            "alpha: 0.01 in the checkpoint, 0.02 now"
        ]
    );
}

/// The `(item, message)` of an `Error::NetCdf` about `path`.
fn netcdf_error<T: std::fmt::Debug>(result: moira::Result<T>, path: &Path) -> (String, String) {
    match result {
        Err(Error::NetCdf {
            file,
            item,
            message,
        }) => {
            assert_eq!(file, path);
            (item.unwrap_or_default(), message)
        }
        other => panic!(
            "expected Error::NetCdf about {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn resume_refuses_files_without_state_another_optimizer_or_other_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let data = datasets();
    let full = uninterrupted(dir.path(), &data);
    let checkpoint = dir.path().join("run.epoch2.nc");

    // A final network (weights only).
    let plain = dir.path().join("plain.nc");
    save_model(&plain, &full.to_model(Extras::default()).unwrap()).unwrap();
    let mut net = network(&data, 1, Optimizer::Adam);
    let (item, message) = netcdf_error(resume(&plain, &mut net, &config(4)), &plain);
    assert_eq!(item, "checkpoint_format");
    assert!(message.contains("no training state"), "{message}");

    // Another optimizer.
    let mut net = network(&data, 1, Optimizer::Momentum);
    let (item, message) = netcdf_error(resume(&checkpoint, &mut net, &config(4)), &checkpoint);
    assert_eq!(item, "optimizer");
    assert!(
        message.contains("`Adam`") && message.contains("`Momentum`"),
        "{message}"
    );

    // Data of another width.
    let wide = vec![
        Dataset::sparse("input", vec![ITEMS + 8], widen(rows())).unwrap(),
        Dataset::sparse("output", vec![ITEMS + 8], widen(rows())).unwrap(),
    ];
    let mut net = network(&wide, 1, Optimizer::Adam);
    let (_, message) = netcdf_error(resume(&checkpoint, &mut net, &config(4)), &checkpoint);
    assert!(
        message.contains("200 x 24 in the model but 208 x 24 in the network"),
        "{message}"
    );

    // A missing optimizer tensor.
    let mut model = load_model(&checkpoint).unwrap();
    model.extras.tensors.remove(3);
    let holed = dir.path().join("holed.nc");
    save_model(&holed, &model).unwrap();
    let mut net = network(&data, 1, Optimizer::Adam);
    let (item, message) = netcdf_error(resume(&holed, &mut net, &config(4)), &holed);
    assert_eq!(item, "optimizer_s1:Input->Hidden:bias");
    assert!(message.contains("missing"), "{message}");
}

fn widen(csr: Csr) -> Csr {
    let n = csr.n_rows();
    let offsets = csr.row_offsets().to_vec();
    let cols = (0..n).flat_map(|r| csr.row(r).0.to_vec()).collect();
    Csr::try_new(ITEMS + 8, offsets, cols, None).unwrap()
}

#[test]
fn nan_weights_stop_training_naming_epoch_and_batch() {
    let data = datasets();
    let mut net = network(&data, 1, Optimizer::Sgd);
    let mut params = net.download_params().unwrap();
    // One NaN in the hidden → output matrix poisons every output of every example.
    let (w, b) = &params[1];
    let mut values = w.data().to_vec();
    values[5] = f32::NAN;
    params[1] = (
        Matrix::from_vec(w.rows(), w.cols(), values).unwrap(),
        b.clone(),
    );
    net.upload_params(&params).unwrap();
    let binding = DataBinding::new(net.graph(), &data, false).unwrap();
    let err = train::train(&mut net, &binding, &config(2), None, &mut Quiet).unwrap_err();
    match &err {
        Error::Diverged {
            epoch,
            batch,
            message,
        } => {
            assert_eq!((*epoch, *batch), (0, Some(0)), "{err}");
            assert!(message.contains("`Output`"), "{message}");
            assert!(message.contains("no checkpoint was written"), "{message}");
        }
        other => panic!("expected Error::Diverged, got {other:?}"),
    }
    assert!(err.to_string().contains("epoch 0, batch 0"), "{err}");
    assert_eq!(
        net.step_count(),
        0,
        "the diverged minibatch was not applied"
    );
}

/// The original bits of the data a checksum covers.
fn data_bits(m: &Model) -> (Vec<Vec<u32>>, Extras) {
    let bits = m
        .weights
        .iter()
        .flat_map(|w| [&w.data, &w.bias])
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect();
    (bits, m.extras.clone())
}

#[test]
fn damaged_files_are_refused_naming_the_file_never_loaded_as_other_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = datasets();
    uninterrupted(dir.path(), &data);
    let good = dir.path().join("run.epoch2.nc");
    let original = data_bits(&load_model(&good).unwrap());
    let bytes = std::fs::read(&good).unwrap();
    let bad: PathBuf = dir.path().join("bad.nc");

    // Empty, truncated, header overwritten: not NetCDF.
    for damaged in [
        Vec::new(),
        bytes[..bytes.len() / 2].to_vec(),
        [vec![0xAB; 64], bytes[64..].to_vec()].concat(),
    ] {
        std::fs::write(&bad, &damaged).unwrap();
        let (_, message) = netcdf_error(load_model(&bad), &bad);
        assert!(message.contains("not a readable NetCDF file"), "{message}");
    }

    // 256 garbage bytes anywhere: an error naming the file, or (where they hit slack) the
    // same data; inside the data the checksum catches them.
    let mut by_checksum = 0;
    let step = bytes.len() / 97;
    for at in (512..bytes.len() - 256).step_by(step) {
        let mut damaged = bytes.clone();
        damaged[at..at + 256].fill(0xAB);
        std::fs::write(&bad, &damaged).unwrap();
        match load_model(&bad) {
            Ok(m) => assert!(data_bits(&m) == original, "garbage at {at} loaded as data"),
            Err(e) => {
                let (item, _) = netcdf_error::<Model>(Err(e), &bad);
                by_checksum += usize::from(item == "moira_checksum");
            }
        }
    }
    assert!(by_checksum > 0, "no damage was caught by the checksum");
}

/// An observer's error after a minibatch stops training there (the update of that minibatch
/// stays applied): what an interrupt uses.
#[test]
fn an_observer_error_stops_training_after_that_minibatch() {
    struct StopAfter(usize);
    impl train::Observer for StopAfter {
        fn on_batch(&mut self, _: u32, _: usize, _: usize, _: f64) -> moira::Result<()> {
            self.0 -= 1;
            if self.0 == 0 {
                return Err(Error::invalid_argument("training", "interrupted"));
            }
            Ok(())
        }
    }
    let data = datasets();
    let mut net = network(&data, 1, Optimizer::Sgd);
    let binding = DataBinding::new(net.graph(), &data, false).unwrap();
    let err = train::train(&mut net, &binding, &config(2), None, &mut StopAfter(3)).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert_eq!(net.step_count(), 3);
}
