//! The predictor's output files, written batch by batch and renamed into place at the end:
//! recommendations (text, [`AtomicFile`]; Parquet in the library's `parquet_out`) and layer
//! activations ([`LayerWriter`]: TSV, a dense NetCDF dataset, or Parquet).

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use moira::dataset::io::dense_writer::DenseWriter;
use moira::dataset::io::parquet_out;

use super::args::LayerFormat;

/// Writes to `<dir>/.<name>.<pid>.tmp`, renamed onto the target by `finish`; removed if
/// dropped before.
pub struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    out: Option<BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Creates the temporary file beside `target`.
    pub fn create(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .with_context(|| format!("{}: not a file name", target.display()))?;
        let tmp = target.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(AtomicFile {
            tmp,
            target: target.to_owned(),
            out: Some(BufWriter::new(file)),
        })
    }

    /// Appends `text`.
    pub fn write(&mut self, text: &str) -> Result<()> {
        let out = self.out.as_mut().expect("open until finished");
        out.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.tmp.display()))
    }

    /// Flushes, syncs and renames the file onto the target.
    pub fn finish(mut self) -> Result<()> {
        let out = self.out.take().expect("open until finished");
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.target)
            .with_context(|| format!("cannot rename onto {}", self.target.display()))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The format of a layer output: `explicit`, else `.nc` → NetCDF, `.parquet` → Parquet,
/// anything else → TSV.
pub fn layer_format(path: &Path, explicit: Option<LayerFormat>) -> LayerFormat {
    explicit.unwrap_or(match path.extension().and_then(|e| e.to_str()) {
        Some("nc") => LayerFormat::Nc,
        Some("parquet") => LayerFormat::Parquet,
        _ => LayerFormat::Tsv,
    })
}

/// A layer's activations being written: one row per sample, in input order.
pub enum LayerWriter {
    /// `sample<TAB>v1 v2 … vN` lines; `precision` decimals, or the shortest exact form.
    Tsv {
        file: AtomicFile,
        precision: Option<usize>,
        text: String,
    },
    /// A dense dataset in DSSTNE's NetCDF schema.
    Nc(DenseWriter),
    /// Parquet: `sample` and a list of the values.
    Parquet(Box<parquet_out::LayerWriter>),
}

impl LayerWriter {
    /// Starts `path` for `rows` rows of `units` values of layer `name`.
    pub fn create(
        path: &Path,
        format: LayerFormat,
        name: &str,
        units: usize,
        rows: usize,
        precision: Option<usize>,
    ) -> Result<Self> {
        Ok(match format {
            LayerFormat::Tsv => LayerWriter::Tsv {
                file: AtomicFile::create(path)?,
                precision,
                text: String::new(),
            },
            LayerFormat::Nc => {
                let units = u32::try_from(units).context("layer too wide")?;
                LayerWriter::Nc(DenseWriter::create(path, name, &[units], rows)?)
            }
            LayerFormat::Parquet => {
                LayerWriter::Parquet(Box::new(parquet_out::LayerWriter::create(path, units)?))
            }
        })
    }

    /// Appends the rows `values` (`samples.len()` rows of equal width), named `samples`.
    pub fn write(&mut self, samples: &[&str], values: &[f32]) -> Result<()> {
        match self {
            LayerWriter::Nc(w) => Ok(w.write_rows(values)?),
            LayerWriter::Parquet(w) => Ok(w.write(samples, values)?),
            LayerWriter::Tsv {
                file,
                precision,
                text,
            } => {
                text.clear();
                let units = values.len() / samples.len().max(1);
                for (sample, row) in samples.iter().zip(values.chunks(units.max(1))) {
                    text.push_str(sample);
                    text.push('\t');
                    for (i, v) in row.iter().enumerate() {
                        if i > 0 {
                            text.push(' ');
                        }
                        let _ = match precision {
                            Some(p) => write!(text, "{v:.p$}"),
                            None => write!(text, "{v}"),
                        };
                    }
                    text.push('\n');
                }
                file.write(text)
            }
        }
    }

    /// Completes the file and renames it into place.
    pub fn finish(self) -> Result<()> {
        match self {
            LayerWriter::Nc(w) => Ok(w.finish()?),
            LayerWriter::Parquet(w) => Ok(w.finish()?),
            LayerWriter::Tsv { file, .. } => file.finish(),
        }
    }
}
