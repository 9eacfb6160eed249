//! DSSTNE's NetCDF datasets and `label<TAB>index` files, to and from NumPy arrays: the
//! library's `dataset::io::netcdf` and `dataset::index::Index`.

use std::path::PathBuf;

use moira::dataset::index::Index;
use moira::dataset::io::netcdf;
use moira::dataset::{Data, Dataset};
use moira::sparse::Csr;
use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::arrays::{csr_to_numpy, matrix, Parts};
use crate::errors::{invalid, IntoPy};

/// A dataset to write: CSR parts, or a dense `float32` 2-D array.
#[derive(FromPyObject)]
pub enum Matrix<'py> {
    Dense(PyReadonlyArray2<'py, f32>),
    Sparse(Parts<'py>),
}

/// The dataset of `path` named `name` (the only one when `None`): `("sparse", (indptr,
/// indices, data or None), (rows, cols))` or `("dense", array[rows, cols])`, one row per
/// example (an indexed dataset's shared rows are repeated; per-example weights are not
/// returned), `cols` the product of its dimensions.
#[pyfunction]
#[pyo3(signature = (path, name=None))]
pub fn read_dataset<'py>(
    py: Python<'py>,
    path: PathBuf,
    name: Option<String>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut sets = py.detach(|| netcdf::read(&path)).py()?;
    let names: Vec<String> = sets.iter().map(|d| d.name().to_owned()).collect();
    let at = match &name {
        Some(n) => names.iter().position(|m| m == n).ok_or_else(|| {
            invalid(
                "name",
                format!(
                    "{}: no dataset `{n}`; the file holds {names:?}",
                    path.display()
                ),
            )
        })?,
        None if sets.len() == 1 => 0,
        None => {
            return Err(invalid(
                "name",
                format!(
                    "{}: the file holds {} datasets {names:?}: pass name=",
                    path.display(),
                    sets.len()
                ),
            ))
        }
    };
    let set = sets.swap_remove(at);
    let (rows, cols) = (set.examples(), set.stride() as usize);
    let index = set.index().map(<[u32]>::to_vec);
    match set.into_data() {
        Data::Sparse(csr) => {
            let csr = match index {
                Some(ix) => gather(&csr, &ix),
                None => csr,
            };
            ("sparse", csr_to_numpy(py, csr)?, (rows, cols)).into_pyobject(py)
        }
        Data::Dense { values, .. } => {
            let values = match index {
                Some(ix) => ix
                    .iter()
                    .flat_map(|&r| &values[r as usize * cols..(r as usize + 1) * cols])
                    .copied()
                    .collect(),
                None => values,
            };
            ("dense", matrix(py, values, rows, cols)?).into_pyobject(py)
        }
    }
}

/// Rows `index[0], index[1], …` of `csr`.
fn gather(csr: &Csr, index: &[u32]) -> Csr {
    let mut offsets = Vec::with_capacity(index.len() + 1);
    offsets.push(0u64);
    let (mut cols, mut values) = (Vec::new(), csr.values().map(|_| Vec::new()));
    for &r in index {
        let (c, v) = csr.row(r as usize);
        cols.extend_from_slice(c);
        if let (Some(out), Some(v)) = (values.as_mut(), v) {
            out.extend_from_slice(v);
        }
        offsets.push(cols.len() as u64);
    }
    Csr::new_checked(csr.n_cols(), offsets, cols, values)
}

/// Writes `x` as the one dataset `name` of a new DSSTNE NetCDF file at `path` (atomically):
/// sparse data whose values are all 1 as a boolean dataset, others as analog (float).
#[pyfunction]
pub fn write_dataset(py: Python<'_>, path: PathBuf, x: Matrix<'_>, name: String) -> PyResult<()> {
    let set = match x {
        Matrix::Sparse(parts) => {
            let csr = parts.to_csr("X", true)?;
            Dataset::sparse(name, vec![csr.n_cols()], csr).py()?
        }
        Matrix::Dense(a) => {
            let a = a.as_array();
            let cols = u32::try_from(a.ncols())
                .map_err(|_| invalid("X", format!("{} columns exceed 2^32 - 1", a.ncols())))?;
            let values = a.iter().copied().collect();
            Dataset::dense(name, vec![cols], values).py()?
        }
    };
    py.detach(|| netcdf::write(&path, &[&set])).py()
}

/// The labels of an index file, `labels[i]` the label of index `i`.
#[pyfunction]
pub fn read_index(py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
    py.detach(|| Index::load(&path).map(|ix| ix.labels())).py()
}

/// Writes an index file giving `labels[i]` index `i` (atomically). `ValueError`: a repeated
/// or empty label, or one with a TAB, CR or LF.
#[pyfunction]
pub fn write_index(py: Python<'_>, path: PathBuf, labels: Vec<String>) -> PyResult<()> {
    let mut index = Index::new();
    for (i, label) in labels.iter().enumerate() {
        if !index.get_or_insert(label.as_bytes()).py()?.1 {
            return Err(invalid(
                "labels",
                format!("`{label}` at position {i} repeats an earlier label"),
            ));
        }
    }
    py.detach(|| index.write(&path)).py()
}
