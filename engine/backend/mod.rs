//! Compute backends. For now the CPU kernels ([`cpu`]) as plain functions; the `Backend`
//! trait that bundles them (and the CUDA backend) comes on top.

pub mod cpu;
pub mod traits;

pub use cpu::Cpu;
pub use traits::Backend;
