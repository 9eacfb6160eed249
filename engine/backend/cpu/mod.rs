//! CPU kernels (rayon), destination first, with an explicit [`Par`] argument.
//!
//! The dense products go through the `gemm` crate ([`gemm()`]); the sparse kernels are
//! written here: the sparse-input forward product ([`spmm`]), the transposed sparse weight
//! gradient in 64-bit fixed point ([`sparse_weight_gradient`]), the output loss and delta
//! with the two-pass sparse-target scheme ([`sparse_output_delta`], [`sparse_output_loss`]),
//! activations, bias handling and the optimizer step.
//!
//! Every kernel gives the same bits whatever the [`Par`] and the size of the rayon pool:
//! per-element sums have a fixed order, and the sums whose natural order would depend on the
//! split (gradients over a batch, losses) are taken in fixed point ([`crate::ops::fixed`]).
//!
//! Kernels check the shapes their caller passes and return [`crate::Error::InvalidArgument`]
//! on a mismatch; they never panic on shapes.

mod activation;
mod backend;
mod dense;
mod loss;
mod norm;
mod sparse;
mod update;

pub use activation::{activation_backward, activation_forward};
pub use backend::{Cpu, CpuSparseBatch};
pub use dense::{add_bias, bias_gradient, dense_weight_gradient, gemm, set_rows_to_bias};
pub use loss::{dense_output_delta, dense_output_loss, sparse_output_delta, sparse_output_loss};
pub use sparse::{sparse_weight_gradient, spmm, SparseTranspose, SPMM_NNZ_CHUNK};
pub use update::optimizer_step;

use rayon::prelude::*;

/// How a kernel may run in parallel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Par {
    /// On the calling thread only.
    #[default]
    Seq,
    /// On the current rayon pool, split for at most `n` threads (`0`: the pool's size).
    /// Install a pool of `n` threads (`ThreadPool::install`) to bound the threads used.
    Rayon(usize),
}

impl Par {
    /// The number of threads the work is split for.
    pub fn threads(self) -> usize {
        match self {
            Par::Seq => 1,
            Par::Rayon(0) => rayon::current_num_threads(),
            Par::Rayon(n) => n,
        }
    }

    /// The `gemm` crate's equivalent.
    pub fn to_gemm(self) -> gemm::Parallelism {
        match self {
            Par::Seq => gemm::Parallelism::None,
            Par::Rayon(n) => gemm::Parallelism::Rayon(n),
        }
    }
}

/// The x86 vector extension a kernel's inner loops are compiled for (see [`multiversion`]).
/// The loops use the same IEEE operations in the same order at every level (Rust never
/// contracts `a*b + c` into an FMA nor reassociates), so every level gives the same bits; only
/// the speed differs. The crate is built for baseline x86-64, so without this the hot loops
/// would get SSE2 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The best level this CPU supports.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// Every level available on this CPU (for tests).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }
}

/// `multiversion!(fn name = inner(arg: Type, …) [-> Ret]);` defines
/// `fn name(isa: Isa, arg: Type, …) [-> Ret]`, which calls the `#[inline(always)]` function
/// `inner` compiled for `isa` (baseline, AVX2 or AVX-512F). `isa` must come from
/// [`Isa::detect`] (or, in tests, `Isa::available`).
macro_rules! multiversion {
    (fn $name:ident = $inner:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        #[allow(clippy::too_many_arguments)]
        fn $name(isa: $crate::backend::cpu::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $inner($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $inner($($arg),*)
            }
            match isa {
                $crate::backend::cpu::Isa::Baseline => $inner($($arg),*),
                // SAFETY: the level came from `Isa::detect`/`Isa::available`, which saw the
                // CPU features this function is compiled for.
                #[cfg(target_arch = "x86_64")]
                $crate::backend::cpu::Isa::Avx2 => unsafe { avx2($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::backend::cpu::Isa::Avx512 => unsafe { avx512($($arg),*) },
            }
        }
    };
}
pub(crate) use multiversion;

/// Calls `f(row_index, row)` for every `cols`-wide row of `data`, in parallel per `par`
/// (rows are independent, so the result does not depend on the split).
pub(crate) fn for_each_row<F>(par: Par, data: &mut [f32], cols: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if cols == 0 || data.is_empty() {
        return;
    }
    let rows = data.len() / cols;
    let threads = par.threads();
    if threads <= 1 || rows <= 1 {
        data.chunks_mut(cols)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    } else {
        let min_len = rows.div_ceil(threads * 4).max(1);
        data.par_chunks_mut(cols)
            .with_min_len(min_len)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
    }
}

/// Sums `f(row)` over `rows` rows, in parallel per `par`, exactly (integer addition).
pub(crate) fn sum_rows_i128<F>(par: Par, rows: usize, f: F) -> i128
where
    F: Fn(usize) -> i128 + Sync + Send,
{
    let threads = par.threads();
    if threads <= 1 || rows <= 1 {
        (0..rows).map(f).sum()
    } else {
        let min_len = rows.div_ceil(threads * 4).max(1);
        (0..rows).into_par_iter().with_min_len(min_len).map(f).sum()
    }
}

#[cfg(test)]
mod tests;
