//! Training: the epoch loop over shuffled minibatches, with learning-rate schedules,
//! progress reporting and per-epoch validation.
//!
//! Reproducibility: the weights after training depend only on the seed, the data, the
//! configuration and the machine/build — not on the number of threads. Every source of
//! randomness (initialisation, shuffling, denoising, dropout) is a counter-based RNG keyed by
//! the seed, and every sum whose order could vary is taken in fixed point.

mod batcher;
mod validate;
mod prefetch;

pub use batcher::{epoch_order, shapes, DataBinding};
pub use validate::{evaluate, Validation};

use std::time::Instant;

use crate::backend::traits::Backend;
use crate::error::{Error, Result};
use crate::network::Network;
use crate::ops::optimizer::{learning_rate, Hyper, LrSchedule};
use crate::ops::Optimizer;
use crate::predict::metrics::RankingMetrics;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Epochs to run.
    pub epochs: u32,
    /// Examples per minibatch.
    pub batch: usize,
    /// The update rule.
    pub optimizer: Optimizer,
    /// Learning rate, regularisation, momentum.
    pub hyper: Hyper,
    /// How the learning rate changes.
    pub schedule: LrSchedule,
    /// Seed of every random choice.
    pub seed: u64,
    /// Shuffle the examples each epoch (DSSTNE's `ShuffleIndices`).
    pub shuffle: bool,
    /// First epoch number (0 for a fresh run; resumed runs continue the count).
    pub first_epoch: u32,
}

impl Default for TrainConfig {
    /// DSSTNE's `train` defaults: 40 epochs of 1024, SGD, α 0.025, λ 0.0001, μ 0.5,
    /// DSSTNE's fixed seed 12134.
    fn default() -> Self {
        TrainConfig {
            epochs: 40,
            batch: 1024,
            optimizer: Optimizer::Sgd,
            hyper: Hyper::default(),
            schedule: LrSchedule::Constant,
            seed: 12134,
            shuffle: true,
            first_epoch: 0,
        }
    }
}

/// What one epoch measured.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// Epoch number (0-based).
    pub epoch: u32,
    /// Mean loss per example over the epoch (measured during training, before each update).
    pub loss: f64,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f32,
    /// Wall time of the training part of the epoch, in seconds.
    pub seconds: f64,
    /// Training throughput.
    pub examples_per_second: f64,
    /// Validation metrics, when validation ran after this epoch.
    pub validation: Option<RankingMetrics>,
}

/// Receives progress while training (the binaries draw progress bars and logs with it).
pub trait Observer {
    /// After each minibatch: examples done in this epoch, examples per epoch, mean loss so far.
    fn on_batch(&mut self, _epoch: u32, _done: usize, _total: usize, _mean_loss: f64) {}
    /// After each epoch (and its validation). An error stops training.
    fn on_epoch(&mut self, _report: &EpochReport) -> Result<()> {
        Ok(())
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Trains `network` on the bound data for `config.epochs` epochs.
///
/// Each epoch visits every example once, in the order [`epoch_order`] gives, in minibatches
/// of `config.batch` (the last one smaller). Input denoising (`Denoising.p` of the
/// descriptor) applies to sparse input layers; dropout to hidden layers. After every epoch,
/// `validation` (if any) is evaluated when its schedule says so.
pub fn train<B: Backend>(
    network: &mut Network<B>,
    data: &DataBinding,
    config: &TrainConfig,
    validation: Option<&Validation>,
    observer: &mut dyn Observer,
) -> Result<Vec<EpochReport>> {
    if config.batch == 0 || config.batch > network.capacity() {
        return Err(Error::invalid_argument(
            "batch",
            format!(
                "{} (the network holds 1 to {})",
                config.batch,
                network.capacity()
            ),
        ));
    }
    let n = data.examples();
    if n == 0 {
        return Err(Error::InvalidData(
            "the training data has no examples".into(),
        ));
    }
    let denoising_p = network.graph().descriptor().denoising_p;
    // The batches are built on another thread from this copy while the network trains.
    let graph = network.graph().clone();
    let mut reports = Vec::with_capacity(config.epochs as usize);
    for epoch in config.first_epoch..config.first_epoch + config.epochs {
        let start = Instant::now();
        let order = epoch_order(n, config.shuffle, config.seed, epoch);
        let mut loss = crate::backend::cpu::FixedSum::default();
        let mut done = 0usize;
        let mut h = config.hyper;
        let denoise = (denoising_p > 0.0).then_some((denoising_p, config.seed, epoch));
        let mut timing = prefetch::Timing::default();
        prefetch::for_each_batch(data, &graph, &order, config.batch, denoise, |batch, t| {
            timing.wait += t;
            let t0 = Instant::now();
            network.load_batch(batch)?;
            timing.load += t0.elapsed();
            h.alpha = learning_rate(
                config.hyper.alpha,
                config.schedule,
                epoch,
                network.step_count(),
            );
            let t0 = Instant::now();
            let stats = network.train_step(&h, config.seed)?;
            timing.step += t0.elapsed();
            loss = loss + stats.loss;
            done += stats.rows;
            let mean = loss.to_f64() / done as f64;
            if !mean.is_finite() {
                return Err(Error::InvalidData(format!(
                    "training diverged: the loss is {mean} in epoch {epoch} after {done} examples; \
                     try a smaller learning rate"
                )));
            }
            observer.on_batch(epoch, done, n, mean);
            Ok(())
        })?;
        let seconds = start.elapsed().as_secs_f64();
        tracing::debug!(
            "epoch {epoch}: {:.3} s waiting for batches, {:.3} s loading them, {:.3} s in steps",
            timing.wait.as_secs_f64(),
            timing.load.as_secs_f64(),
            timing.step.as_secs_f64()
        );
        let validation = match validation {
            Some(v) if v.due(epoch - config.first_epoch + 1, config.epochs) => {
                Some(evaluate(network, data, v)?)
            }
            _ => None,
        };
        let report = EpochReport {
            epoch,
            loss: loss.to_f64() / n as f64,
            learning_rate: h.alpha,
            seconds,
            examples_per_second: n as f64 / seconds.max(1e-9),
            validation,
        };
        observer.on_epoch(&report)?;
        reports.push(report);
    }
    Ok(reports)
}
