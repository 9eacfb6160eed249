//! One lock for every NetCDF file access in the process, and HDF5 kept quiet.
//!
//! NetCDF-4 files go through HDF5, which Debian builds without thread safety; the `netcdf`
//! crate serialises its own calls, but not a whole open → read/write → close sequence, and
//! concurrent sequences on different files were seen to fail (`NetCDF: HDF error`). Every
//! Moira function that touches a NetCDF file holds [`hold`]'s guard from open to close; code
//! that uses the `netcdf` crate directly in the same process should hold it too.
//!
//! HDF5's own file locking (`flock`, on by default since HDF5 1.10) made quickly repeated
//! opens of a just-closed file fail now and then with `EACCES` (seen in our tests). Moira
//! never shares a file between writers (files are written to a temporary name and renamed),
//! so the first [`hold`] turns HDF5 file locking off for the process by setting
//! `HDF5_USE_FILE_LOCKING=FALSE`, unless the variable is already set.
//!
//! HDF5 also prints its error stack to stderr on expected failures (an optional attribute
//! that is absent, a corrupt file that we report as an `Error`) in every thread but the one
//! that initialised netCDF. The library never prints, so [`hold`] turns that printing off
//! once per thread, while it holds the lock.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard, Once};

static LOCK: Mutex<()> = Mutex::new(());
static FILE_LOCKING: Once = Once::new();

thread_local! {
    static SILENCED: Cell<bool> = const { Cell::new(false) };
}

/// Takes the process-wide NetCDF lock (a panic while holding it does not poison it for
/// others: the guarded state is the C library's, which a Rust panic does not corrupt).
pub fn hold() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    FILE_LOCKING.call_once(|| {
        if std::env::var_os("HDF5_USE_FILE_LOCKING").is_none() {
            std::env::set_var("HDF5_USE_FILE_LOCKING", "FALSE");
        }
    });
    SILENCED.with(|done| {
        if !done.get() {
            // SAFETY: sets HDF5's error-printing handler of this thread's default error stack
            // to none; no HDF5 call runs concurrently because we hold the lock.
            unsafe {
                hdf5_sys::h5e::H5Eset_auto2(hdf5_sys::h5e::H5E_DEFAULT, None, std::ptr::null_mut());
            }
            done.set(true);
        }
    });
    guard
}
