//! Merging per-shard top-K lists into the global top-K (model-parallel prediction).
//!
//! When the output layer is split by columns across ranks, each rank selects the top K' of its
//! columns with [`top_k_batch`](super::top_k_batch) (passing its `col_offset`, so that the exclusions stay global
//! and the output is local). The merge maps each shard's local indices to global columns
//! (`offset + index`) and keeps the best K in the order of [`super`]: higher score first,
//! equal scores by lower global column. If the shards cover disjoint column ranges and
//! each list is its shard's top K' with K' ≥ min(K, shard width), the result is exactly the
//! top K of the concatenated row (DSSTNE's multi-GPU predict, without its K×5 heuristic).

use std::cmp::Ordering;

use rayon::prelude::*;

use super::{check_len, NO_ITEM, ROWS_PER_TASK};
use crate::error::{Error, Result};

/// A candidate: a (non-NaN) score and its column index.
#[derive(Clone, Copy, Debug)]
struct Entry {
    score: f32,
    index: u32,
}

/// The ranking order: `Less` means `a` ranks before `b`. Scores are never NaN here.
#[inline]
fn rank_cmp(a: &Entry, b: &Entry) -> Ordering {
    match b.score.partial_cmp(&a.score) {
        Some(Ordering::Equal) | None => a.index.cmp(&b.index),
        Some(order) => order,
    }
}

/// Keeps the best `k` of `cand` (if it holds more), sorts them, writes them into the output
/// slices (length `k`) and pads the rest. Returns the number of real entries.
fn finish(cand: &mut Vec<Entry>, k: usize, indices: &mut [u32], scores: &mut [f32]) -> usize {
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, rank_cmp);
        cand.truncate(k);
    }
    cand.sort_unstable_by(rank_cmp);
    let n = cand.len();
    for (slot, e) in indices.iter_mut().zip(scores.iter_mut()).zip(cand.iter()) {
        *slot.0 = e.index;
        *slot.1 = e.score;
    }
    indices[n..].fill(NO_ITEM);
    scores[n..].fill(f32::NEG_INFINITY);
    n
}

/// One shard's ranked list for one row: entry `i` is column `offset + indices[i]` of the full
/// row, with score `scores[i]`. [`NO_ITEM`] entries (padding) and NaN scores are skipped.
#[derive(Clone, Copy, Debug)]
pub struct ShardTopK<'a> {
    pub offset: u32,
    pub indices: &'a [u32],
    pub scores: &'a [f32],
}

/// One shard's output of [`top_k_batch`](super::top_k_batch): `[batch × k]` indices and scores, local to the
/// shard that starts at column `offset` of the full rows.
#[derive(Clone, Copy, Debug)]
pub struct ShardTopKBatch<'a> {
    pub offset: u32,
    pub k: usize,
    pub indices: &'a [u32],
    pub scores: &'a [f32],
}

/// Appends the valid entries of `shard`, mapped to global columns, to `cand`.
fn gather(cand: &mut Vec<Entry>, offset: u32, indices: &[u32], scores: &[f32]) -> Result<()> {
    for (&i, &s) in indices.iter().zip(scores) {
        if i == NO_ITEM || s.is_nan() {
            continue;
        }
        let index = offset
            .checked_add(i)
            .filter(|&g| g != NO_ITEM)
            .ok_or_else(|| {
                Error::InvalidData(format!(
                    "shard entry {i} at offset {offset} lies beyond the u32 column range"
                ))
            })?;
        cand.push(Entry { score: s, index });
    }
    Ok(())
}

/// The global top-K of one row from the ranked lists of its shards (disjoint column ranges):
/// the same result as top-K of the concatenated row provided each shard list is its shard's
/// top-K' with K' ≥ K. Output as in [`TopK::select`](super::TopK::select) (global indices, padding); returns the
/// number of real entries.
///
/// Errors: `k == 0`, output lengths other than `k`, a shard whose two slices differ in
/// length, or an entry whose global column does not fit below [`NO_ITEM`].
pub fn merge_top_k(
    shards: &[ShardTopK<'_>],
    k: usize,
    indices: &mut [u32],
    out_scores: &mut [f32],
) -> Result<usize> {
    if k == 0 {
        return Err(Error::invalid_argument("k", "top-K needs k >= 1"));
    }
    check_len("indices", indices.len(), k)?;
    check_len("out_scores", out_scores.len(), k)?;
    let mut cand = Vec::new();
    for (s, shard) in shards.iter().enumerate() {
        if shard.indices.len() != shard.scores.len() {
            return Err(Error::invalid_argument(
                "shards",
                format!(
                    "shard {s} has {} indices and {} scores",
                    shard.indices.len(),
                    shard.scores.len()
                ),
            ));
        }
        gather(&mut cand, shard.offset, shard.indices, shard.scores)?;
    }
    Ok(finish(&mut cand, k, indices, out_scores))
}

/// [`merge_top_k`] for every row of a batch, in parallel over rows: row `b` merges row `b` of
/// each shard's `[batch × shard.k]` lists into `indices[b*k..(b+1)*k]` (global columns).
///
/// Errors: `k == 0`, a shard whose slices are not `batch × shard.k` long, output lengths other
/// than `batch × k` (the batch is taken from the output length), an out-of-range column.
pub fn merge_top_k_batch(
    shards: &[ShardTopKBatch<'_>],
    k: usize,
    indices: &mut [u32],
    out_scores: &mut [f32],
) -> Result<()> {
    if k == 0 {
        return Err(Error::invalid_argument("k", "top-K needs k >= 1"));
    }
    check_len("out_scores", out_scores.len(), indices.len())?;
    if !indices.len().is_multiple_of(k) {
        return Err(Error::invalid_argument(
            "indices",
            format!("{} entries do not form rows of k = {k}", indices.len()),
        ));
    }
    let batch = indices.len() / k;
    for (s, shard) in shards.iter().enumerate() {
        let expected = batch.checked_mul(shard.k);
        if expected != Some(shard.indices.len()) || expected != Some(shard.scores.len()) {
            return Err(Error::invalid_argument(
                "shards",
                format!(
                    "shard {s} has {} indices and {} scores, expected {batch} × {}",
                    shard.indices.len(),
                    shard.scores.len(),
                    shard.k
                ),
            ));
        }
    }
    let chunk = ROWS_PER_TASK * k;
    indices
        .par_chunks_mut(chunk)
        .zip(out_scores.par_chunks_mut(chunk))
        .enumerate()
        .try_for_each(|(task, (idx, sc))| {
            let mut cand = Vec::new();
            for (r, (ri, rs)) in idx.chunks_mut(k).zip(sc.chunks_mut(k)).enumerate() {
                let row = task * ROWS_PER_TASK + r;
                cand.clear();
                for shard in shards {
                    let range = row * shard.k..(row + 1) * shard.k;
                    gather(
                        &mut cand,
                        shard.offset,
                        &shard.indices[range.clone()],
                        &shard.scores[range],
                    )?;
                }
                finish(&mut cand, k, ri, rs);
            }
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topk::tests::{bits, random_batch, run_batch, Rng};
    use crate::topk::top_k_batch;

    #[test]
    fn merged_shards_equal_top_k_of_the_whole_row() {
        let mut rng = Rng(23);
        let (width, batch) = (1000, 9);
        let (scores, ex) = random_batch(&mut rng, batch, width);
        for k in [1, 10, 64] {
            let full = run_batch(1, &scores, width, k, &ex);
            let cuts = [0, 1 + rng.below(300), 400, 401 + rng.below(500), width];
            let mut outs = Vec::new();
            for w in cuts.windows(2) {
                let sw = w[1] - w[0];
                let kk = k.min(sw);
                let shard: Vec<f32> = (0..batch)
                    .flat_map(|b| scores[b * width + w[0]..b * width + w[1]].to_vec())
                    .collect();
                let (mut idx, mut sc) = (vec![0; batch * kk], vec![0.0; batch * kk]);
                top_k_batch(
                    &shard,
                    sw,
                    kk,
                    Some(ex.view()),
                    w[0] as u32,
                    &mut idx,
                    &mut sc,
                )
                .unwrap();
                outs.push((w[0] as u32, kk, idx, sc));
            }
            let shards: Vec<ShardTopKBatch> = outs
                .iter()
                .map(|(offset, kk, idx, sc)| ShardTopKBatch {
                    offset: *offset,
                    k: *kk,
                    indices: idx,
                    scores: sc,
                })
                .collect();
            let (mut idx, mut sc) = (vec![0; batch * k], vec![0.0; batch * k]);
            merge_top_k_batch(&shards, k, &mut idx, &mut sc).unwrap();
            assert_eq!(idx, full.0, "k {k}");
            assert_eq!(bits(&sc), bits(&full.1), "k {k}");
            // The one-row form agrees on row 0.
            let rows: Vec<ShardTopK> = shards
                .iter()
                .map(|s| ShardTopK {
                    offset: s.offset,
                    indices: &s.indices[..s.k],
                    scores: &s.scores[..s.k],
                })
                .collect();
            let (mut i1, mut s1) = (vec![0; k], vec![0.0; k]);
            merge_top_k(&rows, k, &mut i1, &mut s1).unwrap();
            assert_eq!(i1, full.0[..k]);
        }
    }

    #[test]
    fn merge_rejects_malformed_shards() {
        let (mut idx, mut sc) = (vec![0; 2], vec![0.0; 2]);
        let bad_len = ShardTopK {
            offset: 0,
            indices: &[1, 2],
            scores: &[1.0],
        };
        assert!(merge_top_k(&[bad_len], 2, &mut idx, &mut sc).is_err());
        let overflow = ShardTopK {
            offset: u32::MAX - 1,
            indices: &[5],
            scores: &[1.0],
        };
        assert!(merge_top_k(&[overflow], 2, &mut idx, &mut sc).is_err());
        let padded = ShardTopK {
            offset: 10,
            indices: &[3, NO_ITEM],
            scores: &[2.0, f32::NEG_INFINITY],
        };
        assert_eq!(merge_top_k(&[padded], 2, &mut idx, &mut sc).unwrap(), 1);
        assert_eq!(idx, [13, NO_ITEM]);
        let shard = ShardTopKBatch {
            offset: 0,
            k: 2,
            indices: &[0, 1, 2],
            scores: &[0.0; 3],
        };
        assert!(merge_top_k_batch(&[shard], 2, &mut idx, &mut sc).is_err());
    }
}
