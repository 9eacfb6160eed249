//! Model parallelism, DSSTNE's way (DSSTNE.md §4): every layer's units are split across the
//! ranks, each fully connected weight is sharded by its output or its input units, and the
//! sparse data is split by column so that each rank holds only its features' non-zeros.
//!
//! - [`Split`]: the even split of `n` units over the ranks;
//! - [`plan`]: [`ShardPlan`], the per-weight choice between all-gather and reduce-scatter, with
//!   the bytes each collective moves per minibatch;
//! - [`shard`]: CSR matrices split by column range into per-rank matrices, and merged back;
//! - [`data`]: data parallelism's steps (rows shared out, gathered, gradients summed);
//! - [`choice`]: [`Parallelism`] and [`Choice`], the per-weight choice between sharding and
//!   replicating, and the hybrid of the two (DSSTNE's talk, after Krizhevsky's "one weird
//!   trick").
//!
//! - [`exact`]: cross-rank sums that do not depend on the transport's order, and column-block
//!   gathers;
//! - `host`: the cross-rank steps of a pass (gathers and reductions of activations and
//!   deltas, SoftMax and the norms over a split row) on host copies of device buffers.
//!
//! These are the helpers the one [`crate::network::Network`] calls on several ranks; there is
//! no second network.

mod blocks;
pub mod choice;
pub mod data;
pub mod exact;
pub(crate) mod host;
pub mod owned;
pub mod plan;
pub mod shard;
mod table;
pub mod transfer;

pub use choice::{Choice, Parallelism};
pub use data::RowShare;
pub use plan::{DataLayout, EdgePlan, Layout, ShardPlan, Sharding};
pub use shard::{column_shard, merge_columns, retain_rank_columns, split_columns};
pub use transfer::{Transfer, TransferKind};

use std::ops::Range;

use crate::error::{Error, Result};

/// `n` units split over `parts` ranks in contiguous ranges, in rank order: rank `r` gets
/// `n / parts` units, plus one for each of the first `n % parts` ranks (so sizes differ by at
/// most one, larger first). Ranks may get 0 units when `n < parts`.
///
/// DSSTNE splits `[n·r/P, n·(r+1)/P)` instead, which spreads the remainder; both are even to
/// within one unit, and checkpoints are gathered to full size, so the choice is invisible
/// outside a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Split {
    n: usize,
    parts: usize,
}

impl Split {
    /// The even split of `n` units over `parts` ranks. Errors: `parts == 0`.
    pub fn even(n: usize, parts: usize) -> Result<Split> {
        if parts == 0 {
            return Err(Error::invalid_argument(
                "ranks",
                "a split needs at least 1 rank",
            ));
        }
        Ok(Split { n, parts })
    }

    /// The number of units split.
    pub fn total(&self) -> usize {
        self.n
    }

    /// The number of ranks.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The first unit of rank `rank` (for `rank == parts()`, the total).
    pub fn start(&self, rank: usize) -> usize {
        let (q, rem) = (self.n / self.parts, self.n % self.parts);
        rank * q + rank.min(rem)
    }

    /// The number of units of rank `rank`.
    pub fn len(&self, rank: usize) -> usize {
        self.n / self.parts + usize::from(rank < self.n % self.parts)
    }

    /// Whether rank `rank` has no units.
    pub fn is_empty(&self, rank: usize) -> bool {
        self.len(rank) == 0
    }

    /// The units of rank `rank`.
    pub fn range(&self, rank: usize) -> Range<usize> {
        self.start(rank)..self.start(rank) + self.len(rank)
    }

    /// Every rank's unit count, in rank order (the `counts` of the collectives).
    pub fn counts(&self) -> Vec<usize> {
        (0..self.parts).map(|r| self.len(r)).collect()
    }

    /// The largest share (rank 0's).
    pub fn max_len(&self) -> usize {
        self.len(0)
    }

    /// The rank owning unit `unit` (`unit < total()`).
    pub fn owner(&self, unit: usize) -> usize {
        let (q, rem) = (self.n / self.parts, self.n % self.parts);
        let big = rem * (q + 1);
        if unit < big {
            unit / (q + 1)
        } else {
            rem + (unit - big) / q.max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_gives_the_remainder_to_the_first_ranks() {
        let s = Split::even(10, 4).unwrap();
        assert_eq!(s.counts(), [3, 3, 2, 2]);
        assert_eq!(
            (0..4).map(|r| s.range(r)).collect::<Vec<_>>(),
            [0..3, 3..6, 6..8, 8..10]
        );
        assert_eq!(s.start(4), 10);
        for n in 0..20 {
            for p in 1..7 {
                let s = Split::even(n, p).unwrap();
                assert_eq!(s.counts().iter().sum::<usize>(), n);
                assert_eq!(s.max_len(), n.div_ceil(p));
                for u in 0..n {
                    assert!(s.range(s.owner(u)).contains(&u), "n {n} p {p} unit {u}");
                }
            }
        }
        assert_eq!(Split::even(2, 3).unwrap().counts(), [1, 1, 0]);
        assert!(Split::even(2, 3).unwrap().is_empty(2));
        assert!(Split::even(5, 0).is_err());
    }
}
