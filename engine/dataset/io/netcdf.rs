//! DSSTNE's NetCDF dataset schema (reader `NNDataSet<T>(fname, n)` in DSSTNE's
//! `NNTypes.cpp`, writer `writeNetCDFFile` in `NetCDFhelper.cpp`).
//!
//! A file holds `datasets` (global uint attribute) datasets; every name below ends with the
//! dataset number `N` (0-based):
//! - attributes `nameN` (text), `attributesN`, `kindN`, `dataTypeN`, `dimensionsN`, `widthN`,
//!   `heightN` (when dimensions > 1), `lengthN` (when dimensions > 2), all uint;
//! - dimensions `examplesDimN`, `uniqueExamplesDimN` (indexed data only; defaults to
//!   examples), `sparseDataDimN` (sparse), `dataDimN` (dense);
//! - sparse: `sparseStartN`/`sparseEndN(uniqueExamples)` (uint, or uint64 when an offset
//!   exceeds 2^32 - 1), `uint sparseIndexN(sparseDataDimN)`, and `float sparseDataN` unless
//!   Boolean;
//! - dense: `float dataN(dataDimN)`; Dense+Boolean stores one hot index per row instead
//!   (`uint dataN(uniqueExamples)`), expanded to one-hot rows on load;
//! - `float dataWeightN(examplesDimN)` when Weighted, `uint indexN(examplesDimN)` when Indexed.
//!
//! Reading accepts any numeric variable type (converted by the NetCDF library, which refuses
//! out-of-range values) and scales UChar/RGB8 values by 1/256 and Char values by 1/128, as
//! DSSTNE's input kernels do. Rows whose `sparseStart`/`sparseEnd` ranges are not contiguous
//! are compacted. Every offset, column and index is validated; a file that breaks the schema
//! gives an [`Error::NetCdf`] naming the item.
//!
//! Writing is atomic (temporary file in the same directory, then rename). Values are written
//! as `float` (dataType Float) whatever their original type; Sparse+Boolean data keeps its
//! recorded data type (UInt by default, as `generateNetCDF` writes).

use std::path::Path;

use netcdf::{AttributeValue, FileMut};

use crate::dataset::{Attributes, Data, DataType, Dataset, Kind};
use crate::error::{Error, Result};
use crate::sparse::Csr;

/// Reads every dataset of a DSSTNE NetCDF file, in file order.
pub fn read(path: &Path) -> Result<Vec<Dataset>> {
    let _lock = crate::netcdf_lock::hold();
    let file = open(path)?;
    let n = attr_u32(&file, path, "datasets")?;
    (0..n).map(|i| read_one(&file, path, i)).collect()
}

/// Reads dataset number `n` of a DSSTNE NetCDF file.
pub fn read_dataset(path: &Path, n: u32) -> Result<Dataset> {
    let _lock = crate::netcdf_lock::hold();
    let file = open(path)?;
    let count = attr_u32(&file, path, "datasets")?;
    if n >= count {
        return Err(Error::netcdf(
            path,
            Some("datasets"),
            format!("the file holds {count} dataset(s); there is no dataset {n}"),
        ));
    }
    read_one(&file, path, n)
}

/// Writes `datasets` as datasets `0..` of a new DSSTNE NetCDF file at `path`, atomically.
pub fn write(path: &Path, datasets: &[&Dataset]) -> Result<()> {
    let tmp = write_temp(path, datasets)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `datasets` to a temporary file in the directory of `path` (removed when dropped);
/// the caller renames it over `path` with `persist`.
pub(crate) fn write_temp(path: &Path, datasets: &[&Dataset]) -> Result<tempfile::NamedTempFile> {
    let tmp = crate::dataset::index::temp_beside(path)?;
    let _lock = crate::netcdf_lock::hold();
    let nc = |item: &str| {
        let item = item.to_owned();
        move |e: netcdf::Error| {
            crate::storage::name_full_disk(path, Error::netcdf(path, Some(&item), e.to_string()))
        }
    };
    let mut file = netcdf::create(tmp.path()).map_err(nc("(create)"))?;
    let count = u32::try_from(datasets.len())
        .map_err(|_| Error::InvalidData("too many datasets".into()))?;
    file.add_attribute("datasets", count)
        .map_err(nc("datasets"))?;
    for (n, ds) in datasets.iter().enumerate() {
        write_one(&mut file, path, n, ds)?;
    }
    file.close().map_err(nc("(close)"))?;
    Ok(tmp)
}

fn write_one(file: &mut FileMut, path: &Path, n: usize, ds: &Dataset) -> Result<()> {
    let nc = |item: &str| {
        let item = item.to_owned();
        move |e: netcdf::Error| Error::netcdf(path, Some(&item), e.to_string())
    };
    let name = |base: &str| format!("{base}{n}");
    let refuse = |msg: String| Error::netcdf(path, Some(&name("dataset")), msg);
    if ds.unique_examples() == 0 || ds.examples() == 0 {
        return Err(refuse(
            "a dataset without examples cannot be read back".into(),
        ));
    }
    let data_type = match ds.data() {
        Data::Sparse(csr) if csr.values().is_none() => ds.data_type(),
        Data::Dense { one_hot: true, .. } => DataType::UInt,
        _ => DataType::Float,
    };
    let mut attr = |key: &str, value: AttributeValue| -> Result<()> {
        let key = name(key);
        file.add_attribute(&key, value).map_err(nc(&key))?;
        Ok(())
    };
    attr("name", ds.name().into())?;
    attr("attributes", ds.attributes().0.into())?;
    attr("kind", (ds.kind() as u32).into())?;
    attr("dataType", (data_type as u32).into())?;
    attr("dimensions", (ds.dims().len() as u32).into())?;
    for (key, &d) in ["width", "height", "length"].iter().zip(ds.dims()) {
        attr(key, d.into())?;
    }
    let examples_dim = name("examplesDim");
    file.add_dimension(&examples_dim, ds.examples())
        .map_err(nc(&examples_dim))?;
    let rows_dim = if ds.index().is_some() {
        let d = name("uniqueExamplesDim");
        file.add_dimension(&d, ds.unique_examples())
            .map_err(nc(&d))?;
        d
    } else {
        examples_dim.clone()
    };
    match ds.data() {
        Data::Sparse(csr) => {
            if csr.nnz() == 0 {
                return Err(refuse(
                    "a sparse dataset without non-zeros cannot be read by DSSTNE".into(),
                ));
            }
            let nnz_dim = name("sparseDataDim");
            file.add_dimension(&nnz_dim, csr.nnz())
                .map_err(nc(&nnz_dim))?;
            let offsets = csr.row_offsets();
            let rows = csr.n_rows();
            if csr.nnz() as u64 <= u32::MAX as u64 {
                let narrow: Vec<u32> = offsets.iter().map(|&o| o as u32).collect();
                put(file, path, &name("sparseStart"), &rows_dim, &narrow[..rows])?;
                put(file, path, &name("sparseEnd"), &rows_dim, &narrow[1..])?;
            } else {
                put(
                    file,
                    path,
                    &name("sparseStart"),
                    &rows_dim,
                    &offsets[..rows],
                )?;
                put(file, path, &name("sparseEnd"), &rows_dim, &offsets[1..])?;
            }
            put(
                file,
                path,
                &name("sparseIndex"),
                &nnz_dim,
                csr.col_indices(),
            )?;
            if let Some(values) = csr.values() {
                put(file, path, &name("sparseData"), &nnz_dim, values)?;
            }
        }
        Data::Dense { values, one_hot } => {
            let data_dim = name("dataDim");
            if *one_hot {
                let stride = ds.stride() as usize;
                let hot: Vec<u32> = values
                    .chunks_exact(stride)
                    .map(|row| row.iter().position(|&v| v != 0.0).unwrap_or(0) as u32)
                    .collect();
                file.add_dimension(&data_dim, hot.len())
                    .map_err(nc(&data_dim))?;
                put(file, path, &name("data"), &data_dim, &hot)?;
            } else {
                file.add_dimension(&data_dim, values.len())
                    .map_err(nc(&data_dim))?;
                put(file, path, &name("data"), &data_dim, values)?;
            }
        }
    }
    if let Some(w) = ds.weights() {
        put(file, path, &name("dataWeight"), &examples_dim, w)?;
    }
    if let Some(ix) = ds.index() {
        put(file, path, &name("index"), &examples_dim, ix)?;
    }
    Ok(())
}

/// Adds the 1-D variable `var(dim)` of `T`'s type and writes `values` in one put.
fn put<T: netcdf::NcTypeDescriptor>(
    file: &mut FileMut,
    path: &Path,
    var: &str,
    dim: &str,
    values: &[T],
) -> Result<()> {
    let err = |e: netcdf::Error| Error::netcdf(path, Some(var), e.to_string());
    let mut v = file.add_variable::<T>(var, &[dim]).map_err(err)?;
    if !values.is_empty() {
        v.put_values(values, ..).map_err(err)?;
    }
    Ok(())
}

fn open(path: &Path) -> Result<netcdf::File> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::io(path, e));
    }
    netcdf::open(path).map_err(|e| Error::netcdf(path, None, format!("cannot open: {e}")))
}

/// A required attribute as `u32` (any integer type, or a one-element integer array).
fn attr_u32(file: &netcdf::File, path: &Path, key: &str) -> Result<u32> {
    attr_u32_opt(file, path, key)?
        .ok_or_else(|| Error::netcdf(path, Some(key), "required attribute is missing"))
}

fn attr_u32_opt(file: &netcdf::File, path: &Path, key: &str) -> Result<Option<u32>> {
    let Some(att) = file.attribute(key) else {
        return Ok(None);
    };
    let err = |m: String| Error::netcdf(path, Some(key), m);
    let value = att.value().map_err(|e| err(e.to_string()))?;
    use AttributeValue as A;
    let wide: Option<i128> = match value {
        A::Uchar(v) => Some(v.into()),
        A::Schar(v) => Some(v.into()),
        A::Ushort(v) => Some(v.into()),
        A::Short(v) => Some(v.into()),
        A::Uint(v) => Some(v.into()),
        A::Int(v) => Some(v.into()),
        A::Ulonglong(v) => Some(v.into()),
        A::Longlong(v) => Some(v.into()),
        A::Uints(v) if v.len() == 1 => Some(v[0].into()),
        A::Ints(v) if v.len() == 1 => Some(v[0].into()),
        A::Ulonglongs(v) if v.len() == 1 => Some(v[0].into()),
        A::Longlongs(v) if v.len() == 1 => Some(v[0].into()),
        _ => None,
    };
    let wide = wide.ok_or_else(|| err("expected a single unsigned integer".into()))?;
    u32::try_from(wide)
        .map(Some)
        .map_err(|_| err(format!("value {wide} is outside 0..2^32")))
}

fn attr_string(file: &netcdf::File, path: &Path, key: &str) -> Result<String> {
    let att = file
        .attribute(key)
        .ok_or_else(|| Error::netcdf(path, Some(key), "required attribute is missing"))?;
    match att.value() {
        Ok(AttributeValue::Str(s)) => Ok(s),
        Ok(AttributeValue::Strs(v)) if v.len() == 1 => Ok(v.into_iter().next().unwrap_or_default()),
        Ok(_) => Err(Error::netcdf(path, Some(key), "expected a text attribute")),
        Err(e) => Err(Error::netcdf(path, Some(key), e.to_string())),
    }
}

fn dim_len(file: &netcdf::File, key: &str) -> Option<usize> {
    file.dimension(key).map(|d| d.len())
}

/// Reads the whole 1-D variable `key`, converted to `T`, checking it has `len` elements.
fn get<T: netcdf::NcTypeDescriptor + Copy>(
    file: &netcdf::File,
    path: &Path,
    key: &str,
    len: usize,
) -> Result<Vec<T>> {
    let var = file
        .variable(key)
        .ok_or_else(|| Error::netcdf(path, Some(key), "required variable is missing"))?;
    let err = |m: String| Error::netcdf(path, Some(key), m);
    if var.dimensions().len() != 1 || var.len() != len {
        return Err(err(format!(
            "expected a 1-D variable of {len} elements, found {} dimension(s) and {} elements",
            var.dimensions().len(),
            var.len()
        )));
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    var.get_values::<T, _>(..)
        .map_err(|e| err(format!("cannot read as {:?}: {e}", T::type_descriptor())))
}

/// Reads values (sparse or dense), applying DSSTNE's load scale for the data type.
fn get_values(
    file: &netcdf::File,
    path: &Path,
    key: &str,
    len: usize,
    data_type: DataType,
) -> Result<Vec<f32>> {
    let mut v: Vec<f32> = get(file, path, key, len)?;
    let scale = data_type.load_scale();
    if scale != 1.0 {
        v.iter_mut().for_each(|x| *x *= scale);
    }
    Ok(v)
}

fn read_one(file: &netcdf::File, path: &Path, n: u32) -> Result<Dataset> {
    let name = |base: &str| format!("{base}{n}");
    let bad = |item: &str, m: String| Error::netcdf(path, Some(&name(item)), m);
    let ds_name = attr_string(file, path, &name("name"))?;
    let attributes = Attributes(attr_u32(file, path, &name("attributes"))?);
    let kind_raw = attr_u32_opt(file, path, &name("kind"))?.unwrap_or(0);
    let kind =
        Kind::from_u32(kind_raw).ok_or_else(|| bad("kind", format!("unknown kind {kind_raw}")))?;
    let type_raw = attr_u32(file, path, &name("dataType"))?;
    let data_type = DataType::from_u32(type_raw)
        .ok_or_else(|| bad("dataType", format!("unknown data type {type_raw}")))?;
    let dimensions = attr_u32(file, path, &name("dimensions"))?;
    if !(1..=3).contains(&dimensions) {
        return Err(bad("dimensions", format!("{dimensions} is not 1, 2 or 3")));
    }
    let mut dims = Vec::with_capacity(dimensions as usize);
    for key in ["width", "height", "length"]
        .iter()
        .take(dimensions as usize)
    {
        let d = attr_u32(file, path, &name(key))?;
        if d == 0 {
            return Err(bad(key, "must be at least 1".into()));
        }
        dims.push(d);
    }
    let stride: u64 = dims.iter().map(|&d| d as u64).product();
    let examples = dim_len(file, &name("examplesDim"))
        .ok_or_else(|| bad("examplesDim", "required dimension is missing".into()))?;
    if examples == 0 {
        return Err(bad(
            "examplesDim",
            "a dataset needs at least one example".into(),
        ));
    }
    let indexed = attributes.contains(Attributes::INDEXED);
    let rows = dim_len(file, &name("uniqueExamplesDim")).unwrap_or(examples);
    if rows == 0 || (!indexed && rows != examples) {
        return Err(bad(
            "uniqueExamplesDim",
            format!("{rows} unique examples for {examples} examples of data that is not Indexed"),
        ));
    }
    let ds = if attributes.contains(Attributes::SPARSE) {
        if stride > u32::MAX as u64 {
            return Err(bad(
                "width",
                format!("a sparse row of {stride} columns exceeds 2^32 - 1"),
            ));
        }
        let nnz = dim_len(file, &name("sparseDataDim"))
            .ok_or_else(|| bad("sparseDataDim", "required dimension is missing".into()))?;
        let start: Vec<u64> = get(file, path, &name("sparseStart"), rows)?;
        let end: Vec<u64> = get(file, path, &name("sparseEnd"), rows)?;
        let cols: Vec<u32> = get(file, path, &name("sparseIndex"), nnz)?;
        let values = if attributes.contains(Attributes::BOOLEAN) {
            None
        } else {
            Some(get_values(file, path, &name("sparseData"), nnz, data_type)?)
        };
        let csr = build_csr(stride as u32, start, end, cols, values)
            .map_err(|e| bad("sparseStart", e.to_string()))?;
        Dataset::sparse(ds_name, dims, csr)?
    } else {
        let data_len = dim_len(file, &name("dataDim"))
            .ok_or_else(|| bad("dataDim", "required dimension is missing".into()))?;
        if attributes.contains(Attributes::BOOLEAN) {
            if data_len != rows {
                return Err(bad(
                    "dataDim",
                    format!("one-hot data needs one index per row ({rows}), found {data_len}"),
                ));
            }
            let hot: Vec<u32> = get(file, path, &name("data"), data_len)?;
            Dataset::one_hot(ds_name, dims, &hot).map_err(|e| bad("data", e.to_string()))?
        } else {
            if Some(data_len as u64) != stride.checked_mul(rows as u64) {
                return Err(bad(
                    "dataDim",
                    format!("{data_len} values are not {rows} rows of {stride}"),
                ));
            }
            let values = get_values(file, path, &name("data"), data_len, data_type)?;
            Dataset::dense(ds_name, dims, values)?
        }
    };
    let mut ds = ds
        .with_data_type(data_type)
        .with_kind(kind)
        .with_extra_attributes(attributes.0);
    if indexed {
        let index: Vec<u32> = get(file, path, &name("index"), examples)?;
        ds = ds
            .with_index(index)
            .map_err(|e| bad("index", e.to_string()))?;
    }
    if attributes.contains(Attributes::WEIGHTED) {
        let w: Vec<f32> = get(file, path, &name("dataWeight"), examples)?;
        ds = ds.with_weights(w)?;
    }
    Ok(ds)
}

/// Builds a CSR from DSSTNE's per-row `[start, end)` ranges, compacting them when they are
/// not contiguous. Every range must lie within the column indices.
fn build_csr(
    n_cols: u32,
    start: Vec<u64>,
    end: Vec<u64>,
    cols: Vec<u32>,
    values: Option<Vec<f32>>,
) -> Result<Csr> {
    let nnz = cols.len() as u64;
    for (row, (&s, &e)) in start.iter().zip(&end).enumerate() {
        if s > e || e > nnz {
            return Err(Error::InvalidData(format!(
                "row {row} spans [{s}, {e}), outside the {nnz} stored entries"
            )));
        }
    }
    let contiguous = start.first().is_none_or(|&s| s == 0)
        && start.iter().skip(1).zip(&end).all(|(&s, &e)| s == e)
        && end.last().is_none_or(|&e| e == nnz);
    if contiguous {
        let mut offsets = start;
        offsets.push(nnz);
        return Csr::try_new(n_cols, offsets, cols, values);
    }
    let kept: u64 = start.iter().zip(&end).map(|(s, e)| e - s).sum();
    let mut offsets = Vec::with_capacity(start.len() + 1);
    offsets.push(0);
    let mut new_cols = Vec::with_capacity(kept as usize);
    let mut new_vals = values.as_ref().map(|_| Vec::with_capacity(kept as usize));
    for (&s, &e) in start.iter().zip(&end) {
        new_cols.extend_from_slice(&cols[s as usize..e as usize]);
        if let (Some(out), Some(v)) = (new_vals.as_mut(), values.as_ref()) {
            out.extend_from_slice(&v[s as usize..e as usize]);
        }
        offsets.push(new_cols.len() as u64);
    }
    Csr::try_new(n_cols, offsets, new_cols, new_vals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_from_ranges_compacts_and_validates() {
        let c = build_csr(4, vec![0, 2], vec![2, 3], vec![1, 2, 3], None).unwrap();
        assert_eq!(c.row_offsets(), &[0, 2, 3]);
        let c = build_csr(
            4,
            vec![2, 0],
            vec![3, 1],
            vec![1, 2, 3],
            Some(vec![1.0, 2.0, 3.0]),
        )
        .unwrap();
        assert_eq!(c.col_indices(), &[3, 1]);
        assert_eq!(c.values().unwrap(), &[3.0, 1.0]);
        assert!(build_csr(4, vec![0], vec![4], vec![1, 2, 3], None).is_err());
        assert!(build_csr(4, vec![1], vec![0], vec![1, 2, 3], None).is_err());
        assert!(build_csr(2, vec![0], vec![3], vec![1, 2, 3], None).is_err());
    }
}
