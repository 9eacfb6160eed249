//! [`ShardPlan`]: how each weight of a compiled [`Graph`] is split across the ranks, and what
//! each edge then communicates (DSSTNE.md §4).
//!
//! Every layer's units are split evenly over the ranks ([`Split`]); activations and deltas are
//! held as `[batch][local units]`. A weight `W` (`in × out`) is sharded by DSSTNE's rule:
//!
//! - `out·3 > in·2` (the output is wider than ⅔ of the input): **by output units**
//!   ([`Sharding::ByOutput`]): each rank holds `W[:, its outputs]` (`in × out_r`). Forward:
//!   all-gather the input activations, then a local GEMM into the rank's outputs. Backward: the
//!   local `dW` needs the full input (kept from the forward pass) and the local `δ_out`; the
//!   partial `δ_in` for all input units is reduce-scattered;
//! - otherwise **by input units** ([`Sharding::ByInput`]): each rank holds `W[its inputs, :]`
//!   (`in_r × out`). Forward: a local product gives partial pre-activations for all outputs,
//!   reduce-scattered. Backward: all-gather `δ_out`; `dW` for the local rows and the local
//!   `δ_in` follow without further communication.
//!
//! Biases are split like their output layer. An edge that uses another edge's weight
//! transposed is sharded the other way round (the owner's output split is its input split).
//! An Input layer's data is split by column ([`DataLayout::Columns`], see [`super::shard`])
//! when every edge out of it is input-sharded; otherwise every rank loads the minibatch's full
//! rows ([`DataLayout::Replicated`]) and no gather is needed. An Input layer has no delta.
//!
//! Communication volume ([`ShardPlan::transfers`]) counts ring collectives on `f32`: for an
//! all-gather or reduce-scatter of a `batch × width` matrix, rank `r` receives (and sends)
//! `batch · (width − share_r) · 4` bytes; the figure given is the busiest rank's, the one with
//! the smallest share: `batch · (width − smallest share) · 4` ≈ `(P−1)/P · batch · width · 4`.
//! DSSTNE re-gathers the input in the backward pass of an output-sharded weight; this plan
//! assumes the forward gather is kept (one `batch × in` buffer per such edge), so that gather
//! is not counted twice. The loss and norm all-reduces (a few scalars per minibatch) are left
//! out.
//!
//! # Layouts: model, data and hybrid plans
//! Each layer has a [`Layout`]: [`Layout::Units`] (the above: every rank holds every example
//! of its share of the units) or [`Layout::Rows`] (every rank holds its share of the
//! minibatch's examples with all the units, as in data parallelism). A weight whose edges
//! lead into `Rows` layers is **replicated**: whole on every rank, multiplied on the rank's
//! rows, its gradient summed across the ranks once per step ([`gradient_sum_bytes`]). Where an
//! edge's source is held the other way, its activations are re-laid, and its deltas laid back:
//!
//! - `Units` source → replicated edge: an all-to-all of the source's activations
//!   (`all rows × its units` to `its rows × all units`), and of the deltas back;
//! - `Rows` source → output-sharded edge: the source's rows all-gathered (every rank needs
//!   every example's whole row), and the partial deltas reduce-scattered by rows;
//! - `Rows` source → input-sharded edge: an all-to-all to the `Units` layout, then the usual
//!   reduce-scatter; backward the usual all-gather of `δ`, then an all-to-all back.
//!
//! [`ShardPlan::new`] is the model-parallel plan (every layer `Units`); a plan with every
//! layer `Rows` is data parallelism; [`ShardPlan::with_layouts`] takes any mix
//! ([`crate::parallel::choice`] chooses one per weight).

use std::fmt;

use super::transfer::{even, gradient_sum_bytes, Transfer, TransferKind};
use super::Split;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::{EdgeId, Graph, LayerId, WeightId};

/// How a weight (or an edge's use of one) is split across the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sharding {
    /// By output units: gather the inputs, then multiply (all-gather).
    ByOutput,
    /// By input units: multiply, then reduce the partial outputs (reduce-scatter).
    ByInput,
}

impl Sharding {
    /// DSSTNE's rule for a weight of `input_units × output_units`: by output units when
    /// `output·3 > input·2`.
    pub fn for_weight(input_units: usize, output_units: usize) -> Sharding {
        if (output_units as u128) * 3 > (input_units as u128) * 2 {
            Sharding::ByOutput
        } else {
            Sharding::ByInput
        }
    }

    /// The other sharding (for a transposed use of a weight).
    pub fn flipped(self) -> Sharding {
        match self {
            Sharding::ByOutput => Sharding::ByInput,
            Sharding::ByInput => Sharding::ByOutput,
        }
    }
}

impl fmt::Display for Sharding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sharding::ByOutput => "output",
            Sharding::ByInput => "input",
        })
    }
}

/// Where an Input layer's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataLayout {
    /// Each rank holds the non-zeros of its columns ([`super::split_columns`]).
    Columns,
    /// Each rank holds the minibatch's full rows.
    Replicated,
}

/// How a layer's activations and deltas are held across the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Every rank holds every example of its share of the units (model parallelism).
    Units,
    /// Every rank holds its share of the minibatch's examples with all the units (data
    /// parallelism).
    Rows,
}

/// The plan of one edge `source → target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgePlan {
    pub edge: EdgeId,
    pub weight: WeightId,
    pub source: LayerId,
    pub target: LayerId,
    /// The edge uses another edge's weight, transposed.
    pub transposed: bool,
    /// The source's units (rows of the edge's matrix).
    pub input_units: usize,
    /// The target's units.
    pub output_units: usize,
    /// How this edge's multiplication is split: the owner's weight sharding, flipped when
    /// transposed (unused when `replicated`).
    pub sharding: Sharding,
    /// The weight is whole on every rank, and the edge multiplies each rank's rows (its
    /// target's layout is [`Layout::Rows`]).
    pub replicated: bool,
    /// Collectives of the forward pass (at most one).
    pub forward: Vec<Transfer>,
    /// Collectives of the backward pass (at most one).
    pub backward: Vec<Transfer>,
}

impl EdgePlan {
    /// Busiest-rank bytes of the forward pass for a minibatch of `batch`.
    pub fn forward_bytes(&self, batch: usize) -> u64 {
        self.forward.iter().map(|t| t.bytes(batch)).sum()
    }

    /// Busiest-rank bytes of the backward pass for a minibatch of `batch`.
    pub fn backward_bytes(&self, batch: usize) -> u64 {
        self.backward.iter().map(|t| t.bytes(batch)).sum()
    }
}

/// The plan of one weight (owned by one edge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightPlan {
    pub weight: WeightId,
    /// Rows: the owning edge's input units.
    pub input_units: usize,
    /// Columns: the owning edge's output units.
    pub output_units: usize,
    pub sharding: Sharding,
    /// The split of the sharded dimension (rows for `ByInput`, columns for `ByOutput`).
    pub split: Split,
    /// Whole on every rank (its gradient summed across the ranks), not sharded.
    pub replicated: bool,
}

impl WeightPlan {
    /// Rank `rank`'s block: `(rows, columns)`.
    pub fn local_shape(&self, rank: usize) -> (usize, usize) {
        let (rows, cols) = self.local_block(rank);
        (rows.len(), cols.len())
    }

    /// Rank `rank`'s block as rows and columns of the full weight.
    pub fn local_block(&self, rank: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        match self.sharding {
            _ if self.replicated || self.split.parts() == 1 => {
                (0..self.input_units, 0..self.output_units)
            }
            Sharding::ByOutput => (0..self.input_units, self.split.range(rank)),
            Sharding::ByInput => (self.split.range(rank), 0..self.output_units),
        }
    }

    /// The ranks holding a block: 1 when replicated (every rank holds the whole).
    pub fn parts(&self) -> usize {
        if self.replicated {
            1
        } else {
            self.split.parts()
        }
    }
}

/// The plan of a graph over `ranks` ranks; see the [module documentation](self). `Display`
/// prints it as a table for the training log.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardPlan {
    pub(super) ranks: usize,
    pub(super) names: Vec<String>,
    pub(super) layouts: Vec<Layout>,
    pub(super) layers: Vec<Split>,
    pub(super) inputs: Vec<(LayerId, DataLayout)>,
    pub(super) weights: Vec<WeightPlan>,
    pub(super) edges: Vec<EdgePlan>,
    /// Per layer: the examples' rows it gathers per step (batch normalisation and the
    /// sparseness penalty over a `Rows` layer: 2 each).
    pub(super) coupled_gathers: Vec<usize>,
    /// Per weight: the values its gradient sum moves (weight and its edges' biases) when
    /// replicated.
    pub(super) gradient_values: Vec<u64>,
}

impl ShardPlan {
    /// The model-parallel plan of `graph` over `ranks` ranks (every layer [`Layout::Units`]).
    /// Errors: `ranks == 0`.
    pub fn new(graph: &Graph, ranks: usize) -> Result<ShardPlan> {
        Self::with_layouts(graph, ranks, &vec![Layout::Units; graph.layers().len()])
    }

    /// The plan of `graph` over `ranks` ranks with layer `i` held as `layouts[i]`: a weight is
    /// replicated when its edges lead into `Rows` layers, sharded by DSSTNE's rule otherwise.
    /// Errors: `ranks == 0`, a layout per layer missing, a weight shared by edges into layers
    /// of both layouts, a skip between layers of different layouts, or a variational mean
    /// layer laid out unlike its log-variance layer (so that one layer's units and rows line
    /// up wherever they are added).
    pub fn with_layouts(graph: &Graph, ranks: usize, layouts: &[Layout]) -> Result<ShardPlan> {
        if ranks == 0 {
            return Err(Error::invalid_argument(
                "ranks",
                "a split needs at least 1 rank",
            ));
        }
        check_layouts(graph, layouts)?;
        let layout = |id: LayerId| layouts[id.0];
        let layers = graph
            .layers()
            .iter()
            .map(|l| match layout(l.id) {
                Layout::Units => Split::even(l.units, ranks),
                Layout::Rows => Split::even(l.units, 1),
            })
            .collect::<Result<Vec<_>>>()?;
        let weights: Vec<WeightPlan> = graph
            .weights()
            .iter()
            .map(|w| {
                let sharding = Sharding::for_weight(w.input_units, w.output_units);
                let split = match sharding {
                    Sharding::ByOutput => even(w.output_units, ranks),
                    Sharding::ByInput => even(w.input_units, ranks),
                };
                WeightPlan {
                    weight: w.id,
                    input_units: w.input_units,
                    output_units: w.output_units,
                    sharding,
                    split,
                    replicated: ranks > 1 && layout(w.output) == Layout::Rows,
                }
            })
            .collect();
        let is_input = |id: LayerId| graph.layer(id).kind == LayerKind::Input;
        let edge_sharding = |e: &crate::graph::Edge| {
            let s = weights[e.weight.0].sharding;
            if e.transposed {
                s.flipped()
            } else {
                s
            }
        };
        let inputs: Vec<(LayerId, DataLayout)> = graph
            .inputs()
            .map(|l| {
                let columns = l.outgoing.iter().all(|&e| {
                    let e = graph.edge(e);
                    layout(e.target) == Layout::Units && edge_sharding(e) == Sharding::ByInput
                });
                let layout = if columns {
                    DataLayout::Columns
                } else {
                    DataLayout::Replicated
                };
                (l.id, layout)
            })
            .collect();
        let transfer = |kind, layer: LayerId, what, by_rows| Transfer {
            kind,
            layer,
            what,
            width: graph.layer(layer).units,
            by_rows,
            ranks,
        };
        let edges = graph
            .edges()
            .iter()
            .map(|e| {
                let sharding = edge_sharding(e);
                let replicated = ranks > 1 && layout(e.target) == Layout::Rows;
                let (mut forward, mut backward) = (Vec::new(), Vec::new());
                let relaid =
                    ranks > 1 && !is_input(e.source) && layout(e.source) != layout(e.target);
                use TransferKind::*;
                if replicated {
                    if relaid {
                        forward.push(transfer(AllToAll, e.source, "activations", false));
                        backward.push(transfer(AllToAll, e.source, "deltas", false));
                    }
                } else {
                    let rows_source = relaid;
                    match sharding {
                        Sharding::ByOutput if !is_input(e.source) => {
                            let what = (AllGather, ReduceScatter);
                            forward.push(transfer(what.0, e.source, "activations", rows_source));
                            backward.push(transfer(
                                what.1,
                                e.source,
                                "partial deltas",
                                rows_source,
                            ));
                        }
                        Sharding::ByOutput => {}
                        Sharding::ByInput => {
                            if rows_source {
                                forward.push(transfer(AllToAll, e.source, "activations", false));
                            }
                            forward.push(transfer(
                                ReduceScatter,
                                e.target,
                                "partial pre-activations",
                                false,
                            ));
                            backward.push(transfer(AllGather, e.target, "deltas", false));
                            if rows_source {
                                backward.push(transfer(AllToAll, e.source, "deltas", false));
                            }
                        }
                    }
                }
                EdgePlan {
                    edge: e.id,
                    weight: e.weight,
                    source: e.source,
                    target: e.target,
                    transposed: e.transposed,
                    input_units: graph.layer(e.source).units,
                    output_units: graph.layer(e.target).units,
                    sharding,
                    replicated,
                    forward,
                    backward,
                }
            })
            .collect();
        let coupled_gathers = graph
            .layers()
            .iter()
            .map(|l| {
                let gathers = 2 * usize::from(l.batch_normalization)
                    + 2 * usize::from(l.sparseness_penalty.is_some());
                if ranks > 1 && layout(l.id) == Layout::Rows {
                    gathers
                } else {
                    0
                }
            })
            .collect();
        let gradient_values = graph
            .weights()
            .iter()
            .map(|w| {
                let biases: usize = graph
                    .edges()
                    .iter()
                    .filter(|e| e.weight == w.id)
                    .map(|e| graph.layer(e.target).units)
                    .sum();
                (w.input_units * w.output_units + biases) as u64
            })
            .collect();
        Ok(ShardPlan {
            ranks,
            names: graph.layers().iter().map(|l| l.name.clone()).collect(),
            layouts: layouts.to_vec(),
            layers,
            inputs,
            weights,
            edges,
            coupled_gathers,
            gradient_values,
        })
    }

    /// The number of ranks planned for.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// The split of layer `id`'s units (over 1 part for a [`Layout::Rows`] layer: every rank
    /// holds them all).
    pub fn layer_split(&self, id: LayerId) -> Split {
        self.layers[id.0]
    }

    /// How layer `id` is held across the ranks.
    pub fn layout(&self, id: LayerId) -> Layout {
        self.layouts[id.0]
    }

    /// Rank `rank`'s place in layer `id`'s split: `rank` where its units are split, 0 where
    /// every rank holds them all.
    pub fn layer_rank(&self, id: LayerId, rank: usize) -> usize {
        match self.layouts[id.0] {
            Layout::Units if self.ranks > 1 => rank,
            _ => 0,
        }
    }

    /// The number of layer `id`'s units rank `rank` holds.
    pub fn local_len(&self, id: LayerId, rank: usize) -> usize {
        self.layers[id.0].len(self.layer_rank(id, rank))
    }

    /// Whether some layer is held by rows ([`Layout::Rows`]) on several ranks: the ranks then
    /// split the examples there and sum the replicated weights' gradients.
    pub fn splits_rows(&self) -> bool {
        self.ranks > 1 && self.layouts.contains(&Layout::Rows)
    }

    /// The layout of each Input layer's data.
    pub fn input_layouts(&self) -> &[(LayerId, DataLayout)] {
        &self.inputs
    }

    /// The weights' plans, indexed by [`WeightId`].
    pub fn weights(&self) -> &[WeightPlan] {
        &self.weights
    }

    /// The edges' plans, indexed by [`EdgeId`].
    pub fn edges(&self) -> &[EdgePlan] {
        &self.edges
    }

    /// Every collective of one training step (forward, then backward), busiest-rank bytes for a
    /// minibatch of `batch` rows: `(edge, forward bytes, backward bytes)`.
    pub fn transfers(&self, batch: usize) -> Vec<(EdgeId, u64, u64)> {
        self.edges
            .iter()
            .map(|e| (e.edge, e.forward_bytes(batch), e.backward_bytes(batch)))
            .collect()
    }

    /// Busiest-rank bytes of weight `i`'s gradient sum per step: zero unless replicated.
    pub fn gradient_bytes(&self, i: usize) -> u64 {
        match self.weights[i].replicated {
            true => gradient_sum_bytes(self.gradient_values[i], self.ranks),
            false => 0,
        }
    }

    /// Busiest-rank bytes per step of the rows a `Rows` layer gathers for the steps that couple
    /// the examples (batch normalisation, the sparseness penalty): every other rank's rows.
    pub fn coupled_bytes(&self, batch: usize) -> u64 {
        let rows = batch - even(batch, self.ranks).len(self.ranks - 1);
        self.coupled_gathers
            .iter()
            .zip(&self.layers)
            .map(|(&g, split)| (g * rows * split.total() * 4) as u64)
            .sum()
    }

    /// Busiest-rank bytes of one training step for a minibatch of `batch`: the edges'
    /// collectives (forward + backward), the replicated weights' gradient sums and the
    /// coupled steps' gathers.
    pub fn step_bytes(&self, batch: usize) -> u64 {
        let transfers: u64 = self.transfers(batch).iter().map(|&(_, f, b)| f + b).sum();
        let gradients: u64 = (0..self.weights.len())
            .map(|i| self.gradient_bytes(i))
            .sum();
        transfers + gradients + self.coupled_bytes(batch)
    }

    /// The largest weight block any rank holds, in parameters (weights only, not biases).
    pub fn max_local_parameters(&self) -> u64 {
        (0..self.ranks)
            .map(|r| {
                self.weights
                    .iter()
                    .map(|w| {
                        let (a, b) = w.local_shape(r);
                        (a * b) as u64
                    })
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }
}

/// The checks of [`ShardPlan::with_layouts`] on `layouts`.
fn check_layouts(graph: &Graph, layouts: &[Layout]) -> Result<()> {
    if layouts.len() != graph.layers().len() {
        return Err(Error::invalid_argument(
            "layouts",
            format!(
                "{} layouts for {} layers",
                layouts.len(),
                graph.layers().len()
            ),
        ));
    }
    let name = |id: LayerId| graph.layer(id).name.as_str();
    let differ = |what: String| Err(Error::invalid_argument("layouts", what));
    for e in graph.edges() {
        let owner = graph.weight(e.weight).output;
        if layouts[e.target.0] != layouts[owner.0] {
            return differ(format!(
                "layers `{}` and `{}` share a weight but are laid out differently",
                name(e.target),
                name(owner)
            ));
        }
    }
    for layer in graph.layers() {
        for &skip in &layer.skips {
            if layouts[skip.0] != layouts[layer.id.0] {
                return differ(format!(
                    "layer `{}` skips from `{}`, laid out differently",
                    layer.name,
                    name(skip)
                ));
            }
        }
        if let Some(v) = &layer.variational {
            if layouts[v.log_variance.0] != layouts[layer.id.0] {
                return differ(format!(
                    "the variational layer `{}` and its log variance `{}` are laid out \
                     differently",
                    layer.name,
                    name(v.log_variance)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsstne_rule() {
        assert_eq!(Sharding::for_weight(27_278, 1024), Sharding::ByInput);
        assert_eq!(Sharding::for_weight(1024, 27_278), Sharding::ByOutput);
        assert_eq!(Sharding::for_weight(1024, 1024), Sharding::ByOutput);
        // out·3 == in·2 is not "greater": input-sharded.
        assert_eq!(Sharding::for_weight(3, 2), Sharding::ByInput);
        assert_eq!(Sharding::for_weight(300, 201), Sharding::ByOutput);
        assert_eq!(Sharding::ByInput.flipped(), Sharding::ByOutput);
    }
}
