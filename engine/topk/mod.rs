//! Exact top-K selection over rows of scores, with per-row exclusions, and the merge of
//! per-shard lists into the global top-K ([`merge`]).
//!
//! The selection is the host implementation of [`crate::backend::Backend::top_k`]'s contract
//! (the CPU backend's, and the fallback of any backend) and the reference the CUDA kernels
//! are tested against; [`crate::predict`] and the model-parallel network use both.
//!
//! # Contract
//!
//! - **Order.** Entries are ranked by score, higher first; equal scores (`-0.0 == 0.0`) rank
//!   the lower column index first. The order is total, so the result is unique: it does not
//!   depend on the algorithm, the thread count or the memory layout.
//! - **NaN.** A NaN score is never selected: it is treated as if its item were excluded
//!   (stricter than ranking it as −∞). Infinite scores are ordinary values: `+∞` ranks first,
//!   `−∞` last but still before padding.
//! - **Exclusions.** A list of column indices (e.g. the items of a user's input history) that
//!   must not be selected. It is read in place, never copied into the row: the row is scanned
//!   as the segments between excluded columns. A sorted list (duplicates allowed) is used as
//!   is; an unsorted one is sorted into a scratch buffer first. Indices outside the row are
//!   ignored.
//! - **Padding.** When a row has fewer than K eligible entries (after exclusions and NaNs), the
//!   tail of its output holds [`NO_ITEM`] with score `−∞`. The functions return or imply how
//!   many entries are real.
//! - **K.** `1 ≤ K ≤ width` is required; `K = 0` or `K > width` is an
//!   [`Error::InvalidArgument`] (asking for more recommendations than there are items is a
//!   configuration mistake, so it is refused rather than clamped).
//!
//! # Algorithm
//!
//! Select-then-sort over a scratch buffer reused across rows ([`TopK`]). Candidates are `u64`
//! keys (order-preserving score bits above `!index`), so that one integer comparison applies
//! the whole order. Scores above the current threshold (the K-th best score at the last
//! prune) are appended to a buffer of capacity `K + max(K, 64)`; when it fills,
//! `select_nth_unstable` keeps the best K and raises the threshold. The scan takes 64 scores
//! at a time: a SIMD maximum tells whether any exceeds the threshold, and only such a block is
//! looked at entry by entry. The final K are sorted, their scores read back from the row
//! (bit for bit). Cost per row: O(width + K log K) (the prunes are amortised over the
//! candidates, at most `width`), no allocation after the first row.
//!
//! # Sharded rows
//!
//! A rank that holds columns `col_offset..col_offset + width` of the output layer calls
//! [`top_k_batch`] with that offset: exclusions are global column indices and the output holds
//! local ones. [`merge_top_k`] and
//! [`merge_top_k_batch`] then combine the per-shard lists (each with
//! its offset) into the global top-K, in the same order (DSSTNE's multi-GPU predict).

pub mod merge;

pub use merge::{merge_top_k, merge_top_k_batch, ShardTopK, ShardTopKBatch};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::sparse::CsrView;

/// The index written into output slots that hold no item (fewer than K eligible entries).
/// Its score is `f32::NEG_INFINITY`.
pub const NO_ITEM: u32 = u32::MAX;

/// Rows handled by one rayon task in the batch functions.
pub(crate) const ROWS_PER_TASK: usize = 8;

/// Scores compared against the threshold at once in the scan.
const BLOCK: usize = 64;

/// The sort key of a candidate: larger is better. The high half is the score mapped to an
/// order-preserving `u32` (`-0.0` first made `+0.0`, so that the two tie), the low half is
/// `!index`, so that equal scores put the lower index first. Scores are never NaN here.
#[inline]
fn key(score: f32, index: usize) -> u64 {
    let bits = (score + 0.0).to_bits();
    let ordered = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    (u64::from(ordered) << 32) | u64::from(!(index as u32))
}

/// The column index of a key.
#[inline]
fn key_index(key: u64) -> u32 {
    !(key as u32)
}

/// Keeps the best `k` keys of `cand` (if it holds more), sorts them best first, writes their
/// indices and scores (read from `row`) into the output slices (length `k`) and pads the
/// rest. Returns the number of real entries.
fn finish_keys(
    cand: &mut Vec<u64>,
    k: usize,
    row: &[f32],
    indices: &mut [u32],
    scores: &mut [f32],
) -> usize {
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        cand.truncate(k);
    }
    cand.sort_unstable_by(|a, b| b.cmp(a));
    let n = cand.len();
    for ((i, s), &c) in indices.iter_mut().zip(scores.iter_mut()).zip(cand.iter()) {
        *i = key_index(c);
        *s = row[*i as usize];
    }
    indices[n..].fill(NO_ITEM);
    scores[n..].fill(f32::NEG_INFINITY);
    n
}

/// Checks `1 ≤ k ≤ width` and that column indices fit below [`NO_ITEM`].
fn check_k(k: usize, width: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::invalid_argument("k", "top-K needs k >= 1"));
    }
    if k > width {
        return Err(Error::invalid_argument(
            "k",
            format!("k = {k} exceeds the row width {width}"),
        ));
    }
    if width > NO_ITEM as usize {
        return Err(Error::invalid_argument(
            "width",
            format!("a row of {width} scores has column indices beyond u32"),
        ));
    }
    Ok(())
}

/// Checks that an output slice has `expected` entries.
pub(crate) fn check_len(name: &str, len: usize, expected: usize) -> Result<()> {
    if len != expected {
        return Err(Error::invalid_argument(
            name,
            format!("has {len} entries, expected {expected}"),
        ));
    }
    Ok(())
}

/// Whether some score of `block` (of [`BLOCK`] scores) is above `thr` (NaN never is).
/// Written as eight lane-wise maxima so that it compiles to SIMD max instructions.
#[inline]
fn any_above(block: &[f32], thr: f32) -> bool {
    let mut lanes = [f32::NEG_INFINITY; 8];
    for group in block.chunks_exact(8) {
        for (lane, &s) in lanes.iter_mut().zip(group) {
            *lane = if s > *lane { s } else { *lane };
        }
    }
    lanes.iter().any(|&l| l > thr)
}

/// The candidate buffer and threshold of one row scan.
#[derive(Clone, Debug)]
struct Candidates {
    k: usize,
    cap: usize,
    /// Keys (see [`key`]) of the candidates.
    cand: Vec<u64>,
    /// Once `pruned`, only scores strictly above `thr` can enter (the columns still to come
    /// have higher indices than every candidate, so an equal score ranks after the K-th).
    thr: f32,
    pruned: bool,
}

impl Candidates {
    fn new(k: usize) -> Self {
        let cap = k + k.max(64);
        Candidates {
            k,
            cap,
            cand: Vec::with_capacity(cap),
            thr: f32::NEG_INFINITY,
            pruned: false,
        }
    }

    fn reset(&mut self) {
        self.cand.clear();
        self.thr = f32::NEG_INFINITY;
        self.pruned = false;
    }

    #[inline]
    fn push(&mut self, score: f32, index: usize) {
        self.cand.push(key(score, index));
        if self.cand.len() == self.cap {
            self.prune();
        }
    }

    /// Keeps the best K candidates and raises the threshold to the K-th score.
    #[cold]
    fn prune(&mut self) {
        let k = self.k;
        self.cand.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        self.cand.truncate(k);
        self.thr = self.row_score(self.cand[k - 1]);
        self.pruned = true;
    }

    /// The (canonical) score of a key.
    fn row_score(&self, key: u64) -> f32 {
        let ordered = (key >> 32) as u32;
        f32::from_bits(if ordered >> 31 == 1 {
            ordered & !(1 << 31)
        } else {
            !ordered
        })
    }

    /// Offers `seg`, whose first score is column `base`, to the buffer.
    fn scan(&mut self, seg: &[f32], base: usize) {
        let mut start = 0;
        // Until the first prune every non-NaN score is a candidate.
        while !self.pruned && start < seg.len() {
            let s = seg[start];
            if !s.is_nan() {
                self.push(s, base + start);
            }
            start += 1;
        }
        let rest = &seg[start..];
        let base = base + start;
        let mut blocks = rest.chunks_exact(BLOCK);
        for (b, block) in blocks.by_ref().enumerate() {
            let thr = self.thr;
            if !any_above(block, thr) {
                continue;
            }
            let mut mask = block
                .iter()
                .enumerate()
                .fold(0u64, |m, (j, &s)| m | (u64::from(s > thr) << j));
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                // The threshold may have risen since the mask was taken.
                if block[j] > self.thr {
                    self.push(block[j], base + b * BLOCK + j);
                }
            }
        }
        let tail = blocks.remainder();
        let tail_base = base + (rest.len() - tail.len());
        for (j, &s) in tail.iter().enumerate() {
            if s > self.thr {
                self.push(s, tail_base + j);
            }
        }
    }
}

/// Exact top-K of one row at a time, with scratch buffers reused across rows.
///
/// Create one per thread; see the module documentation for the order, NaN, exclusion and
/// padding rules.
#[derive(Clone, Debug)]
pub struct TopK {
    cands: Candidates,
    /// Sorted copy of an unsorted exclusion list.
    excl: Vec<u32>,
}

impl TopK {
    /// A selector of the best `k` entries. Fails if `k == 0`.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(Error::invalid_argument("k", "top-K needs k >= 1"));
        }
        Ok(Self::new_unchecked(k))
    }

    fn new_unchecked(k: usize) -> Self {
        TopK {
            cands: Candidates::new(k),
            excl: Vec::new(),
        }
    }

    /// The K of this selector.
    pub fn k(&self) -> usize {
        self.cands.k
    }

    /// Writes the top K of `scores` (skipping the columns in `exclude`) into `indices` and
    /// `out_scores`, both of length K, best first, padded with [`NO_ITEM`] / `−∞`.
    /// Returns the number of real entries. Fails if K exceeds the row width or an output
    /// slice does not have K entries.
    pub fn select(
        &mut self,
        scores: &[f32],
        exclude: &[u32],
        indices: &mut [u32],
        out_scores: &mut [f32],
    ) -> Result<usize> {
        self.select_shard(scores, 0, exclude, indices, out_scores)
    }

    /// [`TopK::select`] for a row that holds the columns `col_offset..col_offset + width` of a
    /// wider row: `exclude` holds global column indices (those outside this shard are
    /// ignored), the output holds local ones (`0..width`).
    pub fn select_shard(
        &mut self,
        scores: &[f32],
        col_offset: u32,
        exclude: &[u32],
        indices: &mut [u32],
        out_scores: &mut [f32],
    ) -> Result<usize> {
        let k = self.k();
        check_k(k, scores.len())?;
        check_len("indices", indices.len(), k)?;
        check_len("out_scores", out_scores.len(), k)?;
        Ok(self.run(scores, col_offset, exclude, indices, out_scores))
    }

    /// The selection proper; the arguments have been checked.
    fn run(
        &mut self,
        scores: &[f32],
        col_offset: u32,
        exclude: &[u32],
        indices: &mut [u32],
        out_scores: &mut [f32],
    ) -> usize {
        self.cands.reset();
        let excl: &[u32] = if exclude.is_sorted() {
            exclude
        } else {
            self.excl.clear();
            self.excl.extend_from_slice(exclude);
            self.excl.sort_unstable();
            &self.excl
        };
        let lo = u64::from(col_offset);
        let hi = lo + scores.len() as u64;
        let first = excl.partition_point(|&e| u64::from(e) < lo);
        let mut start = 0;
        for &e in &excl[first..] {
            if u64::from(e) >= hi {
                break;
            }
            let local = (u64::from(e) - lo) as usize;
            if local >= start {
                self.cands.scan(&scores[start..local], start);
                start = local + 1;
            }
        }
        self.cands.scan(&scores[start..], start);
        let k = self.cands.k;
        finish_keys(&mut self.cands.cand, k, scores, indices, out_scores)
    }
}

/// Top-K of every row of a row-major `[batch × width]` score matrix, in parallel over rows.
///
/// Row `b` of the output (`indices[b*k..(b+1)*k]`, `out_scores[b*k..(b+1)*k]`) is
/// `TopK::select_shard(row b, col_offset, exclusions of row b)`: exclusions are the column
/// indices of row `b` of `exclude` (global columns, see [`TopK::select_shard`]; pass
/// `col_offset = 0` for an unsharded row), or none. The result does not depend on the number
/// of rayon threads (each row is computed alone; run inside `ThreadPool::install` to choose
/// the pool).
///
/// Errors: `width == 0`, `k` outside `1..=width`, `scores.len()` not a multiple of `width`,
/// output lengths other than `batch × k`, `exclude` with a row count other than `batch`.
pub fn top_k_batch(
    scores: &[f32],
    width: usize,
    k: usize,
    exclude: Option<CsrView<'_>>,
    col_offset: u32,
    indices: &mut [u32],
    out_scores: &mut [f32],
) -> Result<()> {
    if width == 0 {
        return Err(Error::invalid_argument("width", "rows of width 0"));
    }
    check_k(k, width)?;
    if !scores.len().is_multiple_of(width) {
        return Err(Error::invalid_argument(
            "scores",
            format!("{} scores do not form rows of width {width}", scores.len()),
        ));
    }
    let batch = scores.len() / width;
    check_len("indices", indices.len(), batch * k)?;
    check_len("out_scores", out_scores.len(), batch * k)?;
    if let Some(ex) = &exclude {
        if ex.n_rows() != batch {
            return Err(Error::invalid_argument(
                "exclude",
                format!("has {} rows for a batch of {batch}", ex.n_rows()),
            ));
        }
    }
    let chunk = ROWS_PER_TASK * k;
    indices
        .par_chunks_mut(chunk)
        .zip(out_scores.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(task, (idx, sc))| {
            let mut topk = TopK::new_unchecked(k);
            let first = task * ROWS_PER_TASK;
            for (r, (ri, rs)) in idx.chunks_mut(k).zip(sc.chunks_mut(k)).enumerate() {
                let row = first + r;
                let ex = exclude.as_ref().map_or(&[][..], |v| v.row(row).0);
                topk.run(
                    &scores[row * width..(row + 1) * width],
                    col_offset,
                    ex,
                    ri,
                    rs,
                );
            }
        });
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
