//! Cross-rank sums that give the same bits whatever the order the transport adds in, and the
//! column-block moves of model-parallel activations and deltas.
//!
//! A sum of floats over ranks ([`sum_all`], [`reduce_scatter_columns`]) goes through 64-bit
//! fixed point with one power-of-two scale shared by every rank: the ranks first agree on the
//! largest magnitude `m` of all terms (an exact `Max` all-reduce), then each term `x` enters
//! as `round_half_even(x · 2ˢ)` with `2ˢ` the largest power of two such that
//! `P · m · 2ˢ < 2⁴⁹` (`P` ranks), the `i64`s are added exactly, and the total leaves as
//! `sum · 2⁻ˢ` rounded once. Integer addition is associative, so the result does not depend on
//! the transport's order (MPI may add in any order); terms smaller than `2⁻ˢ` (about
//! `m · 2⁻⁴⁹/P`, far below `f32`'s resolution of the largest term) are rounded away. Keeping
//! every term and sum below `2⁵¹` lets the rounding use the branch-free `f64` trick of
//! [`crate::ops::fixed`]. If any term is NaN or infinite the plain float sum is taken instead (the
//! result is not finite either way, and the caller's divergence check stops training).
//!
//! Data-parallel gradients on up to [`RANK_ORDER_MAX_RANKS`] ranks take another route to the
//! same guarantee ([`sum_in_rank_order`]): every rank gathers every rank's `f32` values and
//! adds them in rank order, so no transport can change the order either.
//!
//! Column blocks: a `rows × n` matrix whose columns are split over the ranks by a
//! [`Split`](super::Split) is held as `rows × len(r)` on rank `r` ([`all_gather_columns`] assembles the
//! whole; [`reduce_scatter_columns`] sums whole matrices and leaves each rank its block).

use std::cell::RefCell;

use crate::collective::{Collective, ReduceOp};
use crate::error::{Error, Result};

thread_local! {
    /// Fixed-point terms and sums of [`sum_blocks`].
    static SUMS: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    /// Every rank's piece of [`sum_in_rank_order`].
    static PIECES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `2^e` as an `f64`, for `−1022 ≤ e ≤ 1023`.
pub(super) fn pow2(e: i32) -> f64 {
    f64::from_bits(((1023 + e.clamp(-1022, 1023)) as u64) << 52)
}

/// The shared scale exponent `s` for terms of magnitude at most `max` over `ranks` ranks, or
/// `None` when a term is not finite (`max` is then NaN or infinite).
pub(super) fn shared_scale(max: f64, ranks: usize) -> Option<i32> {
    if !max.is_finite() {
        return None;
    }
    if max == 0.0 {
        return Some(0);
    }
    // max < 2^(e+1); the total of `ranks` terms < ranks · 2^(e+1+s) ≤ 2^49.
    let e = max.log2().floor() as i32;
    let rank_bits = (usize::BITS - (ranks.max(1) - 1).leading_zeros()) as i32;
    Some((SUM_BITS - rank_bits - (e + 1)).clamp(-1022, 1022))
}

/// Every scaled term and every sum stays below `2^SUM_BITS`.
const SUM_BITS: i32 = 49;
/// `1.5 · 2⁵²`: adding it to an `f64` of magnitude below `2⁵¹` rounds to an integer (half to
/// even) held in the low mantissa bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// `round_half_even(y)` for `|y| < 2⁵¹`, branch-free.
#[inline(always)]
pub(super) fn round_to_i64(y: f64) -> i64 {
    ((y + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64)
}

/// `f` as an `f64`, exactly, for `|f| < 2⁵¹`: the inverse of [`round_to_i64`] (integer
/// operations that vectorise, where `f as f64` does not without AVX-512).
#[inline(always)]
fn i64_to_f64(f: i64) -> f64 {
    f64::from_bits(f.wrapping_add(MAGIC.to_bits() as i64) as u64) - MAGIC
}

/// The largest magnitude of `values` over every rank (NaN or infinite if any value is).
fn global_max<C: Collective>(comm: &C, values: impl Iterator<Item = f64>) -> Result<f64> {
    let mut max = 0.0f64;
    for v in values {
        let a = v.abs();
        if !a.is_finite() {
            max = f64::INFINITY;
            break;
        }
        max = max.max(a);
    }
    let mut buf = [max];
    comm.all_reduce(&mut buf, ReduceOp::Max)?;
    Ok(buf[0])
}

/// [`global_max`] of `f32` values (vectorised: one pass for the maximum, one for finiteness).
pub(super) fn global_max_f32<C: Collective>(comm: &C, values: &[f32]) -> Result<f64> {
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let finite = values.iter().fold(true, |f, v| f & v.is_finite());
    let mut buf = [if finite { max as f64 } else { f64::INFINITY }];
    comm.all_reduce(&mut buf, ReduceOp::Max)?;
    Ok(buf[0])
}

/// Replaces `values` on every rank by their element-wise sum over all ranks, bit-identically
/// whatever the transport's order (see the [module documentation](self)).
pub fn sum_all<C: Collective>(comm: &C, values: &mut [f64]) -> Result<()> {
    let max = global_max(comm, values.iter().copied())?;
    let Some(s) = shared_scale(max, comm.size()) else {
        return comm.all_reduce(values, ReduceOp::Sum);
    };
    let (up, down) = (pow2(s), pow2(-s));
    let mut fixed: Vec<i64> = values.iter().map(|&v| round_to_i64(v * up)).collect();
    comm.all_reduce(&mut fixed, ReduceOp::Sum)?;
    for (v, f) in values.iter_mut().zip(fixed) {
        *v = f as f64 * down;
    }
    Ok(())
}

/// Replaces `values` on every rank by their element-wise sum over all ranks, bit-identically
/// whatever the transport's order, block by block: `values` is the concatenation of blocks of
/// `lens` values (the gradients of several tensors), and each block gets its own shared scale
/// from its own largest magnitude (see the [module documentation](self)), so a tensor of small
/// gradients keeps its precision next to one of large gradients. Two collectives in all: one
/// `Max` all-reduce of the blocks' magnitudes and one `i64` all-reduce of every term. A block
/// with a NaN or infinite term is summed as plain floats (its result is not finite either way).
pub fn sum_blocks<C: Collective>(comm: &C, values: &mut [f32], lens: &[usize]) -> Result<()> {
    if lens.iter().sum::<usize>() != values.len() {
        return Err(Error::invalid_argument(
            "blocks",
            format!("block lengths {lens:?} for {} values", values.len()),
        ));
    }
    let mut maxima: Vec<f64> = Vec::with_capacity(lens.len());
    let mut at = 0;
    for &len in lens {
        // One pass: the largest magnitude, and `v·0` summed, NaN when any `v` is not finite.
        let (max, poison) = values[at..at + len]
            .iter()
            .fold((0.0f32, 0.0f32), |(m, p), v| (m.max(v.abs()), p + v * 0.0));
        maxima.push(if poison == 0.0 {
            max as f64
        } else {
            f64::INFINITY
        });
        at += len;
    }
    comm.all_reduce(&mut maxima, ReduceOp::Max)?;
    let scales: Vec<Option<i32>> = maxima
        .iter()
        .map(|&m| shared_scale(m, comm.size()))
        .collect();
    // Every element is written before it is read: the buffer grows but is not cleared.
    SUMS.with(|sums| {
        let mut sums = sums.borrow_mut();
        if sums.len() < values.len() {
            sums.resize(values.len(), 0);
        }
        let fixed = &mut sums[..values.len()];
        let mut at = 0;
        for (&len, s) in lens.iter().zip(&scales) {
            let (src, dst) = (&values[at..at + len], &mut fixed[at..at + len]);
            match s {
                Some(s) => {
                    let up = pow2(*s);
                    for (f, &v) in dst.iter_mut().zip(src) {
                        *f = round_to_i64(v as f64 * up);
                    }
                }
                None => dst.fill(0),
            }
            at += len;
        }
        comm.all_reduce(fixed, ReduceOp::Sum)?;
        let mut at = 0;
        for (&len, s) in lens.iter().zip(&scales) {
            let block = &mut values[at..at + len];
            match s {
                Some(s) => {
                    let down = pow2(-*s);
                    for (v, &f) in block.iter_mut().zip(&fixed[at..at + len]) {
                        *v = (i64_to_f64(f) * down) as f32;
                    }
                }
                None => comm.all_reduce(block, ReduceOp::Sum)?,
            }
            at += len;
        }
        Ok(())
    })
}

/// The most ranks for which [`sum_in_rank_order`] moves fewer bytes than [`sum_blocks`].
pub const RANK_ORDER_MAX_RANKS: usize = 4;

/// Values per piece of [`sum_in_rank_order`] (1 MiB from each rank).
const PIECE: usize = 1 << 18;

/// Replaces `values` on every rank by their element-wise sum over all ranks, the same bits on
/// every rank and run to run: piece by piece, every rank gathers every rank's values and adds
/// them in rank order in `f64`, rounding once to `f32` (for 2 ranks the correctly rounded
/// sum). Each rank receives `(P−1)·n·4` bytes, where the ring all-reduce of [`sum_blocks`]'s
/// 64-bit terms moves `2·(P−1)/P·n·8` each way: fewer for `P ≤ 4`
/// ([`RANK_ORDER_MAX_RANKS`]), and no conversion to and from fixed point. A NaN or infinite
/// term makes its sum NaN or infinite, as a float sum does.
pub fn sum_in_rank_order<C: Collective>(comm: &C, values: &mut [f32]) -> Result<()> {
    let ranks = comm.size();
    if ranks == 1 {
        return Ok(());
    }
    PIECES.with(|pieces| {
        let mut pieces = pieces.borrow_mut();
        for piece in values.chunks_mut(PIECE) {
            let n = piece.len();
            if pieces.len() < ranks * n {
                pieces.resize(ranks * n, 0.0);
            }
            let all = &mut pieces[..ranks * n];
            comm.all_gather(piece, &vec![n; ranks], all)?;
            add_in_rank_order(all, piece);
        }
        Ok(())
    })
}

/// `out[i] = Σ_r all[r·n + i]` over the `all.len() / n` ranks' rows of `n = out.len()` values,
/// added in rank order in `f64` and rounded once to `f32`.
pub(super) fn add_in_rank_order(all: &[f32], out: &mut [f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    let ranks = all.len() / n;
    if ranks == 2 {
        // The common case, written so that it vectorises.
        let (first, second) = all.split_at(n);
        for ((v, &a), &b) in out.iter_mut().zip(first).zip(second) {
            *v = (a as f64 + b as f64) as f32;
        }
    } else {
        for (i, v) in out.iter_mut().enumerate() {
            *v = (0..ranks).map(|r| all[r * n + i] as f64).sum::<f64>() as f32;
        }
    }
}

pub use super::blocks::{all_gather_columns, reduce_scatter_columns, reduce_scatter_rows};

/// Every rank's `local` (rank `r` passes `counts[r]` values) concatenated in rank order on
/// rank `root`; other ranks get an empty vector. Moves at most `chunk` values per rank per
/// round, so a rank other than the root never holds more than `size · chunk` extra values
/// (checkpoints of weights wider than one rank's memory).
pub fn gather_to_root<C: Collective>(
    comm: &C,
    local: &[f32],
    counts: &[usize],
    root: usize,
    chunk: usize,
) -> Result<Vec<f32>> {
    let starts: Vec<usize> = counts
        .iter()
        .scan(0, |acc, &c| {
            let s = *acc;
            *acc += c;
            Some(s)
        })
        .collect();
    let mut out = if comm.rank() == root {
        vec![0.0f32; counts.iter().sum()]
    } else {
        Vec::new()
    };
    gather_to_root_with(comm, local, counts, root, chunk, |q, at, values| {
        out[starts[q] + at..starts[q] + at + values.len()].copy_from_slice(values);
    })?;
    Ok(out)
}

/// [`gather_to_root`] handing each received piece to `place(rank, offset, values)` on the
/// root (values `offset..offset + values.len()` of `rank`'s part) instead of concatenating,
/// so that the root can lay the parts out where they belong without a second copy.
pub fn gather_to_root_with<C: Collective>(
    comm: &C,
    local: &[f32],
    counts: &[usize],
    root: usize,
    chunk: usize,
    mut place: impl FnMut(usize, usize, &[f32]),
) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    if counts.len() != size || counts[rank] != local.len() || root >= size || chunk == 0 {
        return Err(Error::invalid_argument(
            "gather",
            format!(
                "rank {rank} of {size}: {} values, counts {counts:?}, root {root}, chunk {chunk}",
                local.len()
            ),
        ));
    }
    let rounds = counts.iter().map(|&c| c.div_ceil(chunk)).max().unwrap_or(0);
    let mut buf = Vec::new();
    for t in 0..rounds {
        let piece = |c: usize| (t * chunk).min(c)..((t + 1) * chunk).min(c);
        let round_counts: Vec<usize> = counts.iter().map(|&c| piece(c).len()).collect();
        buf.resize(round_counts.iter().sum(), 0.0);
        comm.all_gather(&local[piece(local.len())], &round_counts, &mut buf)?;
        if rank == root {
            let mut at = 0;
            for (q, &c) in counts.iter().enumerate() {
                let p = piece(c);
                place(q, p.start, &buf[at..at + p.len()]);
                at += p.len();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::Threads;
    use crate::parallel::Split;

    fn values(rank: usize, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = ((i * 7919 + rank * 104_729) % 1000) as f32 / 97.0 - 5.0;
                x * if i % 3 == 0 { 1e-6 } else { 1.0 }
            })
            .collect()
    }

    #[test]
    fn reduce_scatter_columns_is_the_sum_of_each_block_on_any_rank_count() {
        let (rows, n) = (3, 10);
        for p in 1..=4 {
            let got = Threads::run(p, |comm| {
                let split = Split::even(n, comm.size())?;
                let mut out = vec![0.0; rows * split.len(comm.rank())];
                reduce_scatter_columns(
                    comm,
                    &values(comm.rank(), rows * n),
                    rows,
                    &split,
                    &mut out,
                )?;
                let mut whole = vec![0.0; rows * n];
                all_gather_columns(comm, &out, rows, &split, &mut whole)?;
                Ok(whole)
            })
            .unwrap();
            for whole in &got {
                assert_eq!(whole, &got[0], "every rank assembles the same sum");
            }
            for b in 0..rows {
                for j in 0..n {
                    let want: f64 = (0..p).map(|r| values(r, rows * n)[b * n + j] as f64).sum();
                    let g = got[0][b * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-6 * want.abs().max(1e-3),
                        "{g} vs {want}"
                    );
                }
            }
        }
    }

    /// Every rank gets the same bits: the `f64` sum in rank order rounded once, across the
    /// pieces of a buffer longer than one; non-finite terms give non-finite sums.
    #[test]
    fn rank_order_sums_are_the_rounded_f64_sums_on_every_rank() {
        let n = PIECE + 1234;
        for p in 1..=RANK_ORDER_MAX_RANKS {
            let got = Threads::run(p, |comm| {
                let mut v = values(comm.rank(), n);
                if comm.rank() == p - 1 {
                    v[7] = f32::NAN;
                    v[PIECE + 3] = f32::INFINITY;
                }
                sum_in_rank_order(comm, &mut v)?;
                Ok(v)
            })
            .unwrap();
            let terms: Vec<Vec<f32>> = (0..p).map(|r| values(r, n)).collect();
            for v in &got {
                assert!(v
                    .iter()
                    .zip(&got[0])
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            for i in [0, 1, 2, 3, PIECE - 1, PIECE, n - 1] {
                let want = (0..p).map(|r| terms[r][i] as f64).sum::<f64>() as f32;
                assert_eq!(got[0][i].to_bits(), want.to_bits(), "{p} ranks, value {i}");
            }
            assert!(got[0][7].is_nan() && got[0][PIECE + 3] == f32::INFINITY);
        }
    }

    #[test]
    fn sums_do_not_depend_on_the_order_of_the_terms() {
        // Rank order reversed: the fixed-point total is the same bits.
        let forward = Threads::run(3, |comm| {
            let mut v = vec![values(comm.rank(), 5)[1] as f64, 1e-3, 0.1];
            sum_all(comm, &mut v)?;
            Ok(v)
        })
        .unwrap();
        let backward = Threads::run(3, |comm| {
            let mut v = vec![values(2 - comm.rank(), 5)[1] as f64, 1e-3, 0.1];
            sum_all(comm, &mut v)?;
            Ok(v)
        })
        .unwrap();
        assert_eq!(forward[0], backward[0]);
        assert!((forward[0][2] - 0.3).abs() < 1e-12);
    }

    #[test]
    fn fixed_point_integers_convert_back_exactly() {
        for f in [
            0i64,
            1,
            -1,
            12345,
            -987_654_321,
            (1 << 49) - 1,
            -(1 << 49) + 3,
        ] {
            assert_eq!(i64_to_f64(f), f as f64);
            assert_eq!(round_to_i64(i64_to_f64(f)), f);
        }
    }

    #[test]
    fn block_sums_keep_each_blocks_precision_and_do_not_depend_on_order() {
        let lens = [4, 3];
        let run = |reverse: bool| {
            Threads::run(3, move |comm| {
                let r = if reverse {
                    2 - comm.rank()
                } else {
                    comm.rank()
                };
                // A block of large terms and a block of tiny ones.
                let mut v: Vec<f32> = values(r, 4).into_iter().map(|x| x * 1e3).collect();
                v.extend(values(r + 7, 3).iter().map(|x| x * 1e-9));
                sum_blocks(comm, &mut v, &lens)?;
                Ok(v)
            })
            .unwrap()
        };
        let (forward, backward) = (run(false), run(true));
        assert_eq!(forward[0], backward[0]);
        assert_eq!(forward[0], forward[2]);
        for (j, &got) in forward[0].iter().enumerate() {
            let want: f64 = (0..3)
                .map(|r| {
                    if j < 4 {
                        values(r, 4)[j] as f64 * 1e3
                    } else {
                        values(r + 7, 3)[j - 4] as f64 * 1e-9
                    }
                })
                .sum();
            // Each block resolves its largest term (about 5e3 and 5e-9) to 2⁻⁴⁵ of it.
            let resolution = if j < 4 { 1e-9 } else { 1e-21 };
            let g = got as f64;
            assert!(
                (g - want).abs() <= 1e-6 * want.abs() + resolution,
                "{j}: {g} vs {want}"
            );
        }
        let bad = Threads::run(2, |comm| sum_blocks(comm, &mut [1.0, 2.0], &[1])).unwrap_err();
        assert!(bad.to_string().contains("block lengths"), "{bad}");
    }

    #[test]
    fn non_finite_terms_give_a_non_finite_sum() {
        let got = Threads::run(2, |comm| {
            let mut v = vec![if comm.rank() == 1 { f64::NAN } else { 1.0 }, 2.0];
            sum_all(comm, &mut v)?;
            Ok(v)
        })
        .unwrap();
        assert!(got[0][0].is_nan());
        assert_eq!(got[0][1], 4.0);
    }

    #[test]
    fn gather_to_root_concatenates_in_chunks() {
        let got = Threads::run(3, |comm| {
            let counts = [5, 0, 3];
            let local: Vec<f32> = (0..counts[comm.rank()])
                .map(|i| (comm.rank() * 10 + i) as f32)
                .collect();
            gather_to_root(comm, &local, &counts, 0, 2)
        })
        .unwrap();
        assert_eq!(got[0], [0.0, 1.0, 2.0, 3.0, 4.0, 20.0, 21.0, 22.0]);
        assert!(got[1].is_empty() && got[2].is_empty());
    }
}
