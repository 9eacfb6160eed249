//! The sharded update of replicated weights (ZeRO stage 1, as in DeepSpeed and PyTorch's
//! `ZeroRedundancyOptimizer`): where every rank holds a whole weight and trains on its own
//! examples, each rank owns a share of the weight's elements. Instead of every rank summing
//! the whole gradient and running the optimizer over the whole weight:
//!
//! 1. [`reduce_scatter_owned`]: each rank receives every rank's partial gradient of the
//!    elements it owns and sums them in rank order in `f64`, rounding once to `f32`: the bits
//!    of [`super::exact::sum_in_rank_order`] on those elements, whatever the transport;
//! 2. each rank runs the optimizer on its own elements only (the optimizer state of the
//!    others is not kept current there);
//! 3. [`all_gather_owned`]: every rank receives the updated elements of every other rank.
//!
//! The update is element-wise, so every rank ends the step with the bits the unsharded update
//! gives, on any number of ranks. Each rank receives `2·(P−1)/P·n·4` bytes per weight of `n`
//! elements (the rank-ordered all-gather sum received `(P−1)·n·4`: the same on 2 ranks,
//! half on 4), adds `n` values instead of `P·n`, and updates `n/P` elements instead of `n`.
//!
//! Ownership ([`owned_segments`]): the tensor is cut into regions of `P ·` [`SEGMENT`]
//! elements; rank `q` owns the `q`-th part of each region's even split. The exchanges go
//! region by region, so no buffer holds more than `P ·` [`SEGMENT`] values.

use std::cell::RefCell;
use std::ops::Range;

use super::exact::add_in_rank_order;
use super::Split;
use crate::collective::Collective;
use crate::error::Result;

/// The most values a rank owns in one region (1 MiB).
pub const SEGMENT: usize = 1 << 18;

thread_local! {
    /// Every rank's values of this rank's segment ([`reduce_scatter_owned`]), or this rank's
    /// segment ([`all_gather_owned`]).
    static RECEIVED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The regions of an `n`-element tensor over `ranks` ranks: each region's first element and
/// the even split of its length.
fn regions(n: usize, ranks: usize) -> Result<Vec<(usize, Split)>> {
    let region = SEGMENT * ranks.max(1);
    (0..n)
        .step_by(region)
        .map(|start| Ok((start, Split::even((n - start).min(region), ranks)?)))
        .collect()
}

/// The element ranges of an `n`-element tensor that rank `rank` of `ranks` owns, in order
/// (some may be empty). Errors: `ranks == 0`.
pub fn owned_segments(n: usize, ranks: usize, rank: usize) -> Result<Vec<Range<usize>>> {
    Ok(regions(n, ranks)?
        .into_iter()
        .map(|(start, split)| {
            let r = split.range(rank);
            start + r.start..start + r.end
        })
        .collect())
}

/// Replaces this rank's owned elements of `values` ([`owned_segments`]) by their sum over all
/// ranks' `values` (same length on every rank), added in rank order in `f64` and rounded once
/// (the bits of [`super::exact::sum_in_rank_order`] on those elements); the other elements
/// keep this rank's partial values. A NaN or infinite term makes its sum NaN or infinite.
pub fn reduce_scatter_owned<C: Collective>(comm: &C, values: &mut [f32]) -> Result<()> {
    let (ranks, rank) = (comm.size(), comm.rank());
    if ranks == 1 {
        return Ok(());
    }
    RECEIVED.with(|received| {
        let mut received = received.borrow_mut();
        for (start, split) in regions(values.len(), ranks)? {
            let region = &mut values[start..start + split.total()];
            let send_counts: Vec<usize> = (0..ranks).map(|q| split.len(q)).collect();
            let mine = split.range(rank);
            let n = mine.len();
            if received.len() < ranks * n {
                received.resize(ranks * n, 0.0);
            }
            let all = &mut received[..ranks * n];
            comm.all_to_all(region, &send_counts, all, &vec![n; ranks])?;
            add_in_rank_order(all, &mut region[mine]);
        }
        Ok(())
    })
}

/// Copies every rank's owned elements of `values` ([`owned_segments`]) to every other rank:
/// afterwards each rank's `values` is the concatenation of the owners' elements.
pub fn all_gather_owned<C: Collective>(comm: &C, values: &mut [f32]) -> Result<()> {
    let (ranks, rank) = (comm.size(), comm.rank());
    if ranks == 1 {
        return Ok(());
    }
    RECEIVED.with(|mine| {
        let mut mine = mine.borrow_mut();
        for (start, split) in regions(values.len(), ranks)? {
            let region = &mut values[start..start + split.total()];
            let counts: Vec<usize> = (0..ranks).map(|q| split.len(q)).collect();
            mine.clear();
            mine.extend_from_slice(&region[split.range(rank)]);
            comm.all_gather(&mine[..], &counts, region)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::Threads;
    use crate::parallel::exact::sum_in_rank_order;

    fn values(rank: usize, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + rank * 104_729) % 1000) as f32 * 0.37e-3 - 0.1 + rank as f32)
            .collect()
    }

    #[test]
    fn segments_cover_every_element_once() {
        for ranks in 1..=5 {
            for n in [0, 1, 3, SEGMENT * ranks - 1, SEGMENT * ranks * 2 + 5] {
                let mut seen = vec![0u8; n];
                for rank in 0..ranks {
                    for r in owned_segments(n, ranks, rank).unwrap() {
                        r.for_each(|i| seen[i] += 1);
                    }
                }
                assert!(seen.iter().all(|&s| s == 1), "{ranks} ranks, {n} elements");
            }
        }
    }

    #[test]
    fn owned_sums_are_the_rank_ordered_sums_and_gather_restores_the_whole() {
        for ranks in 1..=4 {
            for n in [0, 2, 5, SEGMENT * ranks + 7] {
                let out = Threads::run(ranks, |comm| {
                    let mut summed = values(comm.rank(), n);
                    sum_in_rank_order(comm, &mut summed)?;
                    let mut owned = values(comm.rank(), n);
                    reduce_scatter_owned(comm, &mut owned)?;
                    for r in owned_segments(n, ranks, comm.rank())? {
                        assert_eq!(
                            owned[r.clone()]
                                .iter()
                                .map(|v| v.to_bits())
                                .collect::<Vec<_>>(),
                            summed[r].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                        );
                    }
                    all_gather_owned(comm, &mut owned)?;
                    Ok((owned, summed))
                })
                .unwrap();
                for (owned, summed) in out {
                    assert_eq!(owned, summed, "{ranks} ranks, {n} elements");
                }
            }
        }
    }
}
