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

use std::fmt;

use super::Split;
use crate::descriptor::LayerKind;
use crate::error::Result;
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

/// A collective kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    AllGather,
    ReduceScatter,
}

impl fmt::Display for TransferKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferKind::AllGather => "all-gather",
            TransferKind::ReduceScatter => "reduce-scatter",
        })
    }
}

/// One collective of an edge in a training step: a `batch × width` `f32` matrix whose columns
/// are split over the ranks like `layer`'s units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub kind: TransferKind,
    /// The layer whose units are the columns (whose activations or deltas move).
    pub layer: LayerId,
    /// What moves: `"activations"`, `"partial pre-activations"`, `"deltas"`, `"partial deltas"`.
    pub what: &'static str,
    /// The matrix's width (the layer's units).
    pub width: usize,
    /// The busiest rank's bytes per minibatch row: `(width − smallest share) · 4`.
    pub bytes_per_row: u64,
}

impl Transfer {
    /// Bytes the busiest rank sends (and receives) for a minibatch of `batch` rows.
    pub fn bytes(&self, batch: usize) -> u64 {
        self.bytes_per_row * batch as u64
    }
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
    /// transposed.
    pub sharding: Sharding,
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
}

impl WeightPlan {
    /// Rank `rank`'s block: `(rows, columns)`.
    pub fn local_shape(&self, rank: usize) -> (usize, usize) {
        match self.sharding {
            Sharding::ByOutput => (self.input_units, self.split.len(rank)),
            Sharding::ByInput => (self.split.len(rank), self.output_units),
        }
    }

    /// Rank `rank`'s block as rows and columns of the full weight.
    pub fn local_block(&self, rank: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        match self.sharding {
            Sharding::ByOutput => (0..self.input_units, self.split.range(rank)),
            Sharding::ByInput => (self.split.range(rank), 0..self.output_units),
        }
    }
}

/// The model-parallel plan of a graph over `ranks` ranks; see the
/// [module documentation](self). `Display` prints it as a table for the training log.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardPlan {
    ranks: usize,
    names: Vec<String>,
    layers: Vec<Split>,
    inputs: Vec<(LayerId, DataLayout)>,
    weights: Vec<WeightPlan>,
    edges: Vec<EdgePlan>,
}

impl ShardPlan {
    /// Plans `graph` over `ranks` ranks. Errors: `ranks == 0`.
    pub fn new(graph: &Graph, ranks: usize) -> Result<ShardPlan> {
        let layers = graph
            .layers()
            .iter()
            .map(|l| Split::even(l.units, ranks))
            .collect::<Result<Vec<_>>>()?;
        let weights: Vec<WeightPlan> = graph
            .weights()
            .iter()
            .map(|w| {
                let sharding = Sharding::for_weight(w.input_units, w.output_units);
                let split = match sharding {
                    Sharding::ByOutput => layers[w.output.0],
                    Sharding::ByInput => layers[w.input.0],
                };
                WeightPlan {
                    weight: w.id,
                    input_units: w.input_units,
                    output_units: w.output_units,
                    sharding,
                    split,
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
                let columns = l
                    .outgoing
                    .iter()
                    .all(|&e| edge_sharding(graph.edge(e)) == Sharding::ByInput);
                let layout = if columns {
                    DataLayout::Columns
                } else {
                    DataLayout::Replicated
                };
                (l.id, layout)
            })
            .collect();
        let transfer = |kind, layer: LayerId, what| {
            let split = layers[layer.0];
            let smallest = split.len(ranks - 1);
            Transfer {
                kind,
                layer,
                what,
                width: split.total(),
                bytes_per_row: ((split.total() - smallest) * 4) as u64,
            }
        };
        let edges = graph
            .edges()
            .iter()
            .map(|e| {
                let sharding = edge_sharding(e);
                let (mut forward, mut backward) = (Vec::new(), Vec::new());
                match sharding {
                    Sharding::ByOutput => {
                        if !is_input(e.source) {
                            forward.push(transfer(
                                TransferKind::AllGather,
                                e.source,
                                "activations",
                            ));
                            backward.push(transfer(
                                TransferKind::ReduceScatter,
                                e.source,
                                "partial deltas",
                            ));
                        }
                    }
                    Sharding::ByInput => {
                        forward.push(transfer(
                            TransferKind::ReduceScatter,
                            e.target,
                            "partial pre-activations",
                        ));
                        backward.push(transfer(TransferKind::AllGather, e.target, "deltas"));
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
                    forward,
                    backward,
                }
            })
            .collect();
        Ok(ShardPlan {
            ranks,
            names: graph.layers().iter().map(|l| l.name.clone()).collect(),
            layers,
            inputs,
            weights,
            edges,
        })
    }

    /// The number of ranks planned for.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// The split of layer `id`'s units.
    pub fn layer_split(&self, id: LayerId) -> Split {
        self.layers[id.0]
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

    /// Busiest-rank bytes of one training step (forward + backward) for a minibatch of `batch`.
    pub fn step_bytes(&self, batch: usize) -> u64 {
        self.transfers(batch).iter().map(|&(_, f, b)| f + b).sum()
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

    /// The table: one line per edge (sharding, rank 0's weight block, collectives), and, with
    /// `batch`, the busiest rank's bytes per minibatch forward and backward and a total line.
    pub fn table(&self, batch: Option<usize>) -> String {
        let mut header = vec![
            "edge",
            "in x out",
            "sharded by",
            "W on rank 0",
            "forward",
            "backward",
        ];
        if batch.is_some() {
            header.extend(["fwd bytes", "bwd bytes"]);
        }
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        let describe = |ts: &[Transfer]| -> String {
            ts.iter()
                .map(|t| format!("{} {} {}", t.kind, t.what, self.names[t.layer.0]))
                .collect::<Vec<_>>()
                .join("; ")
        };
        for e in &self.edges {
            let w = &self.weights[e.weight.0];
            let (r, c) = w.local_shape(0);
            let (r, c) = if e.transposed { (c, r) } else { (r, c) };
            let mut row = vec![
                format!(
                    "{}->{}{}",
                    self.names[e.source.0],
                    self.names[e.target.0],
                    if e.transposed { " (shared, W^T)" } else { "" }
                ),
                format!("{}x{}", e.input_units, e.output_units),
                e.sharding.to_string(),
                format!("{r}x{c}"),
                or_dash(describe(&e.forward)),
                or_dash(describe(&e.backward)),
            ];
            if let Some(b) = batch {
                row.push(group(e.forward_bytes(b)));
                row.push(group(e.backward_bytes(b)));
            }
            rows.push(row);
        }
        let mut out = format!(
            "shard plan: {} rank{}; units split evenly (the first N mod {} ranks get one more)\n",
            self.ranks,
            if self.ranks == 1 { "" } else { "s" },
            self.ranks
        );
        for (id, layout) in &self.inputs {
            out.push_str(&format!(
                "input {}: {}\n",
                self.names[id.0],
                match layout {
                    DataLayout::Columns => "data split by column",
                    DataLayout::Replicated => "data rows replicated on every rank",
                }
            ));
        }
        out.push_str(&align(&rows));
        if let Some(b) = batch {
            out.push_str(&format!(
                "per minibatch of {b} on the busiest rank: {} bytes; largest weight share {} parameters\n",
                group(self.step_bytes(b)),
                group(self.max_local_parameters())
            ));
        }
        out
    }
}

impl fmt::Display for ShardPlan {
    /// The [table](ShardPlan::table) without byte counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table(None))
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Rows of cells as aligned columns, two spaces apart, one line each.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsstne_rule_and_grouping() {
        assert_eq!(Sharding::for_weight(27_278, 1024), Sharding::ByInput);
        assert_eq!(Sharding::for_weight(1024, 27_278), Sharding::ByOutput);
        assert_eq!(Sharding::for_weight(1024, 1024), Sharding::ByOutput);
        // out·3 == in·2 is not "greater": input-sharded.
        assert_eq!(Sharding::for_weight(3, 2), Sharding::ByInput);
        assert_eq!(Sharding::for_weight(300, 201), Sharding::ByOutput);
        assert_eq!(Sharding::ByInput.flipped(), Sharding::ByOutput);
        assert_eq!(group(0), "0");
        assert_eq!(group(1_048_576), "1,048,576");
        assert_eq!(group(999), "999");
    }
}
