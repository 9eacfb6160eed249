//! The engine's errors as Python exceptions, carrying the engine's message.
//!
//! | `moira::Error` | exception |
//! | --- | --- |
//! | `Io` | `FileNotFoundError` (missing file), `PermissionError`, else `OSError` |
//! | `NetCdf` (a file that is not what it should be) | `OSError` |
//! | `Json`, `Descriptor`, `Graph`, `Parse`, `InvalidData`, `InvalidArgument` | `ValueError` |
//! | `Unsupported` | `NotImplementedError` (a `RuntimeError`) |
//! | everything else (`Diverged`, `Device`, …) | `RuntimeError` |

use std::io::ErrorKind;

use moira::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyNotImplementedError, PyOSError, PyPermissionError, PyRuntimeError,
    PyValueError,
};
use pyo3::PyErr;

/// The exception for `e` (see the module documentation), with `e`'s message.
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Io { error, .. } => match error.kind() {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
        Error::NetCdf { .. } => PyOSError::new_err(message),
        Error::Json { .. }
        | Error::Descriptor { .. }
        | Error::Graph { .. }
        | Error::Parse { .. }
        | Error::InvalidData(_)
        | Error::InvalidArgument { .. } => PyValueError::new_err(message),
        Error::Unsupported(_) => PyNotImplementedError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// `Result<T, moira::Error>` → `PyResult<T>`.
pub trait IntoPy<T> {
    /// The value, or the error as its exception ([`to_py`]).
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for moira::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(to_py)
    }
}

/// A `ValueError` for an argument `name` of the Python API: `invalid argument `name`:
/// message`, the engine's wording for its own argument errors.
pub fn invalid(name: &str, message: impl Into<String>) -> PyErr {
    to_py(Error::invalid_argument(name, message))
}
