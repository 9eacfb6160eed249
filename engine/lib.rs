//! Moira: neural networks on huge, very sparse data, in the manner of Amazon's DSSTNE.
//!
//! A DSSTNE JSON network descriptor ([`descriptor`]) is compiled into a layer graph
//! ([`graph`]) and trained on datasets stored in DSSTNE's NetCDF schema ([`dataset`]).
//! Sparse data stays in CSR form ([`sparse`]) and is never densified.

pub mod backend;
pub mod checkpoint;
pub mod collective;
pub mod dataset;
pub mod dense;
pub mod descriptor;
pub mod error;
pub mod graph;
pub mod netcdf_lock;
pub mod network;
pub mod ops;
pub mod parallel;
pub mod predict;
pub mod rng;
pub mod sparse;
pub mod storage;
pub mod topk;
pub mod train;

pub use error::{Error, Result};
