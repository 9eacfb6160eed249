//! [`DenseWriter`]: one dense analog dataset in DSSTNE's NetCDF schema, written row block by
//! row block, so that a large matrix (e.g. the hidden-layer activations of millions of users)
//! never has to be held in memory.
//!
//! The file holds dataset 0 exactly as [`super::netcdf::write`] writes a dense
//! [`Dataset`](crate::dataset::Dataset): global `datasets = 1`; attributes `name0`,
//! `attributes0 = 0` (dense, analog), `kind0 = 0`, `dataType0 = 4` (Float), `dimensions0`,
//! `width0` (and `height0`/`length0` for 2-D/3-D dims); dimensions `examplesDim0` and
//! `dataDim0 = examples · stride`; variable `float data0(dataDim0)`, row-major. It reads back
//! with [`super::netcdf::read`].
//!
//! Contract: the number of examples is fixed at [`DenseWriter::create`]; rows are appended in
//! order with [`DenseWriter::write_rows`] (whole rows only); [`DenseWriter::finish`] checks
//! that every row was written and renames the temporary file (beside the target) over the
//! target. A writer dropped before `finish`, or a failed `finish`, leaves no file at the
//! target and removes its temporary file. The process-wide NetCDF lock is held during each
//! call, not between calls.

use std::path::{Path, PathBuf};

use netcdf::{AttributeValue, FileMut};

use crate::error::{Error, Result};

/// A dense dataset file being written (see the module documentation).
pub struct DenseWriter {
    path: PathBuf,
    file: Option<FileMut>,
    tmp: Option<tempfile::NamedTempFile>,
    stride: usize,
    examples: usize,
    written: usize,
}

impl std::fmt::Debug for DenseWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseWriter")
            .field("path", &self.path)
            .field("stride", &self.stride)
            .field("examples", &self.examples)
            .field("written", &self.written)
            .finish()
    }
}

const VAR: &str = "data0";

impl DenseWriter {
    /// Starts the dataset `name` of `examples` rows with dimensions `dims` (width[, height[,
    /// length]], none zero) in a temporary file beside `path`. Errors: bad dimensions, no
    /// examples, a size beyond `usize`, or a file that cannot be created (naming `path`).
    pub fn create(path: &Path, name: &str, dims: &[u32], examples: usize) -> Result<Self> {
        if dims.is_empty() || dims.len() > 3 || dims.contains(&0) {
            return Err(Error::invalid_argument(
                "dims",
                format!("a dataset has 1 to 3 non-zero dimensions, not {dims:?}"),
            ));
        }
        if examples == 0 {
            return Err(Error::invalid_argument(
                "examples",
                "a dataset without examples cannot be read back",
            ));
        }
        let stride = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize));
        let total = stride.and_then(|s| s.checked_mul(examples));
        let (Some(stride), Some(total)) = (stride, total) else {
            return Err(Error::invalid_argument(
                "dims",
                format!("{examples} rows of {dims:?} exceed the address space"),
            ));
        };
        let tmp = crate::dataset::index::temp_beside(path)?;
        let _lock = crate::netcdf_lock::hold();
        let nc = |item: &'static str| {
            move |e: netcdf::Error| {
                crate::storage::name_full_disk(path, Error::netcdf(path, Some(item), e.to_string()))
            }
        };
        let mut file = netcdf::create(tmp.path()).map_err(nc("(create)"))?;
        let mut attr = |key: &'static str, value: AttributeValue| -> Result<()> {
            file.add_attribute(key, value).map_err(nc(key))?;
            Ok(())
        };
        attr("datasets", 1u32.into())?;
        attr("name0", name.into())?;
        attr("attributes0", 0u32.into())?;
        attr("kind0", 0u32.into())?;
        attr("dataType0", 4u32.into())?;
        attr("dimensions0", (dims.len() as u32).into())?;
        for (key, &d) in ["width0", "height0", "length0"].into_iter().zip(dims) {
            attr(key, d.into())?;
        }
        file.add_dimension("examplesDim0", examples)
            .map_err(nc("examplesDim0"))?;
        file.add_dimension("dataDim0", total)
            .map_err(nc("dataDim0"))?;
        file.add_variable::<f32>(VAR, &["dataDim0"])
            .map_err(nc(VAR))?;
        Ok(DenseWriter {
            path: path.to_owned(),
            file: Some(file),
            tmp: Some(tmp),
            stride,
            examples,
            written: 0,
        })
    }

    /// Appends whole rows (`values.len()` a multiple of the stride), row-major. Errors on a
    /// partial row, more rows than announced, or a failed write (naming the file).
    pub fn write_rows(&mut self, values: &[f32]) -> Result<()> {
        if !values.len().is_multiple_of(self.stride) {
            return Err(Error::invalid_argument(
                "values",
                format!(
                    "{} values are not whole rows of {}",
                    values.len(),
                    self.stride
                ),
            ));
        }
        let rows = values.len() / self.stride;
        if self.written + rows > self.examples {
            return Err(Error::invalid_argument(
                "values",
                format!(
                    "{} rows written and {rows} more, but the dataset has {}",
                    self.written, self.examples
                ),
            ));
        }
        if rows == 0 {
            return Ok(());
        }
        let path = &self.path;
        let err = |e: netcdf::Error| {
            crate::storage::name_full_disk(path, Error::netcdf(path, Some(VAR), e.to_string()))
        };
        let _lock = crate::netcdf_lock::hold();
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::invalid_argument("writer", "already finished"))?;
        let mut var = file
            .variable_mut(VAR)
            .ok_or_else(|| Error::netcdf(path, Some(VAR), "variable missing"))?;
        let start = self.written * self.stride;
        var.put_values(values, start..start + values.len())
            .map_err(err)?;
        self.written += rows;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> usize {
        self.written
    }

    /// Closes the file and renames it over the target. Errors (and leaves no file) when fewer
    /// rows than announced were written or the file cannot be closed or renamed.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.examples {
            return Err(Error::invalid_argument(
                "rows",
                format!(
                    "{}: {} of {} rows written",
                    self.path.display(),
                    self.written,
                    self.examples
                ),
            ));
        }
        {
            let _lock = crate::netcdf_lock::hold();
            if let Some(file) = self.file.take() {
                file.close().map_err(|e| {
                    let e = Error::netcdf(&self.path, Some("(close)"), e.to_string());
                    crate::storage::name_full_disk(&self.path, e)
                })?;
            }
        }
        let tmp = self.tmp.take().expect("present until finished");
        tmp.persist(&self.path)
            .map_err(|e| Error::io(&self.path, e.error))?;
        Ok(())
    }
}

impl Drop for DenseWriter {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let _lock = crate::netcdf_lock::hold();
            drop(file);
        }
        // `tmp`, if still here, removes the temporary file when dropped.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::io::netcdf;

    #[test]
    fn streamed_rows_read_back_as_a_dense_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emb.nc");
        let mut w = DenseWriter::create(&path, "hidden", &[3], 4).unwrap();
        w.write_rows(&[1.0, 2.0, 3.0]).unwrap();
        assert!(w.write_rows(&[1.0]).is_err());
        w.write_rows(&[4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])
            .unwrap();
        assert!(w.write_rows(&[0.0; 3]).is_err());
        assert!(!path.exists());
        w.finish().unwrap();
        let sets = netcdf::read(&path).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].name(), "hidden");
        assert_eq!((sets[0].examples(), sets[0].stride()), (4, 3));
        let want: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        assert_eq!(sets[0].dense_data().unwrap(), &want[..]);
        assert_eq!(sets[0].attributes().0, 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unfinished_or_incomplete_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.nc");
        let mut w = DenseWriter::create(&path, "x", &[2], 3).unwrap();
        w.write_rows(&[1.0, 2.0]).unwrap();
        assert!(w.finish().is_err());
        let w = DenseWriter::create(&path, "x", &[2], 3).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(DenseWriter::create(&path, "x", &[0], 3).is_err());
        assert!(DenseWriter::create(&path, "x", &[2], 0).is_err());
    }
}
