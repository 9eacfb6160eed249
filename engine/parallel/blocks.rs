//! Exact exchanges of matrix blocks between the ranks: a `rows × n` matrix split over the
//! ranks by columns (a layer's units) or by rows (the examples), gathered or reduce-scattered
//! so that the result is bit-identical whatever the transport's order (the fixed point of
//! [`super::exact`]).

use std::cell::RefCell;

use super::exact::{global_max_f32, pow2, round_to_i64, shared_scale};
use super::Split;
use crate::collective::pool::with_buffer;
use crate::collective::{Collective, ReduceOp};
use crate::error::{Error, Result};

thread_local! {
    /// Fixed-point blocks and sums of a reduce-scatter.
    static FIXED: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    /// Gathered or arranged `f32` blocks.
    static BLOCKS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn check_shape(what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    if len != rows * cols {
        return Err(Error::invalid_argument(
            what,
            format!("{len} values for a {rows} x {cols} matrix"),
        ));
    }
    Ok(())
}

/// Sums every rank's `partial` (`rows × split.total()`, row-major) over the ranks and leaves
/// rank `r` the columns `split.range(r)` of the sum in `out` (`rows × split.len(r)`),
/// bit-identically whatever the transport's order (see [`super::exact`]).
pub fn reduce_scatter_columns<C: Collective>(
    comm: &C,
    partial: &[f32],
    rows: usize,
    split: &Split,
    out: &mut [f32],
) -> Result<()> {
    check_shape("partial sums", partial.len(), rows, split.total())?;
    check_shape("reduced block", out.len(), rows, split.len(comm.rank()))?;
    let counts: Vec<usize> = split.counts().iter().map(|&c| c * rows).collect();
    reduce_scatter_exact(comm, partial, &counts, out, ColumnBlocks { rows, split })
}

/// Sums every rank's `partial` (`rows.total() × width`, row-major) over the ranks and leaves
/// rank `r` the rows `rows.range(r)` of the sum in `out` (`rows.len(r) × width`), exactly as
/// [`reduce_scatter_columns`] does by columns.
pub fn reduce_scatter_rows<C: Collective>(
    comm: &C,
    partial: &[f32],
    rows: &Split,
    width: usize,
    out: &mut [f32],
) -> Result<()> {
    check_shape("partial sums", partial.len(), rows.total(), width)?;
    check_shape("reduced rows", out.len(), rows.len(comm.rank()), width)?;
    let counts: Vec<usize> = rows.counts().iter().map(|&c| c * width).collect();
    reduce_scatter_exact(comm, partial, &counts, out, RowBlocks)
}

/// How a reduce-scatter lays a matrix out as the ranks' segments in rank order.
trait Arrange {
    /// `m` laid out in `out`, mapped through `f`.
    fn arrange<T: Copy>(&self, m: &[f32], f: impl Fn(f32) -> T, out: &mut [T]);
}

/// Rank `r`'s segment is the column block `split.range(r)` ([`to_blocks`]).
struct ColumnBlocks<'a> {
    rows: usize,
    split: &'a Split,
}

impl Arrange for ColumnBlocks<'_> {
    fn arrange<T: Copy>(&self, m: &[f32], f: impl Fn(f32) -> T, out: &mut [T]) {
        to_blocks(m, self.rows, self.split, f, out)
    }
}

/// Rank `r`'s segment is its rows: the matrix as it is.
struct RowBlocks;

impl Arrange for RowBlocks {
    fn arrange<T: Copy>(&self, m: &[f32], f: impl Fn(f32) -> T, out: &mut [T]) {
        for (o, &v) in out.iter_mut().zip(m) {
            *o = f(v);
        }
    }
}

/// The exact reduce-scatter of `partial` laid out by `how` (`counts` values per rank): in
/// 64-bit fixed point with a shared scale, or as floats when no finite non-zero value needs
/// one.
fn reduce_scatter_exact<C: Collective>(
    comm: &C,
    partial: &[f32],
    counts: &[usize],
    out: &mut [f32],
    how: impl Arrange,
) -> Result<()> {
    let max = global_max_f32(comm, partial)?;
    let Some(s) = shared_scale(max, comm.size()) else {
        return with_buffer(&BLOCKS, partial.len(), |blocks| {
            how.arrange(partial, |v| v, blocks);
            comm.reduce_scatter(blocks, counts, out, ReduceOp::Sum)
        });
    };
    let (up, down) = (pow2(s), pow2(-s));
    with_buffer(&FIXED, partial.len() + out.len(), |buf| {
        let (blocks, sums) = buf.split_at_mut(partial.len());
        how.arrange(partial, |v| round_to_i64(v as f64 * up), blocks);
        comm.reduce_scatter(blocks, counts, sums, ReduceOp::Sum)?;
        for (o, &f) in out.iter_mut().zip(sums.iter()) {
            *o = (f as f64 * down) as f32;
        }
        Ok(())
    })
}

/// `m` (`rows × split.total()`) rearranged into `out` as the column blocks of every rank in
/// rank order, each block `rows × len(r)` row-major, mapped through `f`.
fn to_blocks<T: Copy>(m: &[f32], rows: usize, split: &Split, f: impl Fn(f32) -> T, out: &mut [T]) {
    let n = split.total();
    let mut at = 0;
    for r in 0..split.parts() {
        let range = split.range(r);
        for b in 0..rows {
            let src = &m[b * n + range.start..b * n + range.end];
            for (o, &v) in out[at..at + src.len()].iter_mut().zip(src) {
                *o = f(v);
            }
            at += src.len();
        }
    }
}

/// Assembles the whole `rows × split.total()` matrix `out` from every rank's column block
/// `local` (`rows × split.len(rank)`): an all-gather, then a re-layout. Exact.
pub fn all_gather_columns<C: Collective>(
    comm: &C,
    local: &[f32],
    rows: usize,
    split: &Split,
    out: &mut [f32],
) -> Result<()> {
    let n = split.total();
    check_shape("local block", local.len(), rows, split.len(comm.rank()))?;
    check_shape("gathered matrix", out.len(), rows, n)?;
    let counts: Vec<usize> = split.counts().iter().map(|&c| c * rows).collect();
    with_buffer(&BLOCKS, rows * n, |blocks| {
        comm.all_gather(local, &counts, blocks)?;
        let mut at = 0;
        for r in 0..split.parts() {
            let range = split.range(r);
            for b in 0..rows {
                let len = range.len();
                out[b * n + range.start..b * n + range.end].copy_from_slice(&blocks[at..at + len]);
                at += len;
            }
        }
        Ok(())
    })
}
