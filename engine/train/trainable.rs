//! [`Trainable`]: what the training loop, validation and checkpoints need from a network, so
//! that they run unchanged on one device ([`Network`]) and on one rank of a model-parallel
//! run ([`ShardedNetwork`]).
//!
//! Each method has the contract of the [`Network`] method of the same name. On a
//! [`ShardedNetwork`], every rank must call the same methods in the same order (they are
//! collective); losses, the finite check and top-K are the global values on every rank, and
//! the `download_*`/`to_model` methods return whole tensors on rank 0 and empty ones elsewhere.

use crate::backend::traits::Backend;
use crate::checkpoint::{Extras, Model};
use crate::collective::Collective;
use crate::dense::Matrix;
use crate::error::Result;
use crate::graph::{Graph, LayerId};
use crate::network::{BatchNormTrainState, MiniBatch, Network, SlotState};
use crate::ops::fixed::FixedSum;
use crate::ops::optimizer::Hyper;
use crate::ops::Optimizer;
use crate::parallel::ShardedNetwork;
use crate::sparse::CsrView;

/// A network the training loop can drive; see the [module documentation](self).
#[allow(missing_docs)]
pub trait Trainable {
    fn graph(&self) -> &Graph;
    fn capacity(&self) -> usize;
    fn optimizer(&self) -> Optimizer;
    fn step_count(&self) -> u64;
    fn set_step_count(&mut self, step: u64);
    fn load_batch(&mut self, batch: MiniBatch) -> Result<()>;
    fn forward(&mut self, training: bool, seed: u64) -> Result<()>;
    fn loss(&self) -> Result<FixedSum>;
    fn non_finite_output(&mut self) -> Result<Option<String>>;
    fn backward(&mut self, seed: u64) -> Result<()>;
    fn update(&mut self, h: &Hyper) -> Result<()>;
    /// [`Trainable::backward`] then [`Trainable::update`], fused where the network can
    /// ([`Network::backward_update`]).
    fn backward_update(&mut self, h: &Hyper, seed: u64) -> Result<()> {
        self.backward(seed)?;
        self.update(h)
    }
    #[allow(clippy::too_many_arguments)]
    fn top_k(
        &self,
        id: LayerId,
        items: usize,
        k: usize,
        exclude: Option<CsrView<'_>>,
        indices: &mut [u32],
        scores: &mut [f32],
    ) -> Result<()>;
    fn layer_output(&self, id: LayerId) -> Result<Matrix>;
    fn download_optimizer_state(&self) -> Result<Vec<Vec<SlotState>>>;
    fn upload_optimizer_state(&mut self, state: &[Vec<SlotState>]) -> Result<()>;
    fn download_batch_norm_state(&self) -> Result<Vec<BatchNormTrainState>>;
    fn upload_batch_norm_state(&mut self, state: &[BatchNormTrainState]) -> Result<()>;
    fn to_model(&self, extras: Extras) -> Result<Model>;
    fn load_weights(&mut self, model: &Model) -> Result<()>;
    /// Seconds spent in collective steps since the last call, `(staging, exchange)`
    /// ([`ShardedNetwork::take_collective_seconds`]); `None` on a single device.
    fn take_collective_seconds(&mut self) -> Option<(f64, f64)> {
        None
    }
    /// Whether this is the rank that writes files and logs (rank 0; a single device always).
    fn is_root(&self) -> bool {
        true
    }
    /// Every rank's `local` outcome made common ([`Collective::check`]): `Ok` only when all
    /// ranks are; a single device returns `local`.
    fn agree(&self, local: Result<()>) -> Result<()> {
        local
    }
}

macro_rules! delegate {
    () => {
        fn graph(&self) -> &Graph {
            Self::graph(self)
        }
        fn capacity(&self) -> usize {
            Self::capacity(self)
        }
        fn optimizer(&self) -> Optimizer {
            Self::optimizer(self)
        }
        fn step_count(&self) -> u64 {
            Self::step_count(self)
        }
        fn set_step_count(&mut self, step: u64) {
            Self::set_step_count(self, step)
        }
        fn load_batch(&mut self, batch: MiniBatch) -> Result<()> {
            Self::load_batch(self, batch)
        }
        fn forward(&mut self, training: bool, seed: u64) -> Result<()> {
            Self::forward(self, training, seed)
        }
        fn loss(&self) -> Result<FixedSum> {
            Self::loss(self)
        }
        fn non_finite_output(&mut self) -> Result<Option<String>> {
            Self::non_finite_output(self)
        }
        fn backward(&mut self, seed: u64) -> Result<()> {
            Self::backward(self, seed)
        }
        fn update(&mut self, h: &Hyper) -> Result<()> {
            Self::update(self, h)
        }
        fn top_k(
            &self,
            id: LayerId,
            items: usize,
            k: usize,
            exclude: Option<CsrView<'_>>,
            indices: &mut [u32],
            scores: &mut [f32],
        ) -> Result<()> {
            Self::top_k(self, id, items, k, exclude, indices, scores)
        }
        fn layer_output(&self, id: LayerId) -> Result<Matrix> {
            Self::layer_output(self, id)
        }
        fn download_optimizer_state(&self) -> Result<Vec<Vec<SlotState>>> {
            Self::download_optimizer_state(self)
        }
        fn upload_optimizer_state(&mut self, state: &[Vec<SlotState>]) -> Result<()> {
            Self::upload_optimizer_state(self, state)
        }
        fn to_model(&self, extras: Extras) -> Result<Model> {
            Self::to_model(self, extras)
        }
        fn load_weights(&mut self, model: &Model) -> Result<()> {
            Self::load_weights(self, model)
        }
    };
}

impl<B: Backend> Trainable for Network<B> {
    delegate!();
    fn backward_update(&mut self, h: &Hyper, seed: u64) -> Result<()> {
        Network::backward_update(self, h, seed)
    }
    fn download_batch_norm_state(&self) -> Result<Vec<BatchNormTrainState>> {
        Network::download_batch_norm_state(self)
    }
    fn upload_batch_norm_state(&mut self, state: &[BatchNormTrainState]) -> Result<()> {
        Network::upload_batch_norm_state(self, state)
    }
}

impl<B: Backend, C: Collective> Trainable for ShardedNetwork<'_, B, C> {
    delegate!();
    fn is_root(&self) -> bool {
        self.comm().rank() == 0
    }
    fn take_collective_seconds(&mut self) -> Option<(f64, f64)> {
        Some(ShardedNetwork::take_collective_seconds(self))
    }
    fn agree(&self, local: Result<()>) -> Result<()> {
        self.comm().check(local)
    }
    fn download_batch_norm_state(&self) -> Result<Vec<BatchNormTrainState>> {
        ShardedNetwork::download_batch_norm_state(self)
    }
    fn upload_batch_norm_state(&mut self, state: &[BatchNormTrainState]) -> Result<()> {
        ShardedNetwork::upload_batch_norm_state(self, state)
    }
}
