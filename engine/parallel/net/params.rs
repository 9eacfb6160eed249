//! A [`ShardedNetwork`]'s parameters as whole tensors (checkpoints in DSSTNE's model format,
//! loadable on any rank count) and its global top-K.
//!
//! Gathers go to rank 0 only ([`gather_to_root`], a bounded chunk at a time): rank 0 returns
//! whole tensors, the other ranks empty ones (`0 × 0` matrices, empty vectors), so only rank
//! 0 ever holds a whole weight. Uploads take whole tensors on every rank (each rank keeps its
//! block).

use super::ShardedNetwork;
use crate::backend::traits::{Backend, Mat};
use crate::checkpoint::{Extras, Model};
use crate::collective::Collective;
use crate::dense::Matrix;
use crate::error::{Error, Result};
use crate::graph::LayerId;
use crate::network::{
    assemble_model, model_values, BatchNorm, BatchNormTrainState, BatchNormValues, SlotState,
};
use crate::ops::optimizer::state_len;
use crate::parallel::exact::{gather_to_root, gather_to_root_with};
use crate::parallel::{column_shard, Sharding};
use crate::predict::{merge_top_k_batch, ShardTopKBatch};
use crate::sparse::CsrView;

/// Values per rank per round of a gather (16 MiB of `f32`).
const GATHER_CHUNK: usize = 1 << 22;

impl<B: Backend, C: Collective> ShardedNetwork<'_, B, C> {
    /// Weight `i`'s block in `buf`, whole on rank 0 (`[in][out]` row-major), empty elsewhere.
    fn gather_weight(&self, i: usize, buf: &B::Vector) -> Result<Vec<f32>> {
        let wp = &self.plan.weights()[i];
        let (rank, size) = (self.rank(), self.comm.size());
        let (r, c) = wp.local_shape(rank);
        let mut local = vec![0.0; r * c];
        self.backend.download(buf, &mut local)?;
        let counts: Vec<usize> = (0..size)
            .map(|q| {
                let (a, b) = wp.local_shape(q);
                a * b
            })
            .collect();
        if wp.sharding == Sharding::ByInput {
            // Row blocks: the concatenation is the whole matrix.
            return gather_to_root(self.comm, &local, &counts, 0, GATHER_CHUNK);
        }
        // Column blocks: each piece of rank q's `in × len(q)` block goes to its rows' columns.
        let (n_in, n_out) = (wp.input_units, wp.output_units);
        let mut whole = if rank == 0 {
            vec![0.0; n_in * n_out]
        } else {
            Vec::new()
        };
        gather_to_root_with(
            self.comm,
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

    /// This rank's block of weight `i` from the whole `[in][out]` values.
    fn weight_block(&self, i: usize, whole: &[f32]) -> Vec<f32> {
        let wp = &self.plan.weights()[i];
        let (rows, cols) = wp.local_block(self.rank());
        let n_out = wp.output_units;
        rows.flat_map(|r| {
            whole[r * n_out + cols.start..r * n_out + cols.end]
                .iter()
                .copied()
        })
        .collect()
    }

    /// The local bias-shaped `buf` of edge `e` (split like its target), whole on rank 0.
    fn gather_bias(&self, target: LayerId, buf: &B::Vector) -> Result<Vec<f32>> {
        let split = self.split(target);
        let mut local = vec![0.0; split.len(self.rank())];
        self.backend.download(buf, &mut local)?;
        gather_to_root(self.comm, &local, &split.counts(), 0, GATHER_CHUNK)
    }

    /// Per graph edge: `(W, bias)`, whole on rank 0 (as
    /// [`crate::network::Network::download_params`]); `0 × 0` and empty on other ranks.
    pub fn download_params(&self) -> Result<Vec<(Matrix, Vec<f32>)>> {
        let root = self.rank() == 0;
        self.graph
            .edges()
            .iter()
            .map(|edge| {
                let b = self.gather_bias(edge.target, &self.biases[edge.id.0].b)?;
                if edge.is_shared(&self.graph) {
                    return Ok((Matrix::zeros(0, 0), b));
                }
                let w = self.gather_weight(edge.weight.0, &self.params[edge.weight.0].w)?;
                let m = if root {
                    let wp = &self.plan.weights()[edge.weight.0];
                    Matrix::from_vec(wp.input_units, wp.output_units, w)?
                } else {
                    Matrix::zeros(0, 0)
                };
                Ok((m, b))
            })
            .collect()
    }

    /// Replaces the weights and biases from whole tensors (every rank passes the same
    /// values, in [`crate::network::Network::download_params`]'s order and shapes).
    pub fn upload_params(&mut self, values: &[(Matrix, Vec<f32>)]) -> Result<()> {
        let edges = self.graph.edges().to_vec();
        if values.len() != edges.len() {
            return Err(Error::invalid_argument(
                "weights",
                format!(
                    "{} given, the network has {} edges",
                    values.len(),
                    edges.len()
                ),
            ));
        }
        for (edge, (w, b)) in edges.iter().zip(values) {
            let wp = &self.plan.weights()[edge.weight.0];
            let units = self.graph.layer(edge.target).units;
            let want = if edge.is_shared(&self.graph) {
                (0, 0)
            } else {
                (wp.input_units, wp.output_units)
            };
            if (w.rows(), w.cols()) != want || b.len() != units {
                return Err(Error::invalid_argument(
                    "weights",
                    format!(
                        "edge `{}` → `{}` takes {}x{} weights (0x0 when shared) and {units} \
                         biases; {}x{} and {} were given",
                        self.graph.layer(edge.source).name,
                        self.graph.layer(edge.target).name,
                        want.0,
                        want.1,
                        w.rows(),
                        w.cols(),
                        b.len()
                    ),
                ));
            }
        }
        for (edge, (w, b)) in edges.iter().zip(values) {
            if !edge.is_shared(&self.graph) {
                let block = self.weight_block(edge.weight.0, w.data());
                self.backend
                    .upload(&mut self.params[edge.weight.0].w, &block)?;
            }
            let range = self.local_units(edge.target);
            self.backend
                .upload(&mut self.biases[edge.id.0].b, &b[range])?;
        }
        Ok(())
    }

    /// The network as a model file's content on rank 0 (as
    /// [`crate::network::Network::to_model`]); other ranks get a model with empty tensors.
    pub fn to_model(&self, extras: Extras) -> Result<Model> {
        let bn = self.download_batch_norm()?;
        assemble_model(&self.graph, self.download_params()?, bn, extras)
    }

    /// Loads the weights, biases and batch-normalisation values of `model` (whole, read by
    /// every rank).
    pub fn load_weights(&mut self, model: &Model) -> Result<()> {
        let (values, bn) = model_values(&self.graph, model)?;
        self.upload_params(&values)?;
        self.upload_batch_norm(&bn)
    }

    /// The batch-normalised layers with their local state, in layer order.
    fn batch_norm_layers(
        &self,
    ) -> impl Iterator<Item = (&crate::graph::Layer, &BatchNorm<B::Vector>)> {
        self.graph
            .layers()
            .iter()
            .zip(&self.batch_norm)
            .filter_map(|(l, bn)| bn.as_ref().map(|bn| (l, bn)))
    }

    /// The values of every batch-normalised layer, whole on rank 0 (empty elsewhere), as
    /// [`crate::network::Network::download_batch_norm`].
    pub fn download_batch_norm(&self) -> Result<Vec<BatchNormValues>> {
        self.batch_norm_layers()
            .map(|(l, bn)| {
                Ok(BatchNormValues {
                    layer: l.name.clone(),
                    scale: self.gather_bias(l.id, &bn.scale)?,
                    bias: self.gather_bias(l.id, &bn.bias)?,
                    running_mean: self.gather_bias(l.id, &bn.running_mean)?,
                    running_var: self.gather_bias(l.id, &bn.running_var)?,
                })
            })
            .collect()
    }

    /// The batch-normalised layer `name`, its local state and its local units; errors naming
    /// `what` for an unknown or unnormalised layer or a vector not `len` long.
    fn batch_norm_target(&self, name: &str, lens: &[usize], what: &str) -> Result<usize> {
        let bad = |m: String| Error::invalid_argument(what, format!("layer `{name}`: {m}"));
        let layer = self
            .graph
            .layer_by_name(name)
            .ok_or_else(|| bad("not a layer of the network".into()))?;
        if self.batch_norm[layer.id.0].is_none() {
            return Err(bad("has no BatchNormalization".into()));
        }
        if let Some(&n) = lens.iter().find(|&&n| n != layer.units) {
            return Err(bad(format!(
                "{n} values; the layer has {} units",
                layer.units
            )));
        }
        Ok(layer.id.0)
    }

    /// Replaces the values of the batch-normalised layers named in `values` (whole, the same
    /// on every rank); nothing is uploaded when one is wrong.
    pub fn upload_batch_norm(&mut self, values: &[BatchNormValues]) -> Result<()> {
        let mut targets = Vec::with_capacity(values.len());
        for v in values {
            let lens = [
                v.scale.len(),
                v.bias.len(),
                v.running_mean.len(),
                v.running_var.len(),
            ];
            targets.push(self.batch_norm_target(&v.layer, &lens, "batch normalization")?);
        }
        for (v, i) in values.iter().zip(targets) {
            let range = self.split(crate::graph::LayerId(i)).range(self.rank());
            let bn = self.batch_norm[i].as_mut().expect("checked above");
            self.backend
                .upload(&mut bn.scale, &v.scale[range.clone()])?;
            self.backend.upload(&mut bn.bias, &v.bias[range.clone()])?;
            self.backend
                .upload(&mut bn.running_mean, &v.running_mean[range.clone()])?;
            self.backend
                .upload(&mut bn.running_var, &v.running_var[range])?;
        }
        Ok(())
    }

    /// The training state of every batch-normalised layer, whole on rank 0 (empty slots
    /// elsewhere), as [`crate::network::Network::download_batch_norm_state`].
    pub fn download_batch_norm_state(&self) -> Result<Vec<BatchNormTrainState>> {
        let slots = state_len(self.optimizer);
        self.batch_norm_layers()
            .map(|(l, bn)| {
                let slots = (0..slots)
                    .map(|k| {
                        Ok(SlotState {
                            weights: self.gather_bias(l.id, &bn.scale_state[k])?,
                            bias: self.gather_bias(l.id, &bn.bias_state[k])?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(BatchNormTrainState {
                    layer: l.name.clone(),
                    calls: bn.calls,
                    slots,
                })
            })
            .collect()
    }

    /// Replaces the batch-normalisation training state (whole, the same on every rank).
    pub fn upload_batch_norm_state(&mut self, state: &[BatchNormTrainState]) -> Result<()> {
        let slots = state_len(self.optimizer);
        let mut targets = Vec::with_capacity(state.len());
        for s in state {
            if s.slots.len() != slots {
                return Err(Error::invalid_argument(
                    "batch normalization state",
                    format!(
                        "layer `{}`: {} slots given; expected {slots}",
                        s.layer,
                        s.slots.len()
                    ),
                ));
            }
            let lens: Vec<usize> = s
                .slots
                .iter()
                .flat_map(|x| [x.weights.len(), x.bias.len()])
                .collect();
            targets.push(self.batch_norm_target(&s.layer, &lens, "batch normalization state")?);
        }
        for (s, i) in state.iter().zip(targets) {
            let range = self.split(crate::graph::LayerId(i)).range(self.rank());
            let bn = self.batch_norm[i].as_mut().expect("checked above");
            bn.calls = s.calls;
            for (k, slot) in s.slots.iter().enumerate() {
                self.backend
                    .upload(&mut bn.scale_state[k], &slot.weights[range.clone()])?;
                self.backend
                    .upload(&mut bn.bias_state[k], &slot.bias[range.clone()])?;
            }
        }
        Ok(())
    }

    /// The optimizer state, whole on rank 0 (empty slots elsewhere), in
    /// [`crate::network::Network::download_optimizer_state`]'s order and shapes.
    pub fn download_optimizer_state(&self) -> Result<Vec<Vec<SlotState>>> {
        let slots = state_len(self.optimizer);
        self.graph
            .edges()
            .iter()
            .map(|edge| {
                let shared = edge.is_shared(&self.graph);
                (0..slots)
                    .map(|k| {
                        Ok(SlotState {
                            weights: if shared {
                                Vec::new()
                            } else {
                                self.gather_weight(
                                    edge.weight.0,
                                    &self.params[edge.weight.0].w_state[k],
                                )?
                            },
                            bias: self
                                .gather_bias(edge.target, &self.biases[edge.id.0].state[k])?,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// Replaces the optimizer state from whole tensors (every rank passes the same values).
    pub fn upload_optimizer_state(&mut self, state: &[Vec<SlotState>]) -> Result<()> {
        let slots = state_len(self.optimizer);
        let edges = self.graph.edges().to_vec();
        let bad = |m: String| Err(Error::invalid_argument("optimizer state", m));
        if state.len() != edges.len() {
            return bad(format!(
                "{} weights given, the network has {}",
                state.len(),
                edges.len()
            ));
        }
        for (edge, s) in edges.iter().zip(state) {
            let wp = &self.plan.weights()[edge.weight.0];
            let units = self.graph.layer(edge.target).units;
            let weights = if edge.is_shared(&self.graph) {
                0
            } else {
                wp.input_units * wp.output_units
            };
            if s.len() != slots
                || s.iter()
                    .any(|slot| slot.weights.len() != weights || slot.bias.len() != units)
            {
                return bad(format!(
                    "weight `{}` -> `{}`: the slots do not have {slots} x ({} weights, {units} biases)",
                    self.graph.layer(edge.source).name,
                    self.graph.layer(edge.target).name,
                    weights
                ));
            }
        }
        for (edge, s) in edges.iter().zip(state) {
            let range = self.local_units(edge.target);
            for (k, slot) in s.iter().enumerate() {
                if !edge.is_shared(&self.graph) {
                    let block = self.weight_block(edge.weight.0, &slot.weights);
                    self.backend
                        .upload(&mut self.params[edge.weight.0].w_state[k], &block)?;
                }
                self.backend.upload(
                    &mut self.biases[edge.id.0].state[k],
                    &slot.bias[range.clone()],
                )?;
            }
        }
        Ok(())
    }

    /// The activations of layer `id` for the current minibatch, whole (`[rows][units]`) on
    /// every rank: each rank's columns, all-gathered. Errors for a sparse input layer.
    pub fn layer_output(&self, id: LayerId) -> Result<Matrix> {
        let layer = self.graph.layer(id);
        let buf = self.units[id.0].as_ref().ok_or_else(|| {
            Error::invalid_argument("layer", format!("`{}` is a sparse input", layer.name))
        })?;
        let split = self.split(id);
        let mut local = vec![0.0; self.rows * split.len(self.rank())];
        self.backend.download(buf, &mut local)?;
        let mut whole = vec![0.0; self.rows * layer.units];
        crate::parallel::exact::all_gather_columns(
            self.comm, &local, self.rows, &split, &mut whole,
        )?;
        Matrix::from_vec(self.rows, layer.units, whole)
    }

    /// The exact global top-K of each row of layer `id`'s activations over its first `items`
    /// units, excluding `exclude`'s columns (whole rows, global columns), on every rank: each
    /// rank selects among its columns ([`Backend::top_k`]), the lists are all-gathered and
    /// merged ([`merge_top_k_batch`]: same order, ties and padding as the single-rank top-K).
    pub fn top_k(
        &self,
        id: LayerId,
        items: usize,
        k: usize,
        exclude: Option<CsrView<'_>>,
        indices: &mut [u32],
        scores: &mut [f32],
    ) -> Result<()> {
        let layer = self.graph.layer(id);
        let buf = self.units[id.0].as_ref().ok_or_else(|| {
            Error::invalid_argument("layer", format!("`{}` is a sparse input", layer.name))
        })?;
        if k == 0 || items == 0 || items > layer.units {
            return Err(Error::invalid_argument(
                "top-k",
                format!(
                    "k {k} over {items} of `{}`'s {} units",
                    layer.name, layer.units
                ),
            ));
        }
        let (rows, rank, size) = (self.rows, self.rank(), self.comm.size());
        let split = self.split(id);
        let local_items = |q: usize| items.saturating_sub(split.start(q)).min(split.len(q));
        let local_k: Vec<usize> = (0..size).map(|q| k.min(local_items(q))).collect();
        let kq = local_k[rank];
        let mut li = vec![crate::predict::NO_ITEM; rows * kq];
        let mut ls = vec![f32::NEG_INFINITY; rows * kq];
        if kq > 0 {
            let excl = exclude.map(|e| column_shard(e, &split, rank)).transpose()?;
            self.backend.top_k(
                Mat::new(buf, rows, split.len(rank)),
                local_items(rank),
                kq,
                excl.as_ref().map(|c| c.view()),
                &mut li,
                &mut ls,
            )?;
        }
        let counts: Vec<usize> = local_k.iter().map(|&c| c * rows).collect();
        let total: usize = counts.iter().sum();
        let (mut all_i, mut all_s) = (vec![0u32; total], vec![0.0f32; total]);
        self.comm.all_gather(&li, &counts, &mut all_i)?;
        self.comm.all_gather(&ls, &counts, &mut all_s)?;
        let mut shards = Vec::with_capacity(size);
        let mut at = 0;
        for q in 0..size {
            let n = counts[q];
            if n > 0 {
                shards.push(ShardTopKBatch {
                    offset: split.start(q) as u32,
                    k: local_k[q],
                    indices: &all_i[at..at + n],
                    scores: &all_s[at..at + n],
                });
            }
            at += n;
        }
        merge_top_k_batch(&shards, k, indices, scores)
    }
}
