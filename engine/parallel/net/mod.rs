//! [`ShardedNetwork`]: one rank's part of a model-parallel network (DSSTNE.md §4).
//!
//! Every layer's units are split over the ranks by the [`ShardPlan`]; rank `r` holds, per
//! layer, the activations and deltas of its units (`[batch][local units]`), and per weight
//! its block: `W[:, its outputs]` for an output-sharded weight, `W[its inputs, :]` for an
//! input-sharded one, with the optimizer state of that block. Biases are split like their
//! target layer. The math is [`crate::network`]'s, distributed:
//!
//! - forward through an output-sharded edge: all-gather the source activations (a sparse or
//!   dense Input's rows are already whole on every rank), then `z_local += a·W_local`;
//!   through an input-sharded edge: `P = a_local·W_local` (`batch × out`, partial sums),
//!   reduce-scatter `P` so each rank gets the sum over ranks of its output columns;
//! - the loss is summed over each rank's output columns and all-reduced (exact, `i128`);
//!   SoftMax outputs take their row maxima and sums across ranks;
//! - backward through an output-sharded edge: `g_W_local = α·aᵀ·δ_local` with the kept
//!   gathered input, and the partial `δ_src = δ_local·W_localᵀ` (`batch × in`) is
//!   reduce-scattered; through an input-sharded edge: all-gather `δ` of the target, then
//!   `g_W_local = α·a_localᵀ·δ` and `δ_src,local = δ·W_localᵀ` without communication;
//! - updates touch local blocks only; `WeightNorm` of an input-sharded weight and
//!   `DeltaNorm` sum their squares across ranks.
//!
//! Cross-rank float sums go through [`super::exact`] (fixed point with a shared scale), so a
//! run is bit-identical to itself on the same rank count whatever MPI's reduction order; runs
//! on different rank counts differ by float rounding (the tests bound it). Dropout draws the
//! same number for a unit whatever the rank count
//! ([`DropoutMask`](crate::backend::traits::DropoutMask)), and weights are
//! initialised element by element from their global position, so `P` ranks start from the
//! single-rank network's exact weights.
//!
//! Collectives run on host copies (download, communicate, upload), so a CUDA backend works
//! too (the transfers cost PCIe time; GPU-direct collectives are not done).
//!
//! Batch normalisation is per unit, so each rank normalises its units over the minibatch
//! exactly as one device would.
//!
//! A shared weight (DSSTNE's `SharedWeights`) is held once, as its owning edge's block; an
//! edge using it transposed is sharded the other way round (the owner's output split is its
//! input split), so the same block serves it as `Wᵀ`, and its gradient accumulates into the
//! owner's (divided by the sharing count, as on one device).
//!
//! Not supported across ranks (an [`Error::Unsupported`] at build, naming the layer): SoftMax
//! on a hidden layer.

mod backward;
mod host;
mod params;
mod pass;

use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::{Graph, LayerId};
use crate::network::{
    alpha_bias_row, output_loss, BatchNorm, EdgeBias, HostRows, MiniBatch, Param,
};
use crate::ops::init::{init_bias, init_weights};
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::state_len;
use crate::ops::{Activation, Optimizer};
use crate::sparse::Csr;

use super::{column_shard, ShardPlan, Sharding, Split};

/// One rank's part of a model-parallel network; see the [module documentation](self).
pub struct ShardedNetwork<'c, B: Backend, C: Collective> {
    backend: B,
    comm: &'c C,
    graph: Graph,
    plan: ShardPlan,
    capacity: usize,
    optimizer: Optimizer,
    /// Per layer: the local activations (`None` for sparse inputs).
    units: Vec<Option<B::Vector>>,
    /// Per non-input layer: the local `∂L/∂a`, then `∂L/∂z`.
    deltas: Vec<Option<B::Vector>>,
    /// Per layer with an input-sharded incoming edge: the whole `δ` (`capacity × units`).
    delta_full: Vec<Option<B::Vector>>,
    pre_dropout: Vec<Option<B::Vector>>,
    alpha_bias: Vec<Option<B::Vector>>,
    /// Dense targets, local columns.
    targets: Vec<Option<B::Vector>>,
    /// Sparse rows: inputs' whole rows (for output-sharded edges out of them).
    sparse_full: Vec<Option<B::SparseBatch>>,
    /// Sparse rows, local columns re-based to 0: inputs (input-sharded edges) and targets.
    sparse_local: Vec<Option<B::SparseBatch>>,
    /// Per SoftMax output with sparse targets: the local targets on the host, with explicit
    /// values (an indicator row's `1/nnz` taken over the whole row).
    softmax_targets: Vec<Option<Csr>>,
    /// Per layer: rows are loaded (inputs) or targets are loaded (outputs).
    loaded: Vec<bool>,
    /// Per edge: the whole source activations of an output-sharded edge from a dense layer.
    gathered: Vec<Option<B::Vector>>,
    /// Partial products: `capacity ×` the widest matrix reduce-scattered ([`reduced_width`]).
    scratch: B::Vector,
    /// Reduced blocks: `capacity ×` that matrix's widest local share.
    scratch_local: B::Vector,
    example_weights: Vec<Option<Vec<f32>>>,
    ignore_zero: Vec<bool>,
    losses: Vec<Option<LossSpec>>,
    /// Per output layer with sparse targets, after a training forward: its local loss and
    /// whether its local delta, written in the same pass, awaits the backward pass (as in
    /// [`crate::network::Network`]).
    fused_loss: Vec<Option<crate::ops::fixed::FixedSum>>,
    fused_delta: Vec<bool>,
    params: Vec<Param<B::Vector>>,
    biases: Vec<EdgeBias<B::Vector>>,
    /// Per layer: the batch-normalisation state of its local units.
    batch_norm: Vec<Option<BatchNorm<B::Vector>>>,
    rows: usize,
    step: u64,
    /// `(ones, per-example sums)` of the finite check.
    finite_check: (B::Vector, B::Vector),
    /// Time spent in the collective steps ([`ShardedNetwork::take_collective_seconds`]).
    timers: host::Timers,
}

impl<'c, B: Backend, C: Collective> ShardedNetwork<'c, B, C> {
    /// Rank `comm.rank()`'s part of `graph` split over `comm.size()` ranks, for minibatches of
    /// up to `capacity`, with the weights [`crate::network::Network::build`] would give for
    /// `seed` (each rank initialising its block from the global positions).
    ///
    /// Errors: those of `Network::build` (checked the same way), and
    /// [`Error::Unsupported`] for what the module documentation lists.
    pub fn build(
        backend: B,
        comm: &'c C,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid_argument("batch", "must be at least 1"));
        }
        let unsupported = |layer: &str, what: &str| {
            Err(Error::Unsupported(format!(
                "layer `{layer}`: {what} is not supported under model parallelism \
                 (run on one rank)"
            )))
        };
        for layer in graph.layers() {
            if layer.batch_normalization && layer.kind != LayerKind::Hidden {
                return Err(Error::Graph {
                    network: graph.name().to_owned(),
                    layer: layer.name.clone(),
                    message: format!(
                        "BatchNormalization applies to Hidden layers only; this is a {} layer",
                        layer.kind
                    ),
                });
            }
            if layer.kind == LayerKind::Hidden && layer.activation == Activation::SoftMax {
                return unsupported(&layer.name, "a SoftMax hidden layer");
            }
            if layer
                .skips
                .iter()
                .any(|&s| graph.layer(s).kind == LayerKind::Input)
            {
                return unsupported(&layer.name, "a Skip from an input layer");
            }
        }
        for edge in graph.edges() {
            let source = graph.layer(edge.source);
            if edge.transposed && source.kind == LayerKind::Input && source.sparse {
                return Err(Error::Unsupported(format!(
                    "layer `{}`: a transposed shared weight from the sparse input layer `{}` \
                     (share the weight untransposed, or make the input dense)",
                    graph.layer(edge.target).name,
                    source.name
                )));
            }
        }
        let plan = ShardPlan::new(&graph, comm.size())?;
        let rank = comm.rank();
        let n = graph.layers().len();
        let mut net = ShardedNetwork {
            scratch: backend.zeros(0)?,
            scratch_local: backend.zeros(0)?,
            finite_check: (backend.zeros(0)?, backend.zeros(0)?),
            backend,
            comm,
            capacity,
            optimizer,
            units: Vec::with_capacity(n),
            deltas: Vec::with_capacity(n),
            delta_full: Vec::with_capacity(n),
            pre_dropout: Vec::with_capacity(n),
            alpha_bias: Vec::with_capacity(n),
            targets: (0..n).map(|_| None).collect(),
            sparse_full: (0..n).map(|_| None).collect(),
            sparse_local: (0..n).map(|_| None).collect(),
            softmax_targets: (0..n).map(|_| None).collect(),
            loaded: vec![false; n],
            gathered: Vec::new(),
            example_weights: vec![None; n],
            ignore_zero: vec![false; n],
            losses: Vec::with_capacity(n),
            fused_loss: vec![None; n],
            fused_delta: vec![false; n],
            params: Vec::new(),
            biases: Vec::new(),
            batch_norm: Vec::with_capacity(n),
            rows: 0,
            step: 0,
            timers: host::Timers::default(),
            graph,
            plan,
        };
        let b = &net.backend;
        let d = net.graph.descriptor();
        let (widest, widest_local) = reduced_width(&net.graph, &net.plan, rank);
        for layer in net.graph.layers() {
            let split = net.plan.layer_split(layer.id);
            let local = split.len(rank);
            let len = capacity * local;
            let is_input = layer.kind == LayerKind::Input;
            let hidden = layer.kind == LayerKind::Hidden;
            net.units.push(if is_input && layer.sparse {
                None
            } else {
                Some(b.zeros(len)?)
            });
            net.deltas
                .push(if is_input { None } else { Some(b.zeros(len)?) });
            let by_input_in = layer
                .incoming
                .iter()
                .any(|&e| net.plan.edges()[e.0].sharding == Sharding::ByInput);
            net.delta_full.push(if by_input_in {
                Some(b.zeros(capacity * layer.units)?)
            } else {
                None
            });
            net.pre_dropout.push(if hidden && layer.p_dropout > 0.0 {
                Some(b.zeros(len)?)
            } else {
                None
            });
            net.alpha_bias.push(alpha_bias_row(b, layer, local)?);
            net.losses.push(output_loss(&net.graph, layer)?);
        }
        let state = state_len(optimizer);
        let state_buf = |k: usize, len: usize| b.zeros(if state > k { len } else { 0 });
        for layer in net.graph.layers() {
            let local = net.plan.layer_split(layer.id).len(rank);
            net.batch_norm.push(if layer.batch_normalization {
                Some(BatchNorm::new(b, local, capacity, state)?)
            } else {
                None
            });
        }
        for (i, weight) in net.graph.weights().iter().enumerate() {
            let wp = &net.plan.weights()[i];
            let (rows, cols) = wp.local_shape(rank);
            let (row_range, col_range) = wp.local_block(rank);
            let (n_in, n_out) = (weight.input_units, weight.output_units);
            let mut w = vec![0.0f32; rows * cols];
            for (r, row) in row_range.clone().zip(w.chunks_mut(cols.max(1))) {
                init_weights(
                    &mut row[..cols],
                    (r * n_out + col_range.start) as u64,
                    weight.init.scheme,
                    weight.init.scale,
                    n_in as u64,
                    n_out as u64,
                    seed,
                    i as u64,
                )?;
            }
            let mut wv = b.zeros(rows * cols)?;
            b.upload(&mut wv, &w)?;
            net.params.push(Param {
                w: wv,
                dw: b.zeros(rows * cols)?,
                w_state: [state_buf(0, rows * cols)?, state_buf(1, rows * cols)?],
                rows,
                cols,
            });
        }
        for edge in net.graph.edges() {
            let target = net.graph.layer(edge.target);
            let cols = net.plan.layer_split(edge.target).len(rank);
            let init = d.layers[target.descriptor_index].weight_init;
            let mut bias = vec![0.0f32; cols];
            init_bias(&mut bias, init.bias);
            let mut bv = b.zeros(cols)?;
            b.upload(&mut bv, &bias)?;
            net.biases.push(EdgeBias {
                b: bv,
                db: b.zeros(cols)?,
                state: [state_buf(0, cols)?, state_buf(1, cols)?],
                cols,
            });
            let ep = &net.plan.edges()[edge.id.0];
            let source = net.graph.layer(edge.source);
            let dense_source = !(source.kind == LayerKind::Input && source.sparse);
            net.gathered
                .push(if ep.sharding == Sharding::ByOutput && dense_source {
                    Some(b.zeros(capacity * source.units)?)
                } else {
                    None
                });
        }
        net.scratch = b.zeros(capacity * widest)?;
        net.scratch_local = b.zeros(capacity * widest_local)?;
        let widest_out = net
            .graph
            .outputs()
            .map(|l| net.plan.layer_split(l.id).len(rank))
            .max()
            .unwrap_or(0);
        let mut ones = b.zeros(widest_out)?;
        b.upload(&mut ones, &vec![1.0; widest_out])?;
        net.finite_check = (ones, b.zeros(capacity)?);
        Ok(net)
    }

    /// The compiled graph (whole, not sharded).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The plan this rank follows.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The collective connecting the ranks.
    pub fn comm(&self) -> &C {
        self.comm
    }

    /// The largest minibatch the buffers hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The optimizer the state was allocated for.
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    /// Number of optimizer updates applied so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Sets the update count (when resuming).
    pub fn set_step_count(&mut self, step: u64) {
        self.step = step;
    }

    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn split(&self, id: LayerId) -> Split {
        self.plan.layer_split(id)
    }

    /// This rank's units of layer `id`.
    pub fn local_units(&self, id: LayerId) -> std::ops::Range<usize> {
        self.split(id).range(self.rank())
    }

    /// Seconds this rank spent in collective steps since the last call: `(staging, exchange)`
    /// — copying blocks between device and host (on a GPU including the wait for the queued
    /// kernels), and the exchange itself (fixed-point conversion and the transport).
    pub fn take_collective_seconds(&mut self) -> (f64, f64) {
        self.timers.take()
    }

    /// Bytes this rank's device buffers hold (weight blocks, gradients, optimizer state,
    /// activations, deltas, gathered inputs, scratch), not counting the current minibatch.
    pub fn buffer_bytes(&self) -> u64 {
        let slots = 2 + state_len(self.optimizer) as u64;
        let params: u64 = self
            .params
            .iter()
            .map(|p| (p.rows * p.cols) as u64 * slots)
            .chain(self.biases.iter().map(|b| b.cols as u64 * slots))
            .sum();
        let rank = self.rank();
        let cap = self.capacity as u64;
        let layers: u64 = self
            .graph
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let local = self.split(l.id).len(rank) as u64;
                cap * local
                    * (self.units[i].is_some() as u64
                        + self.deltas[i].is_some() as u64
                        + self.pre_dropout[i].is_some() as u64)
                    + cap * l.units as u64 * self.delta_full[i].is_some() as u64
            })
            .sum();
        let batch_norm: u64 = self
            .batch_norm
            .iter()
            .flatten()
            .map(|bn| bn.bytes(self.capacity) / 4)
            .sum();
        let gathered: u64 = self
            .graph
            .edges()
            .iter()
            .filter(|e| self.gathered[e.id.0].is_some())
            .map(|e| cap * self.graph.layer(e.source).units as u64)
            .sum();
        let (widest, widest_local) = reduced_width(&self.graph, &self.plan, rank);
        4 * (params + batch_norm + layers + gathered + cap * (widest + widest_local) as u64)
    }

    /// Loads a minibatch given as whole rows (as [`crate::network::Network::load_batch`]
    /// takes it); this rank keeps what it needs: an Input's whole rows when an output-sharded
    /// edge leaves it, its local columns when an input-sharded one does, and each Output's
    /// local columns. Rows of a column-sharded dataset may carry only this rank's columns
    /// ([`crate::dataset::Dataset::retain_columns`]); the columns outside the local range are
    /// dropped here either way.
    pub fn load_batch(&mut self, batch: MiniBatch) -> Result<()> {
        if batch.rows == 0 || batch.rows > self.capacity {
            return Err(Error::invalid_argument(
                "batch",
                format!(
                    "{} rows; this network holds 1 to {}",
                    batch.rows, self.capacity
                ),
            ));
        }
        self.rows = batch.rows;
        self.fused_loss.iter_mut().for_each(|l| *l = None);
        self.fused_delta.iter_mut().for_each(|d| *d = false);
        self.loaded.iter_mut().for_each(|l| *l = false);
        self.sparse_full.iter_mut().for_each(|s| *s = None);
        self.sparse_local.iter_mut().for_each(|s| *s = None);
        self.softmax_targets.iter_mut().for_each(|s| *s = None);
        self.example_weights.iter_mut().for_each(|w| *w = None);
        self.ignore_zero.iter_mut().for_each(|f| *f = false);
        for id in &batch.ignore_zero {
            if let Some(flag) = self.ignore_zero.get_mut(id.0) {
                *flag = true;
            }
        }
        let rank = self.rank();
        for (id, rows) in batch.layers {
            let layer = self.graph.layer(id).clone();
            let split = self.split(id);
            let range = split.range(rank);
            let is_output = layer.kind == LayerKind::Output;
            let out_edges: Vec<Sharding> = layer
                .outgoing
                .iter()
                .map(|e| self.plan.edges()[e.0].sharding)
                .collect();
            let wants_full = !is_output && out_edges.contains(&Sharding::ByOutput);
            let wants_local = is_output || out_edges.contains(&Sharding::ByInput);
            match rows {
                HostRows::Sparse(csr) => {
                    if csr.n_rows() != batch.rows || csr.n_cols() as usize != layer.units {
                        return Err(shape_error(&layer.name, &csr, batch.rows, layer.units));
                    }
                    let softmax = is_output && layer.activation == Activation::SoftMax;
                    let csr = if softmax {
                        with_indicator_values(csr, self.losses[id.0].as_ref())
                    } else {
                        csr
                    };
                    if wants_local {
                        let local = column_shard(csr.view(), &split, rank)?;
                        if softmax {
                            self.softmax_targets[id.0] = Some(local.clone());
                        }
                        self.sparse_local[id.0] =
                            Some(self.backend.upload_sparse(local, !is_output)?);
                    }
                    if wants_full {
                        self.sparse_full[id.0] = Some(self.backend.upload_sparse(csr, true)?);
                    }
                }
                HostRows::Dense(values) => {
                    if values.len() != batch.rows * layer.units {
                        return Err(Error::invalid_argument(
                            "batch",
                            format!(
                                "layer `{}` was given {} values; expected {}x{}",
                                layer.name,
                                values.len(),
                                batch.rows,
                                layer.units
                            ),
                        ));
                    }
                    let local: Vec<f32> = values
                        .chunks_exact(layer.units.max(1))
                        .flat_map(|row| row[range.clone()].iter().copied())
                        .collect();
                    if is_output {
                        if self.targets[id.0].is_none() {
                            self.targets[id.0] =
                                Some(self.backend.zeros(self.capacity * range.len())?);
                        }
                        let t = self.targets[id.0].as_mut().expect("allocated above");
                        self.backend.upload(t, &local)?;
                    } else {
                        let slot = self.units[id.0].as_mut().ok_or_else(|| {
                            Error::invalid_argument(
                                "batch",
                                format!("layer `{}` is sparse; dense rows were given", layer.name),
                            )
                        })?;
                        self.backend.upload(slot, &local)?;
                        for &e in &layer.outgoing {
                            if let Some(g) = self.gathered[e.0].as_mut() {
                                self.backend.upload(g, &values)?;
                            }
                        }
                    }
                }
            }
            self.loaded[id.0] = true;
        }
        for (id, w) in batch.example_weights {
            if w.len() != batch.rows {
                return Err(Error::invalid_argument(
                    "example weights",
                    format!("{} weights for {} rows", w.len(), batch.rows),
                ));
            }
            self.example_weights[id.0] = Some(w);
        }
        Ok(())
    }
}

/// The widest matrix any edge reduce-scatters (an input-sharded edge its target's units in
/// the forward pass, an output-sharded edge from a hidden layer its source's units in the
/// backward pass) and its widest share on `rank`; at least 1.
fn reduced_width(graph: &Graph, plan: &ShardPlan, rank: usize) -> (usize, usize) {
    let mut widths = (1, 1);
    for (edge, ep) in graph.edges().iter().zip(plan.edges()) {
        let layer = match ep.sharding {
            Sharding::ByInput => Some(edge.target),
            Sharding::ByOutput if graph.layer(edge.source).kind != LayerKind::Input => {
                Some(edge.source)
            }
            Sharding::ByOutput => None,
        };
        if let Some(id) = layer {
            let split = plan.layer_split(id);
            widths.0 = widths.0.max(split.total());
            widths.1 = widths.1.max(split.len(rank));
        }
    }
    widths
}

/// A SoftMax output's indicator target rows with their values made explicit: `1/nnz` of
/// the whole row ([`LossSpec::indicator_target`]), so that a rank's columns carry the same
/// targets as the whole row.
fn with_indicator_values(csr: Csr, spec: Option<&LossSpec>) -> Csr {
    let Some(spec) = spec.filter(|_| csr.values().is_none()) else {
        return csr;
    };
    let offsets = csr.row_offsets().to_vec();
    let values: Vec<f32> = offsets
        .windows(2)
        .flat_map(|w| {
            let nnz = (w[1] - w[0]) as usize;
            std::iter::repeat_n(spec.indicator_target(nnz), nnz)
        })
        .collect();
    let (n_cols, offsets, cols, _) = csr.into_parts();
    Csr::new_checked(n_cols, offsets, cols, Some(values))
}

fn shape_error(layer: &str, csr: &Csr, rows: usize, units: usize) -> Error {
    Error::invalid_argument(
        "batch",
        format!(
            "layer `{layer}` was given {}x{} rows; expected {rows}x{units}",
            csr.n_rows(),
            csr.n_cols()
        ),
    )
}
