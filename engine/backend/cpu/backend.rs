//! [`Cpu`]: the [`Backend`] implementation over the CPU kernels of this module, running on a
//! private rayon pool of a fixed number of threads.

use std::ops::Range;
use std::sync::Arc;

use super::{
    activation_backward, activation_forward, add_bias, bias_gradient, dense_output_delta,
    dense_output_loss, gemm, optimizer_step, set_rows_to_bias, sparse_output_delta,
    sparse_output_loss, sparse_weight_gradient, spmm, Par, SparseTranspose,
};
use crate::backend::traits::{Backend, BatchNormState, DropoutMask, Mat, MatMut};
use crate::dense::{MatrixMut, MatrixRef};
use crate::error::{Error, Result};
use crate::ops::activation::ActivationParams;
use crate::ops::fixed::FixedSum;
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::Hyper;
use crate::ops::Trans;
use crate::ops::{Activation, Optimizer};
use crate::rng::uniform_f32;
use crate::sparse::Csr;
use rayon::prelude::*;

/// The CPU backend: every primitive runs on a rayon pool of `threads` threads.
#[derive(Clone)]
pub struct Cpu {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu")
            .field("threads", &self.threads)
            .finish()
    }
}

/// A sparse minibatch on the CPU: the rows, and (for gradients) their transposed structure.
#[derive(Debug)]
pub struct CpuSparseBatch {
    rows: Csr,
    transposed: Option<SparseTranspose>,
}

impl CpuSparseBatch {
    /// The rows of the batch.
    pub fn rows(&self) -> &Csr {
        &self.rows
    }
}

impl Cpu {
    /// A backend on `threads` threads (0: one per core).
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("moira-cpu-{i}"))
            .build()
            .map_err(|e| Error::invalid_argument("threads", e.to_string()))?;
        Ok(Cpu {
            pool: Arc::new(pool),
            threads,
        })
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn par(&self) -> Par {
        if self.threads <= 1 {
            Par::Seq
        } else {
            Par::Rayon(self.threads)
        }
    }

    fn run<T: Send>(&self, f: impl FnOnce(Par) -> T + Send) -> T {
        let par = self.par();
        if self.threads <= 1 {
            f(par)
        } else {
            self.pool.install(|| f(par))
        }
    }
}

fn view<'a>(m: &Mat<'a, Vec<f32>>) -> Result<MatrixRef<'a>> {
    let len = m.rows * m.cols;
    let data = m
        .buf
        .get(..len)
        .ok_or_else(|| too_small(len, m.buf.len()))?;
    MatrixRef::new(m.rows, m.cols, data)
}

fn view_mut<'a>(m: MatMut<'a, Vec<f32>>) -> Result<MatrixMut<'a>> {
    let len = m.rows * m.cols;
    let have = m.buf.len();
    let data = m.buf.get_mut(..len).ok_or_else(|| too_small(len, have))?;
    MatrixMut::new(m.rows, m.cols, data)
}

fn too_small(need: usize, have: usize) -> Error {
    Error::invalid_argument(
        "buffer",
        format!("a matrix of {need} elements does not fit a buffer of {have}"),
    )
}

fn transposed(x: &CpuSparseBatch) -> Result<&SparseTranspose> {
    x.transposed.as_ref().ok_or_else(|| {
        Error::invalid_argument(
            "sparse batch",
            "uploaded without `for_gradient`, so it has no transposed structure",
        )
    })
}

/// Elements per parallel dropout task.
const DROPOUT_CHUNK: usize = 8192;

impl Backend for Cpu {
    type Vector = Vec<f32>;
    type SparseBatch = CpuSparseBatch;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn description(&self) -> String {
        format!("cpu on {} threads", self.threads)
    }

    /// `MemAvailable` of `/proc/meminfo` (Linux), else unknown.
    fn available_memory(&self) -> Option<u64> {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        zeroed(len).ok_or_else(|| {
            Error::Device(format!(
                "cannot allocate {len} floats ({:.1} GiB) in host memory",
                len as f64 * 4.0 / (1u64 << 30) as f64
            ))
        })
    }

    fn host_values<'v>(&self, v: &'v mut Vec<f32>) -> Option<&'v mut [f32]> {
        Some(v.as_mut_slice())
    }

    fn host_slice<'v>(&self, v: &'v Vec<f32>) -> Option<&'v [f32]> {
        Some(v.as_slice())
    }

    fn upload(&self, dst: &mut Vec<f32>, src: &[f32]) -> Result<()> {
        let have = dst.len();
        dst.get_mut(..src.len())
            .ok_or_else(|| too_small(src.len(), have))?
            .copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &Vec<f32>, dst: &mut [f32]) -> Result<()> {
        let part = src
            .get(..dst.len())
            .ok_or_else(|| too_small(dst.len(), src.len()))?;
        dst.copy_from_slice(part);
        Ok(())
    }

    fn upload_sparse(&self, rows: Csr, for_gradient: bool) -> Result<CpuSparseBatch> {
        let transposed = if for_gradient {
            Some(self.run(|_| SparseTranspose::new(rows.view()))?)
        } else {
            None
        };
        Ok(CpuSparseBatch { rows, transposed })
    }

    fn gemm(
        &self,
        c: MatMut<Vec<f32>>,
        alpha: f32,
        a: Mat<Vec<f32>>,
        ta: Trans,
        b: Mat<Vec<f32>>,
        tb: Trans,
        beta: f32,
    ) -> Result<()> {
        let (c, a, b) = (view_mut(c)?, view(&a)?, view(&b)?);
        self.run(|par| gemm(c, alpha, a, ta, b, tb, beta, par))
    }

    fn spmm(
        &self,
        out: MatMut<Vec<f32>>,
        x: &CpuSparseBatch,
        w: Mat<Vec<f32>>,
        beta: f32,
    ) -> Result<()> {
        let (out, w) = (view_mut(out)?, view(&w)?);
        self.run(|par| spmm(out, x.rows.view(), w, beta, par))
    }

    fn sparse_weight_gradient(
        &self,
        dw: MatMut<Vec<f32>>,
        x: &CpuSparseBatch,
        delta: Mat<Vec<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let (dw, delta, xt) = (view_mut(dw)?, view(&delta)?, transposed(x)?);
        self.run(|par| sparse_weight_gradient(dw, xt, delta, alpha, beta, par))
    }

    fn set_rows_to_bias(&self, out: MatMut<Vec<f32>>, bias: &Vec<f32>) -> Result<()> {
        let out = view_mut(out)?;
        self.run(|par| set_rows_to_bias(out, bias, par))
    }

    fn add_bias(&self, out: MatMut<Vec<f32>>, bias: &Vec<f32>) -> Result<()> {
        let out = view_mut(out)?;
        self.run(|par| add_bias(out, bias, par))
    }

    fn bias_gradient(
        &self,
        db: &mut Vec<f32>,
        delta: Mat<Vec<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let delta = view(&delta)?;
        self.run(|par| bias_gradient(db, delta, alpha, beta, par))
    }

    fn add_assign(&self, dst: &mut Vec<f32>, src: &Vec<f32>, len: usize) -> Result<()> {
        let have = dst.len().min(src.len());
        if len > have {
            return Err(too_small(len, have));
        }
        dst[..len]
            .iter_mut()
            .zip(&src[..len])
            .for_each(|(d, s)| *d += s);
        Ok(())
    }

    fn copy(&self, dst: &mut Vec<f32>, src: &Vec<f32>, len: usize) -> Result<()> {
        let have = dst.len().min(src.len());
        if len > have {
            return Err(too_small(len, have));
        }
        dst[..len].copy_from_slice(&src[..len]);
        Ok(())
    }

    fn activation_forward(
        &self,
        x: MatMut<Vec<f32>>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()> {
        let x = view_mut(x)?;
        self.run(|par| activation_forward(x, act, p, par));
        Ok(())
    }

    fn row_maxima(&self, x: Mat<Vec<f32>>, max: &mut [f32]) -> Result<()> {
        let x = view(&x)?;
        self.run(|par| super::activation::row_maxima(x, max, par))
    }

    fn exp_shifted_rows(&self, x: MatMut<Vec<f32>>, shift: &[f32], sums: &mut [f64]) -> Result<()> {
        let x = view_mut(x)?;
        self.run(|par| super::activation::exp_shifted_rows(x, shift, sums, par))
    }

    fn scale_rows_exact(&self, x: MatMut<Vec<f32>>, factors: &[f64]) -> Result<()> {
        let x = view_mut(x)?;
        self.run(|par| super::activation::scale_rows_exact(x, factors, par))
    }

    fn activation_backward(
        &self,
        delta: MatMut<Vec<f32>>,
        a: Mat<Vec<f32>>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()> {
        let (delta, a) = (view_mut(delta)?, view(&a)?);
        self.run(|par| activation_backward(delta, a, act, p, par))
    }

    fn dropout_forward_at(
        &self,
        x: MatMut<Vec<f32>>,
        p: f32,
        dropped_value: f32,
        m: DropoutMask,
    ) -> Result<()> {
        let scale = 1.0 / (1.0 - p);
        let cols = x.cols;
        let x = view_mut(x)?;
        let apply = |v: &mut f32, index: u64| {
            *v = if uniform_f32(m.seed, m.stream, index) < p {
                dropped_value
            } else {
                *v * scale
            };
        };
        self.run(|_| {
            if m.is_flat(cols) {
                x.into_data()
                    .par_chunks_mut(DROPOUT_CHUNK)
                    .enumerate()
                    .for_each(|(c, chunk)| {
                        let first = (c * DROPOUT_CHUNK) as u64;
                        for (i, v) in chunk.iter_mut().enumerate() {
                            apply(v, first + i as u64);
                        }
                    })
            } else if cols > 0 {
                x.into_data()
                    .par_chunks_mut(cols)
                    .enumerate()
                    .for_each(|(b, row)| {
                        for (j, v) in row.iter_mut().enumerate() {
                            apply(v, m.index(b, j));
                        }
                    })
            }
        });
        Ok(())
    }

    fn sparse_output_delta(
        &self,
        delta: MatMut<Vec<f32>>,
        a: Mat<Vec<f32>>,
        targets: &CpuSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<()> {
        let (delta, a) = (view_mut(delta)?, view(&a)?);
        self.run(|par| sparse_output_delta(delta, a, targets.rows.view(), spec, ignore_zero, par))
    }

    fn sparse_output_loss(
        &self,
        a: Mat<Vec<f32>>,
        targets: &CpuSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum> {
        let a = view(&a)?;
        self.run(|par| sparse_output_loss(a, targets.rows.view(), spec, ignore_zero, par))
    }

    fn dense_output_delta(
        &self,
        delta: MatMut<Vec<f32>>,
        a: Mat<Vec<f32>>,
        t: Mat<Vec<f32>>,
        spec: &LossSpec,
    ) -> Result<()> {
        let (delta, a, t) = (view_mut(delta)?, view(&a)?, view(&t)?);
        self.run(|par| dense_output_delta(delta, a, t, spec, par))
    }

    fn dense_output_loss(
        &self,
        a: Mat<Vec<f32>>,
        t: Mat<Vec<f32>>,
        spec: &LossSpec,
    ) -> Result<FixedSum> {
        let (a, t) = (view(&a)?, view(&t)?);
        self.run(|par| dense_output_loss(a, t, spec, par))
    }

    fn scale_rows(&self, x: MatMut<Vec<f32>>, weights: &[f32]) -> Result<()> {
        let cols = x.cols;
        let mut x = view_mut(x)?;
        if weights.len() != x.rows() {
            return Err(Error::invalid_argument(
                "weights",
                format!("{} weights for {} rows", weights.len(), x.rows()),
            ));
        }
        x.data_mut()
            .chunks_mut(cols.max(1))
            .zip(weights)
            .for_each(|(row, &w)| row.iter_mut().for_each(|v| *v *= w));
        Ok(())
    }

    fn sparseness_penalty(
        &self,
        delta: MatMut<Vec<f32>>,
        a: Mat<Vec<f32>>,
        p: f32,
        beta: f32,
    ) -> Result<()> {
        let (rows, cols) = (delta.rows, delta.cols);
        let a = view(&a)?;
        let mut delta = view_mut(delta)?;
        if a.rows() != rows || a.cols() != cols {
            return Err(Error::invalid_argument(
                "activations",
                format!("{}x{}; the delta is {rows}x{cols}", a.rows(), a.cols()),
            ));
        }
        crate::ops::norm::sparseness_penalty_delta(delta.data_mut(), a.data(), rows, cols, p, beta);
        Ok(())
    }

    fn clip_column_norms(&self, w: MatMut<Vec<f32>>, max_norm: f32) -> Result<()> {
        let (rows, cols) = (w.rows, w.cols);
        let mut w = view_mut(w)?;
        self.run(|_| super::norm::clip_column_norms(w.data_mut(), rows, cols, max_norm));
        Ok(())
    }

    fn clip_row_norms(&self, x: MatMut<Vec<f32>>, max_norm: f32) -> Result<()> {
        let (rows, cols) = (x.rows, x.cols);
        let mut x = view_mut(x)?;
        self.run(|_| super::norm::clip_row_norms(x.data_mut(), rows, cols, max_norm));
        Ok(())
    }

    fn batch_norm_forward(
        &self,
        z: MatMut<Vec<f32>>,
        xhat: &mut Vec<f32>,
        s: BatchNormState<'_, Vec<f32>>,
        factor: Option<f64>,
    ) -> Result<()> {
        let (rows, cols) = (z.rows, z.cols);
        let mut z = view_mut(z)?;
        let have = xhat.len();
        let xhat = xhat
            .get_mut(..rows * cols)
            .ok_or_else(|| too_small(rows * cols, have))?;
        check_units(
            cols,
            &[
                s.scale,
                s.bias,
                &*s.running_mean,
                &*s.running_var,
                &*s.inv_std,
            ],
        )?;
        crate::ops::norm::batch_norm_forward(
            z.data_mut(),
            xhat,
            rows,
            cols,
            crate::ops::norm::BatchNormBuffers {
                scale: s.scale,
                bias: s.bias,
                running_mean: s.running_mean,
                running_var: s.running_var,
                inv_std: s.inv_std,
            },
            factor,
        );
        Ok(())
    }

    fn batch_norm_backward(
        &self,
        delta: MatMut<Vec<f32>>,
        xhat: &Vec<f32>,
        scale: &Vec<f32>,
        inv_std: &Vec<f32>,
        dscale: &mut Vec<f32>,
        dbias: &mut Vec<f32>,
    ) -> Result<()> {
        let (rows, cols) = (delta.rows, delta.cols);
        let mut delta = view_mut(delta)?;
        let xhat = xhat
            .get(..rows * cols)
            .ok_or_else(|| too_small(rows * cols, xhat.len()))?;
        check_units(cols, &[scale, inv_std, &*dscale, &*dbias])?;
        crate::ops::norm::batch_norm_backward(
            delta.data_mut(),
            xhat,
            rows,
            cols,
            scale,
            inv_std,
            dscale,
            dbias,
        );
        Ok(())
    }

    fn optimizer_step(
        &self,
        w: &mut Vec<f32>,
        g: &Vec<f32>,
        s0: &mut Vec<f32>,
        s1: &mut Vec<f32>,
        range: Range<usize>,
        opt: Optimizer,
        h: &Hyper,
        t: u64,
    ) -> Result<()> {
        let state = crate::ops::optimizer::state_len(opt);
        let end = range.end;
        let s0 = if state >= 1 {
            s0.get_mut(range.clone()).ok_or_else(|| too_small(end, 0))?
        } else {
            &mut []
        };
        let s1 = if state >= 2 {
            s1.get_mut(range.clone()).ok_or_else(|| too_small(end, 0))?
        } else {
            &mut []
        };
        let w = w.get_mut(range.clone()).ok_or_else(|| too_small(end, 0))?;
        let g = g.get(range).ok_or_else(|| too_small(end, 0))?;
        self.run(|par| optimizer_step(w, g, s0, s1, opt, h, t, par))
    }
}

/// Errors unless every per-unit vector holds `units` values.
fn check_units(units: usize, vectors: &[&Vec<f32>]) -> Result<()> {
    match vectors.iter().find(|v| v.len() < units) {
        Some(v) => Err(too_small(units, v.len())),
        None => Ok(()),
    }
}

/// `len` zeros from the allocator's zeroed memory (pages the system zeroes lazily, as
/// `vec![0.0; len]` gets them), or `None` when the allocation fails or its size overflows,
/// instead of aborting the process.
fn zeroed(len: usize) -> Option<Vec<f32>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<f32>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (len > 0); a non-null result is an allocation of
    // `len` f32 of the global allocator with f32's alignment, all bytes zero (a valid 0.0),
    // which `Vec::from_raw_parts` takes over with length and capacity `len`.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut f32;
        (!ptr.is_null()).then(|| Vec::from_raw_parts(ptr, len, len))
    }
}
