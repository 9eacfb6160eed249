//! Which backend a program runs on: [`choose`] a [`Device`] into a [`Chosen`] backend, then
//! [`with_backend!`](crate::with_backend) calls generic code with it, whichever it is.
//!
//! The binaries' `--device cpu|cuda|auto` and the Python package's `device=` both end here.

use crate::backend::Cpu;
#[cfg(feature = "cuda")]
use crate::backend::Cuda;
use crate::error::{Error, Result};

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// A CUDA GPU ([`choose`] fails when none is usable).
    Cuda,
    /// CUDA when a driver and a device are present, else the CPU, quietly.
    Auto,
}

impl Device {
    /// The device named `name` (`cpu`, `cuda` or `auto`, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [Device::Cpu, Device::Cuda, Device::Auto]
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
    }
}

/// A backend chosen by [`choose`].
pub enum Chosen {
    Cpu(Cpu),
    #[cfg(feature = "cuda")]
    Cuda(Cuda),
}

/// The GPU ordinal for this process: under `mpirun`, local rank r uses GPU r mod (GPUs on
/// the node); alone, GPU 0.
#[cfg(feature = "cuda")]
fn local_ordinal(count: usize) -> usize {
    let rank = [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
    .unwrap_or(0);
    rank % count.max(1)
}

/// Picks the backend for `device`: the CPU on `threads` threads (0: one per core), or a CUDA
/// device (`tf32`: allow TF32 tensor-core products in dense layers; ignored on the CPU).
///
/// Errors: [`Error::InvalidArgument`] named `device` when `Device::Cuda` is asked for and
/// there is no CUDA driver or GPU, or this build has no CUDA support (the message starts with
/// `cuda: `); the backends' own errors ([`Error::Device`] when a GPU fails to start).
pub fn choose(device: Device, threads: usize, tf32: bool) -> Result<Chosen> {
    #[cfg(feature = "cuda")]
    {
        let want_cuda = match device {
            Device::Cpu => false,
            Device::Cuda => true,
            Device::Auto => Cuda::available(),
        };
        if want_cuda {
            let count = Cuda::device_count();
            if count == 0 {
                return Err(Error::invalid_argument(
                    "device",
                    "cuda: no CUDA driver or GPU found on this machine",
                ));
            }
            return Ok(Chosen::Cuda(Cuda::new(local_ordinal(count), tf32)?));
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = tf32;
        if device == Device::Cuda {
            return Err(Error::invalid_argument(
                "device",
                "cuda: this build has no CUDA support (build with --features cuda)",
            ));
        }
    }
    Ok(Chosen::Cpu(Cpu::new(threads)?))
}

/// The host threads for `threads` (0: one per core), with rayon's global pool sized to them
/// (the pool the library's host work runs on). The global pool is sized once per process:
/// later calls return the count asked for and leave the pool as it is.
pub fn host_threads(threads: usize) -> usize {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .ok();
    threads
}

/// Calls `$body` with `$backend` bound to the backend of a [`Chosen`], whichever it is (the
/// body is compiled once per backend type).
#[cfg(feature = "cuda")]
#[macro_export]
macro_rules! with_backend {
    ($chosen:expr, |$backend:ident| $body:expr) => {
        match $chosen {
            $crate::backend::device::Chosen::Cpu($backend) => $body,
            $crate::backend::device::Chosen::Cuda($backend) => $body,
        }
    };
}

/// Calls `$body` with `$backend` bound to the backend of a [`Chosen`], whichever it is (the
/// body is compiled once per backend type).
#[cfg(not(feature = "cuda"))]
#[macro_export]
macro_rules! with_backend {
    ($chosen:expr, |$backend:ident| $body:expr) => {
        match $chosen {
            $crate::backend::device::Chosen::Cpu($backend) => $body,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_cpu_is_always_there() {
        for d in [Device::Cpu, Device::Cuda, Device::Auto] {
            assert_eq!(Device::from_name(&d.name().to_uppercase()), Some(d));
        }
        assert_eq!(Device::from_name("gpu"), None);
        let chosen = choose(Device::Cpu, 1, false).unwrap();
        let threads = crate::with_backend!(chosen, |b| crate::backend::Backend::description(&b));
        assert!(!threads.is_empty());
    }
}
