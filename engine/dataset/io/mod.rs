//! Dataset readers and writers: DSSTNE's NetCDF schema ([`netcdf`]) and the text inputs of
//! the converter ([`text`], [`csv`], [`lists`], [`parquet`]), which all feed a [`Rows`] collector.

pub mod csv;
pub mod dense_writer;
mod lines;
pub mod lists;
pub mod netcdf;
pub mod parquet;
pub mod parquet_out;
mod rows;
pub mod text;

pub use lines::{input_files, input_size};
pub use rows::{Repeat, Rows, Stats, UNKNOWN_EXAMPLES};
