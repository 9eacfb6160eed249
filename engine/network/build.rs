//! Building a [`Network`]: the checks of the graph, this rank's weight blocks initialised
//! from their global positions, and the buffers for a maximum batch size.

use super::memory::MemoryPlan;
use super::{
    output_loss, route, AlphaDropout, BatchNorm, EdgeBias, LatentSample, Network, Param, Route,
};
use crate::backend::traits::Backend;
use crate::collective::{Collective, Local};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::ops::fixed::FixedSum;
use crate::ops::init::{init_bias, init_weights};
use crate::ops::optimizer::state_len;
use crate::ops::{Activation, Optimizer};
use crate::parallel::choice::data_layouts;
use crate::parallel::host::Timers;
use crate::parallel::{Choice, Layout, Parallelism, RowShare, ShardPlan, Split};

impl<B: Backend> Network<B, Local> {
    /// Allocates a one-rank network for `graph` on `backend` for minibatches of up to
    /// `capacity` examples, with weights initialised from `seed` (weight `i` draws from RNG
    /// stream `i`) and optimizer state for `optimizer`: [`Network::build_with`] on [`Local`].
    pub fn build(
        backend: B,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
    ) -> Result<Self> {
        Self::build_with(backend, Local, graph, capacity, optimizer, seed)
    }
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Rank `comm.rank()`'s part of `graph` split over `comm.size()` ranks by
    /// [`ShardPlan::new`] (the whole network on one rank), for minibatches of up to
    /// `capacity` examples, with the weights a one-rank network gets for `seed` (each rank
    /// initialising its block element by element from the global positions: weight `i` draws
    /// from RNG stream `i`) and optimizer state for `optimizer`.
    ///
    /// Errors: a skip from a sparse input and a transposed shared weight on an edge from a
    /// sparse input ([`Error::Unsupported`]), `BatchNormalization` on a non-hidden layer, an
    /// output layer whose error function has no kernel for its activation, a zero capacity;
    /// on several ranks also a SoftMax hidden layer and a skip from any input layer
    /// ([`Error::Unsupported`], naming the layer).
    pub fn build_with(
        backend: B,
        comm: C,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
    ) -> Result<Self> {
        Self::build_parallel(
            backend,
            comm,
            graph,
            capacity,
            optimizer,
            seed,
            Parallelism::Model,
        )
    }

    /// [`Network::build_with`] with the work split across `comm`'s ranks as `parallelism`
    /// says: [`Parallelism::Model`] shards the weights ([`ShardPlan::new`]);
    /// [`Parallelism::Data`] gives every rank the whole network (the one-rank weights) to
    /// train on its share of each minibatch of up to `capacity` examples (the whole
    /// minibatch's size: see [`crate::parallel::data`]); [`Parallelism::Hybrid`] replicates
    /// the weights whose gradients move fewer bytes than their activations and holds the
    /// layers they lead into by examples ([`Choice`]'s per-weight plan; every rank loads the
    /// whole minibatch); [`Parallelism::Auto`] takes whichever of the three moves the fewest
    /// bytes per minibatch of `capacity`. On one rank every mode is the one-rank network.
    pub fn build_parallel(
        backend: B,
        comm: C,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
        parallelism: Parallelism,
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid_argument("batch", "must be at least 1"));
        }
        let ranks = comm.size();
        let (parallelism, layouts) = match parallelism {
            _ if ranks == 1 => (
                Parallelism::Model,
                vec![Layout::Units; graph.layers().len()],
            ),
            Parallelism::Auto => {
                let choice = Choice::new(&graph, ranks, capacity)?;
                (choice.mode, choice.layouts(&graph, choice.mode))
            }
            Parallelism::Hybrid => {
                let choice = Choice::new(&graph, ranks, capacity)?;
                (Parallelism::Hybrid, choice.hybrid)
            }
            Parallelism::Data => (Parallelism::Data, data_layouts(&graph)),
            Parallelism::Model => (
                Parallelism::Model,
                vec![Layout::Units; graph.layers().len()],
            ),
        };
        Self::build_planned(
            backend,
            comm,
            graph,
            capacity,
            optimizer,
            seed,
            parallelism,
            &layouts,
        )
    }

    /// [`Network::build_parallel`] with the layers laid out as `layouts` says (one per layer,
    /// [`ShardPlan::with_layouts`]): a hybrid of model and data parallelism of the caller's
    /// choosing. Every rank loads the whole minibatch. On one rank, the one-rank network.
    #[allow(clippy::too_many_arguments)]
    pub fn build_with_layouts(
        backend: B,
        comm: C,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
        layouts: &[Layout],
    ) -> Result<Self> {
        let parallelism = match comm.size() {
            1 => Parallelism::Model,
            _ => Parallelism::Hybrid,
        };
        Self::build_planned(
            backend,
            comm,
            graph,
            capacity,
            optimizer,
            seed,
            parallelism,
            layouts,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build_planned(
        backend: B,
        comm: C,
        graph: Graph,
        capacity: usize,
        optimizer: Optimizer,
        seed: u64,
        parallelism: Parallelism,
        layouts: &[Layout],
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(Error::invalid_argument("batch", "must be at least 1"));
        }
        let (rank, ranks) = (comm.rank(), comm.size());
        let plan = ShardPlan::with_layouts(&graph, ranks, layouts)?;
        check_graph(&graph, &plan)?;
        let routes: Vec<Route> = plan
            .edges()
            .iter()
            .map(|e| match e.replicated {
                true => Route::Whole,
                false => route(e.sharding, ranks),
            })
            .collect();
        let coupled = coupled_width(&graph, &plan);
        let memory = MemoryPlan::new(&graph, &plan, &routes, capacity, optimizer, rank, coupled);
        memory.check(backend.available_memory(), capacity, backend.name())?;
        let n = graph.layers().len();
        let (mut units, mut deltas, mut delta_full) = (vec![], vec![], vec![]);
        let (mut pre_dropout, mut alpha_bias, mut losses) = (vec![], vec![], vec![]);
        let mut samples = Vec::with_capacity(n);
        let mut batch_norm = Vec::with_capacity(n);
        let state = state_len(optimizer);
        for layer in graph.layers() {
            let local = plan.local_len(layer.id, rank);
            let len = capacity * local;
            let is_input = layer.kind == LayerKind::Input;
            let hidden = layer.kind == LayerKind::Hidden;
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
            let reduces_in = layer
                .incoming
                .iter()
                .any(|&e| routes[e.0] == Route::ReducePartials);
            delta_full.push(if reduces_in {
                Some(backend.zeros(capacity * layer.units)?)
            } else {
                None
            });
            pre_dropout.push(if hidden && layer.p_dropout > 0.0 {
                Some(backend.zeros(len)?)
            } else {
                None
            });
            samples.push(match layer.variational {
                Some(_) => Some(LatentSample {
                    mean: backend.zeros(len)?,
                    noise: backend.zeros(len)?,
                }),
                None => None,
            });
            alpha_bias.push(alpha_bias_row(&backend, layer, local)?);
            losses.push(output_loss(&graph, layer)?);
            batch_norm.push(if layer.batch_normalization {
                Some(BatchNorm::new(&backend, local, capacity, state)?)
            } else {
                None
            });
        }
        let state_buf = |k: usize, len: usize| backend.zeros(if state > k { len } else { 0 });
        let mut params = Vec::with_capacity(graph.weights().len());
        for (i, weight) in graph.weights().iter().enumerate() {
            let wp = &plan.weights()[i];
            let (rows, cols) = wp.local_shape(rank);
            let (row_range, col_range) = wp.local_block(rank);
            let (n_in, n_out) = (weight.input_units, weight.output_units);
            let mut w = vec![0.0f32; rows * cols];
            let init = |block: &mut [f32], offset: usize| {
                init_weights(
                    block,
                    offset as u64,
                    weight.init.scheme,
                    weight.init.scale,
                    n_in as u64,
                    n_out as u64,
                    seed,
                    i as u64,
                )
            };
            if cols == n_out {
                // Whole rows: one contiguous run of the weight's elements.
                init(&mut w, row_range.start * n_out)?;
            } else {
                for (r, row) in row_range.zip(w.chunks_mut(cols.max(1))) {
                    init(&mut row[..cols], r * n_out + col_range.start)?;
                }
            }
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
        let d = graph.descriptor();
        let mut biases = Vec::with_capacity(graph.edges().len());
        let mut gathered = Vec::with_capacity(graph.edges().len());
        let mut relaid = Vec::with_capacity(graph.edges().len());
        for edge in graph.edges() {
            let (source, target) = (graph.layer(edge.source), graph.layer(edge.target));
            let cols = plan.local_len(edge.target, rank);
            let init = d.layers[target.descriptor_index].weight_init;
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
            let dense_source = !(source.kind == LayerKind::Input && source.sparse);
            gathered.push(
                if routes[edge.id.0] == Route::GatherSource && dense_source {
                    Some(backend.zeros(capacity * source.units)?)
                } else {
                    None
                },
            );
            relaid.push(
                match relaid_width(&plan, &routes, edge, dense_source, rank) {
                    Some(width) => Some(backend.zeros(capacity * width)?),
                    None => None,
                },
            );
        }
        let (widest, widest_local) = reduced_width(&graph, &plan, &routes, rank);
        let widest_out = graph
            .outputs()
            .map(|l| plan.local_len(l.id, rank))
            .max()
            .unwrap_or(0);
        let mut ones = backend.zeros(widest_out)?;
        backend.upload(&mut ones, &vec![1.0; widest_out])?;
        Ok(Network {
            whole_rows: [
                backend.zeros(capacity * coupled)?,
                backend.zeros(capacity * coupled)?,
            ],
            parallelism,
            exact: None,
            share: RowShare::default(),
            row_counts: Vec::new(),
            scratch: backend.zeros(capacity * widest)?,
            scratch_local: backend.zeros(capacity * widest_local)?,
            finite_check: (ones, backend.zeros(capacity)?),
            backend,
            comm,
            plan,
            routes,
            capacity,
            optimizer,
            units,
            deltas,
            delta_full,
            pre_dropout,
            alpha_bias,
            targets: (0..n).map(|_| None).collect(),
            sparse_full: (0..n).map(|_| None).collect(),
            sparse_local: (0..n).map(|_| None).collect(),
            softmax_targets: (0..n).map(|_| None).collect(),
            loaded: vec![false; n],
            gathered,
            relaid,
            sparse_share: (0..n).map(|_| None).collect(),
            example_weights: vec![None; n],
            ignore_zero: vec![false; n],
            losses,
            fused_loss: vec![None; n],
            fused_delta: vec![false; n],
            samples,
            kl_loss: FixedSum::default(),
            params,
            biases,
            batch_norm,
            step: 0,
            fused_sgd: true,
            timers: Timers::default(),
            graph,
        })
    }

    /// Bytes this rank's device buffers hold (weight blocks, gradients, optimizer state,
    /// batch normalisation, activations, deltas, gathered inputs, scratch) for its capacity,
    /// not counting the current minibatch: what the build checked against the device's
    /// available memory.
    pub fn buffer_bytes(&self) -> u64 {
        let plan = MemoryPlan::new(
            &self.graph,
            &self.plan,
            &self.routes,
            self.capacity,
            self.optimizer,
            self.comm.rank(),
            coupled_width(&self.graph, &self.plan),
        );
        u64::try_from(plan.total).unwrap_or(u64::MAX)
    }
}

/// The checks of [`Network::build_with`] on the graph for `plan`: on several ranks, a layer
/// split by units cannot be a SoftMax hidden layer nor add a skip from an input layer.
fn check_graph(graph: &Graph, plan: &ShardPlan) -> Result<()> {
    let unsupported = |layer: &str, what: &str| {
        Err(Error::Unsupported(format!(
            "layer `{layer}`: {what} is not supported under model parallelism \
             (run on one rank, or with --parallel data)"
        )))
    };
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
    for layer in graph.layers() {
        if let Some(&skip) = layer.skips.iter().find(|&&s| {
            let source = graph.layer(s);
            source.kind == LayerKind::Input && source.sparse
        }) {
            return Err(Error::Unsupported(format!(
                "layer `{}`: a Skip from the sparse input layer `{}` (a sparse input has no \
                 dense unit buffer to add; make the input dense or drop the skip)",
                layer.name,
                graph.layer(skip).name
            )));
        }
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
        if plan.ranks() > 1 && plan.layout(layer.id) == Layout::Units {
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
        if plan.ranks() > 1
            && layer
                .skips
                .iter()
                .any(|&s| plan.layout(s) != plan.layout(layer.id))
        {
            return unsupported(&layer.name, "a Skip from a layer held the other way");
        }
    }
    Ok(())
}

/// A row of `len` copies of the alpha-dropout bias of an ELU/SELU hidden layer with dropout
/// ([`AlphaDropout`]), `None` for other layers.
fn alpha_bias_row<B: Backend>(
    backend: &B,
    layer: &crate::graph::Layer,
    len: usize,
) -> Result<Option<B::Vector>> {
    match AlphaDropout::of(layer) {
        Some(ad) if layer.kind == LayerKind::Hidden => {
            let mut row = backend.zeros(len)?;
            backend.upload(&mut row, &vec![ad.bias; len])?;
            Ok(Some(row))
        }
        _ => Ok(None),
    }
}

/// The widest matrix any edge reduce-scatters (a [`Route::ReducePartials`] edge its target's
/// units in the forward pass, a [`Route::GatherSource`] edge from a hidden layer its source's
/// units in the backward pass) and its widest share on `rank`; 0 when none does (one rank).
pub(super) fn reduced_width(
    graph: &Graph,
    plan: &ShardPlan,
    routes: &[Route],
    rank: usize,
) -> (usize, usize) {
    let mut widths = (0, 0);
    for (edge, route) in graph.edges().iter().zip(routes) {
        let layer = match route {
            Route::ReducePartials => Some(edge.target),
            Route::GatherSource if graph.layer(edge.source).kind != LayerKind::Input => {
                Some(edge.source)
            }
            Route::GatherSource | Route::Whole => None,
        };
        if let Some(id) = layer {
            let split = plan.layer_split(id);
            widths.0 = widths.0.max(split.total());
            widths.1 = widths.1.max(split.len(rank));
        }
        // A delta laid back across layouts: the source's whole rows in both buffers.
        if crosses_layouts(plan, edge) && graph.layer(edge.source).kind != LayerKind::Input {
            let units = graph.layer(edge.source).units;
            widths.0 = widths.0.max(units);
            widths.1 = widths.1.max(units);
        }
    }
    widths
}

/// Whether `edge` reads a layer held the other way from its target (a hybrid plan on several
/// ranks).
pub(super) fn crosses_layouts(plan: &ShardPlan, edge: &crate::graph::Edge) -> bool {
    plan.ranks() > 1 && plan.layout(edge.source) != plan.layout(edge.target)
}

/// The width of the buffer in which `edge` reads its dense source re-laid (`None` when it
/// reads the source as it is): all the source's units (this rank's rows) into a replicated
/// edge, this rank's share of them (all rows) into an input-sharded one. An output-sharded
/// edge gathers whole rows into its `gathered` buffer instead.
pub(super) fn relaid_width(
    plan: &ShardPlan,
    routes: &[Route],
    edge: &crate::graph::Edge,
    dense_source: bool,
    rank: usize,
) -> Option<usize> {
    if !dense_source || !crosses_layouts(plan, edge) {
        return None;
    }
    let units = plan.layer_split(edge.source).total();
    match routes[edge.id.0] {
        Route::Whole => Some(units),
        Route::ReducePartials => Some(Split::even(units, plan.ranks()).ok()?.len(rank)),
        Route::GatherSource => None,
    }
}

/// The units of the widest layer held by examples on several ranks whose step couples the
/// examples (batch normalisation, the sparseness penalty): two `capacity ×` that buffers hold
/// the whole minibatch's rows ([`Network`]'s `whole_rows`). 0 when there is none.
fn coupled_width(graph: &Graph, plan: &ShardPlan) -> usize {
    graph
        .layers()
        .iter()
        .filter(|l| l.batch_normalization || l.sparseness_penalty.is_some())
        .filter(|l| plan.ranks() > 1 && plan.layout(l.id) == Layout::Rows)
        .map(|l| l.units)
        .max()
        .unwrap_or(0)
}
