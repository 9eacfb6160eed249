//! Reading and replacing a [`Network`]'s parameters and gradients as whole tensors, one entry
//! per graph edge.
//!
//! Every edge has its own bias; an edge that owns its weight also reports the weight, an edge
//! that shares another edge's weight (DSSTNE's `SharedWeights`) reports an empty `0 × 0`
//! matrix in its place. Without shared weights the edges are the graph weights, in order.
//!
//! On several ranks the blocks are gathered to rank 0 only ([`gather_to_root`], a bounded
//! chunk at a time): rank 0 returns whole tensors, the other ranks empty ones (`0 × 0`
//! matrices, empty vectors), so only rank 0 ever holds a whole weight. Uploads take whole
//! tensors on every rank (each rank keeps its block). On one rank every call is a plain copy.

use std::borrow::Cow;

use super::Network;
use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::dense::Matrix;
use crate::error::{Error, Result};
use crate::graph::LayerId;
use crate::parallel::exact::{gather_to_root, gather_to_root_with};
use crate::parallel::owned::all_gather_owned;
use crate::parallel::Sharding;

/// Values per rank per round of a gather (16 MiB of `f32`).
const GATHER_CHUNK: usize = 1 << 22;

impl<B: Backend, C: Collective> Network<B, C> {
    /// Whether weight `i` takes the sharded update ([`crate::parallel::owned`]): replicated
    /// on several ranks, so that each rank's gradient and optimizer state are current only on
    /// the elements it owns. Not under exact sums, whose gradients are whole on every rank.
    pub(super) fn shards_update(&self, i: usize) -> bool {
        self.plan.weights()[i].replicated && self.comm.size() > 1 && self.exact.is_none()
    }

    /// Weight `i`'s gradient or an optimizer slot in `buf`, whole on rank 0 (and, for a
    /// weight under the sharded update, on every rank: each rank's owned elements gathered),
    /// empty elsewhere: [`Network::gather_weight`] for the buffers that are current only on
    /// their owners' elements.
    pub(super) fn gather_owned(&self, i: usize, buf: &B::Vector) -> Result<Vec<f32>> {
        if !self.shards_update(i) {
            return self.gather_weight(i, buf);
        }
        let p = &self.params[i];
        let mut whole = vec![0.0; p.rows * p.cols];
        self.backend.download(buf, &mut whole)?;
        all_gather_owned(&self.comm, &mut whole)?;
        Ok(whole)
    }

    /// Weight `i`'s block in `buf` (its value, gradient or an optimizer slot), whole on rank
    /// 0 (`[in][out]` row-major), empty elsewhere.
    pub(super) fn gather_weight(&self, i: usize, buf: &B::Vector) -> Result<Vec<f32>> {
        let wp = &self.plan.weights()[i];
        let (size, rank) = (wp.parts(), self.comm.rank());
        let rank = if size > 1 { rank } else { 0 };
        let (r, c) = wp.local_shape(rank);
        let mut local = vec![0.0; r * c];
        self.backend.download(buf, &mut local)?;
        if size == 1 {
            return Ok(local);
        }
        let counts: Vec<usize> = (0..size)
            .map(|q| {
                let (a, b) = wp.local_shape(q);
                a * b
            })
            .collect();
        if wp.sharding == Sharding::ByInput {
            // Row blocks: the concatenation is the whole matrix.
            return gather_to_root(&self.comm, &local, &counts, 0, GATHER_CHUNK);
        }
        // Column blocks: each piece of rank q's `in × len(q)` block goes to its rows' columns.
        let (n_in, n_out) = (wp.input_units, wp.output_units);
        let mut whole = if rank == 0 {
            vec![0.0; n_in * n_out]
        } else {
            Vec::new()
        };
        gather_to_root_with(
            &self.comm,
            &local,
            &counts,
            0,
            GATHER_CHUNK,
            |q, at, values| {
                let range = wp.split.range(q);
                let width = range.len();
                for (k, &v) in values.iter().enumerate() {
                    let (row, col) = ((at + k) / width, (at + k) % width);
                    whole[row * n_out + range.start + col] = v;
                }
            },
        )?;
        Ok(whole)
    }

    /// This rank's block of weight `i` from the whole `[in][out]` values (the values
    /// themselves on one rank).
    pub(super) fn weight_block<'a>(&self, i: usize, whole: &'a [f32]) -> Cow<'a, [f32]> {
        let wp = &self.plan.weights()[i];
        if wp.parts() == 1 {
            return Cow::Borrowed(whole);
        }
        let (rows, cols) = wp.local_block(self.comm.rank());
        let n_out = wp.output_units;
        Cow::Owned(
            rows.flat_map(|r| {
                whole[r * n_out + cols.start..r * n_out + cols.end]
                    .iter()
                    .copied()
            })
            .collect(),
        )
    }

    /// A vector of layer `layer`'s local units in `buf` (a bias, a batch-normalisation
    /// value or slot), whole on rank 0, empty elsewhere.
    pub(super) fn gather_units(&self, layer: LayerId, buf: &B::Vector) -> Result<Vec<f32>> {
        let split = self.split(layer);
        let mut local = vec![0.0; self.local_len(layer)];
        self.backend.download(buf, &mut local)?;
        if !self.splits_units(layer) {
            return Ok(local);
        }
        gather_to_root(&self.comm, &local, &split.counts(), 0, GATHER_CHUNK)
    }

    /// This rank's part of a whole vector of layer `layer`'s units.
    pub(super) fn local_part<'a>(&self, layer: LayerId, whole: &'a [f32]) -> &'a [f32] {
        &whole[self.local_units(layer)]
    }

    /// Per graph edge, in edge order: `(W [rows][cols], bias)`, `W` empty (`0 × 0`) for an
    /// edge using a shared weight; whole on rank 0,
    /// `0 × 0` and empty on other ranks.
    pub fn download_params(&self) -> Result<Vec<(Matrix, Vec<f32>)>> {
        self.per_edge(|p| &p.w, |b| &b.b, false)
    }

    /// The gradients of the last [`Network::backward`], in the order and shapes of
    /// [`Network::download_params`]: the *negative mean* gradient of the loss over the
    /// minibatch (`−(1/B)·∂L/∂W`, DSSTNE's convention). A shared weight's gradient (reported
    /// with its owning edge) is the sum of its edges' contributions divided by the sharing
    /// count (DSSTNE's `_sharingCount`). A fused SGD step ([`Network::backward_update`],
    /// [`Network::train_step`]) writes no gradient of the weights it fuses nor of the biases.
    pub fn download_gradients(&self) -> Result<Vec<(Matrix, Vec<f32>)>> {
        self.per_edge(|p| &p.dw, |b| &b.db, true)
    }

    /// Per edge, the weight buffer `w` and bias buffer `b` picks, gathered; `owned`: `w` is
    /// current only on its owners' elements under the sharded update ([`Self::gather_owned`]).
    fn per_edge(
        &self,
        w: impl Fn(&super::Param<B::Vector>) -> &B::Vector,
        b: impl Fn(&super::EdgeBias<B::Vector>) -> &B::Vector,
        owned: bool,
    ) -> Result<Vec<(Matrix, Vec<f32>)>> {
        self.graph
            .edges()
            .iter()
            .map(|edge| {
                let bias = self.gather_units(edge.target, b(&self.biases[edge.id.0]))?;
                if edge.is_shared(&self.graph) {
                    return Ok((Matrix::zeros(0, 0), bias));
                }
                let i = edge.weight.0;
                let values = match owned {
                    true => self.gather_owned(i, w(&self.params[i]))?,
                    false => self.gather_weight(i, w(&self.params[i]))?,
                };
                let m = if self.is_root() {
                    let wp = &self.plan.weights()[i];
                    Matrix::from_vec(wp.input_units, wp.output_units, values)?
                } else {
                    Matrix::zeros(0, 0)
                };
                Ok((m, bias))
            })
            .collect()
    }

    /// Replaces the weights and biases (the order and shapes of [`Network::download_params`],
    /// whole, the same on every rank; the matrix of a shared edge must be empty). Errors
    /// (nothing uploaded) on a wrong count or shape, naming the edge.
    pub fn upload_params(&mut self, values: &[(Matrix, Vec<f32>)]) -> Result<()> {
        let edges = self.graph.edges().len();
        if values.len() != edges {
            return Err(Error::invalid_argument(
                "weights",
                format!("{} given, the network has {edges} edges", values.len()),
            ));
        }
        for (edge, (w, b)) in self.graph.edges().iter().zip(values) {
            let shared = edge.is_shared(&self.graph);
            let (rows, cols) = if shared {
                (0, 0)
            } else {
                let wp = &self.plan.weights()[edge.weight.0];
                (wp.input_units, wp.output_units)
            };
            let bias_len = self.graph.layer(edge.target).units;
            if w.rows() * w.cols() != rows * cols
                || (!shared && (w.rows(), w.cols()) != (rows, cols))
                || b.len() != bias_len
            {
                return Err(Error::invalid_argument(
                    "weights",
                    format!(
                        "edge `{}` → `{}` takes {rows}x{cols} weights{} and {bias_len} biases; \
                         {}x{} and {} were given",
                        self.graph.layer(edge.source).name,
                        self.graph.layer(edge.target).name,
                        if shared {
                            " (its weight is shared)"
                        } else {
                            ""
                        },
                        w.rows(),
                        w.cols(),
                        b.len()
                    ),
                ));
            }
        }
        for (edge, (w, b)) in self.graph.edges().iter().zip(values) {
            if !edge.is_shared(&self.graph) {
                let block = self.weight_block(edge.weight.0, w.data());
                self.backend
                    .upload(&mut self.params[edge.weight.0].w, &block)?;
            }
            let bias = self.local_part(edge.target, b);
            self.backend.upload(&mut self.biases[edge.id.0].b, bias)?;
        }
        Ok(())
    }
}
