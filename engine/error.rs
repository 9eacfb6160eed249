//! The one error type of the library.
//!
//! Every variant names where the problem is (a file, a line, a JSON path, a NetCDF variable)
//! and what was expected, so that a binary can print `error: {err}` and the user knows what
//! to fix. Library code never panics, exits or prints on user input: it returns one of these.

use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Moira.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error while reading or writing `path`. The OS error is part of
    /// the message (and deliberately not also a `source`, so it is printed once).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// A file that is not well-formed JSON.
    #[error("{file}:{line}:{column}: malformed JSON: {message}")]
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A network descriptor that is valid JSON but not a valid DSSTNE descriptor.
    /// `json_path` looks like `Layers[1].Activation`.
    #[error("{file}: {json_path}: {message}")]
    Descriptor {
        file: PathBuf,
        json_path: String,
        message: String,
    },

    /// A descriptor that parses but does not form a valid layer graph (for the given data).
    #[error("network `{network}`: layer `{layer}`: {message}")]
    Graph {
        network: String,
        layer: String,
        message: String,
    },

    /// A malformed line of a text input (DSSTNE text, CSV, lists, index files).
    #[error("{file}:{line}: {message}")]
    Parse {
        file: PathBuf,
        line: u64,
        message: String,
    },

    /// A NetCDF file that cannot be read or does not follow the expected schema.
    /// `item` names the variable, attribute or dimension concerned, if any.
    #[error("{file}: {}{message}", item.as_deref().map(|v| format!("`{v}`: ")).unwrap_or_default())]
    NetCdf {
        file: PathBuf,
        item: Option<String>,
        message: String,
    },

    /// A Parquet file that cannot be read or does not hold the expected columns.
    /// `column` names the column concerned, if any.
    #[error("{file}: {}{message}", column.as_deref().map(|c| format!("column `{c}`: ")).unwrap_or_default())]
    Parquet {
        file: PathBuf,
        column: Option<String>,
        message: String,
    },

    /// Data that is structurally invalid (e.g. a CSR matrix whose offsets do not match).
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// An argument or configuration value out of its allowed range.
    #[error("invalid argument `{name}`: {message}")]
    InvalidArgument { name: String, message: String },

    /// Training stopped because the network diverged: a NaN or infinite loss or output
    /// activation in minibatch `batch` (0-based, within the 0-based `epoch`), or non-finite
    /// weights at the end of `epoch` (`batch` is `None`). `message` says what was found and
    /// which checkpoint, if any, is the last good one.
    #[error(
        "training diverged in epoch {epoch}{}: {message}",
        batch.map(|b| format!(", batch {b}")).unwrap_or_default()
    )]
    Diverged {
        epoch: u32,
        batch: Option<u64>,
        message: String,
    },

    /// A model save refused (nothing written) because a weight matrix or bias holds NaN or
    /// infinite values; `weight` names it (`` `input` -> `output` ``).
    #[error("weight {weight} has NaN or infinite values")]
    NonFiniteWeight { weight: String },

    /// A feature that DSSTNE has and Moira does not support yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),

    /// A compute device (CUDA driver, NVRTC, cuBLAS) failed or is absent; the message says
    /// which call and why.
    #[error("device: {0}")]
    Device(String),

    /// A collective operation across ranks failed: rank `rank` (0-based, of `size`) reported
    /// `message` at a sync point, or failed while the others waited for it.
    #[error("rank {rank} of {size} failed: {message}")]
    Collective {
        rank: usize,
        size: usize,
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    /// An [`Error::NetCdf`] about `item` of `file`.
    pub fn netcdf(
        file: impl Into<PathBuf>,
        item: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::NetCdf {
            file: file.into(),
            item: item.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An [`Error::Parquet`] about `column` of `file`.
    pub fn parquet(
        file: impl Into<PathBuf>,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error::Parquet {
            file: file.into(),
            column: column.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An [`Error::Parse`] at `file:line`.
    pub fn parse(file: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        Error::Parse {
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid_argument(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            message: message.into(),
        }
    }
}
