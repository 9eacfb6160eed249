//! [`Cuda`]: the [`Backend`] implementation on one CUDA device.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
};

use super::kernels;
use crate::backend::cpu::{check_dim, FixedSum, Trans};
use crate::backend::traits::{Backend, Mat, MatMut};
use crate::error::{Error, Result};
use crate::ops::activation::ActivationParams;
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::{Hyper, StepConsts};
use crate::ops::{Activation, ErrorFunction, Optimizer};
use crate::sparse::{Csr, CsrView};

/// Threads per block of every launch (the row kernels' reductions assume this power of two).
const BLOCK: u32 = 256;
/// The largest K the device top-K sorts in shared memory (`TOPK_MAX` in cuda/sparse.cu);
/// larger K are selected on the host.
const TOPK_MAX: usize = 2048;
/// Elements per block of the loss partial sums (`LOSS_BLOCK · LOSS_PER_THREAD` in loss.cu).
const LOSS_SPAN: usize = 256 * 8;

/// The CUDA backend on one device (see the [module documentation](super)).
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    functions: HashMap<&'static str, CudaFunction>,
    /// A one-element buffer passed where a kernel takes an absent optional array.
    dummy_f32: CudaSlice<f32>,
    device_name: String,
    sm_count: u32,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cuda")
            .field("device", &self.device_name)
            .field("ordinal", &self.ctx.ordinal())
            .finish()
    }
}

/// A sparse minibatch on the device: CSR rows (offsets rebased to 0) and, for gradients, the
/// transposed (per-feature) structure.
pub struct CudaSparseBatch {
    n_rows: usize,
    n_cols: usize,
    /// No row lists a column twice (checked on the host at upload).
    unique: bool,
    offsets: CudaSlice<u64>,
    cols: CudaSlice<u32>,
    vals: Option<CudaSlice<f32>>,
    transposed: Option<DeviceTranspose>,
}

/// The batch by feature (CSC), built on the device: feature `f`'s entries are
/// `starts[f]..starts[f + 1]` of `rows`/`vals`, in an order that may vary from run to run
/// (the fixed-point gradient does not depend on it).
struct DeviceTranspose {
    starts: CudaSlice<u64>,
    rows: CudaSlice<u32>,
    vals: Option<CudaSlice<f32>>,
}

/// The C layout of `LossParams` in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct LossParams {
    error: i32,
    act: i32,
    ap: ActParams,
    one_target: f32,
    zero_target: f32,
    one_scale: f32,
    zero_scale: f32,
    boost_one: f32,
    boost_zero: f32,
}

/// The C layout of `ActParams` in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ActParams {
    slope: f32,
    alpha: f32,
    lambda: f32,
}

/// The C layout of `Hyper` in cuda/common.cuh (with the step's Adam constants).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct DeviceHyper {
    alpha: f32,
    lambda: f32,
    lambda1: f32,
    mu: f32,
    mu1: f32,
    adam_m: f32,
    adam_v: f32,
}

// SAFETY: plain `#[repr(C)]` structs of 4-byte scalars, the same layout as the C structs.
unsafe impl DeviceRepr for LossParams {}
unsafe impl DeviceRepr for ActParams {}
unsafe impl DeviceRepr for DeviceHyper {}

impl From<&ActivationParams> for ActParams {
    fn from(p: &ActivationParams) -> Self {
        ActParams {
            slope: p.slope,
            alpha: p.alpha,
            lambda: p.lambda,
        }
    }
}

impl From<&LossSpec> for LossParams {
    fn from(s: &LossSpec) -> Self {
        LossParams {
            error: s.error as i32,
            act: s.activation as i32,
            ap: (&s.act_params).into(),
            one_target: s.smce.one_target,
            zero_target: s.smce.zero_target,
            one_scale: s.smce.one_scale,
            zero_scale: s.smce.zero_scale,
            boost_one: s.delta_boost.one,
            boost_zero: s.delta_boost.zero,
        }
    }
}

fn dev(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Device(format!("{what}: {e}"))
}

fn too_small(need: usize, have: usize) -> Error {
    Error::invalid_argument(
        "buffer",
        format!("a matrix of {need} elements does not fit a buffer of {have}"),
    )
}

fn check_fits(len: usize, buf: usize) -> Result<()> {
    if len > buf {
        Err(too_small(len, buf))
    } else {
        Ok(())
    }
}

impl Cuda {
    /// Whether a CUDA driver and at least one device are present (no error printed when not).
    pub fn available() -> bool {
        // SAFETY: probing only dlopens the driver library.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return false;
        }
        CudaContext::device_count().is_ok_and(|n| n > 0)
    }

    /// The number of CUDA devices (0 when there is no driver).
    pub fn device_count() -> usize {
        if !Self::available() {
            return 0;
        }
        CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
    }

    /// A backend on device `ordinal`, with FP32 dense products (`tf32`: allow TF32 tensor-core
    /// products, about 10 bits of mantissa in the products' inputs). Compiles the kernels for
    /// the device (once per process) and loads every kernel, so a missing one fails here.
    pub fn new(ordinal: usize, tf32: bool) -> Result<Self> {
        if !Self::available() {
            return Err(Error::Device(
                "no CUDA driver or device found (libcuda.so could not be loaded or reports \
                 no device)"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(dev("counting devices"))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Device(format!(
                "device {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(dev("creating a context"))?;
        let stream = ctx.new_stream().map_err(dev("creating a stream"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(dev("reading the compute capability"))?;
        let ptx = kernels::compile(kernels::arch_name(major, minor))?;
        let module = ctx.load_module(ptx).map_err(dev("loading the kernels"))?;
        let mut functions = HashMap::new();
        for &name in kernels::KERNELS {
            let f = module
                .load_function(name)
                .map_err(|e| Error::Device(format!("kernel `{name}`: {e}")))?;
            functions.insert(name, f);
        }
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| Error::Device(format!("creating a cuBLAS handle: {e}")))?;
        let mode = if tf32 {
            cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: the handle is live; setting its math mode has no other effect.
        unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), mode) }
            .result()
            .map_err(|e| Error::Device(format!("setting the cuBLAS math mode: {e}")))?;
        let dummy_f32 = stream.alloc_zeros(1).map_err(dev("allocating"))?;
        let device_name = ctx.name().unwrap_or_else(|_| "unknown".into());
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_or(32, |n| n.max(1) as u32);
        Ok(Cuda {
            ctx,
            stream,
            blas,
            functions,
            dummy_f32,
            device_name,
            sm_count,
        })
    }

    /// The device's name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// Waits until every queued primitive has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(dev("synchronizing"))
    }

    fn func(&self, name: &'static str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| Error::Device(format!("kernel `{name}` is not loaded")))
    }

    /// A grid-stride launch over `n` elements.
    fn cfg_elems(&self, n: usize) -> LaunchConfig {
        let blocks = n
            .div_ceil(BLOCK as usize)
            .clamp(1, self.sm_count as usize * 16);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn cfg_grid(x: usize, y: usize) -> Result<LaunchConfig> {
        if x > i32::MAX as usize || y > 65535 {
            return Err(Error::invalid_argument(
                "launch",
                format!("a grid of {x} x {y} blocks exceeds the device's limits"),
            ));
        }
        Ok(LaunchConfig {
            grid_dim: (x.max(1) as u32, y.max(1) as u32, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        })
    }

    fn upload_vec<T: DeviceRepr + ValidAsZeroBits + Clone + Default>(
        &self,
        host: &[T],
    ) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            return self.stream.alloc_zeros(1).map_err(dev("allocating"));
        }
        self.stream.clone_htod(host).map_err(dev("uploading"))
    }

    fn vals_arg<'a>(&'a self, v: &'a Option<CudaSlice<f32>>) -> (&'a CudaSlice<f32>, i32) {
        match v {
            Some(v) => (v, 1),
            None => (&self.dummy_f32, 0),
        }
    }

    /// Sums i64 partials downloaded from the device in i128 (the CPU's order-free total).
    fn sum_partials(&self, partials: &CudaSlice<i64>, len: usize) -> Result<i128> {
        let mut host = vec![0i64; partials.len()];
        self.stream
            .memcpy_dtoh(partials, &mut host)
            .map_err(dev("downloading a loss"))?;
        self.synchronize()?;
        Ok(host[..len].iter().map(|&x| x as i128).sum())
    }

    /// Σ fixed(L(a, t)) over `n` elements (`t` absent: every target 0).
    fn loss_total(
        &self,
        a: &CudaSlice<f32>,
        t: Option<&CudaSlice<f32>>,
        n: usize,
        spec: &LossSpec,
    ) -> Result<i128> {
        if n == 0 {
            return Ok(0);
        }
        let blocks = n.div_ceil(LOSS_SPAN);
        let mut partials = self
            .stream
            .alloc_zeros::<i64>(blocks)
            .map_err(dev("allocating"))?;
        let (tb, has_t) = match t {
            Some(t) => (t, 1i32),
            None => (&self.dummy_f32, 0),
        };
        let p = LossParams::from(spec);
        let n64 = n as u64;
        let f = self.func("loss_partials")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut partials)
            .arg(a)
            .arg(tb)
            .arg(&has_t)
            .arg(&n64)
            .arg(&p);
        // SAFETY: `partials` has `blocks` elements, `a` (and `t`) at least `n`.
        unsafe { l.launch(Self::cfg_grid(blocks, 1)?) }.map_err(dev("loss_partials"))?;
        self.sum_partials(&partials, blocks)
    }

    fn launch_err(name: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
        move |e| Error::Device(format!("launching `{name}`: {e}"))
    }
}

/// Whether no row of `x` lists a column twice (one bit per column, cleared after each row).
fn rows_are_unique(x: &crate::sparse::CsrView) -> bool {
    let mut seen = vec![0u64; (x.n_cols() as usize).div_ceil(64)];
    for b in 0..x.n_rows() {
        let cols = x.row(b).0;
        let mut unique = true;
        for &c in cols {
            let (w, bit) = (c as usize / 64, 1u64 << (c % 64));
            unique &= seen[w] & bit == 0;
            seen[w] |= bit;
        }
        for &c in cols {
            seen[c as usize / 64] = 0;
        }
        if !unique {
            return false;
        }
    }
    true
}

fn mat_len<V>(m: &Mat<V>) -> usize {
    m.rows * m.cols
}

impl Backend for Cuda {
    type Vector = CudaSlice<f32>;
    type SparseBatch = CudaSparseBatch;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn description(&self) -> String {
        format!("cuda device {}: {}", self.ctx.ordinal(), self.device_name)
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros(len.max(1))
            .map_err(dev("allocating device memory"))
    }

    fn upload(&self, dst: &mut CudaSlice<f32>, src: &[f32]) -> Result<()> {
        check_fits(src.len(), dst.len())?;
        if src.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice_mut(..src.len());
        self.stream
            .memcpy_htod(src, &mut view)
            .map_err(dev("uploading"))
    }

    fn download(&self, src: &CudaSlice<f32>, dst: &mut [f32]) -> Result<()> {
        check_fits(dst.len(), src.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        let view = src.slice(..dst.len());
        self.stream
            .memcpy_dtoh(&view, dst)
            .map_err(dev("downloading"))?;
        self.synchronize()
    }

    fn upload_sparse(&self, rows: Csr, for_gradient: bool) -> Result<CudaSparseBatch> {
        let view = rows.view();
        let offsets = view.row_offsets();
        let first = offsets.first().copied().unwrap_or(0);
        let rebased: Vec<u64> = offsets.iter().map(|&o| o - first).collect();
        let (lo, hi) = (first as usize, *offsets.last().unwrap_or(&0) as usize);
        let cols = rows
            .col_indices()
            .get(lo..hi)
            .ok_or_else(|| Error::InvalidData("sparse batch: offsets beyond the columns".into()))?;
        let vals = rows
            .values()
            .map(|v| {
                v.get(lo..hi).ok_or_else(|| {
                    Error::InvalidData("sparse batch: offsets beyond the values".into())
                })
            })
            .transpose()?;
        let n_cols = view.n_cols() as usize;
        let offsets_d = self.upload_vec(&rebased)?;
        let cols_d = self.upload_vec(cols)?;
        let vals_d = vals.map(|v| self.upload_vec(v)).transpose()?;
        let transposed = if for_gradient {
            Some(self.transpose(&offsets_d, &cols_d, &vals_d, view.n_rows(), n_cols, hi - lo)?)
        } else {
            None
        };
        Ok(CudaSparseBatch {
            n_rows: view.n_rows(),
            n_cols,
            unique: rows_are_unique(&view),
            offsets: offsets_d,
            cols: cols_d,
            vals: vals_d,
            transposed,
        })
    }

    fn gemm(
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
        if k == 0 {
            // C = beta·C (or 0).
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

    fn spmm(
        &self,
        out: MatMut<CudaSlice<f32>>,
        x: &CudaSparseBatch,
        w: Mat<CudaSlice<f32>>,
        beta: f32,
    ) -> Result<()> {
        check_dim("spmm: out rows (batch)", out.rows, x.n_rows)?;
        check_dim("spmm: weight rows (n_in)", w.rows, x.n_cols)?;
        check_dim("spmm: out cols (n_out)", out.cols, w.cols)?;
        check_fits(out.rows * out.cols, out.buf.len())?;
        check_fits(mat_len(&w), w.buf.len())?;
        if x.n_rows == 0 || w.cols == 0 {
            return Ok(());
        }
        let n = w.cols as u64;
        let (vals, has_vals) = self.vals_arg(&x.vals);
        let f = self.func("spmm")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *out.buf)
            .arg(&x.offsets)
            .arg(&x.cols)
            .arg(vals)
            .arg(&has_vals)
            .arg(w.buf)
            .arg(&n)
            .arg(&beta);
        let cfg = Self::cfg_grid(x.n_rows, w.cols.div_ceil(BLOCK as usize))?;
        // SAFETY: shapes checked; column indices are below `n_in` by the CSR's invariant.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(Self::launch_err("spmm"))
    }

    fn sparse_weight_gradient(
        &self,
        dw: MatMut<CudaSlice<f32>>,
        x: &CudaSparseBatch,
        delta: Mat<CudaSlice<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let t = x.transposed.as_ref().ok_or_else(|| {
            Error::invalid_argument(
                "sparse batch",
                "uploaded without `for_gradient`, so it has no transposed structure",
            )
        })?;
        check_dim("sparse gradient: dw rows (n_in)", dw.rows, x.n_cols)?;
        check_dim("sparse gradient: delta rows (batch)", delta.rows, x.n_rows)?;
        check_dim("sparse gradient: dw cols (n_out)", dw.cols, delta.cols)?;
        let len = dw.rows * dw.cols;
        check_fits(len, dw.buf.len())?;
        check_fits(mat_len(&delta), delta.buf.len())?;
        if len == 0 {
            return Ok(());
        }
        let n = dw.cols as u64;
        let (vals, has_vals) = self.vals_arg(&t.vals);
        let f = self.func("sparse_weight_gradient")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *dw.buf)
            .arg(&t.starts)
            .arg(&t.rows)
            .arg(vals)
            .arg(&has_vals)
            .arg(delta.buf)
            .arg(&n)
            .arg(&alpha)
            .arg(&beta);
        let cfg = Self::cfg_grid(dw.rows, dw.cols.div_ceil(BLOCK as usize))?;
        // SAFETY: shapes checked; every row index of the transpose is below the batch size.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(Self::launch_err("sparse_weight_gradient"))
    }

    fn set_rows_to_bias(&self, out: MatMut<CudaSlice<f32>>, bias: &CudaSlice<f32>) -> Result<()> {
        self.bias_op("set_rows_to_bias", out, bias)
    }

    fn add_bias(&self, out: MatMut<CudaSlice<f32>>, bias: &CudaSlice<f32>) -> Result<()> {
        self.bias_op("add_bias", out, bias)
    }

    fn bias_gradient(
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

    fn add_assign(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>, len: usize) -> Result<()> {
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

    fn copy(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>, len: usize) -> Result<()> {
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

    fn activation_forward(
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

    fn activation_backward(
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

    fn dropout_forward(
        &self,
        x: MatMut<CudaSlice<f32>>,
        p: f32,
        dropped_value: f32,
        seed: u64,
        stream: u64,
    ) -> Result<()> {
        let len = x.rows * x.cols;
        check_fits(len, x.buf.len())?;
        if len == 0 {
            return Ok(());
        }
        let (n, scale) = (len as u64, 1.0 / (1.0 - p));
        let f = self.func("dropout_forward")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *x.buf)
            .arg(&n)
            .arg(&p)
            .arg(&dropped_value)
            .arg(&scale)
            .arg(&seed)
            .arg(&stream);
        // SAFETY: `x` holds `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("dropout_forward"))
    }

    fn dropout_backward(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        p: f32,
        seed: u64,
        stream: u64,
    ) -> Result<()> {
        let len = delta.rows * delta.cols;
        check_fits(len, delta.buf.len())?;
        if len == 0 {
            return Ok(());
        }
        let (n, scale) = (len as u64, 1.0 / (1.0 - p));
        let f = self.func("dropout_backward")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *delta.buf)
            .arg(&n)
            .arg(&p)
            .arg(&scale)
            .arg(&seed)
            .arg(&stream);
        // SAFETY: `delta` holds `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("dropout_backward"))
    }

    fn sparse_output_delta(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        a: Mat<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<()> {
        check_dim("sparse output delta: target rows", targets.n_rows, a.rows)?;
        check_dim("sparse output delta: target cols", targets.n_cols, a.cols)?;
        check_dim("sparse output delta: delta rows", delta.rows, a.rows)?;
        check_dim("sparse output delta: delta cols", delta.cols, a.cols)?;
        let len = a.rows * a.cols;
        check_fits(len, delta.buf.len().min(a.buf.len()))?;
        if len == 0 {
            return Ok(());
        }
        let p = LossParams::from(spec);
        let n = len as u64;
        let softmax = spec.activation == Activation::SoftMax;
        let ce = spec.error == ErrorFunction::CrossEntropy;
        // Pass 1: every unit as if its target were 0.
        if softmax {
            let zero = i32::from(ce || ignore_zero);
            let f = self.func("softmax_zero_grad")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *delta.buf).arg(a.buf).arg(&n).arg(&p).arg(&zero);
            // SAFETY: both hold `len` elements.
            unsafe { l.launch(self.cfg_elems(len)) }
                .map_err(Self::launch_err("softmax_zero_grad"))?;
        } else {
            let iz = i32::from(ignore_zero);
            let f = self.func("zero_target_delta")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *delta.buf).arg(a.buf).arg(&n).arg(&p).arg(&iz);
            // SAFETY: both hold `len` elements.
            unsafe { l.launch(self.cfg_elems(len)) }
                .map_err(Self::launch_err("zero_target_delta"))?;
        }
        // Pass 2: the non-zeros.
        let mode: i32 = match (softmax, ce) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        let (rows, cols) = (a.rows as u64, a.cols as u64);
        let (vals, has_vals) = self.vals_arg(&targets.vals);
        let unique = i32::from(targets.unique);
        let f = self.func("sparse_target_delta")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *delta.buf)
            .arg(a.buf)
            .arg(&targets.offsets)
            .arg(&targets.cols)
            .arg(vals)
            .arg(&has_vals)
            .arg(&rows)
            .arg(&cols)
            .arg(&p)
            .arg(&mode)
            .arg(&unique);
        let cfg = Self::cfg_grid(a.rows, 1)?;
        // SAFETY: target columns are below `cols` (checked shapes, CSR invariant).
        unsafe { l.launch(cfg) }.map_err(Self::launch_err("sparse_target_delta"))?;
        if softmax {
            self.softmax_rows(delta.buf, a.buf, a.rows, a.cols, ce)?;
        }
        Ok(())
    }

    fn sparse_output_loss(
        &self,
        a: Mat<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum> {
        check_dim("sparse output loss: target rows", targets.n_rows, a.rows)?;
        check_dim("sparse output loss: target cols", targets.n_cols, a.cols)?;
        let len = mat_len(&a);
        check_fits(len, a.buf.len())?;
        let mut total = if ignore_zero {
            0
        } else {
            self.loss_total(a.buf, None, len, spec)?
        };
        if a.rows > 0 {
            let mut per_row = self
                .stream
                .alloc_zeros::<i64>(a.rows)
                .map_err(dev("allocating"))?;
            let p = LossParams::from(spec);
            let (rows, cols, iz) = (a.rows as u64, a.cols as u64, i32::from(ignore_zero));
            let (vals, has_vals) = self.vals_arg(&targets.vals);
            let f = self.func("sparse_loss_rows")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut per_row)
                .arg(a.buf)
                .arg(&targets.offsets)
                .arg(&targets.cols)
                .arg(vals)
                .arg(&has_vals)
                .arg(&rows)
                .arg(&cols)
                .arg(&p)
                .arg(&iz);
            let cfg = Self::cfg_grid(a.rows, 1)?;
            // SAFETY: `per_row` has `rows` elements; target columns are below `cols`.
            unsafe { l.launch(cfg) }.map_err(Self::launch_err("sparse_loss_rows"))?;
            total = total.wrapping_add(self.sum_partials(&per_row, a.rows)?);
        }
        Ok(FixedSum(total))
    }

    fn dense_output_delta(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        a: Mat<CudaSlice<f32>>,
        t: Mat<CudaSlice<f32>>,
        spec: &LossSpec,
    ) -> Result<()> {
        check_dim("dense output delta: target rows", t.rows, a.rows)?;
        check_dim("dense output delta: target cols", t.cols, a.cols)?;
        check_dim("dense output delta: delta rows", delta.rows, a.rows)?;
        check_dim("dense output delta: delta cols", delta.cols, a.cols)?;
        let len = mat_len(&a);
        check_fits(len, delta.buf.len().min(a.buf.len()).min(t.buf.len()))?;
        if len == 0 {
            return Ok(());
        }
        let softmax = spec.activation == Activation::SoftMax;
        let ce = spec.error == ErrorFunction::CrossEntropy;
        let mode: i32 = match (softmax, ce) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        let (n, p) = (len as u64, LossParams::from(spec));
        let f = self.func("dense_target_delta")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *delta.buf)
            .arg(a.buf)
            .arg(t.buf)
            .arg(&n)
            .arg(&p)
            .arg(&mode);
        // SAFETY: all three hold `len` elements.
        unsafe { l.launch(self.cfg_elems(len)) }.map_err(Self::launch_err("dense_target_delta"))?;
        if softmax {
            self.softmax_rows(delta.buf, a.buf, a.rows, a.cols, ce)?;
        }
        Ok(())
    }

    fn dense_output_loss(
        &self,
        a: Mat<CudaSlice<f32>>,
        t: Mat<CudaSlice<f32>>,
        spec: &LossSpec,
    ) -> Result<FixedSum> {
        check_dim("dense output loss: target rows", t.rows, a.rows)?;
        check_dim("dense output loss: target cols", t.cols, a.cols)?;
        let len = mat_len(&a);
        check_fits(len, a.buf.len().min(t.buf.len()))?;
        Ok(FixedSum(self.loss_total(a.buf, Some(t.buf), len, spec)?))
    }

    fn scale_rows(&self, x: MatMut<CudaSlice<f32>>, weights: &[f32]) -> Result<()> {
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

    fn top_k(
        &self,
        scores: Mat<CudaSlice<f32>>,
        items: usize,
        k: usize,
        exclude: Option<CsrView<'_>>,
        indices: &mut [u32],
        out_scores: &mut [f32],
    ) -> Result<()> {
        let rows = scores.rows;
        if items == 0 || items > scores.cols {
            return Err(Error::invalid_argument(
                "items",
                format!("{items} candidate columns in rows of {}", scores.cols),
            ));
        }
        if k == 0 || k > items {
            return Err(Error::invalid_argument(
                "k",
                format!("{k}; between 1 and the {items} items"),
            ));
        }
        check_fits(mat_len(&scores), scores.buf.len())?;
        check_dim("top-k: indices", indices.len(), rows * k)?;
        check_dim("top-k: scores", out_scores.len(), rows * k)?;
        if let Some(ex) = &exclude {
            check_dim("top-k: exclusion rows", ex.n_rows(), rows)?;
        }
        if k > TOPK_MAX || items > u32::MAX as usize - 1 {
            // Beyond the kernel's shared-memory sort: select on the host.
            let mut all = vec![0.0; rows * scores.cols];
            self.download(scores.buf, &mut all)?;
            let compact: Vec<f32> = all
                .chunks(scores.cols.max(1))
                .flat_map(|r| r[..items].iter().copied())
                .collect();
            return crate::predict::top_k_batch(
                &compact, items, k, exclude, 0, indices, out_scores,
            );
        }
        if rows == 0 {
            return Ok(());
        }
        let alloc = dev("allocating top-k scratch");
        let mut keys = self
            .stream
            .alloc_zeros::<u64>(rows * items)
            .map_err(&alloc)?;
        let ex = exclude
            .map(|v| -> Result<(CudaSlice<u64>, CudaSlice<u32>)> {
                let offs = v.row_offsets();
                let first = offs.first().copied().unwrap_or(0);
                let rebased: Vec<u64> = offs.iter().map(|&o| o - first).collect();
                let mut cols = Vec::with_capacity(v.nnz());
                for b in 0..v.n_rows() {
                    cols.extend_from_slice(v.row(b).0);
                }
                Ok((self.upload_vec(&rebased)?, self.upload_vec(&cols)?))
            })
            .transpose()?;
        let (ld, items64, k32) = (scores.cols as u64, items as u64, k as i32);
        let dummy_offsets;
        let dummy_cols;
        let (ex_offsets, ex_cols, has_ex) = match &ex {
            Some((o, c)) => (o, c, 1i32),
            None => {
                dummy_offsets = self.stream.alloc_zeros::<u64>(1).map_err(&alloc)?;
                dummy_cols = self.stream.alloc_zeros::<u32>(1).map_err(&alloc)?;
                (&dummy_offsets, &dummy_cols, 0i32)
            }
        };
        let block = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.func("topk_keys")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut keys)
            .arg(scores.buf)
            .arg(&ld)
            .arg(&items64)
            .arg(ex_offsets)
            .arg(ex_cols)
            .arg(&has_ex);
        // SAFETY: `keys` holds rows·items, the scores rows·ld; excluded columns are checked.
        unsafe { l.launch(block) }.map_err(Self::launch_err("topk_keys"))?;
        let mut idx_d = self.stream.alloc_zeros::<u32>(rows * k).map_err(&alloc)?;
        let mut score_d = self.stream.alloc_zeros::<f32>(rows * k).map_err(&alloc)?;
        let f = self.func("topk_select")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&keys)
            .arg(scores.buf)
            .arg(&ld)
            .arg(&items64)
            .arg(&k32)
            .arg(&mut idx_d)
            .arg(&mut score_d);
        // SAFETY: one block per row; outputs hold rows·k entries; k ≤ TOPK_MAX.
        unsafe { l.launch(block) }.map_err(Self::launch_err("topk_select"))?;
        self.stream
            .memcpy_dtoh(&idx_d, indices)
            .map_err(dev("downloading top-k"))?;
        self.stream
            .memcpy_dtoh(&score_d, out_scores)
            .map_err(dev("downloading top-k"))?;
        self.synchronize()
    }

    fn optimizer_step(
        &self,
        w: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        s0: &mut CudaSlice<f32>,
        s1: &mut CudaSlice<f32>,
        len: usize,
        opt: Optimizer,
        h: &Hyper,
        t: u64,
    ) -> Result<()> {
        let state = crate::ops::optimizer::state_len(opt);
        check_fits(len, w.len().min(g.len()))?;
        if state >= 1 {
            check_fits(len, s0.len())?;
        }
        if state >= 2 {
            check_fits(len, s1.len())?;
        }
        if len == 0 {
            return Ok(());
        }
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
        l.arg(w).arg(g).arg(s0).arg(s1).arg(&n).arg(&o).arg(&dh);
        // SAFETY: every array the rule touches holds `len` elements (checked above).
        unsafe { l.launch(self.cfg_elems(len)) }
            .map(|_| ())
            .map_err(Self::launch_err("optimizer_step"))
    }
}

impl Cuda {
    /// Builds the per-feature (CSC) structure of a CSR batch on the device: column counts,
    /// their exclusive scan, then a scatter of every non-zero.
    fn transpose(
        &self,
        offsets: &CudaSlice<u64>,
        cols: &CudaSlice<u32>,
        vals: &Option<CudaSlice<f32>>,
        n_rows: usize,
        n_cols: usize,
        nnz: usize,
    ) -> Result<DeviceTranspose> {
        let alloc = dev("allocating a transpose");
        let mut counts = self
            .stream
            .alloc_zeros::<u32>(n_cols.max(1))
            .map_err(&alloc)?;
        let mut starts = self.stream.alloc_zeros::<u64>(n_cols + 1).map_err(&alloc)?;
        let mut cursor = self
            .stream
            .alloc_zeros::<u64>(n_cols.max(1))
            .map_err(&alloc)?;
        let mut rows = self.stream.alloc_zeros::<u32>(nnz.max(1)).map_err(&alloc)?;
        let mut tvals = match vals {
            Some(_) => Some(self.stream.alloc_zeros::<f32>(nnz.max(1)).map_err(&alloc)?),
            None => None,
        };
        let (nnz64, n64) = (nnz as u64, n_cols as u64);
        if nnz > 0 {
            let f = self.func("csc_count")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(cols).arg(&nnz64).arg(&mut counts);
            // SAFETY: `cols` holds `nnz` indices below `n_cols`, the length of `counts`.
            unsafe { l.launch(self.cfg_elems(nnz)) }.map_err(Self::launch_err("csc_count"))?;
        }
        let tiles = n_cols.div_ceil(1024).max(1);
        let mut totals = self.stream.alloc_zeros::<u64>(tiles + 1).map_err(&alloc)?;
        let tiles64 = tiles as u64;
        let block = |grid: usize| LaunchConfig {
            grid_dim: (grid as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.func("csc_scan_blocks")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&counts).arg(&n64).arg(&mut starts).arg(&mut totals);
        // SAFETY: `tiles` blocks of 1024 cover the `n_cols` counts; `totals` has `tiles + 1`.
        unsafe { l.launch(block(tiles)) }.map_err(Self::launch_err("csc_scan_blocks"))?;
        let f = self.func("csc_scan_totals")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut totals).arg(&tiles64);
        // SAFETY: one block over the `tiles + 1` totals.
        unsafe { l.launch(block(1)) }.map_err(Self::launch_err("csc_scan_totals"))?;
        let f = self.func("csc_scan_finish")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut starts)
            .arg(&mut cursor)
            .arg(&totals)
            .arg(&n64)
            .arg(&tiles64);
        // SAFETY: `starts` has `n_cols + 1` elements, `cursor` `n_cols`.
        unsafe { l.launch(block(tiles)) }.map_err(Self::launch_err("csc_scan_finish"))?;
        if nnz > 0 && n_rows > 0 {
            let (vin, has_vals) = self.vals_arg(vals);
            let tv = match tvals.as_mut() {
                Some(v) => v,
                None => &mut self.dummy_out()?,
            };
            let f = self.func("csc_fill")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(offsets)
                .arg(cols)
                .arg(vin)
                .arg(&has_vals)
                .arg(&mut cursor)
                .arg(&mut rows)
                .arg(tv);
            // SAFETY: one block per row; positions come from the scan of the same columns.
            unsafe { l.launch(Self::cfg_grid(n_rows, 1)?) }
                .map_err(Self::launch_err("csc_fill"))?;
        }
        Ok(DeviceTranspose {
            starts,
            rows,
            vals: tvals,
        })
    }

    /// A one-element scratch output for kernels whose optional output is absent.
    fn dummy_out(&self) -> Result<CudaSlice<f32>> {
        self.stream.alloc_zeros(1).map_err(dev("allocating"))
    }

    fn bias_op(
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

    /// [`LossSpec::softmax_row_delta`] on every row.
    fn softmax_rows(
        &self,
        d: &mut CudaSlice<f32>,
        a: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        ce: bool,
    ) -> Result<()> {
        let (c, ce) = (cols as u64, i32::from(ce));
        let f = self.func("softmax_row_delta")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(d).arg(a).arg(&c).arg(&ce);
        // SAFETY: one block per row of `cols` elements.
        unsafe { l.launch(Self::cfg_grid(rows, 1)?) }
            .map(|_| ())
            .map_err(Self::launch_err("softmax_row_delta"))
    }
}
