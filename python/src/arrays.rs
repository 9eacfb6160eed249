//! NumPy arrays in and out: CSR parts from the Python layer into the engine's [`Csr`], and the
//! engine's results into NumPy arrays.
//!
//! In: the Python layer (`moira._sparse`) canonicalises any matrix into the parts of a SciPy
//! CSR matrix with `int64` row offsets, `int32` column indices and `float32` values; they are
//! copied once into the engine's CSR (`u64` offsets, `u32` columns, owned by the dataset the
//! engine trains on). Out: every result (recommendations, scores, embeddings, a dataset's
//! arrays) is a `Vec` built by the engine that becomes the NumPy array's buffer without a copy.

use moira::sparse::Csr;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A CSR matrix as the Python layer hands it over: `(indptr, indices, data, n_cols)`, with
/// `data` `None` for an indicator (boolean) matrix.
#[derive(FromPyObject)]
pub struct Parts<'py>(
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray1<'py, i32>,
    Option<PyReadonlyArray1<'py, f32>>,
    u64,
);

impl Parts<'_> {
    /// The matrix as the engine's CSR; `what` names the argument in errors (`ValueError`:
    /// negative offsets or columns, more than 2³² − 1 columns, and [`Csr::try_new`]'s checks).
    ///
    /// With `ones_as_indicator`, values that are all exactly 1 make an indicator matrix (no
    /// values), as DSSTNE's boolean datasets are: the same numbers, on the engine's boolean
    /// paths. Without it (a filter whose values multiply scores) the values are kept.
    pub fn to_csr(&self, what: &str, ones_as_indicator: bool) -> PyResult<Csr> {
        let bad = |m: String| PyValueError::new_err(format!("{what}: {m}"));
        let n_cols = u32::try_from(self.3)
            .map_err(|_| bad(format!("{} columns exceed 2^32 - 1", self.3)))?;
        let offsets = self.0.as_slice()?;
        let offsets: Vec<u64> = offsets
            .iter()
            .map(|&o| u64::try_from(o))
            .collect::<Result<_, _>>()
            .map_err(|_| bad("negative row offset (indptr)".into()))?;
        let cols = self.1.as_slice()?;
        let cols: Vec<u32> = cols
            .iter()
            .map(|&c| u32::try_from(c))
            .collect::<Result<_, _>>()
            .map_err(|_| bad("negative column index".into()))?;
        let values = match &self.2 {
            Some(v) => {
                let v = v.as_slice()?;
                (!ones_as_indicator || !v.iter().all(|&x| x == 1.0)).then(|| v.to_vec())
            }
            None => None,
        };
        Csr::try_new(n_cols, offsets, cols, values).map_err(|e| bad(e.to_string()))
    }
}

/// `(indptr int64, indices int32, data float32 or None)` of `csr`, moved into NumPy without
/// a copy (the element types have the same layout: the casts run in place). Errors when a
/// column index exceeds `i32` (SciPy's `int32` indices).
pub fn csr_to_numpy<'py>(py: Python<'py>, csr: Csr) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
    if csr.n_cols() > i32::MAX as u32 {
        return Err(PyValueError::new_err(format!(
            "{} columns exceed SciPy's int32 column indices",
            csr.n_cols()
        )));
    }
    let (_, offsets, cols, values) = csr.into_parts();
    let offsets: Vec<i64> = offsets.into_iter().map(|o| o as i64).collect();
    let cols: Vec<i32> = cols.into_iter().map(|c| c as i32).collect();
    let offsets = offsets.into_pyarray(py);
    let cols = cols.into_pyarray(py);
    let values: Option<Bound<'py, PyArray1<f32>>> = values.map(|v| v.into_pyarray(py));
    (offsets, cols, values).into_pyobject(py)
}

/// `rows × cols` row-major values as a 2-D NumPy array, without a copy.
pub fn matrix<'py, T: numpy::Element>(
    py: Python<'py>,
    values: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let array = Array2::from_shape_vec((rows, cols), values)
        .map_err(|e| PyValueError::new_err(format!("a {rows} x {cols} result: {e}")))?;
    Ok(array.into_pyarray(py))
}
