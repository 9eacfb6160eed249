//! `moira._moira`: the native module of the Python package `moira` (python/moira/), the
//! same library calls as the command-line tools (tools/), nothing more.
//!
//! - [`core::Core`]: `Recommender`'s engine: fit (the trainer's calls), recommend, embed and
//!   evaluate (the predictor's), save and load (DSSTNE's model files).
//! - [`dataset`]: `read_dataset`/`write_dataset` (DSSTNE's NetCDF datasets, index files).
//!
//! Heavy work runs without the GIL; errors are Python exceptions with the engine's message
//! ([`errors`]).

mod arrays;
mod core;
mod data;
mod dataset;
mod errors;
mod fit;
mod predict;
mod settings;

use pyo3::prelude::*;

#[pymodule]
fn _moira(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<core::Core>()?;
    m.add_function(wrap_pyfunction!(dataset::read_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(dataset::write_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(dataset::read_index, m)?)?;
    m.add_function(wrap_pyfunction!(dataset::write_index, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
