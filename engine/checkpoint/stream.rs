//! Saving a model without holding it whole ([`save_model_streamed`] with a
//! [`TensorSource`]: a model gathered from the ranks that hold its blocks, a band at a time),
//! and clearing what interrupted saves left ([`remove_stale_temporaries`]).

use std::path::Path;

use super::{check_model, write, Model};
use crate::error::{Error, Result};

/// Where the large arrays of a model being saved come from when the [`Model`] leaves them
/// empty: pieces produced on demand (a model gathered from the ranks that hold its blocks,
/// a band at a time), so that the writer never holds a whole array.
///
/// The writer asks for each array once, in file order (the unshared weight matrices the
/// model leaves empty, in weight order, then the extra tensors it leaves empty, in order);
/// an implementation calls `put` with consecutive pieces of the array, `rows × cols` (or
/// [`TensorSource::extra_len`]) values in all, and stops calling it after an error, which it
/// returns once the array is done (so that ranks producing the pieces together stay in
/// step).
pub trait TensorSource {
    /// The values of weight tensor `i`'s matrix (`W[in][out]` row-major).
    fn weight(&mut self, i: usize, put: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>;
    /// The values of extra tensor `k`.
    fn extra(&mut self, k: usize, put: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>;
    /// The length of extra tensor `k` when this source provides it, else 0.
    fn extra_len(&self, k: usize) -> usize;
}

/// The source of a [`Model`] that holds all its arrays: none.
pub(crate) struct Held;

impl TensorSource for Held {
    fn weight(&mut self, i: usize, _: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        Err(Error::InvalidData(format!("weight {i} has no values")))
    }
    fn extra(&mut self, k: usize, _: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        Err(Error::InvalidData(format!(
            "extra tensor {k} has no values"
        )))
    }
    fn extra_len(&self, _: usize) -> usize {
        0
    }
}

/// [`save_model`](super::save_model) for a model whose empty arrays come from `source` (see [`TensorSource`]):
/// the same file, checksum and atomicity, holding one piece of an array at a time. With
/// `refuse_non_finite`, a NaN or infinite value in a weight matrix or bias stops the save
/// before the file is renamed into place ([`Error::NonFiniteWeight`] naming the weight).
/// Whatever happens, every array `source` provides is asked for, so that ranks producing
/// them together (each calling [`drain_model`] but the writing one) stay in step.
pub fn save_model_streamed(
    path: &Path,
    model: &Model,
    source: &mut dyn TensorSource,
    refuse_non_finite: bool,
) -> Result<()> {
    let mut streams = write::Streams::new(model, source);
    if let Err(p) = check_model(model, true) {
        streams.drain()?;
        return Err(Error::InvalidData(p.describe(model)));
    }
    let _lock = crate::netcdf_lock::hold();
    write::save_atomically(path, model, &mut streams, refuse_non_finite)
}

/// What a rank that does not write calls while another rank runs [`save_model_streamed`]
/// with the same `model` skeleton: asks `source` for every array the writer asks for, in the
/// same order, and drops the pieces.
pub fn drain_model(model: &Model, source: &mut dyn TensorSource) -> Result<()> {
    write::Streams::new(model, source).drain()
}

/// Removes the temporary files an interrupted save of `path` left behind
/// (`.NAME.PID.K.tmp` beside it, written by [`save_model`](super::save_model) and [`save_model_streamed`] before
/// their rename) whose process no longer runs, and returns their paths. A temporary file of
/// a process that still runs is left alone. Errors: a directory or file that cannot be read
/// or removed ([`Error::Io`] naming it).
pub fn remove_stale_temporaries(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(".{name}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let file = entry.file_name();
        let Some(middle) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|f| f.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some((pid, counter)) = middle.split_once('.') else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), counter.parse::<u64>()) else {
            continue;
        };
        let running = pid == std::process::id()
            || Path::new("/proc").join(pid.to_string()).exists()
            || !Path::new("/proc/self").exists();
        if !running {
            let stale = entry.path();
            std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
            removed.push(stale);
        }
    }
    Ok(removed)
}
