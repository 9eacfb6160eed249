//! Whole training epochs on the CUDA backend against the CPU backend (same seed, data and
//! descriptor: weights within 1e-5 relative), and two GPU runs bit for bit; with Adam, and
//! with plain SGD (fused into the backward pass); a variational bottleneck too. Prints
//! "skipped: no CUDA device" and passes where there is no device.
#![cfg(feature = "cuda")]

use moira::backend::cuda::{Cuda, CudaChoices};
use moira::backend::{Backend, Cpu};
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{self, shapes, DataBinding, Quiet, TrainConfig};

const USERS: usize = 1000;
const ITEMS: u32 = 700;
const BATCH: usize = 64;

/// Sigmoid autoencoder with dropout, denoising, two hidden layers and SMCE (DSSTNE's
/// benchmark network, small).
const SIGMOID_NET: &str = r#"{
  "Version": 0.9, "Name": "gpu-sigmoid", "Kind": "FeedForward", "Denoising": { "p": 0.1 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "N": 96, "Activation": "Sigmoid", "pDropout": 0.3 },
    { "Name": "H2", "Kind": "Hidden", "N": 48, "Activation": "Tanh" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "ScaledMarginalCrossEntropy"
}"#;

/// Multinomial (SoftMax + CrossEntropy) autoencoder, as in networks/ml1m-multdae.json.
const SOFTMAX_NET: &str = r#"{
  "Version": 0.9, "Name": "gpu-softmax", "Kind": "FeedForward", "Denoising": { "p": 0.5 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H", "Kind": "Hidden", "N": 64, "Activation": "Tanh", "pDropout": 0.5 },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "SoftMax", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// Mult-VAE's bottleneck (networks/ml1m-multvae.json, small): the sample and the KL term run
/// through the backends' `variational_forward`/`variational_backward`.
const VARIATIONAL_NET: &str = r#"{
  "Version": 0.9, "Name": "gpu-vae", "Kind": "AutoEncoder", "Denoising": { "p": 0.5 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Encoder", "Kind": "Hidden", "N": 64, "Activation": "Tanh", "Source": "Input" },
    { "Name": "LogVariance", "Kind": "Hidden", "N": 32, "Activation": "Linear", "Source": "Encoder" },
    { "Name": "Latent", "Kind": "Hidden", "N": 32, "Activation": "Linear", "Source": "Encoder",
      "Variational": { "LogVariance": "LogVariance", "Beta": 0.05, "AnnealSteps": 20 } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "SoftMax", "Sparse": true, "Source": "Latent" }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

fn rows() -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for u in 0..USERS as u64 {
        let n = 3 + u64_at(8, 0, u) % 60;
        let base = (u % 5) as u32 * (ITEMS / 5);
        let mut row: Vec<u32> = (0..n)
            .map(|k| base + (u64_at(8, 1, u * 64 + k) % (ITEMS as u64 / 5)) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, None).unwrap()
}

/// Trains `json` for `epochs` on `backend` with `optimizer`; returns the losses and every
/// weight and bias.
fn train_on<B: Backend>(
    backend: B,
    json: &str,
    epochs: u32,
    optimizer: Optimizer,
) -> (Vec<f64>, Vec<Vec<f32>>) {
    let descriptor = Descriptor::from_str(json, "net.json").unwrap();
    let datasets = vec![
        Dataset::sparse("input", vec![ITEMS], rows()).unwrap(),
        Dataset::sparse("output", vec![ITEMS], rows()).unwrap(),
    ];
    let graph = Graph::compile(&descriptor, &shapes(&datasets)).unwrap();
    let data = DataBinding::new(&graph, &datasets, false).unwrap();
    let mut network = Network::build(backend, graph, BATCH, optimizer, 21).unwrap();
    let hyper = match optimizer {
        Optimizer::Sgd => Hyper {
            alpha: 0.05,
            ..Hyper::default()
        },
        _ => Hyper {
            alpha: 0.002,
            mu: 0.9,
            mu1: 0.999,
            ..Hyper::default()
        },
    };
    let config = TrainConfig {
        epochs,
        batch: BATCH,
        optimizer,
        hyper,
        schedule: LrSchedule::Constant,
        seed: 21,
        shuffle: true,
        first_epoch: 0,
        brake: true,
    };
    let reports = train::train(&mut network, &data, &config, None, &mut Quiet).unwrap();
    let losses = reports.iter().map(|r| r.loss).collect();
    let params = network
        .download_params()
        .unwrap()
        .into_iter()
        .flat_map(|(w, b)| [w.data().to_vec(), b])
        .collect();
    (losses, params)
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// Trains one epoch on the CPU and twice on the GPU: the GPU's parameters within `tolerance`
/// (relative, per array) of the CPU's, and bit-identical between the two GPU runs.
fn compare(json: &str, optimizer: Optimizer, tolerance: f64) {
    if !Cuda::available() {
        eprintln!("skipped: no CUDA device");
        return;
    }
    let (cpu_loss, cpu_w) = train_on(Cpu::new(2).unwrap(), json, 1, optimizer);
    let (gpu_loss, gpu_w) = train_on(Cuda::new(0, false).unwrap(), json, 1, optimizer);
    let (gpu_loss2, gpu_w2) = train_on(Cuda::new(0, false).unwrap(), json, 1, optimizer);
    for (i, (g, c)) in gpu_w.iter().zip(&cpu_w).enumerate() {
        let e = rel_err(g, c);
        eprintln!(
            "parameter array {i}: relative error {e:e} over {} values",
            c.len()
        );
        assert!(e < tolerance, "parameter array {i}: relative error {e:e}");
    }
    let (g, c) = (gpu_loss[0], cpu_loss[0]);
    assert!((g - c).abs() <= 1e-5 * c.abs(), "loss {g} vs {c}");
    assert_eq!(gpu_loss, gpu_loss2, "GPU losses run to run");
    for (i, (a, b)) in gpu_w.iter().zip(&gpu_w2).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "parameter array {i} differs between two GPU runs");
    }
}

#[test]
fn sigmoid_smce_epoch_matches_the_cpu_and_repeats_bit_for_bit() {
    compare(SIGMOID_NET, Optimizer::Adam, 1e-5);
}

#[test]
fn softmax_cross_entropy_epoch_matches_the_cpu_and_repeats_bit_for_bit() {
    compare(SOFTMAX_NET, Optimizer::Adam, 1e-5);
}

#[test]
fn variational_epoch_matches_the_cpu_and_repeats_bit_for_bit() {
    compare(VARIATIONAL_NET, Optimizer::Adam, 1e-5);
}

#[test]
fn fused_sgd_epoch_matches_the_cpu_and_repeats_bit_for_bit() {
    // The fused update is cuBLAS's epilogue `α·(aᵀδ) + β·W` on the GPU and the CPU GEMM's on
    // the CPU: they round differently at every step. Measured on an H100: the output weights
    // 2.3e-5 after an epoch, every other array below 1e-6.
    compare(SIGMOID_NET, Optimizer::Sgd, 1e-4);
}

#[test]
fn optional_paths_train_the_same_bits_as_the_default_ones() {
    if !Cuda::available() {
        eprintln!("skipped: no CUDA device");
        return;
    }
    let backend = |choices: CudaChoices| {
        let mut cuda = Cuda::new(0, false).unwrap();
        cuda.set_choices(choices);
        cuda
    };
    for json in [SIGMOID_NET, SOFTMAX_NET] {
        for optimizer in [Optimizer::Adam, Optimizer::Sgd] {
            let (new_loss, new_w) = train_on(backend(CudaChoices::all()), json, 2, optimizer);
            let (loss, w) = train_on(backend(CudaChoices::default()), json, 2, optimizer);
            assert_eq!(
                new_loss, loss,
                "{optimizer:?}: losses, optional vs default paths"
            );
            for (i, (a, b)) in new_w.iter().zip(&w).enumerate() {
                let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same,
                    "{optimizer:?}: parameter array {i}, optional vs default"
                );
            }
        }
    }
}

/// [`train_on`] split over `ranks` ranks (the `Threads` collective), each rank on its own
/// backend from `backend`; returns rank 0's losses and whole parameters.
fn train_sharded_on<B: Backend>(
    backend: impl Fn() -> B + Sync,
    ranks: usize,
    json: &str,
    optimizer: Optimizer,
) -> (Vec<f64>, Vec<Vec<f32>>) {
    use moira::collective::Threads;
    let mut out = Threads::run(ranks, |comm| {
        let descriptor = Descriptor::from_str(json, "net.json")?;
        let datasets = vec![
            Dataset::sparse("input", vec![ITEMS], rows())?,
            Dataset::sparse("output", vec![ITEMS], rows())?,
        ];
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let data = DataBinding::new(&graph, &datasets, false)?;
        let mut network = Network::build_with(backend(), comm, graph, BATCH, optimizer, 21)?;
        let config = TrainConfig {
            epochs: 1,
            batch: BATCH,
            optimizer,
            hyper: Hyper {
                alpha: 0.002,
                mu: 0.9,
                mu1: 0.999,
                ..Hyper::default()
            },
            schedule: LrSchedule::Constant,
            seed: 21,
            shuffle: true,
            first_epoch: 0,
            brake: true,
        };
        let reports = train::train(&mut network, &data, &config, None, &mut Quiet)?;
        let params = network
            .download_params()?
            .into_iter()
            .flat_map(|(w, b)| [w.data().to_vec(), b])
            .collect();
        Ok((reports.iter().map(|r| r.loss).collect(), params))
    })
    .unwrap();
    out.swap_remove(0)
}

/// The multi-rank GPU path: two ranks on the one GPU (as `mpirun -np 2` on a one-GPU machine)
/// train like the CPU alone, and repeat themselves bit for bit.
#[test]
fn two_ranks_on_one_gpu_match_the_cpu_and_repeat_bit_for_bit() {
    if !Cuda::available() {
        eprintln!("skipped: no CUDA device");
        return;
    }
    for json in [SIGMOID_NET, SOFTMAX_NET] {
        let (cpu_loss, cpu_w) = train_on(Cpu::new(2).unwrap(), json, 1, Optimizer::Adam);
        let gpu = || Cuda::new(0, false).unwrap();
        let (loss, w) = train_sharded_on(gpu, 2, json, Optimizer::Adam);
        let (loss2, w2) = train_sharded_on(gpu, 2, json, Optimizer::Adam);
        for (i, (g, c)) in w.iter().zip(&cpu_w).enumerate() {
            let e = rel_err(g, c);
            eprintln!(
                "parameter array {i}: relative error {e:e} over {} values",
                c.len()
            );
            assert!(e < 1e-5, "parameter array {i}: relative error {e:e}");
        }
        assert!((loss[0] - cpu_loss[0]).abs() <= 1e-5 * cpu_loss[0].abs());
        assert_eq!(loss, loss2, "losses run to run");
        assert_eq!(w, w2, "parameters run to run");
    }
}
