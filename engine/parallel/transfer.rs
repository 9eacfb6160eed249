//! [`Transfer`]: one collective of a training step in a [`super::ShardPlan`], and the bytes
//! it moves on the busiest rank; [`gradient_sum_bytes`]: what summing a replicated gradient
//! moves.

use std::fmt;

use super::Split;
use crate::graph::LayerId;

/// A collective kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    AllGather,
    ReduceScatter,
    /// The re-layout of a matrix between [`super::Layout::Units`] and [`super::Layout::Rows`].
    AllToAll,
}

impl fmt::Display for TransferKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferKind::AllGather => "all-gather",
            TransferKind::ReduceScatter => "reduce-scatter",
            TransferKind::AllToAll => "all-to-all",
        })
    }
}

/// One collective of an edge in a training step: a `batch × width` `f32` matrix whose columns
/// (`layer`'s units) or rows (the examples, `by_rows`) are split over the ranks; an all-to-all
/// turns the one split into the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub kind: TransferKind,
    /// The layer whose units are the columns (whose activations or deltas move).
    pub layer: LayerId,
    /// What moves: `"activations"`, `"partial pre-activations"`, `"deltas"`, `"partial deltas"`.
    pub what: &'static str,
    /// The matrix's width (the layer's units).
    pub width: usize,
    /// The gather or reduction is over the examples (the rows), not the units.
    pub by_rows: bool,
    /// The ranks the matrix is split over.
    pub ranks: usize,
}

impl Transfer {
    /// Bytes the busiest rank receives (and sends) for a minibatch of `batch` rows: for a
    /// gather or reduction over the units `batch · (width − smallest share) · 4`, over the
    /// rows `(batch − smallest share) · width · 4`; for an all-to-all the most any rank
    /// receives of the other ranks' rows of its units, or of its rows of their units.
    pub fn bytes(&self, batch: usize) -> u64 {
        let p = self.ranks.max(1);
        let (rows, cols) = (even(batch, p), even(self.width, p));
        let bytes = match self.kind {
            TransferKind::AllToAll => (0..p)
                .map(|r| {
                    let units_in = (batch - rows.len(r)) * cols.len(r);
                    let rows_in = rows.len(r) * (self.width - cols.len(r));
                    units_in.max(rows_in)
                })
                .max()
                .unwrap_or(0),
            _ if self.by_rows => (batch - rows.len(p - 1)) * self.width,
            _ => batch * (self.width - cols.len(p - 1)),
        };
        bytes as u64 * 4
    }
}

/// The even split of `n` over `parts ≥ 1`.
pub(super) fn even(n: usize, parts: usize) -> Split {
    Split::even(n, parts.max(1)).expect("at least one part")
}

/// Bytes the busiest rank moves per step to sum a replicated gradient of `values` floats over
/// `ranks` ranks and share the update (the sharded update of `parallel::owned`): the other
/// ranks' `f32` partial sums of the `1/P` of the elements it owns, then the other ranks'
/// updated elements, `2·(P−1)/P·4` bytes per value (the biases, summed whole, are counted
/// alike: they are a vanishing share).
pub fn gradient_sum_bytes(values: u64, ranks: usize) -> u64 {
    let p = ranks.max(1) as u64;
    2 * (p - 1) * values * 4 / p
}
