//! The Recommender's settings and the training configuration built from them, value for value
//! as `trainer` builds its own from its flags (`prepare` in tools/src/bin/trainer.rs), so that
//! the same descriptor, data, seed and settings give the same weights through either door.

use moira::backend::Device;
use moira::descriptor::Descriptor;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::train::TrainConfig;
use pyo3::prelude::*;

use crate::errors::invalid;

/// What a `Recommender` was constructed with (the Python layer holds the defaults).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Epochs per `fit`.
    pub epochs: u32,
    /// Examples per minibatch.
    pub batch: usize,
    pub optimizer: Optimizer,
    /// α, λ (`l2`), λ1 (`l1`), μ and μ1, defaults resolved as the trainer resolves them.
    pub hyper: Hyper,
    /// The step schedule (`alpha_interval` epochs, × `alpha_multiplier`), when the
    /// descriptor has no `Decay`.
    pub alpha_interval: u32,
    pub alpha_multiplier: f32,
    pub seed: u64,
    /// DSSTNE's divergence brake.
    pub brake: bool,
    pub device: Device,
    /// CPU threads (0: one per core).
    pub threads: usize,
    /// TF32 tensor-core products in dense layers (CUDA only).
    pub tf32: bool,
    /// Exact sums in chunks of this many examples ([`moira::network::Network::set_exact_chunk`]):
    /// the bits of `mpirun -np N trainer --exact-chunk C` on any N.
    pub exact_chunk: Option<usize>,
}

/// The settings' raw values, as Python passes them (a dict with every field).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct RawSettings {
    pub epochs: u32,
    pub batch: usize,
    pub optimizer: String,
    pub alpha: f32,
    pub l2: f32,
    pub l1: f32,
    pub mu: Option<f32>,
    pub mu1: f32,
    pub alpha_interval: u32,
    pub alpha_multiplier: f32,
    pub seed: u64,
    pub brake: bool,
    pub device: String,
    pub precision: String,
    pub threads: usize,
    pub exact_chunk: Option<usize>,
}

impl Settings {
    /// Checks and resolves `raw`. `ValueError`s: an unknown optimizer, device or precision
    /// (`bf16` and the like do not exist yet), `tf32` with `device="cpu"`, a batch of 0.
    pub fn new(raw: &RawSettings) -> PyResult<Self> {
        let optimizer = Optimizer::from_name(&raw.optimizer).ok_or_else(|| {
            invalid(
                "optimizer",
                format!(
                    "`{}`; use one of {}",
                    raw.optimizer,
                    Optimizer::accepted_names().join(", ")
                ),
            )
        })?;
        let device = Device::from_name(&raw.device).ok_or_else(|| {
            invalid(
                "device",
                format!("`{}`; use \"auto\", \"cpu\" or \"cuda\"", raw.device),
            )
        })?;
        let tf32 = match raw.precision.to_ascii_lowercase().as_str() {
            "fp32" => false,
            "tf32" if device == Device::Cpu => {
                return Err(invalid(
                    "precision",
                    "\"tf32\" is a CUDA precision; device=\"cpu\" computes in fp32",
                ))
            }
            "tf32" => true,
            _ => {
                return Err(invalid(
                    "precision",
                    format!(
                        "`{}`; use \"fp32\" or \"tf32\" (TF32 tensor-core products in dense \
                         layers, CUDA only)",
                        raw.precision
                    ),
                ))
            }
        };
        if raw.batch == 0 {
            return Err(invalid("batch", "0; a minibatch holds at least 1 example"));
        }
        if raw.exact_chunk == Some(0) {
            return Err(invalid(
                "exact_chunk",
                "0; a chunk holds at least 1 example",
            ));
        }
        // The trainer's defaults (the same function as `trainer`'s).
        let hyper = Hyper::for_optimizer(optimizer, raw.alpha, raw.l2, raw.l1, raw.mu, raw.mu1);
        Ok(Settings {
            epochs: raw.epochs,
            batch: raw.batch,
            optimizer,
            hyper,
            alpha_interval: raw.alpha_interval,
            alpha_multiplier: raw.alpha_multiplier,
            seed: raw.seed,
            brake: raw.brake,
            device,
            threads: raw.threads,
            tf32,
            exact_chunk: raw.exact_chunk,
        })
    }

    /// The configuration of `epochs` epochs of training `descriptor`, numbered from
    /// `first_epoch`: the descriptor's `Decay` schedule when it has one, else the step
    /// schedule when `alpha_interval > 0`, else a constant rate; shuffling as the descriptor
    /// says (`ShuffleIndices`).
    pub fn train_config(
        &self,
        descriptor: &Descriptor,
        epochs: u32,
        first_epoch: u32,
    ) -> TrainConfig {
        let schedule =
            LrSchedule::from_settings(descriptor.decay, self.alpha_interval, self.alpha_multiplier);
        TrainConfig {
            epochs,
            batch: self.batch,
            optimizer: self.optimizer,
            hyper: self.hyper,
            schedule,
            seed: self.seed,
            shuffle: descriptor.shuffle_indices,
            first_epoch,
            brake: self.brake,
        }
    }
}
