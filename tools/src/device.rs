//! `--device cpu|cuda|auto`: which backend a binary runs on, and the generic dispatch to it
//! (the library's [`moira::backend::device`] under the flag's names).

use anyhow::{anyhow, Result};
use clap::ValueEnum;
use moira::backend::Device;

pub use moira::backend::Chosen;

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

impl From<DeviceArg> for Device {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda,
            DeviceArg::Auto => Device::Auto,
        }
    }
}

/// Picks the backend for `device`: the CPU on `threads` threads (0: one per core), or a CUDA
/// device (`tf32`: allow TF32 tensor-core products in dense layers).
pub fn choose(device: DeviceArg, threads: usize, tf32: bool) -> Result<Chosen> {
    moira::backend::choose(device.into(), threads, tf32).map_err(|e| match e {
        moira::Error::InvalidArgument { name, message } if name == "device" => {
            anyhow!("--device {message}")
        }
        e => e.into(),
    })
}

/// The host threads for `--threads` (0: one per core), with rayon's global pool sized to
/// them (the pool the library's host work runs on).
pub fn host_threads(threads: usize) -> usize {
    moira::backend::device::host_threads(threads)
}
