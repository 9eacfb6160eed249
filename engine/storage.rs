//! The room left on the file system of an output, to check it before a long write and to
//! name a full disk when a write fails (NetCDF reports `ENOSPC` as an HDF error or as
//! "Permission denied", which hides the cause).

use std::path::Path;

use crate::error::Error;

/// Bytes an unprivileged process can still write on the file system holding `path` (its
/// directory when `path` is not one), or `None` when that cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let dir = if path.is_dir() {
        path
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `c` is a NUL-terminated path and `stat` points to a statvfs that the call
        // fills when it returns 0, the only case in which it is read.
        if unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it initialised `stat`.
        let stat = unsafe { stat.assume_init() };
        // The fields' types vary between platforms (u32 on some), hence the casts.
        #[allow(clippy::unnecessary_cast)]
        Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// `error`, from writing `path`, with the cause named when the file system holding `path` is
/// (nearly) full: less than 1 MiB free. Other errors are returned as they are.
pub fn name_full_disk(path: &Path, error: Error) -> Error {
    let Some(free) = free_bytes(path).filter(|&b| b < 1 << 20) else {
        return error;
    };
    let cause = format!("No space left on device ({free} bytes free)");
    match error {
        Error::NetCdf {
            file,
            item,
            message,
        } => Error::NetCdf {
            file,
            item,
            message: format!("{message}: {cause}"),
        },
        Error::Io { path, error } if error.raw_os_error() != Some(28) => Error::Io {
            path,
            error: std::io::Error::new(error.kind(), format!("{error}: {cause}")),
        },
        other => other,
    }
}
