//! `--device cpu|cuda|auto`: which backend a binary runs on, and the generic dispatch to it.

use anyhow::{bail, Result};
use clap::ValueEnum;
use moira::backend::Cpu;
#[cfg(feature = "cuda")]
use moira::backend::Cuda;

/// The `--device` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU, on `--threads` threads.
    Cpu,
    /// A CUDA GPU (an error when none is usable).
    Cuda,
    /// CUDA when a driver and a device are present, else the CPU, quietly.
    Auto,
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
/// device (`tf32`: allow TF32 tensor-core products in dense layers).
pub fn choose(device: DeviceArg, threads: usize, tf32: bool) -> Result<Chosen> {
    #[cfg(feature = "cuda")]
    {
        let want_cuda = match device {
            DeviceArg::Cpu => false,
            DeviceArg::Cuda => true,
            DeviceArg::Auto => Cuda::available(),
        };
        if want_cuda {
            let count = Cuda::device_count();
            if count == 0 {
                bail!("--device cuda: no CUDA driver or GPU found on this machine");
            }
            let cuda = Cuda::new(local_ordinal(count), tf32)?;
            return Ok(Chosen::Cuda(cuda));
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = tf32;
        if device == DeviceArg::Cuda {
            bail!("--device cuda: this build has no CUDA support (build with --features cuda)");
        }
    }
    Ok(Chosen::Cpu(Cpu::new(threads)?))
}

/// The host threads for `--threads` (0: one per core), with rayon's global pool sized to
/// them (the pool the library's host work runs on).
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

/// Calls `$body` with `$backend` bound to the chosen backend, whichever it is (the body is
/// compiled once per backend type).
#[macro_export]
macro_rules! with_backend {
    ($chosen:expr, |$backend:ident| $body:expr) => {
        match $chosen {
            $crate::device::Chosen::Cpu($backend) => $body,
            #[cfg(feature = "cuda")]
            $crate::device::Chosen::Cuda($backend) => $body,
        }
    };
}
