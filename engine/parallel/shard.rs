//! Sparse data split by column range (DSSTNE's `NNDataSet::Shard(Model)`): rank `r` holds the
//! non-zeros of the columns `split.range(r)`, re-based to local column indices `0..len(r)`.
//!
//! Contracts, for a matrix `m` and a [`Split`] of its `n_cols`:
//! - a shard has `m`'s rows, in order, and `split.len(r)` columns; within a row the entries
//!   keep their relative order; values (if any) follow their entries;
//! - [`merge_columns`] concatenates each row's entries rank after rank, adding back each
//!   rank's first column. So `merge_columns(split_columns(m))` has every row's entries
//!   grouped by rank; it equals `m` exactly when each row's columns are sorted (the
//!   converter writes them sorted).

use super::Split;
use crate::error::{Error, Result};
use crate::sparse::{Csr, CsrView};

fn check_split(n_cols: u32, split: &Split) -> Result<()> {
    if split.total() != n_cols as usize {
        return Err(Error::invalid_argument(
            "split",
            format!(
                "splits {} columns but the matrix has {n_cols}",
                split.total()
            ),
        ));
    }
    Ok(())
}

/// Rank `rank`'s shard of `m`: see the [module documentation](self).
/// Errors: the split is not of `m`'s width, or `rank` is not one of its ranks.
pub fn column_shard(m: CsrView<'_>, split: &Split, rank: usize) -> Result<Csr> {
    check_split(m.n_cols(), split)?;
    if rank >= split.parts() {
        return Err(Error::invalid_argument(
            "rank",
            format!("rank {rank} of a {}-rank split", split.parts()),
        ));
    }
    let range = split.range(rank);
    let (lo, hi) = (range.start as u32, range.end as u32);
    let mut offsets = Vec::with_capacity(m.n_rows() + 1);
    offsets.push(0u64);
    let mut cols = Vec::new();
    let mut values = m.has_values().then(Vec::new);
    for r in 0..m.n_rows() {
        let (c, v) = m.row(r);
        for (i, &col) in c.iter().enumerate() {
            if (lo..hi).contains(&col) {
                cols.push(col - lo);
                if let (Some(out), Some(v)) = (values.as_mut(), v) {
                    out.push(v[i]);
                }
            }
        }
        offsets.push(cols.len() as u64);
    }
    Ok(Csr::new_checked(hi - lo, offsets, cols, values))
}

/// Every rank's shard of `m` in one pass, in rank order: see the
/// [module documentation](self). Errors: the split is not of `m`'s width.
pub fn split_columns(m: CsrView<'_>, split: &Split) -> Result<Vec<Csr>> {
    check_split(m.n_cols(), split)?;
    let parts = split.parts();
    let mut offsets: Vec<Vec<u64>> = vec![vec![0]; parts];
    let mut cols: Vec<Vec<u32>> = vec![Vec::new(); parts];
    let mut values: Vec<Option<Vec<f32>>> = vec![m.has_values().then(Vec::new); parts];
    let starts: Vec<u32> = (0..parts).map(|r| split.start(r) as u32).collect();
    for r in 0..m.n_rows() {
        let (c, v) = m.row(r);
        for (i, &col) in c.iter().enumerate() {
            let owner = split.owner(col as usize);
            cols[owner].push(col - starts[owner]);
            if let (Some(out), Some(v)) = (values[owner].as_mut(), v) {
                out.push(v[i]);
            }
        }
        for (o, c) in offsets.iter_mut().zip(&cols) {
            o.push(c.len() as u64);
        }
    }
    Ok(offsets
        .into_iter()
        .zip(cols)
        .zip(values)
        .enumerate()
        .map(|(rank, ((o, c), v))| Csr::new_checked(split.len(rank) as u32, o, c, v))
        .collect())
}

/// The inverse of [`split_columns`]: one matrix of `split.total()` columns whose row `i` is
/// the rows `i` of `parts` in rank order, columns shifted by each rank's first column.
/// Errors: not one part per rank, parts of different row counts, a part whose width is not
/// its rank's share, or parts that disagree on having values.
pub fn merge_columns(parts: &[Csr], split: &Split) -> Result<Csr> {
    if parts.len() != split.parts() {
        return Err(Error::invalid_argument(
            "parts",
            format!("{} parts for a {}-rank split", parts.len(), split.parts()),
        ));
    }
    let n_cols = u32::try_from(split.total()).map_err(|_| {
        Error::invalid_argument("split", format!("{} columns exceed u32", split.total()))
    })?;
    let rows = parts.first().map_or(0, Csr::n_rows);
    let with_values = parts.first().is_some_and(|p| p.values().is_some());
    for (rank, p) in parts.iter().enumerate() {
        let problem = if p.n_rows() != rows {
            Some(format!("{} rows, rank 0's has {rows}", p.n_rows()))
        } else if p.n_cols() as usize != split.len(rank) {
            Some(format!(
                "{} columns, its share is {}",
                p.n_cols(),
                split.len(rank)
            ))
        } else if p.values().is_some() != with_values {
            Some("values where rank 0's part has none, or the reverse".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Error::InvalidData(format!(
                "merging column shards: rank {rank}'s part has {problem}"
            )));
        }
    }
    let nnz: usize = parts.iter().map(Csr::nnz).sum();
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0u64);
    let mut cols = Vec::with_capacity(nnz);
    let mut values = with_values.then(|| Vec::with_capacity(nnz));
    for r in 0..rows {
        for (rank, p) in parts.iter().enumerate() {
            let start = split.start(rank) as u32;
            let (c, v) = p.row(r);
            cols.extend(c.iter().map(|&col| col + start));
            if let (Some(out), Some(v)) = (values.as_mut(), v) {
                out.extend_from_slice(v);
            }
        }
        offsets.push(cols.len() as u64);
    }
    Ok(Csr::new_checked(n_cols, offsets, cols, values))
}

/// Drops from `datasets` the non-zeros rank `rank` does not need under `plan`: a sparse
/// dataset keeps only this rank's columns when every layer bound to it takes local columns —
/// an Input whose data is split by column ([`super::DataLayout::Columns`]) or a non-SoftMax
/// Output split by units (a SoftMax output's indicator targets are `1/nnz` of the whole row;
/// an output held by examples keeps whole rows). Datasets read
/// whole by some layer, and dense ones, stay whole. Returns the non-zeros kept per dataset.
pub fn retain_rank_columns(
    graph: &crate::graph::Graph,
    plan: &super::ShardPlan,
    rank: usize,
    datasets: &mut [crate::dataset::Dataset],
) -> Result<Vec<usize>> {
    use crate::descriptor::LayerKind;
    let mut kept = Vec::with_capacity(datasets.len());
    for d in datasets.iter_mut() {
        let bound: Vec<&crate::graph::Layer> = graph
            .layers()
            .iter()
            .filter(|l| l.dataset.as_deref() == Some(d.name()))
            .filter(|l| matches!(l.kind, LayerKind::Input | LayerKind::Output))
            .collect();
        let local = |l: &crate::graph::Layer| match l.kind {
            LayerKind::Input => plan
                .input_layouts()
                .iter()
                .any(|&(id, layout)| id == l.id && layout == super::DataLayout::Columns),
            _ => {
                l.activation != crate::ops::Activation::SoftMax
                    && plan.ranks() > 1
                    && plan.layout(l.id) == super::Layout::Units
            }
        };
        let ranges: Vec<_> = bound
            .iter()
            .map(|l| plan.layer_split(l.id).range(rank))
            .collect();
        if !bound.is_empty()
            && d.is_sparse()
            && bound.iter().all(|l| local(l))
            && ranges.iter().all(|r| *r == ranges[0])
        {
            kept.push(d.retain_columns(ranges[0].clone())?);
        } else {
            kept.push(d.nnz());
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::u64_at;

    /// `rows` rows of sorted distinct columns out of `n_cols`, with values if asked.
    fn matrix(rows: usize, n_cols: u32, with_values: bool) -> Csr {
        let mut offsets = vec![0u64];
        let mut cols = Vec::new();
        for r in 0..rows as u64 {
            let n = u64_at(5, 0, r) % 8;
            let mut row: Vec<u32> = (0..n)
                .map(|k| (u64_at(5, 1, r * 16 + k) % n_cols as u64) as u32)
                .collect();
            row.sort_unstable();
            row.dedup();
            cols.extend(row);
            offsets.push(cols.len() as u64);
        }
        let values = with_values.then(|| (0..cols.len()).map(|i| i as f32 * 0.5 - 3.0).collect());
        Csr::try_new(n_cols, offsets, cols, values).unwrap()
    }

    #[test]
    fn split_then_merge_gives_back_the_matrix() {
        for with_values in [false, true] {
            let m = matrix(40, 13, with_values);
            for p in 1..=15 {
                let split = Split::even(13, p).unwrap();
                let parts = split_columns(m.view(), &split).unwrap();
                assert_eq!(parts.len(), p);
                assert_eq!(parts.iter().map(Csr::nnz).sum::<usize>(), m.nnz());
                for (rank, part) in parts.iter().enumerate() {
                    assert_eq!(part.n_rows(), m.n_rows());
                    assert_eq!(part.n_cols() as usize, split.len(rank));
                    assert_eq!(part, &column_shard(m.view(), &split, rank).unwrap());
                    // Every local entry maps back to an entry of the same row of `m`.
                    for r in 0..m.n_rows() {
                        let (c, v) = part.row(r);
                        let (mc, mv) = m.row(r);
                        for (i, &col) in c.iter().enumerate() {
                            let global = col + split.start(rank) as u32;
                            let at = mc.iter().position(|&x| x == global).unwrap();
                            assert_eq!(v.map(|v| v[i]), mv.map(|mv| mv[at]));
                        }
                    }
                }
                assert_eq!(merge_columns(&parts, &split).unwrap(), m, "{p} ranks");
            }
        }
    }

    #[test]
    fn unsorted_rows_merge_grouped_by_rank() {
        let m = Csr::try_new(4, vec![0, 3], vec![3, 0, 2], Some(vec![1.0, 2.0, 3.0])).unwrap();
        let split = Split::even(4, 2).unwrap();
        let parts = split_columns(m.view(), &split).unwrap();
        assert_eq!(parts[0].col_indices(), &[0]);
        assert_eq!(parts[1].col_indices(), &[1, 0]);
        let merged = merge_columns(&parts, &split).unwrap();
        assert_eq!(merged.col_indices(), &[0, 3, 2]);
        assert_eq!(merged.values().unwrap(), &[2.0, 1.0, 3.0]);
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let m = matrix(5, 10, false);
        let split = Split::even(10, 3).unwrap();
        assert!(split_columns(m.view(), &Split::even(9, 3).unwrap()).is_err());
        assert!(column_shard(m.view(), &split, 3).is_err());
        let mut parts = split_columns(m.view(), &split).unwrap();
        assert!(merge_columns(&parts[..2], &split).is_err());
        parts.swap(0, 2);
        let err = merge_columns(&parts, &split).unwrap_err().to_string();
        assert!(
            err.contains("rank 0's part has 3 columns, its share is 4"),
            "{err}"
        );
        let parts = vec![
            matrix(5, 4, false),
            matrix(4, 3, false),
            matrix(5, 3, false),
        ];
        assert!(merge_columns(&parts, &split).is_err());
        let parts = vec![matrix(5, 4, false), matrix(5, 3, true), matrix(5, 3, false)];
        assert!(merge_columns(&parts, &split).is_err());
    }
}
