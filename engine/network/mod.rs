//! [`Network`]: a compiled [`Graph`] with this rank's weights and buffers on a [`Backend`],
//! connected to the other ranks of a model-parallel run by a [`Collective`].
//!
//! One network serves one rank and `N`: a run without `mpirun` is the one-rank case
//! ([`Local`], the default collective), whose steps move no data between ranks and run the
//! single-device instructions; with `N` ranks every layer's units are split by the
//! [`ShardPlan`] (DSSTNE.md §4) and the cross-rank steps are the helpers of
//! [`crate::parallel`].
//!
//! # Buffers
//! Buffers are allocated once for a maximum batch size. Rank `r` holds, per layer, the
//! activations `a` of its units (`[batch][local units]`; none for a sparse input layer) and,
//! per non-input layer, a delta buffer of the same shape. A weight `W` of an edge
//! `source → target` is `[source units][target units]` row-major (DSSTNE's layout); a rank holds
//! its block: `W[:, its outputs]` for an output-sharded weight, `W[its inputs, :]` for an
//! input-sharded one, the whole weight on one rank, with the block's gradient and optimizer
//! state. Every edge has its own bias, split like its target layer.
//!
//! # The math of one training step (written once for every backend and rank count)
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
//!   unregularised);
//! - a variational mean layer (descriptor `Variational`) is sampled after its activation
//!   while training, its `β·KL` added to the loss, and its `∂L/∂a` split into the mean's and
//!   the log variance's deltas first in the backward pass ([`crate::ops::variational`]).
//!
//! # Across ranks (a `Route` per edge)
//! - forward through an output-sharded edge: all-gather the source activations (a sparse or
//!   dense Input's rows are whole on every rank), then `z_local += a·W_local`; through an
//!   input-sharded edge: `P = a_local·W_local` (`batch × out`, partial sums), reduce-scattered
//!   so that each rank gets the sum over ranks of its output columns;
//! - the loss is summed over each rank's output columns and all-reduced (exact, `i128`);
//!   SoftMax outputs take their row maxima and sums across ranks;
//! - backward through an output-sharded edge: `g_W_local` from the gathered input and the
//!   local `δ`, and the partial `δ_src = δ_local·W_localᵀ` (`batch × in`) reduce-scattered;
//!   through an input-sharded edge: all-gather `δ` of the target, then `g_W_local` and the
//!   local `δ_src` without communication;
//! - `WeightNorm` of an input-sharded weight and `DeltaNorm` sum their squares across ranks.
//!
//! - under data parallelism or a hybrid plan, a layer held by examples
//!   ([`crate::parallel::Layout::Rows`]) holds this rank's rows of every unit; its incoming
//!   weights are whole on every rank and their gradients summed across the ranks after the
//!   backward pass; an edge whose source is held the other way reads it re-laid (an
//!   all-to-all into a replicated edge or an input-sharded one, a gather of rows into an
//!   output-sharded one) and lays its part of `δ_src` back the same way.
//!
//! Cross-rank float sums are exact (fixed point with a shared scale), so a run is
//! bit-identical to itself on the same rank count whatever the transport's order; runs on
//! different rank counts differ by float rounding. Every random draw is keyed by global
//! indices: dropout by (example in the minibatch, global unit) ([`DropoutMask`]), input
//! denoising by (example, feature) ([`crate::train::DataBinding::batch`]), and weights are
//! initialised element by element from their global position, so `P` ranks start from the
//! one-rank network's exact weights and draw the same masks. Not supported across ranks (an
//! [`Error::Unsupported`] at build, naming the layer): SoftMax on a hidden layer, and a Skip
//! from an input layer.
//!
//! # Fused SGD
//! ([`Network::train_step`], [`Network::backward_update`]): with plain SGD and `λ1 = 0` the
//! update `W ← W + α·(g_W − λ·W)` is `W ← (1 − αλ)·W + α·g_W`, so the backward pass writes it
//! straight into each weight block that no other edge shares,
//! `W ← (1 − αλ)·W − (α/B)·a_srcᵀ·δ_L` (one gradient product with `W` as its output), and into
//! every edge's bias, `b ← b − (α/B)·Σ_b δ_L`, after the edge's `δ_src = δ_L·op(W)ᵀ` has read
//! the old `W`; the update pass then skips them (it still applies `WeightNorm`, and updates
//! shared weights and batch normalisation as above). This equals the separate backward and
//! update up to f32 rounding; [`Network::backward`] and [`Network::update`] called on their
//! own never fuse.
//!
//! Every edge has its own bias; weights are per graph weight, so an edge sharing another's
//! weight has a bias but no matrix (see `params.rs`).
//!
//! # Collective calls
//! On `N` ranks every rank must call the same methods in the same order (they are
//! collective); losses, the finite check, top-K and layer outputs are the global values on
//! every rank, and the `download_*`/`to_model` methods return whole tensors on rank 0 and
//! empty ones elsewhere (`upload_*` take whole tensors on every rank).

mod backward;
mod batchnorm;
mod build;
mod check;
mod dropout;
mod exact;
mod load;
mod memory;
mod model;
mod params;
mod pass;
mod readout;
mod save;
mod steps;
mod update;
mod variational;

use crate::backend::traits::{Backend, DropoutMask, Mat};
use crate::collective::{Collective, Local};
use crate::error::{Error, Result};
use crate::graph::{Graph, LayerId};
use crate::ops::activation::ActivationParams;
use crate::ops::fixed::FixedSum;
use crate::ops::loss::LossSpec;
use crate::ops::{Activation, Optimizer};
use crate::parallel::host::Timers;
use crate::parallel::{Layout, Parallelism, RowShare, ShardPlan, Sharding, Split};
use crate::sparse::Csr;

pub(crate) use batchnorm::BatchNorm;
pub use batchnorm::{BatchNormTrainState, BatchNormValues};
pub(crate) use dropout::AlphaDropout;
pub use exact::chunk_passes;
pub use model::SlotState;
pub use pass::StepStats;
pub use save::SlotTensor;
pub(crate) use steps::{hidden_layer_delta, output_layer_delta, Targets};
pub(crate) use variational::LatentSample;

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

/// This rank's block of one weight matrix with its gradient and optimizer state (shared by
/// every edge using the weight).
pub(crate) struct Param<V> {
    pub w: V,
    pub dw: V,
    pub w_state: [V; 2],
    pub rows: usize,
    pub cols: usize,
}

/// This rank's part of the bias of one edge (DSSTNE gives every edge its own bias, shared
/// weight or not), with its gradient and optimizer state.
pub(crate) struct EdgeBias<V> {
    pub b: V,
    pub db: V,
    pub state: [V; 2],
    pub cols: usize,
}

/// How an edge's products run on this rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// One rank: the whole weight, the whole source rows; nothing is communicated.
    Whole,
    /// Output-sharded over several ranks: the whole source rows (all-gathered from a hidden
    /// layer) times the local output columns of `W`; the partial `δ_src` is reduce-scattered.
    GatherSource,
    /// Input-sharded over several ranks: the local source columns times the local rows of
    /// `W`, partial products reduce-scattered; the target's whole `δ` is all-gathered.
    ReducePartials,
}

/// A network ready to train or predict: one rank's part of it (the whole of it on one rank).
/// See the [module documentation](self).
pub struct Network<B: Backend, C: Collective = Local> {
    backend: B,
    comm: C,
    graph: Graph,
    plan: ShardPlan,
    /// Per edge: how its products run on this rank.
    routes: Vec<Route>,
    capacity: usize,
    optimizer: Optimizer,
    /// Activations of the local units per layer (`None` for sparse input layers).
    units: Vec<Option<B::Vector>>,
    /// `∂L/∂a` then `∂L/∂z` of the local units, per non-input layer.
    deltas: Vec<Option<B::Vector>>,
    /// Per layer with a [`Route::ReducePartials`] incoming edge: the whole `δ`.
    delta_full: Vec<Option<B::Vector>>,
    /// The activations before dropout, per hidden layer with dropout: the backward pass takes
    /// `f'` from them (after dropout the unit buffer holds `a/(1−p)` or the dropped value).
    pre_dropout: Vec<Option<B::Vector>>,
    /// Per ELU/SELU hidden layer with dropout: a row of the alpha-dropout bias `b`
    /// ([`AlphaDropout`]).
    alpha_bias: Vec<Option<B::Vector>>,
    /// Dense targets per output layer, local columns.
    targets: Vec<Option<B::Vector>>,
    /// Sparse rows used whole: an input's rows for its [`Route::Whole`] and
    /// [`Route::GatherSource`] edges.
    sparse_full: Vec<Option<B::SparseBatch>>,
    /// Sparse rows, local columns (re-based to 0 on several ranks): an input's rows for its
    /// [`Route::ReducePartials`] edges, and every output's sparse targets.
    sparse_local: Vec<Option<B::SparseBatch>>,
    /// Per SoftMax output with sparse targets on several ranks: the local targets on the
    /// host, with explicit values (an indicator row's `1/nnz` taken over the whole row).
    softmax_targets: Vec<Option<Csr>>,
    /// Per layer: rows are loaded (inputs) or targets are loaded (outputs).
    loaded: Vec<bool>,
    /// Per [`Route::GatherSource`] edge from a dense layer: the whole source activations.
    gathered: Vec<Option<B::Vector>>,
    /// Per edge from a dense layer held the other way (a hybrid plan): the source's
    /// activations re-laid as the edge reads them, `rank's rows × all units` into a replicated
    /// edge, `all rows × local units` into an input-sharded one.
    relaid: Vec<Option<B::Vector>>,
    /// Per sparse Input read by a replicated edge while every rank loads the whole minibatch
    /// (a hybrid plan): this rank's rows.
    sparse_share: Vec<Option<B::SparseBatch>>,
    /// Partial products reduce-scattered: `capacity ×` the widest such matrix (empty on one
    /// rank).
    scratch: B::Vector,
    /// Reduced blocks: `capacity ×` that matrix's widest local share (empty on one rank).
    scratch_local: B::Vector,
    example_weights: Vec<Option<Vec<f32>>>,
    /// Per layer: its sparse targets are `SparseIgnoreZero` (set by [`Network::load_batch`]).
    ignore_zero: Vec<bool>,
    losses: Vec<Option<LossSpec>>,
    /// Per output layer with sparse targets, after a training [`Network::forward`]: its
    /// local loss, computed with its delta in the same pass
    /// ([`Backend::sparse_output_forward`]); cleared by every forward and minibatch.
    fused_loss: Vec<Option<FixedSum>>,
    /// Per variational mean layer: `μ` and `ε` of the last training forward.
    samples: Vec<Option<LatentSample<B::Vector>>>,
    /// `β·KL` of the variational layers' local units and rows in the last training forward
    /// (zero otherwise; cleared by every forward and minibatch).
    kl_loss: FixedSum,
    /// Per output layer: its delta buffer holds the delta that pass wrote, not yet taken by
    /// a backward pass (which then scales it in place, so a second backward recomputes it).
    fused_delta: Vec<bool>,
    /// One per graph weight: this rank's block.
    params: Vec<Param<B::Vector>>,
    /// One per graph edge: this rank's part.
    biases: Vec<EdgeBias<B::Vector>>,
    /// Per layer: the batch-normalisation state of a `BatchNormalization` hidden layer's
    /// local units.
    batch_norm: Vec<Option<BatchNorm<B::Vector>>>,
    /// Number of updates applied (Adam's `t`).
    step: u64,
    /// Whether [`Network::backward_update`] may fuse plain SGD into the backward pass.
    fused_sgd: bool,
    /// Scratch of [`Network::non_finite_output`]: ones (the widest local output) and one sum
    /// per example.
    finite_check: (B::Vector, B::Vector),
    /// Time spent in the cross-rank steps ([`Network::take_collective_seconds`]).
    timers: Timers,
    /// How the ranks split the work: [`Parallelism::Model`] (also on one rank),
    /// [`Parallelism::Data`] or [`Parallelism::Hybrid`] (the plan's layouts say per layer).
    parallelism: Parallelism,
    /// The rows of the loaded minibatch this rank holds in its [`Layout::Rows`] layers, within
    /// the whole minibatch.
    share: RowShare,
    /// Where the examples are split: every rank's row count of the loaded minibatch, in rank
    /// order.
    row_counts: Vec<usize>,
    /// Where the examples are split: two `capacity ×` widest-coupled-layer buffers for the
    /// whole minibatch's rows of a step that couples the examples (empty otherwise).
    whole_rows: [B::Vector; 2],
    /// Exact sums ([`Network::set_exact_chunk`]): the step's fixed-point gradient sums.
    exact: Option<exact::ExactSums>,
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

/// The activation parameters of a compiled layer.
pub(crate) fn act_params(layer: &crate::graph::Layer) -> ActivationParams {
    ActivationParams {
        slope: layer.relu_slope,
        alpha: layer.elu_alpha,
        lambda: layer.selu_lambda,
    }
}

/// RNG streams: dropout of layer `l` in update `t` uses stream `DROPOUT_STREAM + t·2¹⁶ + l`.
const DROPOUT_STREAM: u64 = 1 << 40;

pub(crate) fn dropout_stream(step: u64, layer: LayerId) -> u64 {
    DROPOUT_STREAM + (step << 16) + layer.0 as u64
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// The compiled graph (whole, not sharded).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The collective connecting the ranks.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    /// The backend, the network's buffers freed (to build another network on it).
    pub fn into_backend(self) -> B {
        let Network { backend, .. } = self;
        backend
    }

    /// The plan this rank follows (every layer whole on one rank).
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
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

    /// Whether this is the rank that writes files and logs (rank 0; one rank always).
    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// How the ranks split the work: [`Parallelism::Model`] (also on one rank),
    /// [`Parallelism::Data`] or [`Parallelism::Hybrid`].
    pub fn parallelism(&self) -> Parallelism {
        self.parallelism
    }

    /// Examples in the whole loaded minibatch (under data parallelism the sum of every rank's
    /// rows; otherwise this rank's rows).
    pub fn batch_rows(&self) -> usize {
        self.share.total
    }

    /// Every rank's `local` outcome made common ([`Collective::check`]): `Ok` only when all
    /// ranks are; one rank returns `local`.
    pub fn agree<T>(&self, local: Result<T>) -> Result<T> {
        if self.comm.size() > 1 {
            self.comm.check(local)
        } else {
            local
        }
    }

    /// This rank's units of layer `id`.
    pub fn local_units(&self, id: LayerId) -> std::ops::Range<usize> {
        self.split(id).range(self.layer_rank(id))
    }

    /// Seconds this rank spent in cross-rank steps since the last call: `(staging, exchange)`
    /// — copying blocks between device and host (on a GPU including the wait for the queued
    /// kernels), and the exchange itself (fixed-point conversion and the transport). Zero on
    /// one rank.
    pub fn take_collective_seconds(&mut self) -> (f64, f64) {
        self.timers.take()
    }

    /// Whether layer `id`'s units are split over several ranks ([`Layout::Units`]).
    pub(crate) fn splits_units(&self, id: LayerId) -> bool {
        self.plan.ranks() > 1 && self.plan.layout(id) == Layout::Units
    }

    /// Whether layer `id` holds this rank's share of the examples ([`Layout::Rows`] on several
    /// ranks: data parallelism, or a hybrid's replicated part).
    pub(crate) fn splits_rows(&self, id: LayerId) -> bool {
        self.plan.ranks() > 1 && self.plan.layout(id) == Layout::Rows
    }

    /// Whether the ranks split the examples somewhere (then the replicated weights' gradients
    /// are summed across them).
    pub(crate) fn splits_examples(&self) -> bool {
        self.plan.splits_rows()
    }

    /// Whether each rank loads only its own rows of a minibatch (data parallelism); otherwise
    /// every rank loads the whole minibatch and keeps what its layers need.
    pub(crate) fn loads_own_rows(&self) -> bool {
        (self.parallelism == Parallelism::Data && self.comm.size() > 1) || self.exact.is_some()
    }

    /// Whether layer `id` holds the loaded rows of a larger minibatch ([`Network::share`]'s
    /// `len` rows from `first`): where the ranks split the examples, and every layer under
    /// exact sums (a chunk of the minibatch).
    fn holds_share(&self, id: LayerId) -> bool {
        self.splits_rows(id) || self.exact.is_some()
    }

    /// Errors unless a minibatch is loaded. Under data parallelism a rank may hold none of
    /// the rows of a loaded minibatch smaller than the rank count (it still takes part in
    /// the step's collectives).
    fn require_rows(&self) -> Result<()> {
        if self.share.total == 0 {
            return Err(Error::invalid_argument("batch", "no minibatch is loaded"));
        }
        Ok(())
    }

    /// This rank's place in layer `id`'s split (0 when the layer is whole on every rank).
    fn layer_rank(&self, id: LayerId) -> usize {
        self.plan.layer_rank(id, self.comm.rank())
    }

    /// The rows of the loaded minibatch layer `id` holds on this rank: this rank's share where
    /// the examples are split (or the loaded chunk under exact sums), all of them otherwise.
    pub(crate) fn rows_of(&self, id: LayerId) -> usize {
        if self.holds_share(id) {
            self.share.len
        } else {
            self.share.total
        }
    }

    fn split(&self, id: LayerId) -> Split {
        self.plan.layer_split(id)
    }

    /// The number of this rank's units of layer `id`.
    fn local_len(&self, id: LayerId) -> usize {
        self.split(id).len(self.layer_rank(id))
    }

    /// The dropout mask of this rank's units of `layer` in the current update: element
    /// `(b, j)` draws number `b·units + (first local unit + j)` of the layer's stream.
    /// Under data parallelism the rows are the rank's rows of the whole minibatch (under exact
    /// sums a chunk's): row `b` draws as row `first + b` (`first·units` more).
    fn mask(&self, layer: &crate::graph::Layer, seed: u64) -> DropoutMask {
        let first = if self.holds_share(layer.id) {
            self.share.first
        } else {
            0
        };
        let first_row = (first * layer.units) as u64;
        DropoutMask {
            seed,
            stream: dropout_stream(self.step, layer.id),
            col_offset: first_row + self.local_units(layer.id).start as u64,
            row_stride: layer.units as u64,
        }
    }

    /// Read access to a layer's local unit buffer as a matrix of the current rows.
    pub(crate) fn units_mat(&self, id: LayerId) -> Option<Mat<'_, B::Vector>> {
        let (rows, cols) = (self.rows_of(id), self.local_len(id));
        self.units[id.0]
            .as_ref()
            .map(|buf| Mat::new(buf, rows, cols))
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

/// How edge `sharding` runs on `ranks` ranks.
pub(crate) fn route(sharding: Sharding, ranks: usize) -> Route {
    match sharding {
        _ if ranks == 1 => Route::Whole,
        Sharding::ByOutput => Route::GatherSource,
        Sharding::ByInput => Route::ReducePartials,
    }
}

/// `(&mut v[i], &v[j])` for `i < j`.
pub(crate) fn split_pair_mut_first<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &T) {
    debug_assert!(i < j);
    let (head, tail) = v.split_at_mut(j);
    (&mut head[i], &tail[0])
}

/// `(&v[i], &mut v[j])` for `i < j`.
pub(crate) fn split_pair<T>(v: &mut [T], i: usize, j: usize) -> (&T, &mut T) {
    debug_assert!(i < j);
    let (head, tail) = v.split_at_mut(j);
    (&head[i], &mut tail[0])
}

/// The error of a layer used before its rows are loaded.
pub(crate) fn not_loaded(layer: &crate::graph::Layer) -> Error {
    Error::invalid_argument(
        "batch",
        format!("layer `{}` has no rows loaded", layer.name),
    )
}
