//! The per-sample filter (`-f`/`--filter`) and the exclusions applied before top-K.
//!
//! Contract (also in `predictor --help`): in `exclude` mode every item of a sample's filter
//! row is excluded; in `multiply` mode (DSSTNE's) each item's score is multiplied by its
//! filter value, a missing value (boolean data, text without `,value`) counts as 0, and an
//! item whose value is 0 is excluded instead of being ranked with score 0.

use std::path::Path;

use anyhow::{bail, Context, Result};
use moira::dataset::index::Index;
use moira::dataset::Dataset;
use moira::sparse::Csr;

use super::args::{Args, FilterMode, InputFormatArg};
use super::input::{check_index, read_rows, report, source, Source};

/// One sparse dataset of a NetCDF file that must hold exactly one.
pub fn single_sparse(path: &Path, what: &str) -> Result<Csr> {
    let mut sets = moira::dataset::io::netcdf::read(path)?;
    if sets.len() != 1 {
        bail!(
            "{}: a {what} file must hold one dataset, it holds {}",
            path.display(),
            sets.len()
        );
    }
    sets.remove(0)
        .sparse_data()
        .cloned()
        .with_context(|| format!("{}: the {what} dataset must be sparse", path.display()))
}

/// Loads the filter `path`: a NetCDF dataset as wide as the output (`width` units of layer
/// `output`), row-aligned with the input; or text through the output index (`-o`) and the
/// input's `samples` (rows beyond `n` rows, samples absent from the input, are warned about
/// and ignored). Values are kept in multiply mode.
pub fn load(
    path: &Path,
    args: &Args,
    width: usize,
    output: &str,
    samples: Option<&Index>,
    n: usize,
) -> Result<Csr> {
    let csr = match source(path, InputFormatArg::Auto, Default::default())? {
        Source::NetCdf => {
            let csr = single_sparse(path, "filter")?;
            if csr.n_cols() as usize != width {
                bail!(
                    "{}: the filter is {} wide but output layer `{output}` has {width} units",
                    path.display(),
                    csr.n_cols()
                );
            }
            csr
        }
        Source::Text(format) => {
            let index = args.output_index.as_deref().with_context(|| {
                format!(
                    "{}: a text filter names output items: pass the output features index \
                     with -o",
                    path.display()
                )
            })?;
            let mut features = Index::load(index)?;
            check_index(index, features.len(), width, output)?;
            let mut samples = match (samples, &args.samples) {
                (Some(s), _) => s.clone(),
                (None, Some(p)) => Index::load(p)?,
                (None, None) => bail!(
                    "{}: a text filter names samples: pass --samples SAMPLES_INDEX (or give \
                     the input as text)",
                    path.display()
                ),
            };
            let analog = args.filter_mode == FilterMode::Multiply;
            let (csr, stats) = read_rows(
                path,
                format,
                &mut samples,
                &mut features,
                analog,
                width,
                &mut |_| {},
            )?;
            report(path, index, &stats, "filter");
            let extra = (n..csr.n_rows())
                .filter(|&r| !csr.row(r).0.is_empty())
                .count();
            if extra > 0 {
                tracing::warn!(
                    "{}: {extra} filter samples are not in the input; ignored",
                    path.display()
                );
            }
            csr
        }
    };
    Ok(csr)
}

/// The excluded items of each example of `chunk`, sorted and deduplicated, those below
/// `width`: its input row (if `input`) and the entries of its `filter` row (all of them in
/// exclude mode, those of value 0 or without value in multiply mode); `None` when nothing
/// can be excluded.
pub fn exclusions(
    chunk: &[u32],
    input: Option<(&Dataset, &Csr)>,
    filter: Option<(&Csr, FilterMode)>,
    width: usize,
) -> Option<Csr> {
    if input.is_none() && filter.is_none() {
        return None;
    }
    let mut offsets = vec![0u64];
    let mut cols: Vec<u32> = Vec::new();
    for &e in chunk {
        let start = cols.len();
        if let Some((d, csr)) = input {
            cols.extend_from_slice(csr.row(d.row_of(e as usize)).0);
        }
        if let Some((f, mode)) = filter.filter(|(f, _)| (e as usize) < f.n_rows()) {
            let (c, v) = f.row(e as usize);
            match (mode, v) {
                (FilterMode::Multiply, Some(v)) => {
                    cols.extend(c.iter().zip(v).filter(|(_, &v)| v == 0.0).map(|(&c, _)| c))
                }
                _ => cols.extend_from_slice(c),
            }
        }
        cols[start..].sort_unstable();
        let mut w = start;
        for r in start..cols.len() {
            if (cols[r] as usize) < width && (w == start || cols[r] != cols[w - 1]) {
                cols[w] = cols[r];
                w += 1;
            }
        }
        cols.truncate(w);
        offsets.push(cols.len() as u64);
    }
    Some(Csr::new_checked(width as u32, offsets, cols, None))
}

/// Multiply mode: multiplies `scores` (`chunk.len()` rows of `width`) by the values of each
/// example's filter row (entries beyond `width` ignored; value-less entries are excluded by
/// [`exclusions`] instead). A repeated entry multiplies once per occurrence.
pub fn multiply(scores: &mut [f32], width: usize, chunk: &[u32], filter: &Csr) {
    for (row, &e) in scores.chunks_mut(width).zip(chunk) {
        if (e as usize) >= filter.n_rows() {
            continue;
        }
        let (cols, values) = filter.row(e as usize);
        let Some(values) = values else { continue };
        for (&c, &v) in cols.iter().zip(values) {
            if let Some(s) = row.get_mut(c as usize) {
                *s *= v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_mode_excludes_zeros_and_scales_the_rest() {
        let f = Csr::try_new(4, vec![0, 2, 3], vec![1, 3, 0], Some(vec![0.0, 2.0, 0.5])).unwrap();
        let ex = exclusions(&[0, 1], None, Some((&f, FilterMode::Multiply)), 4).unwrap();
        assert_eq!(ex.row(0).0, &[1]);
        assert!(ex.row(1).0.is_empty());
        let ex = exclusions(&[0, 1], None, Some((&f, FilterMode::Exclude)), 4).unwrap();
        assert_eq!((ex.row(0).0, ex.row(1).0), (&[1, 3][..], &[0][..]));
        let mut s = vec![1.0; 8];
        multiply(&mut s, 4, &[0, 1], &f);
        assert_eq!(s, [1.0, 0.0, 1.0, 2.0, 0.5, 1.0, 1.0, 1.0]);
        // Boolean filters exclude in both modes.
        let b = Csr::try_new(4, vec![0, 1], vec![2], None).unwrap();
        let ex = exclusions(&[0, 5], None, Some((&b, FilterMode::Multiply)), 4).unwrap();
        assert_eq!((ex.row(0).0, ex.row(1).0), (&[2][..], &[][..]));
    }
}
