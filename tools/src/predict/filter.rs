//! Loading the per-sample filter (`-f`/`--filter`) and the held-out file.
//!
//! Contract (also in `predictor --help`): in `exclude` mode every item of a sample's filter
//! row is excluded; in `multiply` mode (DSSTNE's) each item's score is multiplied by its
//! filter value, a missing value (boolean data, text without `,value`) counts as 0, and an
//! item whose value is 0 is excluded instead of being ranked with score 0. The library
//! applies it ([`moira::predict::run`](mod@moira::predict::run): `exclusions`, `multiply`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use moira::dataset::index::Index;
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
    let parquet = moira::dataset::io::parquet::ParquetOptions {
        min_rating: None,
        ..super::input::parquet_options(args)
    };
    let csr = match source(path, InputFormatArg::Auto, Default::default(), &parquet)? {
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
