//! Compute backends. For now the CPU kernels ([`cpu`]) as plain functions; the `Backend`
//! trait that bundles them (and the CUDA backend) comes on top; [`device`] chooses one at run
//! time.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
mod host_default;
pub mod traits;

pub use cpu::Cpu;
#[cfg(feature = "cuda")]
pub use cuda::Cuda;
pub use device::{choose, Chosen, Device};
pub use traits::Backend;
