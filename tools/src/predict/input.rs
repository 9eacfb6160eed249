//! Reading the predictor's input and filter: NetCDF datasets or text mapped through index
//! files, bound to the network's input layer, with every width checked against the network.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use moira::checkpoint::Model;
use moira::dataset::convert::{quoted, read_input, repeat_for, InputFormat};
use moira::dataset::index::Index;
use moira::dataset::io::csv::CsvOptions;
use moira::dataset::io::parquet::ParquetOptions;
use moira::dataset::io::{netcdf, Rows, Stats};
use moira::dataset::{round_up_width, Dataset};
use moira::descriptor::{LayerDescriptor as Layer, LayerKind, Size};
use moira::sparse::Csr;

use super::args::{Args, InputFormatArg, TypeArg};

/// How a file is read, once `auto` is resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    NetCdf,
    Text(InputFormat),
}

/// The loaded input: datasets to bind, and the samples index when the input was text (its
/// labels name the rows).
pub struct Input {
    /// The input file.
    pub path: PathBuf,
    /// The datasets, named after the layers they bind to.
    pub datasets: Vec<Dataset>,
    /// Text input: the samples index that ordered the rows.
    pub samples: Option<Index>,
}

/// Whether the file starts with a NetCDF (classic or HDF5) signature.
fn is_netcdf(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut magic).unwrap_or(0);
    (n >= 4 && &magic[..3] == b"CDF" && matches!(magic[3], 1 | 2 | 5))
        || (n == 8 && &magic == b"\x89HDF\r\n\x1a\n")
}

/// Whether the file starts with Parquet's magic bytes.
fn is_parquet(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1"
}

/// The Parquet options of the predictor's flags (`--user-column`, `--item-column`,
/// `--value-column`, `--min-rating`), for input and filter files.
pub fn parquet_options(args: &Args) -> ParquetOptions {
    ParquetOptions {
        user_column: args.user_column.clone().unwrap_or_default(),
        item_column: args.item_column.clone().unwrap_or_default(),
        value_column: args.value_column.clone(),
        min_rating: args.min_rating,
    }
}

/// `Source::Text(Parquet)` once the id columns are known.
fn parquet_source(path: &Path, parquet: &ParquetOptions) -> Result<Source> {
    if parquet.user_column.is_empty() || parquet.item_column.is_empty() {
        bail!(
            "{}: a Parquet input needs --user-column and --item-column",
            path.display()
        );
    }
    Ok(Source::Text(InputFormat::Parquet(parquet.clone())))
}

/// The first file of `path` (itself, or the first of a directory in sorted order).
fn first_file(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let files = moira::dataset::io::input_files(path)?;
        return files
            .into_iter()
            .next()
            .with_context(|| format!("{}: an empty directory", path.display()));
    }
    Ok(path.to_owned())
}

/// Resolves `format` for `path` (see `--input-format auto`).
pub fn source(
    path: &Path,
    format: InputFormatArg,
    csv: CsvOptions,
    parquet: &ParquetOptions,
) -> Result<Source> {
    Ok(match format {
        InputFormatArg::Parquet => parquet_source(path, parquet)?,
        InputFormatArg::Nc => Source::NetCdf,
        InputFormatArg::Text => Source::Text(InputFormat::Text),
        InputFormatArg::Csv => Source::Text(InputFormat::Csv(csv)),
        InputFormatArg::Lists => Source::Text(InputFormat::Lists),
        InputFormatArg::Auto => {
            if !path.exists() {
                bail!("{}: no such file or directory", path.display());
            }
            let first = first_file(path)?;
            // A directory of Parquet part files: the first one not hidden (`_SUCCESS`, …).
            let part = match path.is_dir() {
                true => moira::dataset::io::parquet::parquet_files(path)
                    .ok()
                    .and_then(|f| f.into_iter().next())
                    .unwrap_or_else(|| first.clone()),
                false => first.clone(),
            };
            if is_netcdf(&first) {
                Source::NetCdf
            } else if is_parquet(&part) {
                parquet_source(path, parquet)?
            } else if first.extension().is_some_and(|e| e == "csv") {
                Source::Text(InputFormat::Csv(csv))
            } else {
                let mut head = vec![0u8; 1 << 16];
                let n = std::fs::File::open(&first)
                    .and_then(|mut f| f.read(&mut head))
                    .with_context(|| format!("cannot read {}", first.display()))?;
                let line = head[..n]
                    .split(|&b| b == b'\n')
                    .find(|l| !l.iter().all(u8::is_ascii_whitespace));
                match line {
                    Some(l) if !l.contains(&b'\t') => Source::Text(InputFormat::Lists),
                    _ => Source::Text(InputFormat::Text),
                }
            }
        }
    })
}

/// Checks that an index of `len` features fits a layer of `units` units: a converter gives
/// `len` itself or `len` rounded up to 128.
pub fn check_index(path: &Path, len: usize, units: usize, layer: &str) -> Result<()> {
    let rounded = u32::try_from(len)
        .ok()
        .and_then(round_up_width)
        .map(|w| w as usize);
    if len != units && rounded != Some(units) {
        bail!(
            "{}: the index has {len} features, which gives a width of {len} or {}, but layer \
             `{layer}` has {units} units: it is the index of another network or data",
            path.display(),
            rounded.map_or("?".into(), |w| w.to_string())
        );
    }
    Ok(())
}

fn units_of(layer: &Layer) -> Result<(Vec<u32>, usize)> {
    match &layer.size {
        Size::Fixed(dims) => Ok((
            dims.clone(),
            dims.iter().map(|&d| d as usize).product::<usize>(),
        )),
        Size::Auto => bail!("input layer `{}` has no fixed size", layer.name),
    }
}

/// The input layers of the network, and the one `-d NAME` selects (DSSTNE: `NAME` or
/// `NAME_input`), if given.
fn input_layers<'m>(
    model: &'m Model,
    name: Option<&str>,
) -> Result<(Vec<&'m Layer>, Option<&'m Layer>)> {
    let inputs: Vec<&Layer> = model
        .descriptor
        .layers
        .iter()
        .filter(|l| l.kind == LayerKind::Input)
        .collect();
    let Some(name) = name else {
        return Ok((inputs, None));
    };
    let suffixed = format!("{name}_input");
    let chosen = [name, suffixed.as_str()].into_iter().find_map(|n| {
        inputs
            .iter()
            .find(|l| l.dataset.as_deref() == Some(n))
            .copied()
    });
    match chosen {
        Some(l) => Ok((inputs, Some(l))),
        None => {
            let have: Vec<String> = inputs
                .iter()
                .map(|l| {
                    format!(
                        "`{}` (DataSet `{}`)",
                        l.name,
                        l.dataset.as_deref().unwrap_or("")
                    )
                })
                .collect();
            bail!(
                "-d {name}: no input layer has DataSet `{name}` or `{suffixed}`; the network's \
                 input layers: {}",
                have.join(", ")
            )
        }
    }
}

/// Loads the input as `args` says (see the predictor's help), bound to the network's input
/// layers by name.
pub fn load(args: &Args, model: &Model) -> Result<Input> {
    let (path, features) = match (&args.input, &args.input_index) {
        (Some(r), ix) => (r.clone(), ix.clone()),
        (None, Some(i)) => {
            if i.exists() && !is_netcdf(&first_file(i)?) {
                bail!(
                    "{}: without -r, -i names the input NetCDF dataset, and this is not a \
                     NetCDF file: pass the input with -r INPUT and the features index with -i",
                    i.display()
                );
            }
            (i.clone(), None)
        }
        (None, None) => bail!("no input: pass -r INPUT (and -i FEATURES_INDEX for text input)"),
    };
    let (inputs, chosen) = input_layers(model, args.dataset.as_deref())?;
    let csv = CsvOptions {
        min_rating: args.min_rating,
        ..CsvOptions::default()
    };
    let source = source(&path, args.input_format, csv, &parquet_options(args))?;
    let parquet = matches!(source, Source::Text(InputFormat::Parquet(_)));
    if args.min_rating.is_some() && !parquet && !matches!(source, Source::Text(InputFormat::Csv(_)))
    {
        bail!("--min-rating applies to CSV and Parquet input only");
    }
    if !parquet
        && (args.user_column.is_some() || args.item_column.is_some() || args.value_column.is_some())
    {
        bail!("--user-column, --item-column and --value-column apply to Parquet input only");
    }
    let (datasets, samples) = match &source {
        Source::NetCdf => {
            if args.l2_normalize {
                bail!("--l2-normalize applies to text input; a NetCDF input is used as it is");
            }
            (netcdf_input(&path, args, &inputs, chosen)?, None)
        }
        Source::Text(format) => {
            let layer = match (chosen, inputs.as_slice()) {
                (Some(l), _) | (None, &[l]) => l,
                _ => bail!(
                    "the network has {} input layers: choose the one text input binds to \
                     with -d NAME",
                    inputs.len()
                ),
            };
            let features = features.as_deref().with_context(|| {
                format!(
                    "{}: text input needs the network's features index: -i FEATURES_INDEX",
                    path.display()
                )
            })?;
            let (set, samples) = text_input(&path, format.clone(), features, layer, args)?;
            (vec![set], Some(samples))
        }
    };
    if let (Source::NetCdf, Some(ix)) = (&source, features.as_ref()) {
        // A NetCDF input with an index: the index must at least fit the network.
        if let Some(layer) = chosen.or(inputs.first().copied()) {
            let (_, units) = units_of(layer)?;
            check_index(ix, Index::load(ix)?.len(), units, &layer.name)?;
        }
    }
    Ok(Input {
        path,
        datasets,
        samples,
    })
}

/// A NetCDF input: the datasets of the file, renamed to the input layer's `DataSet` when
/// the choice is unambiguous, each checked against its layer's width.
fn netcdf_input(
    path: &Path,
    args: &Args,
    inputs: &[&Layer],
    chosen: Option<&Layer>,
) -> Result<Vec<Dataset>> {
    let mut sets = netcdf::read(path)?;
    let target = chosen.or(if inputs.len() == 1 {
        Some(inputs[0])
    } else {
        None
    });
    if let Some(layer) = target {
        let wanted = layer.dataset.clone().unwrap_or_default();
        let by_name = args.dataset.as_deref().map_or(vec![wanted.clone()], |d| {
            vec![d.to_owned(), format!("{d}_input"), wanted.clone()]
        });
        let pick = by_name
            .iter()
            .find_map(|n| sets.iter().position(|s| s.name() == n))
            .or(if sets.len() == 1 { Some(0) } else { None });
        if let Some(i) = pick {
            if sets[i].name() != wanted {
                tracing::info!(
                    "binding dataset `{}` of {} to input layer `{}` (DataSet `{wanted}`)",
                    sets[i].name(),
                    path.display(),
                    layer.name
                );
                sets[i].set_name(wanted);
            }
        }
    }
    for layer in inputs {
        let Some(name) = &layer.dataset else { continue };
        let Some(set) = sets.iter().find(|s| s.name() == name) else {
            let names: Vec<&str> = sets.iter().map(|s| s.name()).collect();
            bail!(
                "{}: no dataset `{name}` for input layer `{}`; the file holds {names:?}{}",
                path.display(),
                layer.name,
                if args.dataset.is_none() {
                    " (choose one with -d NAME)"
                } else {
                    ""
                }
            );
        };
        let (_, units) = units_of(layer)?;
        if set.stride() != units as u64 {
            bail!(
                "{}: dataset `{name}` is {} wide but the network's input layer `{}` has \
                 {units} units: convert the input with the training features index",
                path.display(),
                set.stride(),
                layer.name
            );
        }
    }
    Ok(sets)
}

/// Text input through the features index, as the converter reads it; rows follow
/// `--samples` when given.
fn text_input(
    path: &Path,
    format: InputFormat,
    features: &Path,
    layer: &Layer,
    args: &Args,
) -> Result<(Dataset, Index)> {
    let (dims, units) = units_of(layer)?;
    let mut features_ix = Index::load(features)?;
    check_index(features, features_ix.len(), units, &layer.name)?;
    let mut samples = match &args.samples {
        Some(p) => Index::load(p)?,
        None => Index::new(),
    };
    let analog = args.kind == TypeArg::Analog;
    let bar = super::bar(
        moira::dataset::io::input_size(path).unwrap_or(0),
        "read {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        args.quiet,
    );
    let (csr, stats) = read_rows(
        path,
        format,
        &mut samples,
        &mut features_ix,
        analog,
        units,
        &mut |n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    report(path, features, &stats, "input");
    if csr.n_rows() == 0 {
        bail!("{}: no samples in the input", path.display());
    }
    let empty = (0..csr.n_rows())
        .filter(|&r| csr.row(r).0.is_empty())
        .count();
    if empty > 0 {
        tracing::warn!(
            "{}: {empty} of {} rows are empty (samples without known features{})",
            path.display(),
            csr.n_rows(),
            if args.samples.is_some() {
                ", or of --samples and not in the input"
            } else {
                ""
            }
        );
    }
    let csr = if args.l2_normalize {
        csr.l2_normalized()
    } else {
        csr
    };
    let name = layer.dataset.clone().unwrap_or_else(|| "input".into());
    Ok((Dataset::sparse(name, dims, csr)?, samples))
}

/// Parses text `path` in `format` into `width`-column rows keyed by `samples` (extended with
/// new samples) and `features` (fixed: unknown features are dropped and counted);
/// `progress` receives the bytes read.
pub fn read_rows(
    path: &Path,
    format: InputFormat,
    samples: &mut Index,
    features: &mut Index,
    analog: bool,
    width: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(Csr, Stats)> {
    let mut rows = Rows::new(samples, features, false, analog, repeat_for(&format));
    read_input(path, &format, &mut rows, progress)?;
    let width = u32::try_from(width).context("layer too wide")?;
    Ok(rows.finish(width)?)
}

/// Warns about what reading `path` skipped, naming the index of the unknown features.
pub fn report(path: &Path, features: &Path, stats: &Stats, what: &str) {
    if stats.unknown_features > 0 {
        tracing::warn!(
            "{}: {} {what} entries dropped: their features are not in {}, e.g. {}",
            path.display(),
            stats.unknown_features,
            features.display(),
            quoted(&stats.unknown_feature_examples)
        );
    }
}
