//! [`Network`]: a compiled [`Graph`] with its weights and buffers on a [`Backend`].
//!
//! Buffers are allocated once for a maximum batch size. Every layer that is not a sparse
//! input has a unit buffer `[batch][units]` (its activations `a`); every non-input layer a
//! delta buffer of the same shape. Each weight `W` of an edge `source → target` is stored
//! `[source units][target units]` row-major (DSSTNE's layout), with a bias of `target units`.
//!
//! The math of one training step (the composite logic, written once for every backend):
//! - forward, in topological order: `z_L = Σ_e (a_src(e)·op(W_e) + b_e) + Σ_skip a_s`
//!   (`op(W) = Wᵀ` for an edge using a shared weight transposed), batch normalisation of `z_L`
//!   on `BatchNormalization` layers, `a_L = f_L(z_L)`, then inverted dropout on hidden layers
//!   while training;
//! - output delta `δ = ∂L/∂z` from the error function (two-pass for sparse targets, zeros
//!   ignored for `SparseIgnoreZero` targets), scaled per example by the data weights when the
//!   target dataset has them, then `DeltaNorm`; for sparse targets the training forward
//!   computes the activation, the loss and this delta (before the scaling) together
//!   ([`Backend::sparse_output_forward`]), and the backward pass takes the delta from there;
//! - backward, in reverse order: a hidden layer's `∂L/∂a` (summed over its outgoing edges
//!   `δ_t·op(W_e)ᵀ` and skip targets) gets the sparseness penalty, goes back through dropout
//!   and `f'`, `DeltaNorm` and batch normalisation to `δ_L`; for each incoming edge
//!   `g_W (+)= −(1/(B·s))·a_srcᵀ·δ_L` (transposed: `δ_Lᵀ·a_src`) summed over the edges
//!   sharing `W`, and `g_b = −(1/B)·Σ_b δ_L` per edge (the negative mean gradient, `s` the
//!   sharing count), sparse sources through the fixed-point kernel;
//! - update of every weight (then its `WeightNorm`), every edge's bias and every batch
//!   normalisation scale and shift with the chosen optimizer (biases, scales and shifts
//!   unregularised).
//!
//! Fused SGD ([`Network::train_step`], [`Network::backward_update`]): with plain SGD and
//! `λ1 = 0` the update `W ← W + α·(g_W − λ·W)` is `W ← (1 − αλ)·W + α·g_W`, so the backward
//! pass writes it straight into each weight that no other edge shares,
//! `W ← (1 − αλ)·W − (α/B)·a_srcᵀ·δ_L` (one gradient product with `W` as its output), and into
//! every edge's bias, `b ← b − (α/B)·Σ_b δ_L`, after the edge's `δ_src = δ_L·op(W)ᵀ` has read
//! the old `W`; the update pass then skips them (it still applies `WeightNorm`, and updates
//! shared weights and batch normalisation as above). This equals the separate backward and
//! update up to f32 rounding; [`Network::backward`] and [`Network::update`] called on their
//! own never fuse.
//!
//! Every edge has its own bias; weights are per graph weight, so an edge sharing another's
//! weight has a bias but no matrix (see `params.rs`).

mod batchnorm;
mod check;
mod dropout;
mod model;
mod params;
mod pass;
mod steps;
mod update;

use crate::backend::traits::{Backend, Mat};
use crate::dense::Matrix;
use crate::error::{Error, Result};
use crate::graph::{Graph, LayerId};
use crate::ops::activation::ActivationParams;
use crate::ops::init::{init_bias, init_weights};
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::state_len;
use crate::ops::{Activation, Optimizer};
use crate::sparse::Csr;

pub(crate) use batchnorm::BatchNorm;
pub use batchnorm::{BatchNormTrainState, BatchNormValues};
pub(crate) use check::rows_finite;
pub(crate) use dropout::AlphaDropout;
pub use model::SlotState;
pub(crate) use model::{assemble_model, model_values};
pub(crate) use pass::dropout_stream;
pub use pass::StepStats;
pub(crate) use steps::{hidden_layer_delta, output_layer_delta, Targets};

/// The rows of one layer for one minibatch, on the host.
#[derive(Clone, Debug)]
pub enum HostRows {
    /// Sparse rows (`rows` of them), columns = the layer's units.
    Sparse(Csr),
    /// Dense rows, row-major `[rows][units]`.
    Dense(Vec<f32>),
}

/// One minibatch on the host: the rows of every data-bound layer (inputs and targets).
#[derive(Clone, Debug)]
pub struct MiniBatch {
    /// Number of examples.
    pub rows: usize,
    /// The rows of each data-bound layer.
    pub layers: Vec<(LayerId, HostRows)>,
    /// Per-example weights of each output layer's target dataset, when it has them.
    pub example_weights: Vec<(LayerId, Vec<f32>)>,
    /// Output layers whose target dataset has DSSTNE's `SparseIgnoreZero` attribute: their
    /// sparse targets train (and count in the loss) on the non-zeros only.
    pub ignore_zero: Vec<LayerId>,
}

/// One weight matrix with its gradient and optimizer state (shared by every edge using it).
pub(crate) struct Param<V> {
    pub w: V,
    pub dw: V,
    pub w_state: [V; 2],
    pub rows: usize,
    pub cols: usize,
}

/// The bias of one edge (DSSTNE gives every edge its own bias, shared weight or not), with its
/// gradient and optimizer state.
pub(crate) struct EdgeBias<V> {
    pub b: V,
    pub db: V,
    pub state: [V; 2],
    pub cols: usize,
}

/// Where a layer's minibatch rows live on the device.
pub(crate) enum Loaded<B: Backend> {
    None,
    Sparse(B::SparseBatch),
    /// Dense rows uploaded into the layer's unit buffer (inputs) or target buffer (outputs).
    Dense,
}

/// A network ready to train or predict on backend `B`. See the [module documentation](self).
pub struct Network<B: Backend> {
    backend: B,
    graph: Graph,
    capacity: usize,
    optimizer: Optimizer,
    /// Activations per layer (`None` for sparse input layers).
    units: Vec<Option<B::Vector>>,
    /// `∂L/∂a` then `∂L/∂z` per non-input layer.
    deltas: Vec<Option<B::Vector>>,
    /// The activations before dropout, per hidden layer with dropout: the backward pass takes
    /// `f'` from them (after dropout the unit buffer holds `a/(1−p)` or the dropped value).
    pre_dropout: Vec<Option<B::Vector>>,
    /// Per ELU/SELU hidden layer with dropout: a row of the alpha-dropout bias `b`
    /// ([`AlphaDropout`]).
    alpha_bias: Vec<Option<B::Vector>>,
    /// Dense targets per output layer.
    targets: Vec<Option<B::Vector>>,
    /// The current minibatch of each data-bound layer.
    loaded: Vec<Loaded<B>>,
    example_weights: Vec<Option<Vec<f32>>>,
    rows: usize,
    /// One per graph weight.
    params: Vec<Param<B::Vector>>,
    /// One per graph edge.
    biases: Vec<EdgeBias<B::Vector>>,
    /// Per layer: the batch-normalisation state of a `BatchNormalization` hidden layer.
    batch_norm: Vec<Option<BatchNorm<B::Vector>>>,
    /// Per layer: its sparse targets are `SparseIgnoreZero` (set by [`Network::load_batch`]).
    ignore_zero: Vec<bool>,
    losses: Vec<Option<LossSpec>>,
    /// Number of updates applied (Adam's `t`).
    step: u64,
    /// Whether [`Network::backward_update`] may fuse plain SGD into the backward pass.
    fused_sgd: bool,
    /// Per output layer with sparse targets, after a training [`Network::forward`]: its
    /// loss, computed with its delta in the same pass ([`Backend::sparse_output_forward`]);
    /// cleared by every forward and minibatch.
    fused_loss: Vec<Option<crate::ops::fixed::FixedSum>>,
    /// Per output layer: its delta buffer holds the delta that pass wrote, not yet taken by
    /// a backward pass (which then scales it in place, so a second backward recomputes it).
    fused_delta: Vec<bool>,
    /// Scratch of [`Network::non_finite_output`]: ones (the widest output layer's units) and
    /// one sum per example.
    finite_check: (B::Vector, B::Vector),
}

/// The loss of an output layer (`None` for other layers); errors when the error function has
/// no kernel for the layer's activation.
pub(crate) fn output_loss(graph: &Graph, layer: &crate::graph::Layer) -> Result<Option<LossSpec>> {
    if layer.kind != crate::descriptor::LayerKind::Output {
        return Ok(None);
    }
    let d = graph.descriptor();
    let spec = LossSpec {
        error: d.error_function,
        activation: layer.activation,
        act_params: act_params(layer),
        smce: d.smce,
        delta_boost: d.delta_boost,
    };
    spec.check().map_err(|e| Error::Graph {
        network: graph.name().to_owned(),
        layer: layer.name.clone(),
        message: e.to_string(),
    })?;
    Ok(Some(spec))
}

/// A row of `len` copies of the alpha-dropout bias of an ELU/SELU hidden layer with dropout
/// ([`AlphaDropout`]), `None` for other layers.
pub(crate) fn alpha_bias_row<B: Backend>(
    backend: &B,
    layer: &crate::graph::Layer,
    len: usize,
) -> Result<Option<B::Vector>> {
    match AlphaDropout::of(layer) {
        Some(ad) if layer.kind == crate::descriptor::LayerKind::Hidden => {
            let mut row = backend.zeros(len)?;
            backend.upload(&mut row, &vec![ad.bias; len])?;
            Ok(Some(row))
        }
        _ => Ok(None),
    }
}

/// The activation parameters of a compiled layer.
pub(crate) fn act_params(layer: &crate::graph::Layer) -> ActivationParams {
    ActivationParams {
        slope: layer.relu_slope,
        alpha: layer.elu_alpha,
        lambda: layer.selu_lambda,
    }
}

impl<B: Backend> Network<B> {
    /// Allocates a network for `graph` on `backend` for minibatches of up to `capacity`
    /// examples, with weights initialised from `seed` (weight `i` draws from RNG stream `i`)
    /// and optimizer state for `optimizer`.
    ///
    /// Errors: a skip from a sparse input and a transposed shared weight on an edge from a
    /// sparse input ([`Error::Unsupported`]), `BatchNormalization` on a non-hidden layer, an
    /// output layer whose error function has no kernel for its activation, a zero capacity.
    pub fn build(
        backend: B,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid_argument("batch", "must be at least 1"));
        }
        for edge in graph.edges() {
            let source = graph.layer(edge.source);
            if edge.transposed
                && source.kind == crate::descriptor::LayerKind::Input
                && source.sparse
            {
                return Err(Error::Unsupported(format!(
                    "layer `{}`: a transposed shared weight from the sparse input layer `{}` \
                     (share the weight untransposed, or make the input dense)",
                    graph.layer(edge.target).name,
                    source.name
                )));
            }
        }
        for layer in graph.layers() {
            if let Some(&skip) = layer.skips.iter().find(|&&s| {
                let source = graph.layer(s);
                source.kind == crate::descriptor::LayerKind::Input && source.sparse
            }) {
                return Err(Error::Unsupported(format!(
                    "layer `{}`: a Skip from the sparse input layer `{}` (a sparse input has no \
                     dense unit buffer to add; make the input dense or drop the skip)",
                    layer.name,
                    graph.layer(skip).name
                )));
            }
            if layer.batch_normalization && layer.kind != crate::descriptor::LayerKind::Hidden {
                return Err(Error::Graph {
                    network: graph.name().to_owned(),
                    layer: layer.name.clone(),
                    message: format!(
                        "BatchNormalization applies to Hidden layers only; this is a {} layer",
                        layer.kind
                    ),
                });
            }
        }
        let n = graph.layers().len();
        let mut units = Vec::with_capacity(n);
        let mut deltas = Vec::with_capacity(n);
        let mut pre_dropout = Vec::with_capacity(n);
        let mut alpha_bias = Vec::with_capacity(n);
        let mut targets = Vec::with_capacity(n);
        let mut losses = Vec::with_capacity(n);
        let d = graph.descriptor();
        for layer in graph.layers() {
            let len = capacity * layer.units;
            let is_input = layer.kind == crate::descriptor::LayerKind::Input;
            units.push(if is_input && layer.sparse {
                None
            } else {
                Some(backend.zeros(len)?)
            });
            deltas.push(if is_input {
                None
            } else {
                Some(backend.zeros(len)?)
            });
            let hidden = layer.kind == crate::descriptor::LayerKind::Hidden;
            pre_dropout.push(if hidden && layer.p_dropout > 0.0 {
                Some(backend.zeros(len)?)
            } else {
                None
            });
            alpha_bias.push(alpha_bias_row(&backend, layer, layer.units)?);
            targets.push(None);
            losses.push(output_loss(&graph, layer)?);
        }
        let state = state_len(optimizer);
        let state_buf = |k: usize, len: usize| backend.zeros(if state > k { len } else { 0 });
        let mut params = Vec::with_capacity(graph.weights().len());
        for (i, weight) in graph.weights().iter().enumerate() {
            let (rows, cols) = (weight.input_units, weight.output_units);
            let mut w = vec![0.0f32; rows * cols];
            init_weights(
                &mut w,
                0,
                weight.init.scheme,
                weight.init.scale,
                rows as u64,
                cols as u64,
                seed,
                i as u64,
            )?;
            let mut wv = backend.zeros(rows * cols)?;
            backend.upload(&mut wv, &w)?;
            params.push(Param {
                w: wv,
                dw: backend.zeros(rows * cols)?,
                w_state: [state_buf(0, rows * cols)?, state_buf(1, rows * cols)?],
                rows,
                cols,
            });
        }
        let mut biases = Vec::with_capacity(graph.edges().len());
        for edge in graph.edges() {
            let cols = graph.layer(edge.target).units;
            let init = d.layers[graph.layer(edge.target).descriptor_index].weight_init;
            let mut b = vec![0.0f32; cols];
            init_bias(&mut b, init.bias);
            let mut bv = backend.zeros(cols)?;
            backend.upload(&mut bv, &b)?;
            biases.push(EdgeBias {
                b: bv,
                db: backend.zeros(cols)?,
                state: [state_buf(0, cols)?, state_buf(1, cols)?],
                cols,
            });
        }
        let mut batch_norm = Vec::with_capacity(n);
        for layer in graph.layers() {
            batch_norm.push(if layer.batch_normalization {
                Some(BatchNorm::new(&backend, layer.units, capacity, state)?)
            } else {
                None
            });
        }
        let loaded = (0..n).map(|_| Loaded::None).collect();
        let widest = graph.outputs().map(|l| l.units).max().unwrap_or(0);
        let mut ones = backend.zeros(widest)?;
        backend.upload(&mut ones, &vec![1.0; widest])?;
        let finite_check = (ones, backend.zeros(capacity)?);
        Ok(Network {
            backend,
            graph,
            capacity,
            optimizer,
            units,
            deltas,
            pre_dropout,
            alpha_bias,
            targets,
            loaded,
            example_weights: vec![None; n],
            rows: 0,
            params,
            biases,
            batch_norm,
            ignore_zero: vec![false; n],
            losses,
            step: 0,
            fused_sgd: true,
            fused_loss: vec![None; n],
            fused_delta: vec![false; n],
            finite_check,
        })
    }

    /// The compiled graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
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

    /// Bytes held by the network's device buffers (weights, gradients, optimizer state,
    /// activations, deltas) for its capacity, not counting the current minibatch.
    pub fn buffer_bytes(&self) -> u64 {
        let slots = 2 + state_len(self.optimizer) as u64;
        let per_param: u64 = self
            .params
            .iter()
            .map(|p| (p.rows * p.cols) as u64 * slots)
            .chain(self.biases.iter().map(|b| b.cols as u64 * slots))
            .sum::<u64>()
            + self
                .batch_norm
                .iter()
                .flatten()
                .map(|bn| bn.bytes(self.capacity) / 4)
                .sum::<u64>();
        let per_layer: u64 = self
            .graph
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let len = (self.capacity * l.units) as u64;
                len * (self.units[i].is_some() as u64
                    + self.deltas[i].is_some() as u64
                    + self.pre_dropout[i].is_some() as u64)
            })
            .sum();
        4 * (per_param + per_layer)
    }

    /// Uploads a minibatch: the rows of every data-bound layer. Input layers must all be
    /// given; output layers must be given for training and loss, not for prediction.
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
        for slot in &mut self.loaded {
            *slot = Loaded::None;
        }
        self.example_weights.iter_mut().for_each(|w| *w = None);
        self.ignore_zero.iter_mut().for_each(|f| *f = false);
        for id in &batch.ignore_zero {
            if let Some(flag) = self.ignore_zero.get_mut(id.0) {
                *flag = true;
            }
        }
        for (id, rows) in batch.layers {
            let layer = self.graph.layer(id);
            let is_output = layer.kind == crate::descriptor::LayerKind::Output;
            let units = layer.units;
            match rows {
                HostRows::Sparse(csr) => {
                    if csr.n_rows() != batch.rows || csr.n_cols() as usize != units {
                        return Err(shape_error(
                            &layer.name,
                            csr.n_rows(),
                            csr.n_cols() as usize,
                            batch.rows,
                            units,
                        ));
                    }
                    let for_gradient = !is_output;
                    self.loaded[id.0] =
                        Loaded::Sparse(self.backend.upload_sparse(csr, for_gradient)?);
                }
                HostRows::Dense(values) => {
                    if values.len() != batch.rows * units {
                        return Err(shape_error(
                            &layer.name,
                            values.len() / units.max(1),
                            units,
                            batch.rows,
                            units,
                        ));
                    }
                    let slot = if is_output {
                        let capacity = self.capacity * units;
                        let backend = &self.backend;
                        if self.targets[id.0].is_none() {
                            self.targets[id.0] = Some(backend.zeros(capacity)?);
                        }
                        self.targets[id.0].as_mut()
                    } else {
                        self.units[id.0].as_mut()
                    };
                    let slot = slot.ok_or_else(|| {
                        Error::invalid_argument(
                            "batch",
                            format!("layer `{}` is sparse; dense rows were given", layer.name),
                        )
                    })?;
                    self.backend.upload(slot, &values)?;
                    self.loaded[id.0] = Loaded::Dense;
                }
            }
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

    /// Downloads the activations of layer `id` for the current minibatch, row-major
    /// `[rows][units]`. Errors for a sparse input layer (it has no unit buffer).
    pub fn layer_output(&self, id: LayerId) -> Result<Matrix> {
        let layer = self.graph.layer(id);
        let buf = self.units[id.0].as_ref().ok_or_else(|| {
            Error::invalid_argument("layer", format!("`{}` is a sparse input", layer.name))
        })?;
        let mut out = vec![0.0; self.rows * layer.units];
        self.backend.download(buf, &mut out)?;
        Matrix::from_vec(self.rows, layer.units, out)
    }

    /// Exact top-K of each row of layer `id`'s activations over its first `items` units, on
    /// the device where the backend can ([`Backend::top_k`]'s contract).
    pub fn top_k(
        &self,
        id: LayerId,
        items: usize,
        k: usize,
        exclude: Option<crate::sparse::CsrView<'_>>,
        indices: &mut [u32],
        scores: &mut [f32],
    ) -> Result<()> {
        let layer = self.graph.layer(id);
        let buf = self.units[id.0].as_ref().ok_or_else(|| {
            Error::invalid_argument("layer", format!("`{}` is a sparse input", layer.name))
        })?;
        self.backend.top_k(
            Mat::new(buf, self.rows, layer.units),
            items,
            k,
            exclude,
            indices,
            scores,
        )
    }

    /// Read access to a layer's unit buffer as a matrix of the current rows.
    pub(crate) fn units_mat(&self, id: LayerId) -> Option<Mat<'_, B::Vector>> {
        let units = self.graph.layer(id).units;
        self.units[id.0]
            .as_ref()
            .map(|buf| Mat::new(buf, self.rows, units))
    }

    /// Whether `activation` drops units to 0.5 (DSSTNE: Sigmoid) or 0.
    pub(crate) fn dropped_value(activation: Activation) -> f32 {
        if activation == Activation::Sigmoid {
            0.5
        } else {
            0.0
        }
    }
}

fn shape_error(layer: &str, rows: usize, cols: usize, want_rows: usize, want_cols: usize) -> Error {
    Error::invalid_argument(
        "batch",
        format!("layer `{layer}` was given {rows}x{cols} rows; expected {want_rows}x{want_cols}"),
    )
}
