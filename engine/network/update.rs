//! The update step of a [`Network`]: one optimizer pass over every parameter block of this
//! rank, or plain SGD fused into the backward pass's gradient products (the math is in the
//! module documentation of [`crate::network`]).
//!
//! Fused SGD. With [`Optimizer::Sgd`] and `λ1 = 0` the update `w ← w + α·(g − λ·w)` is linear,
//! `w ← (1 − αλ)·w + α·g`, and every gradient product already has the form
//! `out = alpha·P + beta·out` (`P` the product, `alpha = −1/B`, so that `g = alpha·P`).
//! Writing the product straight into `w` with `alpha' = α·alpha` and `beta' = 1 − αλ` applies
//! the update without writing and reading the gradient and without the optimizer pass; an
//! edge's bias (unregularised) takes `alpha' = α·alpha`, `beta' = 1`. The result equals the
//! separate update up to f32 rounding (`(α·alpha)·P` against `α·(alpha·P)`, one fused sum).
//!
//! Only weights no other edge uses are fused: a shared weight's gradient sums over its edges
//! and its value is read again by their delta products later in the backward pass, so it
//! keeps its gradient and the optimizer pass. Batch-normalisation `γ`, `β` keep theirs too
//! (their gradients come out of the normalisation's backward kernel). `WeightNorm` is applied
//! to every weight after the update, fused or not (the squares of an input-sharded weight's
//! columns summed across ranks).
//!
//! A weight replicated on several ranks (data parallelism, or a hybrid's replicated layers)
//! takes the sharded update of [`crate::parallel::owned`]: its gradient was summed on the
//! elements each rank owns, each rank updates those elements (and keeps their optimizer state
//! current; the rest of its state is stale), then the updated elements are gathered to every
//! rank, before `WeightNorm`.

use super::pass::StepStats;
use super::Network;
use crate::backend::traits::{Backend, MatMut};
use crate::collective::Collective;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::Weight;
use crate::ops::optimizer::Hyper;
use crate::ops::Optimizer;
use crate::parallel::data::all_gather_weights;
use crate::parallel::host::clip_split_column_norms;
use crate::parallel::owned::owned_segments;
use crate::parallel::Sharding;

/// Whether a fused backward pass writes the SGD update of `weight` into it: only for a weight
/// that no other edge uses.
pub(super) fn fuses_weight(weight: &Weight) -> bool {
    weight.sharing_count <= 1
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Applies one optimizer update with hyperparameters `h` to every weight block (then its
    /// `WeightNorm`, DSSTNE's `kNormalizeWeights`), every edge's bias and every batch
    /// normalisation `γ`, `β` (biases and `γ`, `β` without L1/L2), then counts the update.
    /// Reads the gradients of the last [`Network::backward`] (under exact sums, of the last
    /// [`Network::finish_exact_step`]: an error while a step's chunks are not applied); never
    /// fused.
    pub fn update(&mut self, h: &Hyper) -> Result<()> {
        self.update_inner(h, false)
    }

    /// [`Network::update`]; with `fused` (after a fused backward pass) the weights that
    /// [`fuses_weight`] and the edges' biases are already updated: only their `WeightNorm` is
    /// applied.
    fn update_inner(&mut self, h: &Hyper, fused: bool) -> Result<()> {
        self.require_exact_step_finished()?;
        self.step += 1;
        let t = self.step;
        let opt = self.optimizer;
        let bias_h = Hyper {
            lambda: 0.0,
            lambda1: 0.0,
            ..*h
        };
        let (ranks, rank) = (self.comm.size(), self.comm.rank());
        let shards: Vec<bool> = (0..self.params.len())
            .map(|i| self.shards_update(i))
            .collect();
        for (i, (p, weight)) in self.params.iter_mut().zip(self.graph.weights()).enumerate() {
            if !(fused && fuses_weight(weight)) {
                let [s0, s1] = &mut p.w_state;
                let len = p.rows * p.cols;
                if shards[i] {
                    // The sharded update: this rank's elements, then every rank's gathered.
                    for range in owned_segments(len, ranks, rank)? {
                        self.backend
                            .optimizer_step(&mut p.w, &p.dw, s0, s1, range, opt, h, t)?;
                    }
                    let mut w = [(&mut p.w, len)];
                    all_gather_weights(&self.backend, &self.comm, &self.timers, &mut w)?;
                } else {
                    self.backend
                        .optimizer_step(&mut p.w, &p.dw, s0, s1, 0..len, opt, h, t)?;
                }
            }
            if weight.norm > 0.0 {
                let wp = &self.plan.weights()[i];
                if wp.parts() > 1 && wp.sharding == Sharding::ByInput {
                    let (rows, cols) = (p.rows, p.cols);
                    let comm = &self.comm;
                    clip_split_column_norms(
                        &self.backend,
                        comm,
                        &mut p.w,
                        rows,
                        cols,
                        weight.norm,
                    )?;
                } else {
                    self.backend
                        .clip_column_norms(MatMut::new(&mut p.w, p.rows, p.cols), weight.norm)?;
                }
            }
        }
        if !fused {
            for b in &mut self.biases {
                b.update(&self.backend, opt, &bias_h, t)?;
            }
        }
        for bn in self.batch_norm.iter_mut().flatten() {
            bn.update(&self.backend, opt, &bias_h, t)?;
        }
        Ok(())
    }

    /// Whether [`Network::backward_update`] (and so [`Network::train_step`]) fuses the update
    /// with `h` into the backward pass: the optimizer is [`Optimizer::Sgd`], `h.lambda1 = 0`
    /// and fusing is on ([`Network::set_fused_sgd`]), and the ranks do not split the examples.
    pub fn fuses_sgd(&self, h: &Hyper) -> bool {
        // Under data parallelism the gradients are summed across ranks before any update.
        self.fused_sgd
            && self.optimizer == Optimizer::Sgd
            && h.lambda1 == 0.0
            && !self.splits_examples()
            && self.exact.is_none()
    }

    /// Lets [`Network::backward_update`] fuse plain SGD into the backward pass (`true`, the
    /// default) or forces the separate [`Network::backward`] and [`Network::update`] (`false`;
    /// the results differ only in f32 rounding, see the [module documentation](crate::network)).
    pub fn set_fused_sgd(&mut self, on: bool) {
        self.fused_sgd = on;
    }

    /// After [`Network::forward`] (with `training`): [`Network::backward`] then
    /// [`Network::update`], fused into one pass when [`Network::fuses_sgd`]. The fused pass
    /// writes no gradients: [`Network::download_gradients`] then reports those of an earlier
    /// unfused pass (the shared weights' and batch normalisation's excepted).
    ///
    /// Errors, before any parameter changes, when no minibatch is loaded or an input or
    /// output layer has no rows.
    pub fn backward_update(&mut self, h: &Hyper, seed: u64) -> Result<()> {
        if self.fuses_sgd(h) {
            self.require_batch()?;
            self.backward_inner(seed, Some(h))?;
            self.update_inner(h, true)
        } else {
            self.backward(seed)?;
            self.update(h)
        }
    }

    /// One training step on the loaded minibatch: forward (with dropout), loss, then
    /// [`Network::backward_update`].
    pub fn train_step(&mut self, h: &Hyper, seed: u64) -> Result<StepStats> {
        self.forward(true, seed)?;
        let loss = self.loss()?;
        self.backward_update(h, seed)?;
        Ok(StepStats {
            loss,
            rows: if self.loads_own_rows() {
                self.share.len
            } else {
                self.share.total
            },
        })
    }

    /// Errors unless a minibatch is loaded with rows for every input and output layer (what
    /// a backward pass needs), so that a fused pass does not stop half-way.
    fn require_batch(&self) -> Result<()> {
        self.require_rows()?;
        for layer in self.graph.layers() {
            let i = layer.id.0;
            let loaded = match layer.kind {
                LayerKind::Input => self.loaded[i],
                LayerKind::Output => {
                    self.loaded[i] && (self.sparse_local[i].is_some() || self.targets[i].is_some())
                }
                LayerKind::Hidden | LayerKind::Target => true,
            };
            if !loaded {
                return Err(Error::invalid_argument(
                    "batch",
                    format!("layer `{}` has no rows loaded", layer.name),
                ));
            }
        }
        Ok(())
    }
}
