//! Training: the epoch loop over shuffled minibatches, with learning-rate schedules,
//! DSSTNE's divergence brake, a stop on NaN or infinite losses, progress reporting,
//! per-epoch validation and checkpoints to resume from.
//!
//! Reproducibility: the weights after training depend only on the seed, the data, the
//! configuration and the machine/build — not on the number of threads. Every source of
//! randomness (initialisation, shuffling, denoising, dropout) is a counter-based RNG keyed by
//! the seed, and every sum whose order could vary is taken in fixed point.

mod batcher;
mod brake;
mod prefetch;
mod resume;
mod select;
mod step;
mod tune;
mod validate;

pub use batcher::{epoch_order, shapes, DataBinding};
pub use brake::{Brake, BrakeStep};
pub use resume::{
    checkpoint_model, non_finite_weight, resume, save_checkpoint, CheckpointPlan, Resumed, FORMAT,
};
pub use select::{check_best_model, keep_best, Best, Metric, SelectBy, Selection};
pub use tune::seconds_per_step;
pub use validate::{evaluate, Validation};

use std::path::PathBuf;
use std::time::Instant;

use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::network::Network;
use crate::ops::optimizer::{learning_rate, Hyper, LrSchedule};
use crate::ops::Optimizer;
use crate::parallel::Parallelism;
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
    /// DSSTNE's divergence brake ([`Brake`]); on by default, as in DSSTNE.
    pub brake: bool,
}

/// The state of the training loop that is not in the network (which holds the weights, the
/// optimizer state and the update count): what a checkpoint adds to resume exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainState {
    /// The divergence brake.
    pub brake: Brake,
    /// The epoch model selection kept so far ([`Selection`]).
    pub best: Option<Best>,
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
            brake: true,
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
    /// With model selection: the epoch kept so far (this one, if it improved).
    pub best: Option<Best>,
}

/// Receives progress while training (the binaries draw progress bars and logs with it).
pub trait Observer {
    /// After each minibatch (and its update): examples done in this epoch, examples per
    /// epoch, mean loss so far. An error stops training (on every rank: the outcome is
    /// agreed across ranks), e.g. to honour an interrupt.
    fn on_batch(
        &mut self,
        _epoch: u32,
        _done: usize,
        _total: usize,
        _mean_loss: f64,
    ) -> Result<()> {
        Ok(())
    }
    /// After each epoch (and its validation). An error stops training.
    fn on_epoch(&mut self, _report: &EpochReport) -> Result<()> {
        Ok(())
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Trains `network` on the bound data for `config.epochs` epochs, from a fresh
/// [`TrainState`] and without checkpoints: [`train_with`].
pub fn train<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    data: &DataBinding,
    config: &TrainConfig,
    validation: Option<&Validation>,
    observer: &mut dyn Observer,
) -> Result<Vec<EpochReport>> {
    let mut state = TrainState::default();
    train_with(
        network, data, config, validation, observer, &mut state, None,
    )
}

/// Trains `network` on the bound data for `config.epochs` epochs, numbered from
/// `config.first_epoch`, continuing from `state` (updated as training goes).
///
/// Each epoch visits every example once, in the order [`epoch_order`] gives, in minibatches
/// of `config.batch` (the last one smaller). Input denoising (`Denoising.p` of the
/// descriptor) applies to sparse input layers; dropout to hidden layers. Per minibatch:
/// forward pass and loss; then, if the loss or any output activation is NaN or infinite,
/// training stops with [`Error::Diverged`] naming the epoch and the minibatch (before that
/// minibatch changes anything); otherwise the [`Brake`] (when `config.brake`) decides the
/// learning-rate factor and whether to update, then backward pass and update.
///
/// After every epoch, `validation` (if any) is evaluated when its schedule says so, its
/// [`Selection`] (if any) keeps the best epoch's model and may stop training early (see
/// [`Selection`]; `state.best` holds the epoch kept), the observer hears of it, and, when `checkpoints` says so, a checkpoint
/// ([`save_checkpoint`]) is saved atomically. A checkpoint whose weights are not all finite
/// is not written: training stops with [`Error::Diverged`], and the checkpoints already
/// written (the last good one is named in the message) stay as they are. Existing files at
/// the checkpoint paths are replaced; refusing to overwrite is the caller's choice.
pub fn train_with<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    data: &DataBinding,
    config: &TrainConfig,
    validation: Option<&Validation>,
    observer: &mut dyn Observer,
    state: &mut TrainState,
    checkpoints: Option<&CheckpointPlan>,
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
    let selection = validation.and_then(|v| v.select.as_ref().map(|s| (s, &v.ks)));
    if let Some((s, ks)) = selection {
        s.check(ks)?;
    }
    let denoising_p = network.graph().descriptor().denoising_p;
    // Data parallelism: each rank trains on its share of every minibatch.
    let share = match network.parallelism() {
        Parallelism::Data => (network.comm().rank(), network.comm().size()),
        _ => (0, 1),
    };
    // The batches are built on another thread from this copy while the network trains.
    let graph = network.graph().clone();
    let mut reports = Vec::with_capacity(config.epochs as usize);
    let mut last_good: Option<PathBuf> = None;
    let diverged = |epoch: u32, batch: Option<u64>, what: String, last: &Option<PathBuf>| {
        let saved = match last {
            Some(p) => format!("the last good checkpoint is {}", p.display()),
            None => "no checkpoint was written in this run".to_owned(),
        };
        Error::Diverged {
            epoch,
            batch,
            message: format!("{what}; training stopped ({saved}); try a smaller learning rate"),
        }
    };
    for epoch in config.first_epoch..config.first_epoch + config.epochs {
        let start = Instant::now();
        let order = epoch_order(n, config.shuffle, config.seed, epoch);
        let mut loss = crate::ops::fixed::FixedSum::default();
        let mut done = 0usize;
        let mut h = config.hyper;
        let denoise = (denoising_p > 0.0).then_some((denoising_p, config.seed, epoch));
        let mut timing = prefetch::Timing::default();
        let mut b = 0usize;
        let exact_chunk = network.exact_chunk();
        let build =
            |examples: &[u32]| step::build(data, &graph, examples, share, exact_chunk, denoise);
        prefetch::for_each_batch(&order, config.batch, build, |work, t| {
            timing.wait += t;
            h.alpha = learning_rate(
                config.hyper.alpha,
                config.schedule,
                epoch,
                network.step_count(),
            );
            let (t0, loading) = (Instant::now(), timing.load);
            let pass = step::forward(network, work, config.seed, &mut timing.load)?;
            // The whole minibatch's examples (every rank's under data parallelism).
            let rows = pass.rows;
            let batch_loss = pass.loss;
            let batch_mean = batch_loss.to_f64() / rows as f64;
            if !batch_mean.is_finite() {
                let what = format!("the loss is {batch_mean}");
                return Err(diverged(epoch, Some(b as u64), what, &last_good));
            }
            if let Some(layer) = &pass.non_finite {
                let what = format!("output layer `{layer}` has NaN or infinite activations");
                return Err(diverged(epoch, Some(b as u64), what, &last_good));
            }
            let step = if config.brake {
                state.brake.observe(batch_mean)
            } else {
                BrakeStep {
                    alpha_scale: 1.0,
                    update: true,
                    detected: false,
                }
            };
            if step.detected {
                tracing::warn!(
                    "epoch {epoch}, batch {b}: divergence detected (error {batch_mean:.6} > 2 x moving \
                     average {:.6}); learning rate x {} for {} batches",
                    state.brake.moving_average,
                    Brake::FACTOR,
                    Brake::BATCHES
                );
            }
            h.alpha *= step.alpha_scale;
            step::finish(network, &pass, &h, config.seed, step.update)?;
            timing.step += t0.elapsed().saturating_sub(timing.load - loading);
            loss = loss + batch_loss;
            done += rows;
            b += 1;
            network.agree(observer.on_batch(epoch, done, n, loss.to_f64() / done as f64))
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let (staging, exchange) = network.take_collective_seconds();
        let collectives = if network.comm().size() > 1 {
            format!(
                " ({staging:.3} s of them staging blocks through the host, {exchange:.3} s \
                 exchanging them)"
            )
        } else {
            String::new()
        };
        tracing::debug!(
            "epoch {epoch}: {:.3} s waiting for batches, {:.3} s loading them, {:.3} s in \
             steps{collectives}",
            timing.wait.as_secs_f64(),
            timing.load.as_secs_f64(),
            timing.step.as_secs_f64()
        );
        let validation = match validation {
            // Counted from the start of training, so a resumed run validates (and selects)
            // after the epochs an uninterrupted one would.
            Some(v) if v.due(epoch + 1, config.first_epoch + config.epochs) => {
                Some(evaluate(network, data, v)?)
            }
            _ => None,
        };
        let mut report = EpochReport {
            epoch,
            loss: loss.to_f64() / n as f64,
            learning_rate: h.alpha,
            seconds,
            examples_per_second: n as f64 / seconds.max(1e-9),
            validation,
            best: None,
        };
        let stop = match selection {
            Some((s, _)) => select::after_epoch(network, s, state, &report)?,
            None => false,
        };
        report.best = state.best;
        observer.on_epoch(&report)?;
        reports.push(report);
        let epochs_done = epoch + 1;
        if let Some(plan) = checkpoints.filter(|p| p.due(epochs_done)) {
            // Collective (the ranks' blocks stream to rank 0, which writes).
            let path = plan.path(epochs_done);
            let saved = match save_checkpoint(network, config, state, epochs_done, &path) {
                Err(Error::NonFiniteWeight { weight }) => Err(diverged(
                    epoch,
                    None,
                    format!(
                        "weight {weight} has NaN or infinite values at the end of the epoch, so \
                         it was not saved as a checkpoint"
                    ),
                    &last_good,
                )),
                other => other,
            };
            network.agree(saved)?;
            if network.is_root() {
                tracing::info!("checkpoint after {epochs_done} epochs: {}", path.display());
            }
            last_good = Some(path);
        }
        if stop {
            break;
        }
    }
    Ok(reports)
}
