//! The CUDA backend ([`Cuda`]), through cudarc with every library loaded at run time: the
//! crate builds and runs on machines without CUDA, and [`Cuda::available`] says quietly
//! whether a device can be used.
//!
//! One context and one stream per backend; every primitive is queued on that stream, so
//! primitives run in program order and the host waits only in downloads and loss totals.
//! Dense products go through cuBLAS (FP32 by default, TF32 on request); everything else is a
//! kernel of cuda/*.cu ([`kernels`]), compiled by NVRTC for the device at first use and cached
//! per process. The kernels evaluate the formulas of [`crate::ops`] in the same order of IEEE
//! operations with FMA contraction off, so element-wise results are the CPU's bits; sums over
//! a batch are in 64-bit fixed point (gradients, losses) or in a fixed tree order (SoftMax),
//! so every run gives the same bits.

mod backend;
mod choices;
mod dense;
pub mod kernels;
mod loss;
mod sparse;
mod staging;
mod topk;

pub use backend::{Cuda, CudaSparseBatch};
pub use choices::{CudaChoices, NEW_KERNELS_ENV};
