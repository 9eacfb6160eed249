//! [`Cuda`]: the [`Backend`] implementation on one CUDA device.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use cudarc::cublas::sys::cublasMath_t;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};

use super::choices::CudaChoices;
use super::kernels;
use super::staging::Staging;
use crate::backend::traits::check_dim;
use crate::backend::traits::{Backend, DropoutMask, Mat, MatMut};
use crate::error::{Error, Result};
use crate::ops::activation::ActivationParams;
use crate::ops::fixed::FixedSum;
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::Hyper;
use crate::ops::Trans;
use crate::ops::{Activation, Optimizer};
use crate::sparse::{Csr, CsrView};

/// Threads per block of every launch (the row kernels' reductions assume this power of two).
pub(super) const BLOCK: u32 = 256;
/// The largest K the device top-K sorts in shared memory (`TOPK_MAX` in cuda/sparse.cu);
/// larger K are selected on the host.
pub(super) const TOPK_MAX: usize = 2048;
/// Elements per block of the loss partial sums (`LOSS_BLOCK · LOSS_PER_THREAD` in loss.cu).
pub(super) const LOSS_SPAN: usize = 256 * 8;

/// The CUDA backend on one device (see the [module documentation](super)).
pub struct Cuda {
    pub(super) ctx: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    pub(super) blas: CudaBlas,
    pub(super) functions: HashMap<&'static str, CudaFunction>,
    /// A one-element buffer passed where a kernel takes an absent optional array.
    pub(super) dummy_f32: CudaSlice<f32>,
    pub(super) device_name: String,
    pub(super) sm_count: u32,
    /// The optional paths in use ([`Cuda::set_choices`]).
    pub(super) choices: CudaChoices,
    /// Pinned host buffers of [`CudaChoices::pinned_uploads`].
    pub(super) staging: Mutex<Staging>,
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
    pub(super) n_rows: usize,
    pub(super) n_cols: usize,
    /// No row lists a column twice (checked on the host at upload).
    pub(super) unique: bool,
    /// The most non-zeros in a row.
    pub(super) max_row_nnz: usize,
    pub(super) offsets: CudaSlice<u64>,
    pub(super) cols: CudaSlice<u32>,
    pub(super) vals: Option<CudaSlice<f32>>,
    pub(super) transposed: Option<DeviceTranspose>,
}

/// The batch by feature (CSC), built on the device: feature `f`'s entries are
/// `starts[f]..starts[f + 1]` of `rows`/`vals`, in an order that may vary from run to run
/// (the fixed-point gradient does not depend on it).
pub(super) struct DeviceTranspose {
    pub(super) starts: CudaSlice<u64>,
    pub(super) rows: CudaSlice<u32>,
    pub(super) vals: Option<CudaSlice<f32>>,
}

/// The C layout of `LossParams` in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct LossParams {
    pub(super) error: i32,
    pub(super) act: i32,
    pub(super) ap: ActParams,
    pub(super) one_target: f32,
    pub(super) zero_target: f32,
    pub(super) one_scale: f32,
    pub(super) zero_scale: f32,
    pub(super) boost_one: f32,
    pub(super) boost_zero: f32,
}

/// The C layout of `ActParams` in cuda/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct ActParams {
    pub(super) slope: f32,
    pub(super) alpha: f32,
    pub(super) lambda: f32,
}

/// The C layout of `Hyper` in cuda/common.cuh (with the step's Adam constants).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct DeviceHyper {
    pub(super) alpha: f32,
    pub(super) lambda: f32,
    pub(super) lambda1: f32,
    pub(super) mu: f32,
    pub(super) mu1: f32,
    pub(super) adam_m: f32,
    pub(super) adam_v: f32,
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

pub(super) fn dev(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Device(format!("{what}: {e}"))
}

pub(super) fn too_small(need: usize, have: usize) -> Error {
    Error::invalid_argument(
        "buffer",
        format!("a matrix of {need} elements does not fit a buffer of {have}"),
    )
}

pub(super) fn check_fits(len: usize, buf: usize) -> Result<()> {
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
        let staging = Staging::new(&ctx)?;
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
            staging: Mutex::new(staging),
            choices: CudaChoices::from_environment()?,
        })
    }

    /// Chooses the optional paths ([`CudaChoices`]); every choice gives the same bits.
    pub fn set_choices(&mut self, choices: CudaChoices) {
        self.choices = choices;
    }

    /// The optional paths in use ([`Cuda::set_choices`]).
    pub fn choices(&self) -> CudaChoices {
        self.choices
    }

    /// The device's name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// The stream every primitive is queued on.
    pub(super) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits until every queued primitive has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(dev("synchronizing"))
    }

    pub(super) fn func(&self, name: &'static str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| Error::Device(format!("kernel `{name}` is not loaded")))
    }

    /// A grid-stride launch over `n` elements.
    pub(super) fn cfg_elems(&self, n: usize) -> LaunchConfig {
        let blocks = n
            .div_ceil(BLOCK as usize)
            .clamp(1, self.sm_count as usize * 16);
        LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(super) fn cfg_grid(x: usize, y: usize) -> Result<LaunchConfig> {
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

    pub(super) fn upload_vec<T: DeviceRepr + ValidAsZeroBits + Clone + Default>(
        &self,
        host: &[T],
    ) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            return self.stream.alloc_zeros(1).map_err(dev("allocating"));
        }
        self.stream.clone_htod(host).map_err(dev("uploading"))
    }

    pub(super) fn vals_arg<'a>(
        &'a self,
        v: &'a Option<CudaSlice<f32>>,
    ) -> (&'a CudaSlice<f32>, i32) {
        match v {
            Some(v) => (v, 1),
            None => (&self.dummy_f32, 0),
        }
    }

    pub(super) fn launch_err(name: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
        move |e| Error::Device(format!("launching `{name}`: {e}"))
    }
}

pub(super) fn mat_len<V>(m: &Mat<V>) -> usize {
    m.rows * m.cols
}

impl Backend for Cuda {
    type Vector = CudaSlice<f32>;
    type SparseBatch = CudaSparseBatch;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn description(&self) -> String {
        let on = self.choices.names_on();
        let paths = if on.is_empty() {
            String::new()
        } else {
            format!(" (optional paths: {})", on.join(", "))
        };
        format!(
            "cuda device {}: {}{paths}",
            self.ctx.ordinal(),
            self.device_name
        )
    }

    /// The device's free memory (`cuMemGetInfo`).
    fn available_memory(&self) -> Option<u64> {
        self.ctx.mem_get_info().ok().map(|(free, _)| free as u64)
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
        self.upload_sparse_impl(rows, for_gradient)
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
        self.gemm_impl(c, alpha, a, ta, b, tb, beta)
    }

    fn spmm(
        &self,
        out: MatMut<CudaSlice<f32>>,
        x: &CudaSparseBatch,
        w: Mat<CudaSlice<f32>>,
        beta: f32,
    ) -> Result<()> {
        self.spmm_impl(out, x, w, beta)
    }

    fn sparse_weight_gradient(
        &self,
        dw: MatMut<CudaSlice<f32>>,
        x: &CudaSparseBatch,
        delta: Mat<CudaSlice<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        self.sparse_weight_gradient_impl(dw, x, delta, alpha, beta)
    }

    fn set_rows_to_bias(&self, out: MatMut<CudaSlice<f32>>, bias: &CudaSlice<f32>) -> Result<()> {
        self.set_rows_to_bias_impl(out, bias)
    }

    fn add_bias(&self, out: MatMut<CudaSlice<f32>>, bias: &CudaSlice<f32>) -> Result<()> {
        self.add_bias_impl(out, bias)
    }

    fn bias_gradient(
        &self,
        db: &mut CudaSlice<f32>,
        delta: Mat<CudaSlice<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        self.bias_gradient_impl(db, delta, alpha, beta)
    }

    fn add_assign(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>, len: usize) -> Result<()> {
        self.add_assign_impl(dst, src, len)
    }

    fn copy(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>, len: usize) -> Result<()> {
        self.copy_impl(dst, src, len)
    }

    fn activation_forward(
        &self,
        x: MatMut<CudaSlice<f32>>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()> {
        self.activation_forward_impl(x, act, p)
    }

    fn activation_backward(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        a: Mat<CudaSlice<f32>>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()> {
        self.activation_backward_impl(delta, a, act, p)
    }

    fn dropout_forward_at(
        &self,
        x: MatMut<CudaSlice<f32>>,
        p: f32,
        dropped_value: f32,
        m: DropoutMask,
    ) -> Result<()> {
        self.dropout_forward_impl(x, p, dropped_value, m)
    }

    fn sparse_output_delta(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        a: Mat<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<()> {
        self.sparse_output_delta_impl(delta, a, targets, spec, ignore_zero)
    }

    fn sparse_output_loss(
        &self,
        a: Mat<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum> {
        self.sparse_output_loss_impl(a, targets, spec, ignore_zero)
    }

    fn sparse_output_forward(
        &self,
        z: MatMut<CudaSlice<f32>>,
        delta: MatMut<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum> {
        self.sparse_output_forward_impl(z, delta, targets, spec, ignore_zero)
    }

    fn dense_output_delta(
        &self,
        delta: MatMut<CudaSlice<f32>>,
        a: Mat<CudaSlice<f32>>,
        t: Mat<CudaSlice<f32>>,
        spec: &LossSpec,
    ) -> Result<()> {
        self.dense_output_delta_impl(delta, a, t, spec)
    }

    fn dense_output_loss(
        &self,
        a: Mat<CudaSlice<f32>>,
        t: Mat<CudaSlice<f32>>,
        spec: &LossSpec,
    ) -> Result<FixedSum> {
        self.dense_output_loss_impl(a, t, spec)
    }

    fn scale_rows(&self, x: MatMut<CudaSlice<f32>>, weights: &[f32]) -> Result<()> {
        self.scale_rows_impl(x, weights)
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
            return crate::backend::traits::top_k_on_host(
                self, scores, items, k, exclude, indices, out_scores,
            );
        }
        if rows == 0 {
            return Ok(());
        }
        self.top_k_device(scores, items, k, exclude, indices, out_scores)
    }

    fn optimizer_step(
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
        self.optimizer_step_impl(w, g, s0, s1, range, opt, h, t)
    }
}
