//! Plain SGD fused into the backward pass (`Network::train_step`, `Network::backward_update`
//! and the trainer): the same weights as the separate `forward`, `loss`, `backward`, `update`
//! up to f32 rounding; bit-reproducible over thread counts, runs and a resume; and the cases
//! it leaves alone (L1, other optimizers, shared weights) exactly as before.

use moira::backend::Cpu;
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::Hyper;
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{
    self, resume, shapes, CheckpointPlan, DataBinding, Quiet, TrainConfig, TrainState,
};

const USERS: usize = 96;
const ITEMS: u32 = 48;
const BATCH: usize = 16;
const SEED: u64 = 7;

/// Sparse input, two hidden layers with dropout, sparse targets.
const NET: &str = r#"{
  "Version": 0.9, "Name": "fused", "ErrorFunction": "CrossEntropy",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input" },
    { "Name": "H1", "Kind": "Hidden", "N": 32, "Activation": "Sigmoid", "pDropout": 0.2 },
    { "Name": "H2", "Kind": "Hidden", "N": 16, "Activation": "Tanh", "pDropout": 0.1 },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "WeightNorm": 0.3 }
  ]
}"#;

/// A tied (transposed, shared) decoder weight with batch normalisation and dropout.
const TIED: &str = r#"{
  "Version": 0.9, "Name": "tied", "ErrorFunction": "CrossEntropy",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input" },
    { "Name": "H1", "Kind": "Hidden", "N": 24, "Activation": "Sigmoid", "pDropout": 0.1,
      "BatchNormalization": true },
    { "Name": "H2", "Kind": "Hidden", "N": 12, "Activation": "Tanh" },
    { "Name": "H3", "Kind": "Hidden", "N": 24, "Activation": "Sigmoid",
      "SharedWeights": { "SourceInputLayer": "H1", "SourceOutputLayer": "H2", "InputLayer": "H2",
                         "Transposed": true } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid" }
  ]
}"#;

/// `USERS` rows of 3..10 distinct items, clustered by `user % 4`.
fn rows() -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for u in 0..USERS as u64 {
        let n = 3 + u64_at(3, 0, u) % 8;
        let base = (u % 4) as u32 * (ITEMS / 4);
        let mut row: Vec<u32> = (0..n)
            .map(|k| base + (u64_at(3, 1, u * 64 + k) % (ITEMS as u64 / 4)) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, None).unwrap()
}

/// Sparse targets; a sparse input, or a dense one with the same rows (plus a small offset).
fn datasets(dense_input: bool) -> Vec<Dataset> {
    let input = if dense_input {
        let csr = rows();
        let mut x = vec![0.05f32; USERS * ITEMS as usize];
        for r in 0..USERS {
            for &c in csr.row(r).0 {
                x[r * ITEMS as usize + c as usize] = 1.0;
            }
        }
        Dataset::dense("input", vec![ITEMS], x).unwrap()
    } else {
        Dataset::sparse("input", vec![ITEMS], rows()).unwrap()
    };
    vec![
        input,
        Dataset::sparse("output", vec![ITEMS], rows()).unwrap(),
    ]
}

fn network(json: &str, data: &[Dataset], threads: usize, optimizer: Optimizer) -> Network<Cpu> {
    let d = Descriptor::from_str(json, "net.json").unwrap();
    let graph = Graph::compile(&d, &shapes(data)).unwrap();
    Network::build(Cpu::new(threads).unwrap(), graph, BATCH, optimizer, 11).unwrap()
}

fn hyper(lambda1: f32) -> Hyper {
    Hyper {
        alpha: 0.5,
        lambda: 1e-3,
        lambda1,
        mu: 0.9,
        mu1: 0.999,
    }
}

/// `epochs` passes over the data in order, one step per minibatch: `train_step` when
/// `fused`, else the separate `forward`, `loss`, `backward`, `update`. Returns the losses.
fn train(
    net: &mut Network<Cpu>,
    data: &[Dataset],
    h: &Hyper,
    epochs: usize,
    fused: bool,
) -> Vec<u64> {
    let graph = net.graph().clone();
    let binding = DataBinding::new(&graph, data, false).unwrap();
    let order: Vec<u32> = (0..USERS as u32).collect();
    let mut losses = Vec::new();
    for _ in 0..epochs {
        for chunk in order.chunks(BATCH) {
            net.load_batch(binding.batch(&graph, chunk, None).unwrap())
                .unwrap();
            let loss = if fused {
                net.train_step(h, SEED).unwrap().loss
            } else {
                net.forward(true, SEED).unwrap();
                let loss = net.loss().unwrap();
                net.backward(SEED).unwrap();
                net.update(h).unwrap();
                loss
            };
            losses.push(loss.to_f64().to_bits());
        }
    }
    losses
}

/// Every weight, bias and batch-normalisation value, one array each.
fn arrays(net: &Network<Cpu>) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for (w, b) in net.download_params().unwrap() {
        out.push(w.data().to_vec());
        out.push(b);
    }
    for v in net.download_batch_norm().unwrap() {
        out.extend([v.scale, v.bias, v.running_mean, v.running_var]);
    }
    out
}

fn bits(net: &Network<Cpu>) -> Vec<Vec<u32>> {
    arrays(net)
        .iter()
        .map(|a| a.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// `‖a − b‖ / ‖b‖`.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    rel_err_floor(a, b, 1e-30)
}

/// `‖a − b‖ / max(‖b‖, floor)`.
fn rel_err_floor(a: &[f32], b: &[f32], floor: f64) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (f64::from(x) - f64::from(y)).powi(2);
        den += f64::from(y).powi(2);
    }
    num.sqrt() / den.sqrt().max(floor).max(1e-30)
}

/// Every array of `a` within `tol` of `b`'s, relative to its norm or, for an array that stays
/// near zero, to an RMS of 1e-3 (a bias before batch normalisation: its gradient is rounding
/// noise of ~1e-10, which the two paths round differently).
fn assert_close(a: &Network<Cpu>, b: &Network<Cpu>, tol: f64, what: &str) {
    let (a, b) = (arrays(a), arrays(b));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let e = rel_err_floor(x, y, 1e-3 * (y.len() as f64).sqrt());
        assert!(e < tol, "{what}: array {i}: relative error {e:e}");
    }
}

#[test]
fn fused_sgd_matches_the_separate_passes_up_to_rounding() {
    for (what, json, dense_input) in [
        ("sparse input", NET, false),
        ("dense input", NET, true),
        ("tied", TIED, false),
    ] {
        let data = datasets(dense_input);
        let h = hyper(0.0);
        let mut fused = network(json, &data, 2, Optimizer::Sgd);
        let start = arrays(&fused);
        assert!(fused.fuses_sgd(&h));
        let mut apart = network(json, &data, 2, Optimizer::Sgd);
        train(&mut fused, &data, &h, 3, true);
        train(&mut apart, &data, &h, 3, false);
        assert_eq!(fused.step_count(), apart.step_count());
        assert_close(&fused, &apart, 1e-5, what);
        // The comparison means something: training moved the weights far more than that.
        let moved = rel_err(&arrays(&fused)[0], &start[0]);
        assert!(moved > 1e-2, "{what}: the first weight moved by {moved:e}");
    }
}

#[test]
fn fused_sgd_is_bit_identical_over_thread_counts_and_runs() {
    let data = datasets(false);
    let h = hyper(0.0);
    let run = |threads: usize| {
        let mut net = network(NET, &data, threads, Optimizer::Sgd);
        let losses = train(&mut net, &data, &h, 2, true);
        (losses, bits(&net))
    };
    let one = run(1);
    assert!(run(2) == one, "2 threads differ from 1");
    assert!(run(3) == one, "3 threads differ from 1");
    assert!(run(1) == one, "two runs on 1 thread differ");
}

#[test]
fn l1_and_other_optimizers_are_not_fused_and_train_exactly_as_before() {
    let data = datasets(false);
    for (optimizer, lambda1) in [
        (Optimizer::Sgd, 1e-4),
        (Optimizer::Momentum, 0.0),
        (Optimizer::Adam, 0.0),
    ] {
        let h = hyper(lambda1);
        let mut step = network(NET, &data, 2, optimizer);
        assert!(!step.fuses_sgd(&h), "{optimizer:?}, λ1 {lambda1}");
        let mut apart = network(NET, &data, 2, optimizer);
        let a = train(&mut step, &data, &h, 2, true);
        let b = train(&mut apart, &data, &h, 2, false);
        assert_eq!(a, b, "{optimizer:?}, λ1 {lambda1}: losses");
        assert!(bits(&step) == bits(&apart), "{optimizer:?}, λ1 {lambda1}");
    }
    // Fusing switched off: `train_step` is the separate passes, bit for bit.
    let h = hyper(0.0);
    let mut off = network(NET, &data, 2, Optimizer::Sgd);
    off.set_fused_sgd(false);
    assert!(!off.fuses_sgd(&h));
    let mut apart = network(NET, &data, 2, Optimizer::Sgd);
    train(&mut off, &data, &h, 2, true);
    train(&mut apart, &data, &h, 2, false);
    assert!(bits(&off) == bits(&apart), "fusing off");
}

#[test]
fn a_shared_weight_keeps_the_separate_update() {
    // After one step from the same start, the shared weight (and batch normalisation) went
    // through the same gradient and optimizer pass: bit-identical; the fused ones are not
    // required to be.
    let data = datasets(false);
    let h = hyper(0.0);
    let mut fused = network(TIED, &data, 2, Optimizer::Sgd);
    let mut apart = network(TIED, &data, 2, Optimizer::Sgd);
    let graph = fused.graph().clone();
    let binding = DataBinding::new(&graph, &data, false).unwrap();
    let order: Vec<u32> = (0..BATCH as u32).collect();
    for net in [&mut fused, &mut apart] {
        net.load_batch(binding.batch(&graph, &order, None).unwrap())
            .unwrap();
    }
    fused.train_step(&h, SEED).unwrap();
    apart.forward(true, SEED).unwrap();
    apart.backward(SEED).unwrap();
    apart.update(&h).unwrap();
    let shared = graph
        .edges()
        .iter()
        .position(|e| graph.weight(e.weight).sharing_count > 1 && !e.is_shared(&graph))
        .expect("TIED shares a weight");
    let (f, a) = (
        fused.download_params().unwrap(),
        apart.download_params().unwrap(),
    );
    assert!(f[shared].0 == a[shared].0, "the shared weight");
    assert_eq!(
        fused.download_batch_norm().unwrap(),
        apart.download_batch_norm().unwrap()
    );
    assert_close(&fused, &apart, 1e-6, "one step");
}

#[test]
fn weight_norm_applies_after_a_fused_update() {
    let data = datasets(false);
    let h = Hyper {
        alpha: 5.0,
        ..hyper(0.0)
    };
    let mut fused = network(NET, &data, 2, Optimizer::Sgd);
    let mut apart = network(NET, &data, 2, Optimizer::Sgd);
    assert!(fused.fuses_sgd(&h));
    train(&mut fused, &data, &h, 1, true);
    train(&mut apart, &data, &h, 1, false);
    // Edge 2 is H2 → Output, with WeightNorm 0.3.
    let w = &fused.download_params().unwrap()[2].0;
    let norms: Vec<f64> = (0..w.cols())
        .map(|j| {
            (0..w.rows())
                .map(|i| f64::from(w.get(i, j)).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    assert!(norms.iter().all(|&n| n <= 0.3 * (1.0 + 1e-5)), "{norms:?}");
    assert!(
        norms.iter().any(|&n| (n - 0.3).abs() < 1e-5),
        "some column is capped"
    );
    assert_close(&fused, &apart, 1e-5, "WeightNorm");
}

fn config(epochs: u32) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: BATCH,
        optimizer: Optimizer::Sgd,
        hyper: hyper(0.0),
        seed: SEED,
        ..TrainConfig::default()
    }
}

#[test]
fn the_trainer_fuses_and_resumes_bit_for_bit() {
    let data = datasets(false);
    let dir = tempfile::tempdir().unwrap();
    let mut full = network(TIED, &data, 1, Optimizer::Sgd);
    let binding = DataBinding::new(full.graph(), &data, false).unwrap();
    let plan = CheckpointPlan::beside(&dir.path().join("run.nc"), 2);
    let mut state = TrainState::default();
    let cfg = config(4);
    train::train_with(
        &mut full,
        &binding,
        &cfg,
        None,
        &mut Quiet,
        &mut state,
        Some(&plan),
    )
    .unwrap();

    let mut apart = network(TIED, &data, 2, Optimizer::Sgd);
    apart.set_fused_sgd(false);
    train::train(&mut apart, &binding, &cfg, None, &mut Quiet).unwrap();
    assert_close(&full, &apart, 1e-5, "trainer");

    let mut resumed = network(TIED, &data, 2, Optimizer::Sgd);
    let mut cfg = config(4);
    let r = resume(&dir.path().join("run.epoch2.nc"), &mut resumed, &cfg).unwrap();
    cfg.first_epoch = r.epochs_done;
    cfg.epochs = 2;
    let mut state = r.state;
    train::train_with(
        &mut resumed,
        &binding,
        &cfg,
        None,
        &mut Quiet,
        &mut state,
        None,
    )
    .unwrap();
    assert!(bits(&resumed) == bits(&full), "the resumed run differs");
    assert_eq!(resumed.step_count(), full.step_count());
}
