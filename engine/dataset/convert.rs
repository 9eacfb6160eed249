//! DSSTNE's `generateNetCDF` as a library function: text or Parquet input → one sparse
//! dataset in a NetCDF file, with feature and sample index files.
//!
//! Pipeline of [`convert`]:
//! 1. The samples index is loaded if its file exists (else started empty); the features
//!    index is started empty ([`FeatureIndexMode::Create`]) or loaded, and must then exist.
//! 2. The input (a file, or every file of a directory in sorted order) is parsed in the
//!    chosen [`InputFormat`]. New samples extend the samples index; new features extend the
//!    features index unless it is [`FeatureIndexMode::Existing`], in which case their entries
//!    are dropped and **counted** (DSSTNE dropped them silently; Moira warns with the count).
//! 3. Row `r` of the output is the sample with index `r`: rows follow the samples index, so an
//!    input and an output dataset converted with one samples index stay row-aligned. Samples
//!    of the index absent from this input get an empty row (DSSTNE left them out, which
//!    misaligned files built from different sample sets); their count is warned.
//! 4. The width is the features index length rounded up to a multiple of 128, like DSSTNE,
//!    or exactly that length with `exact_width`.
//! 5. The NetCDF file and the changed index files are written to temporary files beside their
//!    targets and renamed over them only once all are written: a failed conversion leaves
//!    no partial output and no changed index.
//!
//! Fatal errors (nothing is written): an unreadable input or index, invalid UTF-8, a
//! malformed index file, an analog value that is not a finite number, a name that cannot be
//! stored in an index (TAB or CR inside), a missing features index without `Create`, a
//! malformed CSV line, a result without any entry. Skipped with a warning (through
//! `tracing`, counted in [`ConvertReport::stats`]): text lines without a TAB or with an
//! empty sample name, extra `,value`s (first kept), repeated samples (last row kept),
//! unknown features of a fixed index, Parquet rows with a null user, item or value. See
//! [`crate::dataset::io::text`], [`crate::dataset::io::csv`] and
//! [`crate::dataset::io::parquet`] for the format details.

use std::path::{Path, PathBuf};

use super::index::Index;
use super::io::csv::{CsvOptions, ValueColumn};
use super::io::parquet::ParquetOptions;
use super::io::{self, Repeat, Rows, Stats};
use super::{round_up_width, Dataset};
use crate::error::{Error, Result};

/// The input's layout.
#[derive(Clone, Debug, PartialEq)]
pub enum InputFormat {
    /// DSSTNE's text format ([`crate::dataset::io::text`]).
    Text,
    /// A ratings CSV ([`crate::dataset::io::csv`]).
    Csv(CsvOptions),
    /// Interaction lists ([`crate::dataset::io::lists`]).
    Lists,
    /// Parquet rows of user, item and optional value columns
    /// ([`crate::dataset::io::parquet`]).
    Parquet(ParquetOptions),
}

/// How the features index is obtained (DSSTNE's `-c`, `-m`, neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureIndexMode {
    /// Start a new index from this input (`-c`); the file is overwritten.
    Create,
    /// Load the existing index and add the new features of this input (`-m`).
    Merge,
    /// Load the existing index and drop (and count) entries of unknown features.
    Existing,
}

/// DSSTNE's `-t`: whether values are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValueType {
    /// Boolean data: entries only (`-t indicator`, the default).
    #[default]
    Indicator,
    /// Entries with their values (`-t analog`).
    Analog,
}

/// Everything [`convert`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertOptions {
    /// The dataset's name in the file (`-d`), matched against a layer's `DataSet`.
    pub dataset_name: String,
    /// Input file or directory (`-i`).
    pub input: PathBuf,
    /// Output NetCDF file (`-o`).
    pub output: PathBuf,
    /// Features index file (`-f`).
    pub features_index: PathBuf,
    /// Samples index file (`-s`), created if missing.
    pub samples_index: PathBuf,
    /// How the features index is obtained.
    pub feature_mode: FeatureIndexMode,
    /// Indicator or analog data.
    pub value_type: ValueType,
    /// Input layout.
    pub format: InputFormat,
    /// Use the number of features as the width instead of rounding it up to 128.
    pub exact_width: bool,
    /// Scale each row to unit L2 norm (the values become analog; indicator rows get
    /// `1/√nnz`), the input normalisation of Mult-DAE/Mult-VAE.
    pub l2_normalize: bool,
}

/// What a conversion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertReport {
    /// Examples (rows) written: the samples index length.
    pub examples: usize,
    /// Features in the features index.
    pub features: usize,
    /// Width written (features, possibly rounded up to 128).
    pub width: u32,
    /// Entries written.
    pub nnz: u64,
    /// Samples and features added to their index by this input.
    pub new_samples: usize,
    pub new_features: usize,
    /// Rows left empty: samples of the index that this input does not hold.
    pub empty_rows: usize,
    /// Whether each index file was (re)written.
    pub samples_index_written: bool,
    pub features_index_written: bool,
    /// Bytes of input read.
    pub bytes: u64,
    /// Lines read and what was skipped.
    pub stats: Stats,
}

/// Converts `options.input` as described in the module documentation. `progress` receives
/// the number of input bytes consumed, chunk by chunk (see [`io::input_size`] for the total).
pub fn convert(options: &ConvertOptions, progress: &mut dyn FnMut(u64)) -> Result<ConvertReport> {
    check_paths(options)?;
    let mut samples = if options.samples_index.exists() {
        Index::load(&options.samples_index)?
    } else {
        Index::new()
    };
    let mut features = match options.feature_mode {
        FeatureIndexMode::Create => Index::new(),
        _ if !options.features_index.exists() => {
            return Err(Error::invalid_argument(
                "features index",
                format!(
                    "{} does not exist: create it with -c (--create-features)",
                    options.features_index.display()
                ),
            ))
        }
        _ => Index::load(&options.features_index)?,
    };
    let (samples_before, features_before) = (samples.len(), features.len());
    let analog = options.value_type == ValueType::Analog
        && !matches!(
            options.format,
            InputFormat::Csv(CsvOptions {
                value_column: ValueColumn::None,
                ..
            }) | InputFormat::Parquet(ParquetOptions {
                value_column: None,
                ..
            })
        );
    let repeat = repeat_for(&options.format);
    let extend = options.feature_mode != FeatureIndexMode::Existing;
    let mut bytes = 0u64;
    let mut count = |n: u64| {
        bytes += n;
        progress(n);
    };
    let mut rows = Rows::new(&mut samples, &mut features, extend, analog, repeat);
    read_input(&options.input, &options.format, &mut rows, &mut count)?;
    let n_features = rows.features_len();
    let width = width_for(n_features, options.exact_width)?;
    let (csr, stats) = rows.finish(width)?;
    let csr = if options.l2_normalize {
        csr.l2_normalized()
    } else {
        csr
    };
    if csr.nnz() == 0 {
        return Err(Error::InvalidData(format!(
            "{}: no entries to write ({} lines read, {} entries of unknown features dropped)",
            options.input.display(),
            stats.lines,
            stats.unknown_features
        )));
    }
    if stats.null_rows > 0 {
        tracing::warn!(
            "{}: {} rows skipped: their user, item or value is null",
            options.input.display(),
            stats.null_rows
        );
    }
    if stats.unknown_features > 0 {
        tracing::warn!(
            "{} entries dropped: their features are not in the features index {} \
             (use -m to add them), e.g. {}",
            stats.unknown_features,
            options.features_index.display(),
            quoted(&stats.unknown_feature_examples)
        );
    }
    let empty_rows = (0..csr.n_rows())
        .filter(|&r| csr.row(r).0.is_empty())
        .count();
    if empty_rows > 0 {
        tracing::warn!(
            "{empty_rows} of {} rows are empty (samples of the samples index without entries \
             in this input)",
            csr.n_rows()
        );
    }
    let report = ConvertReport {
        examples: csr.n_rows(),
        features: features.len(),
        width,
        nnz: csr.nnz() as u64,
        new_samples: samples.len() - samples_before,
        new_features: features.len() - features_before,
        empty_rows,
        samples_index_written: samples.is_changed(),
        features_index_written: features.is_changed(),
        bytes,
        stats,
    };
    let dataset = Dataset::sparse(options.dataset_name.clone(), vec![width], csr)?;
    // Write everything beside its target, then rename all of it.
    let nc_tmp = io::netcdf::write_temp(&options.output, &[&dataset])?;
    drop(dataset);
    let feat_tmp = match features.is_changed() {
        true => Some(features.write_temp(&options.features_index)?),
        false => None,
    };
    let samp_tmp = match samples.is_changed() {
        true => Some(samples.write_temp(&options.samples_index)?),
        false => None,
    };
    // The dataset first: when its rename fails (the path is a directory, say), no index has
    // changed yet.
    for (tmp, path) in [
        (Some(nc_tmp), &options.output),
        (feat_tmp, &options.features_index),
        (samp_tmp, &options.samples_index),
    ] {
        if let Some(tmp) = tmp {
            tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        }
    }
    Ok(report)
}

/// Parses `input` (a file, or every file of a directory in sorted order) in `format` into
/// `rows`; `progress` receives the bytes consumed. [`Repeat::Replace`] suits the text format,
/// [`Repeat::Append`] the others (see [`repeat_for`]).
pub fn read_input(
    input: &Path,
    format: &InputFormat,
    rows: &mut Rows<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    match format {
        InputFormat::Text => io::text::read(input, rows, progress),
        InputFormat::Csv(o) => io::csv::read(input, rows, o, progress),
        InputFormat::Lists => io::lists::read(input, rows, progress),
        InputFormat::Parquet(o) => io::parquet::read(input, rows, o, progress),
    }
}

/// What a repeated sample does in `format`: the text format replaces its row (DSSTNE), CSV
/// and lists append to it.
pub fn repeat_for(format: &InputFormat) -> Repeat {
    match format {
        InputFormat::Text => Repeat::Replace,
        _ => Repeat::Append,
    }
}

/// `labels` as a message fragment: `` `a`, `b` `` (backquoted, comma-separated).
pub fn quoted(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("`{l}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The width for `n` features: DSSTNE's rounding up to 128, or `n` itself.
fn width_for(n: usize, exact: bool) -> Result<u32> {
    let n = u32::try_from(n)
        .map_err(|_| Error::InvalidData(format!("{n} features exceed 2^32 - 1")))?;
    if n == 0 {
        return Err(Error::InvalidData(
            "no features: the features index is empty and the input adds none".into(),
        ));
    }
    if exact {
        return Ok(n);
    }
    round_up_width(n).ok_or_else(|| Error::InvalidData(format!("{n} features exceed 2^32 - 128")))
}

/// Refuses option combinations that would lose data before anything is read.
fn check_paths(options: &ConvertOptions) -> Result<()> {
    if options.dataset_name.is_empty() {
        return Err(Error::invalid_argument(
            "dataset",
            "the dataset name is empty",
        ));
    }
    let same = |a: &Path, b: &Path| a == b;
    let out = options.output.as_path();
    for (what, p) in [
        ("input", options.input.as_path()),
        ("features index", options.features_index.as_path()),
        ("samples index", options.samples_index.as_path()),
    ] {
        if same(out, p) {
            return Err(Error::invalid_argument(
                "output",
                format!("{} is also the {what}", out.display()),
            ));
        }
    }
    if same(&options.features_index, &options.samples_index) {
        return Err(Error::invalid_argument(
            "samples index",
            "the features and samples indexes must be different files",
        ));
    }
    if !options.input.exists() {
        return Err(Error::io(
            &options.input,
            std::io::Error::new(std::io::ErrorKind::NotFound, "input not found"),
        ));
    }
    Ok(())
}
