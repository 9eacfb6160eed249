//! The dense, element-wise and update primitives of [`Cuda`] (cuBLAS for products, the
//! kernels of cuda/elementwise.cu for the rest).

use std::ops::Range;

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::backend::{check_fits, dev, mat_len, Cuda};
use crate::backend::traits::check_dim;
use crate::backend::traits::{DropoutMask, Mat, MatMut};
use crate::error::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig};

use super::backend::{ActParams, DeviceHyper};
use crate::ops::activation::ActivationParams;
use crate::ops::optimizer::{Hyper, StepConsts};
use crate::ops::Trans;
use crate::ops::{Activation, Optimizer};

impl Cuda {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_impl(
        &self,
        c: MatMut<CudaSlice<f32>>,
        alpha: f32,
        a: Mat<CudaSlice<f32>>,
        ta: Trans,
        b: Mat<CudaSlice<f32>>,
        tb: Trans,
        beta: f32,
    ) -> Result<()> {
        let (m, k) = match ta {
            Trans::No => (a.rows, a.cols),
            Trans::Yes => (a.cols, a.rows),
        };
        let (kb, n) = match tb {
            Trans::No => (b.rows, b.cols),
            Trans::Yes => (b.cols, b.rows),
        };
        check_dim("gemm: inner dimensions", kb, k)?;
        check_dim("gemm: C rows", c.rows, m)?;
        check_dim("gemm: C cols", c.cols, n)?;
        check_fits(mat_len(&a), a.buf.len())?;
        check_fits(mat_len(&b), b.buf.len())?;
        check_fits(c.rows * c.cols, c.buf.len())?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 && beta == 0.0 {
            // C = 0 (not read, as cuBLAS and the CPU do with beta = 0).
            let mut view = c.buf.slice_mut(..m * n);
            return self
                .stream
                .memset_zeros(&mut view)
                .map_err(dev("clearing a product"));
        }
        if k == 0 {
            // C = beta·C.
            let len = (m * n) as u64;
            let f = self.func("scale")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *c.buf).arg(&beta).arg(&len);
            // SAFETY: `c` holds `m·n` elements.
            return unsafe { l.launch(self.cfg_elems(m * n)) }
                .map(|_| ())
                .map_err(Self::launch_err("scale"));
        }
        let op = |t: Trans| match t {
            Trans::No => cublasOperation_t::CUBLAS_OP_N,
            Trans::Yes => cublasOperation_t::CUBLAS_OP_T,
        };
        let to_i32 = |x: usize| -> Result<i32> {
            i32::try_from(x).map_err(|_| {
                Error::invalid_argument("gemm", format!("dimension {x} exceeds cuBLAS's int"))
            })
        };
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
        let cfg = GemmConfig {
            transa: op(tb),
            transb: op(ta),
            m: to_i32(n)?,
            n: to_i32(m)?,
            k: to_i32(k)?,
            alpha,
            lda: to_i32(b.cols.max(1))?,
            ldb: to_i32(a.cols.max(1))?,
            beta,
            ldc: to_i32(n)?,
        };
        // SAFETY: the shapes were checked against the buffers above.
        unsafe { self.blas.gemm(cfg, b.buf, a.buf, c.buf) }
            .map_err(|e| Error::Device(format!("cuBLAS sgemm: {e}")))
    }

    pub(super) fn set_rows_to_bias_impl(
        &self,
        out: MatMut<CudaSlice<f32>>,
        bias: &CudaSlice<f32>,
    ) -> Result<()> {
        self.bias_op("set_rows_to_bias", out, bias)
    }

    pub(super) fn add_bias_impl(
        &self,
        out: MatMut<CudaSlice<f32>>,
        bias: &CudaSlice<f32>,
    ) -> Result<()> {
        self.bias_op("add_bias", out, bias)
    }

    pub(super) fn bias_gradient_impl(
        &self,
        db: &mut CudaSlice<f32>,
        delta: Mat<CudaSlice<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        check_fits(delta.cols, db.len())?;
        check_fits(mat_len(&delta), delta.buf.len())?;
        if delta.cols == 0 {
            return Ok(());
        }
        let (rows, cols) = (delta.rows as u64, delta.cols as u64);
        let f = self.func("bias_gradient")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(db)
            .arg(delta.buf)
            .arg(&rows)
            .arg(&cols)
            .arg(&alpha)
            .arg(&beta);
        let cfg = LaunchConfig {
            block_dim: (32, 8, 1),
            ..Self::cfg_grid(delta.cols.div_ceil(32), 1)?
        };
        // SAFETY: `db` has `cols` elements, `delta` `rows·cols`.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(Self::launch_err("bias_gradient"))
    }

    pub(super) fn add_assign_impl(
        &self,
        dst: &mut CudaSlice<f32>,
        src: &CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        check_fits(len, dst.len().min(src.len()))?;
        if len == 0 {
            return Ok(());
        }
        let n = len as u64;
        let f = self.func("add_assign")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(dst).arg(src).arg(&n);
        // SAFETY: both buffers hold `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("add_assign"))
    }

    pub(super) fn copy_impl(
        &self,
        dst: &mut CudaSlice<f32>,
        src: &CudaSlice<f32>,
        len: usize,
    ) -> Result<()> {
        check_fits(len, dst.len().min(src.len()))?;
        if len == 0 {
            return Ok(());
        }
        let s = src.slice(..len);
        let mut d = dst.slice_mut(..len);
        self.stream
            .memcpy_dtod(&s, &mut d)
            .map_err(dev("copying on the device"))
    }

    pub(super) fn activation_forward_impl(
        &self,
        x: MatMut<CudaSlice<f32>>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()> {
        let len = x.rows * x.cols;
        check_fits(len, x.buf.len())?;
        if len == 0 || act == Activation::Linear {
            return Ok(());
        }
        if act == Activation::SoftMax {
            let cols = x.cols as u64;
            let f = self.func("softmax_forward")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *x.buf).arg(&cols);
            // SAFETY: one block per row of `cols` elements.
            return unsafe { l.launch(Self::cfg_grid(x.rows, 1)?) }
                .map(|_| ())
                .map_err(Self::launch_err("softmax_forward"));
        }
        let (n, a, ap) = (len as u64, act as i32, ActParams::from(p));
        let f = self.func("activation_forward")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *x.buf).arg(&n).arg(&a).arg(&ap);
        // SAFETY: `x` holds `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("activation_forward"))
    }

    pub(super) fn activation_backward_impl(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        a: Mat<CudaSlice<f32>>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()> {
        check_dim("activation backward: rows", delta.rows, a.rows)?;
        check_dim("activation backward: cols", delta.cols, a.cols)?;
        let len = a.rows * a.cols;
        check_fits(len, delta.buf.len().min(a.buf.len()))?;
        if len == 0 || act == Activation::Linear {
            return Ok(());
        }
        if act == Activation::SoftMax {
            let cols = a.cols as u64;
            let f = self.func("softmax_backward")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *delta.buf).arg(a.buf).arg(&cols);
            // SAFETY: one block per row.
            return unsafe { l.launch(Self::cfg_grid(a.rows, 1)?) }
                .map(|_| ())
                .map_err(Self::launch_err("softmax_backward"));
        }
        let (n, ac, ap) = (len as u64, act as i32, ActParams::from(p));
        let f = self.func("activation_backward")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *delta.buf).arg(a.buf).arg(&n).arg(&ac).arg(&ap);
        // SAFETY: both hold `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("activation_backward"))
    }

    pub(super) fn dropout_forward_impl(
        &self,
        x: MatMut<CudaSlice<f32>>,
        p: f32,
        dropped_value: f32,
        m: DropoutMask,
    ) -> Result<()> {
        let len = x.rows * x.cols;
        check_fits(len, x.buf.len())?;
        if len == 0 {
            return Ok(());
        }
        let (n, cols, scale) = (len as u64, x.cols as u64, 1.0 / (1.0 - p));
        let f = self.func("dropout_forward")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *x.buf)
            .arg(&n)
            .arg(&cols)
            .arg(&m.row_stride)
            .arg(&m.col_offset)
            .arg(&p)
            .arg(&dropped_value)
            .arg(&scale)
            .arg(&m.seed)
            .arg(&m.stream);
        // SAFETY: `x` holds `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("dropout_forward"))
    }

    pub(super) fn scale_rows_impl(&self, x: MatMut<CudaSlice<f32>>, weights: &[f32]) -> Result<()> {
        if weights.len() != x.rows {
            return Err(Error::invalid_argument(
                "weights",
                format!("{} weights for {} rows", weights.len(), x.rows),
            ));
        }
        let len = x.rows * x.cols;
        check_fits(len, x.buf.len())?;
        if len == 0 {
            return Ok(());
        }
        let w = self.upload_vec(weights)?;
        let (rows, cols) = (x.rows as u64, x.cols as u64);
        let f = self.func("scale_rows")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *x.buf).arg(&w).arg(&rows).arg(&cols);
        // SAFETY: `x` holds `rows·cols` elements, `w` `rows`.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("scale_rows"))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn optimizer_step_impl(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        s0: &mut CudaSlice<f32>,
        s1: &mut CudaSlice<f32>,
        range: Range<usize>,
        opt: Optimizer,
        h: &Hyper,
        t: u64,
    ) -> Result<()> {
        let state = crate::ops::optimizer::state_len(opt);
        let end = range.end;
        check_fits(end, w.len().min(g.len()))?;
        if state >= 1 {
            check_fits(end, s0.len())?;
        }
        if state >= 2 {
            check_fits(end, s1.len())?;
        }
        let len = range.len();
        if len == 0 {
            return Ok(());
        }
        // A state the rule does not use is passed empty (the kernel never reads it).
        let used = |k: usize| if state > k { range.clone() } else { 0..0 };
        let mut w = w.slice_mut(range.clone());
        let g = g.slice(range.clone());
        let mut s0 = s0.slice_mut(used(0));
        let mut s1 = s1.slice_mut(used(1));
        let c = StepConsts::new(h, t);
        let dh = DeviceHyper {
            alpha: h.alpha,
            lambda: h.lambda,
            lambda1: h.lambda1,
            mu: h.mu,
            mu1: h.mu1,
            adam_m: c.adam_m,
            adam_v: c.adam_v,
        };
        let (n, o) = (len as u64, opt as i32);
        let f = self.func("optimizer_step")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut w)
            .arg(&g)
            .arg(&mut s0)
            .arg(&mut s1)
            .arg(&n)
            .arg(&o)
            .arg(&dh);
        // SAFETY: every array the rule touches holds `len` elements (checked above).
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("optimizer_step"))
    }

    pub(super) fn bias_op(
        &self,
        name: &'static str,
        out: MatMut<CudaSlice<f32>>,
        bias: &CudaSlice<f32>,
    ) -> Result<()> {
        let len = out.rows * out.cols;
        check_fits(len, out.buf.len())?;
        check_fits(out.cols, bias.len())?;
        if len == 0 {
            return Ok(());
        }
        let (rows, cols) = (out.rows as u64, out.cols as u64);
        let f = self.func(name)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *out.buf).arg(bias).arg(&rows).arg(&cols);
        // SAFETY: `out` holds `rows·cols` elements, `bias` `cols`.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err(name))
    }
}
