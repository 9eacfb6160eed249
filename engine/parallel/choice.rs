//! How the ranks of a run split the work ([`Parallelism`]), and the cost model that chooses
//! per weight between sharding it and replicating it ([`Choice`]).
//!
//! Per minibatch of `B` examples on `P` ranks, on the busiest rank:
//!
//! - sharding a weight moves its edges' activations and deltas (the model-parallel
//!   [`ShardPlan`]'s transfers, `∝ B`);
//! - replicating it moves its gradient (with its edges' biases) once per step, independently
//!   of `B` ([`gradient_sum_bytes`]): the sharded update's `2·(P−1)/P·4` bytes per value
//!   (each rank's owned share of the gradient in, the other ranks' updated shares back).
//!
//! The hybrid replicates each weight for which that moves fewer bytes, holds the layers those
//! weights lead into by examples ([`Layout::Rows`]) and the rest by units
//! ([`hybrid_layouts`]), and re-lays activations and deltas between the two where an edge
//! crosses (all-to-all, or a gather of rows; see [`super::plan`]). [`Parallelism::Auto`] takes
//! whichever of the model, data and hybrid plans moves the fewest bytes in all
//! ([`ShardPlan::step_bytes`]: the transfers, the re-layouts, the gradient sums and the rows
//! gathered for batch normalisation).

use std::fmt;

use super::transfer::gradient_sum_bytes;
use super::{Layout, ShardPlan};
use crate::descriptor::LayerKind;
use crate::error::Result;
use crate::graph::Graph;

/// How a run on several ranks splits the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Parallelism {
    /// Model parallelism: every layer's units (and every weight) split across the ranks,
    /// every rank sees every example (DSSTNE's way; [`ShardPlan`]).
    #[default]
    Model,
    /// Data parallelism: every rank holds the whole network and trains on its share of each
    /// minibatch; gradients summed across ranks.
    Data,
    /// Per weight: replicated where that moves fewer bytes than sharding it, the layers it
    /// leads into split by examples, the others by units ([`hybrid_layouts`]).
    Hybrid,
    /// Whichever of the three moves the fewest bytes per minibatch ([`Choice::new`]).
    Auto,
}

impl fmt::Display for Parallelism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Parallelism::Model => "model",
            Parallelism::Data => "data",
            Parallelism::Hybrid => "hybrid",
            Parallelism::Auto => "auto",
        })
    }
}

/// The cost of one weight each way, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightCost {
    /// `source -> target` of its owning edge.
    pub name: String,
    pub parameters: u64,
    /// Busiest-rank bytes per minibatch when sharded: its edges' transfers.
    pub sharded: u64,
    /// Busiest-rank bytes per minibatch when replicated: its gradient's sum.
    pub replicated: u64,
}

impl WeightCost {
    /// Whether replicating it moves fewer bytes.
    pub fn replicate(&self) -> bool {
        self.replicated < self.sharded
    }
}

/// The per-minibatch traffic of each mode for a graph on `ranks` ranks, and the mode
/// [`Parallelism::Auto`] picks. `Display` prints it as a table for the training log.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The chosen mode ([`Parallelism::Model`], [`Parallelism::Data`] or
    /// [`Parallelism::Hybrid`]).
    pub mode: Parallelism,
    /// Per weight: what sharding and replicating it move.
    pub weights: Vec<WeightCost>,
    /// Totals per minibatch ([`ShardPlan::step_bytes`]) of the three plans.
    pub model_bytes: u64,
    pub data_bytes: u64,
    pub hybrid_bytes: u64,
    /// The layers' layouts of the per-weight hybrid.
    pub hybrid: Vec<Layout>,
    batch: usize,
    ranks: usize,
}

impl Choice {
    /// The traffic of `graph` on `ranks` ranks with minibatches of `batch`, and the plan that
    /// moves the fewest bytes (model, then data, then hybrid on a tie). Errors as
    /// [`ShardPlan::new`].
    pub fn new(graph: &Graph, ranks: usize, batch: usize) -> Result<Choice> {
        let model = ShardPlan::new(graph, ranks)?;
        let mut weights = Vec::with_capacity(graph.weights().len());
        for (i, w) in graph.weights().iter().enumerate() {
            let sharded: u64 = model
                .edges()
                .iter()
                .filter(|e| e.weight.0 == i)
                .map(|e| e.forward_bytes(batch) + e.backward_bytes(batch))
                .sum();
            let biases: u64 = graph
                .edges()
                .iter()
                .filter(|e| e.weight.0 == i)
                .map(|e| graph.layer(e.target).units as u64)
                .sum();
            let parameters = (w.input_units * w.output_units) as u64;
            let owner = graph.edge(w.edge);
            weights.push(WeightCost {
                name: format!(
                    "{} -> {}",
                    graph.layer(owner.source).name,
                    graph.layer(owner.target).name
                ),
                parameters,
                sharded,
                replicated: gradient_sum_bytes(parameters + biases, ranks),
            });
        }
        let replicate: Vec<bool> = weights.iter().map(WeightCost::replicate).collect();
        let hybrid = hybrid_layouts(graph, &replicate);
        let data = ShardPlan::with_layouts(graph, ranks, &data_layouts(graph))?;
        let hybrid_plan = ShardPlan::with_layouts(graph, ranks, &hybrid)?;
        let (model_bytes, data_bytes, hybrid_bytes) = (
            model.step_bytes(batch),
            data.step_bytes(batch),
            hybrid_plan.step_bytes(batch),
        );
        let mode = if ranks <= 1 || model_bytes <= data_bytes.min(hybrid_bytes) {
            Parallelism::Model
        } else if data_bytes <= hybrid_bytes {
            Parallelism::Data
        } else {
            Parallelism::Hybrid
        };
        Ok(Choice {
            mode,
            weights,
            model_bytes,
            data_bytes,
            hybrid_bytes,
            hybrid,
            batch,
            ranks,
        })
    }

    /// The layers' layouts under `mode` (the chosen one: [`Choice::mode`]): every layer by
    /// units for model parallelism, by examples for data parallelism, the per-weight hybrid's.
    pub fn layouts(&self, graph: &Graph, mode: Parallelism) -> Vec<Layout> {
        match mode {
            Parallelism::Data => data_layouts(graph),
            Parallelism::Hybrid => self.hybrid.clone(),
            _ => vec![Layout::Units; graph.layers().len()],
        }
    }
}

/// Every layer held by examples: data parallelism.
pub fn data_layouts(graph: &Graph) -> Vec<Layout> {
    vec![Layout::Rows; graph.layers().len()]
}

/// The layouts of the hybrid that replicates weight `i` when `replicate[i]`: a layer is held
/// by examples ([`Layout::Rows`]) when every weight leading into it is replicated, by units
/// otherwise, then, until nothing changes, by units wherever [`ShardPlan::with_layouts`] needs
/// two layers alike and they are not (layers sharing a weight, a skip's ends, a variational
/// layer and its log variance). An Input layer is held by examples when every layer it feeds
/// is.
pub fn hybrid_layouts(graph: &Graph, replicate: &[bool]) -> Vec<Layout> {
    let mut layouts: Vec<Layout> = graph
        .layers()
        .iter()
        .map(|l| {
            let rows = l.kind != LayerKind::Input
                && !l.incoming.is_empty()
                && l.incoming
                    .iter()
                    .all(|&e| replicate.get(graph.edge(e).weight.0) == Some(&true));
            if rows {
                Layout::Rows
            } else {
                Layout::Units
            }
        })
        .collect();
    loop {
        let mut alike: Vec<(usize, usize)> = Vec::new();
        for e in graph.edges() {
            alike.push((e.target.0, graph.weight(e.weight).output.0));
        }
        for layer in graph.layers() {
            // Inputs have no weights: their layout follows their readers' (below).
            alike.extend(
                layer
                    .skips
                    .iter()
                    .filter(|s| graph.layer(**s).kind != LayerKind::Input)
                    .map(|s| (s.0, layer.id.0)),
            );
            if let Some(v) = &layer.variational {
                alike.push((v.log_variance.0, layer.id.0));
            }
        }
        let mut changed = false;
        for (a, b) in alike {
            if layouts[a] != layouts[b] {
                layouts[a] = Layout::Units;
                layouts[b] = Layout::Units;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for layer in graph.inputs() {
        let rows = !layer.outgoing.is_empty()
            && layer
                .outgoing
                .iter()
                .all(|&e| layouts[graph.edge(e).target.0] == Layout::Rows);
        let skipped_from = graph
            .layers()
            .iter()
            .any(|l| l.skips.contains(&layer.id) && layouts[l.id.0] != Layout::Rows);
        if rows && !skipped_from {
            layouts[layer.id.0] = Layout::Rows;
        }
    }
    layouts
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / 1048576.0;
        writeln!(
            f,
            "traffic per minibatch of {} on {} ranks (busiest rank, MiB): each weight sharded \
             (model) or replicated (data)",
            self.batch, self.ranks
        )?;
        for w in &self.weights {
            writeln!(
                f,
                "  {:<28} {:>12} parameters  model {:>9.2}  data {:>9.2}  hybrid: {}",
                w.name,
                w.parameters,
                mib(w.sharded),
                mib(w.replicated),
                if w.replicate() { "replicate" } else { "shard" }
            )?;
        }
        writeln!(
            f,
            "  total (with re-layouts and batch-norm rows)  model {:.2}  data {:.2}  hybrid {:.2}  -> {}",
            mib(self.model_bytes),
            mib(self.data_bytes),
            mib(self.hybrid_bytes),
            self.mode
        )
    }
}
