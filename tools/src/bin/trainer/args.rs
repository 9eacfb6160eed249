//! The trainer's flags ([`Args`]), DSSTNE's single-dash spellings, and the checks and paths
//! that follow from the flags alone.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use moira::descriptor::Descriptor;
use moira::ops::Optimizer;
use moira_tools::device::DeviceArg;
use moira_tools::ranks::ParallelArg;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum OptimizerArg {
    Sgd,
    Momentum,
    Nesterov,
    Adagrad,
    Rmsprop,
    Adadelta,
    Adam,
}

impl From<OptimizerArg> for Optimizer {
    fn from(o: OptimizerArg) -> Self {
        match o {
            OptimizerArg::Sgd => Optimizer::Sgd,
            OptimizerArg::Momentum => Optimizer::Momentum,
            OptimizerArg::Nesterov => Optimizer::Nesterov,
            OptimizerArg::Adagrad => Optimizer::AdaGrad,
            OptimizerArg::Rmsprop => Optimizer::RmsProp,
            OptimizerArg::Adadelta => Optimizer::AdaDelta,
            OptimizerArg::Adam => Optimizer::Adam,
        }
    }
}

/// Trains a network described by a DSSTNE JSON descriptor.
///
/// DSSTNE's single-dash flags (-alpha, -lambda, -lambda1, -mu, -mu1) are accepted as well as
/// the double-dash forms. Without -i/-o, each layer's `DataSet` NAME is read from NAME.nc
/// beside the descriptor.
///
/// Checkpoints and resume: with --checkpoint-every N, the state after every N epochs
/// (weights, optimizer moments, update count, epoch, brake) goes to NETWORK_OUT's name with
/// `.epoch<E>.nc` (E = epochs done; `model.nc` -> `model.epoch4.nc`), written atomically.
/// `--resume model.epoch4.nc` with the same descriptor, data and flags (and -e the total
/// epoch count) continues from there and ends with the same bits as an uninterrupted run,
/// whatever --threads. Existing checkpoint files and NETWORK_OUT are only overwritten with
/// --force. Training stops with an error naming the epoch and batch when the loss or an
/// output turns NaN or infinite; a diverged state is never saved.
#[derive(Parser, Debug)]
#[command(name = "trainer", version)]
pub(crate) struct Args {
    /// The network descriptor (JSON, DSSTNE dialect).
    #[arg(value_name = "NET.json")]
    pub(crate) network: Option<PathBuf>,
    /// The network descriptor, as DSSTNE's `train -c` takes it.
    #[arg(short = 'c', long = "config", value_name = "NET.json")]
    pub(crate) config: Option<PathBuf>,
    /// Input dataset file (NetCDF).
    #[arg(short = 'i', long)]
    pub(crate) input: Option<PathBuf>,
    /// Output (target) dataset file (NetCDF); may be the input's file when that holds the
    /// output layer's dataset too.
    #[arg(short = 'o', long)]
    pub(crate) output: Option<PathBuf>,
    /// Where to save the trained network (NetCDF, DSSTNE's model schema).
    #[arg(short = 'n', long = "network-out")]
    pub(crate) network_out: Option<PathBuf>,
    /// Overwrite an existing network file.
    #[arg(long)]
    pub(crate) force: bool,
    /// Examples per minibatch.
    #[arg(short = 'b', long, default_value_t = 1024)]
    pub(crate) batch: usize,
    /// Epochs.
    #[arg(short = 'e', long, default_value_t = 40)]
    pub(crate) epochs: u32,
    /// Learning rate.
    #[arg(long, default_value_t = 0.025)]
    pub(crate) alpha: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0001)]
    pub(crate) lambda: f32,
    /// L1 penalty.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) lambda1: f32,
    /// Momentum / running-average decay (Adam's beta1). Default: 0.9 for Adam, RMSProp and
    /// AdaDelta; DSSTNE's 0.5 otherwise.
    #[arg(long)]
    pub(crate) mu: Option<f32>,
    /// Adam's beta2 (0 means 0.999 for Adam).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) mu1: f32,
    /// The update rule (DSSTNE's train always used SGD).
    #[arg(long, value_enum, default_value = "sgd")]
    pub(crate) optimizer: OptimizerArg,
    /// Learning-rate step schedule: multiply by --alpha-multiplier every N epochs.
    #[arg(long, default_value_t = 0)]
    pub(crate) alpha_interval: u32,
    /// Factor of the step schedule.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) alpha_multiplier: f32,
    /// Seed of every random choice (DSSTNE's fixed seed by default).
    #[arg(long, default_value_t = 12134)]
    pub(crate) seed: u64,
    /// CPU threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Compute device: cpu, cuda, or auto (CUDA when a GPU is present, else the CPU).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) device: DeviceArg,
    /// Allow TF32 tensor-core products in dense layers on CUDA (faster, ~3 decimal digits
    /// in the products' inputs); FP32 by default.
    #[arg(long)]
    pub(crate) tf32: bool,
    /// Only check the descriptor (and, given data, compile it and print the layer table).
    #[arg(long)]
    pub(crate) check: bool,
    /// Held-out items per example (NetCDF, row-aligned with the input) for Recall/NDCG.
    #[arg(long, value_name = "HELDOUT.nc")]
    pub(crate) validation: Option<PathBuf>,
    /// Cutoffs K for validation.
    #[arg(long, value_delimiter = ',', default_value = "20")]
    pub(crate) validation_k: Vec<usize>,
    /// Validate every N epochs (and after the last; 0: only after the last).
    #[arg(long, default_value_t = 1)]
    pub(crate) validate_every: u32,
    /// Model selection on --validation: keep the epoch with the best METRIC@K (ndcg@20,
    /// recall@20, recall_full@20, precision@20) instead of the last; the best model so far is
    /// saved to NETWORK_OUT's name + `.best.nc` and renamed to NETWORK_OUT at the end.
    #[arg(long, value_name = "METRIC@K")]
    pub(crate) select_by: Option<String>,
    /// With --select-by: stop after N epochs without improvement.
    #[arg(long, value_name = "N")]
    pub(crate) patience: Option<u32>,
    /// Metrics log (JSON lines); default: NETWORK_OUT with `.metrics.jsonl`. On --resume,
    /// its lines of epochs after the checkpoint are dropped and new lines appended.
    #[arg(long)]
    pub(crate) metrics_log: Option<PathBuf>,
    /// Write TensorBoard scalars (loss, examples/s, learning rate, validation metrics) per
    /// epoch to an event file in DIR (created if needed), flushed after every epoch.
    #[arg(long, value_name = "DIR")]
    pub(crate) tensorboard: Option<PathBuf>,
    /// Draw the loss and validation curves into FILE.svg or FILE.png after every epoch.
    #[arg(long, value_name = "FILE")]
    pub(crate) plot: Option<PathBuf>,
    /// Save a checkpoint every N epochs as NETWORK_OUT's name + `.epoch<E>.nc` (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) checkpoint_every: u32,
    /// Continue training from a checkpoint written by --checkpoint-every (same descriptor,
    /// data and flags; -e is the total number of epochs, counting those already done).
    #[arg(long, value_name = "CHECKPOINT.nc")]
    pub(crate) resume: Option<PathBuf>,
    /// How the ranks of an `mpirun` job split the work: `model` shards every layer's units
    /// across the ranks (DSSTNE's model parallelism, for huge catalogues), `data` gives every
    /// rank the whole network to train on its share of each minibatch (gradients summed
    /// exactly across ranks), `hybrid` decides per weight (replicated where its gradient
    /// moves fewer bytes than its activations, the layers it leads into split by examples,
    /// activations re-laid between the two), `auto` picks whichever of the three moves the
    /// fewest bytes per minibatch and logs the comparison, `tune` times a few steps of each
    /// on the first minibatches and takes the fastest (its choice can differ between runs).
    /// -b is the whole minibatch in every mode.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) parallel: ParallelArg,
    /// Exact sums: process each minibatch in chunks of C examples and sum the chunks'
    /// gradients in 64-bit fixed point, so that training gives the same bits on one rank and
    /// under `mpirun -np N … --parallel data` for any N (`auto` and `tune` take `data`).
    /// Costs a pass per chunk and 8 bytes per parameter across the ranks; refuses batch
    /// normalisation and the sparseness penalty. Pass the same C to every run that must agree.
    #[arg(long, value_name = "C")]
    pub(crate) exact_chunk: Option<usize>,
    /// Turn off DSSTNE's divergence brake (learning rate x0.1 for 25 batches when a batch's
    /// loss jumps above twice its moving average).
    #[arg(long)]
    pub(crate) no_brake: bool,
}

/// Maps DSSTNE's single-dash long flags to clap's double-dash form.
pub(crate) fn dsstne_args() -> Vec<String> {
    const LONG: [&str; 5] = ["-alpha", "-lambda", "-lambda1", "-mu", "-mu1"];
    std::env::args()
        .map(|a| {
            if LONG.contains(&a.as_str()) {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

/// Refuses numeric flags outside their ranges, naming the flag and the value: a negative or
/// non-finite learning rate or L1/L2 penalty (a rate of 0 trains nothing, which writes the
/// initial network), a step factor that is not finite and positive, a momentum or Adam β
/// outside [0, 1), a zero batch or epoch count.
pub(crate) fn check_numbers(args: &Args) -> Result<()> {
    let v = args.alpha_multiplier;
    if !(v.is_finite() && v > 0.0) {
        bail!("--alpha-multiplier {v}: expected a finite number above 0");
    }
    let not_negative = [
        ("--alpha", args.alpha),
        ("--lambda", args.lambda),
        ("--lambda1", args.lambda1),
    ];
    for (flag, v) in not_negative {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{flag} {v}: expected a finite number, 0 or more");
        }
    }
    for (flag, v) in [("--mu", args.mu.unwrap_or(0.0)), ("--mu1", args.mu1)] {
        if !(0.0..1.0).contains(&v) {
            bail!("{flag} {v}: expected a number in [0, 1)");
        }
    }
    if args.batch == 0 {
        bail!("-b 0: a minibatch needs at least 1 example");
    }
    if args.epochs == 0 {
        bail!("-e 0: expected at least 1 epoch");
    }
    Ok(())
}

/// The metrics log's path: `--metrics-log`, or NETWORK_OUT with `.metrics.jsonl`.
pub(crate) fn metrics_log(args: &Args, out: &Path) -> PathBuf {
    args.metrics_log
        .clone()
        .unwrap_or_else(|| out.with_extension("metrics.jsonl"))
}

/// The data files: -i/-o, or each layer's `DataSet` NAME as NAME.nc beside the descriptor.
/// Empty when neither is given and `--check` only parses.
pub(crate) fn data_files(args: &Args, d: &Descriptor, net_path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    if args.input.is_some() || args.output.is_some() {
        files.extend(args.input.iter().cloned());
        if args.output != args.input {
            files.extend(args.output.iter().cloned());
        }
    } else if !args.check {
        let dir = net_path.parent().unwrap_or(Path::new("."));
        for layer in &d.layers {
            if let Some(name) = &layer.dataset {
                let f = dir.join(format!("{name}.nc"));
                if !files.contains(&f) {
                    files.push(f);
                }
            }
        }
    }
    files
}
