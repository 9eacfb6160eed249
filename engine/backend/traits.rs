//! The [`Backend`] trait: the primitives a network needs from a compute device.
//!
//! Composite layer logic (forward, backward, updates) is written once in
//! [`crate::network`], generic over `B: Backend`; a backend implements only these primitives.
//! Buffers are flat `f32` vectors owned by the device; a matrix argument is a buffer plus its
//! `rows x cols` row-major shape ([`Mat`]/[`MatMut`]), where `rows` may be smaller than the
//! buffer's capacity (the last, partial batch of an epoch uses a prefix of each buffer).
//!
//! Every primitive must give the same bits whatever the number of threads the device uses:
//! sums whose order could vary are taken in 64-bit fixed point.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::ops::activation::ActivationParams;
use crate::ops::fixed::FixedSum;
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::Hyper;
use crate::ops::{Activation, Optimizer};
use crate::sparse::{Csr, CsrView};

use crate::ops::Trans;

use super::host_default;

/// A read-only matrix on the device: the first `rows * cols` elements of `buf`, row-major.
#[derive(Debug)]
pub struct Mat<'a, V> {
    pub buf: &'a V,
    pub rows: usize,
    pub cols: usize,
}

impl<V> Clone for Mat<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Mat<'_, V> {}

/// A writable matrix on the device: the first `rows * cols` elements of `buf`, row-major.
#[derive(Debug)]
pub struct MatMut<'a, V> {
    pub buf: &'a mut V,
    pub rows: usize,
    pub cols: usize,
}

impl<'a, V> Mat<'a, V> {
    /// The matrix `rows x cols` at the start of `buf`.
    pub fn new(buf: &'a V, rows: usize, cols: usize) -> Self {
        Mat { buf, rows, cols }
    }
}

impl<'a, V> MatMut<'a, V> {
    /// The matrix `rows x cols` at the start of `buf`.
    pub fn new(buf: &'a mut V, rows: usize, cols: usize) -> Self {
        MatMut { buf, rows, cols }
    }
}

/// Which uniform numbers an inverted-dropout mask draws: element `(b, j)` of a `rows × cols`
/// matrix uses `uniform(seed, stream, b·row_stride + col_offset + j)`. A whole layer uses
/// `row_stride = cols`, `col_offset = 0`, i.e. the flat index ([`DropoutMask::whole`]); a
/// model-parallel shard holding units `start..start + cols` of a layer of `units` uses
/// `row_stride = units`, `col_offset = start`, so every unit draws the same number whatever
/// the rank count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutMask {
    pub seed: u64,
    pub stream: u64,
    pub col_offset: u64,
    pub row_stride: u64,
}

impl DropoutMask {
    /// The mask of a whole layer of `cols` units.
    pub fn whole(seed: u64, stream: u64, cols: usize) -> Self {
        DropoutMask {
            seed,
            stream,
            col_offset: 0,
            row_stride: cols as u64,
        }
    }

    /// Whether element `(b, j)` of a `cols`-wide matrix draws number `b·cols + j`.
    pub fn is_flat(&self, cols: usize) -> bool {
        self.col_offset == 0 && self.row_stride == cols as u64
    }

    /// The counter of element `(b, j)`.
    #[inline]
    pub fn index(&self, b: usize, j: usize) -> u64 {
        b as u64 * self.row_stride + self.col_offset + j as u64
    }
}

/// The primitives of a compute device. See the [module documentation](self).
pub trait Backend: Send + Sync {
    /// A flat `f32` buffer on the device.
    type Vector: Send + Sync;
    /// A minibatch of sparse rows on the device, with what the transposed gradient needs.
    type SparseBatch: Send + Sync;

    /// A short name for logs ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// A one-line description for logs (the device, its threads or model).
    fn description(&self) -> String {
        self.name().to_string()
    }

    /// Bytes the device can still allocate, when it can tell (the host's available memory
    /// for the CPU, free device memory for a GPU): what a network checks its buffers against
    /// before allocating them.
    fn available_memory(&self) -> Option<u64> {
        None
    }

    /// A buffer of `len` zeros. Errors ([`crate::Error::Device`]) when it cannot be
    /// allocated.
    fn zeros(&self, len: usize) -> Result<Self::Vector>;
    /// The values of `v` when they live in host memory (the CPU backend), so that a cross-rank
    /// step can use them in place instead of staging copies; `None` (the default) on a
    /// device.
    fn host_values<'v>(&self, v: &'v mut Self::Vector) -> Option<&'v mut [f32]> {
        let _ = v;
        None
    }
    /// [`Backend::host_values`], read-only.
    fn host_slice<'v>(&self, v: &'v Self::Vector) -> Option<&'v [f32]> {
        let _ = v;
        None
    }
    /// Copies `src` into the start of `dst` (which must be at least as long).
    fn upload(&self, dst: &mut Self::Vector, src: &[f32]) -> Result<()>;
    /// Copies the start of `src` into `dst` (`dst.len()` elements).
    fn download(&self, src: &Self::Vector, dst: &mut [f32]) -> Result<()>;
    /// Uploads a minibatch of sparse rows; `for_gradient` also prepares the transposed
    /// (per-feature) structure [`Backend::sparse_weight_gradient`] needs.
    fn upload_sparse(&self, rows: Csr, for_gradient: bool) -> Result<Self::SparseBatch>;

    /// `C = alpha·op(A)·op(B) + beta·C` (with `beta = 0`, `C` is not read).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        c: MatMut<Self::Vector>,
        alpha: f32,
        a: Mat<Self::Vector>,
        ta: Trans,
        b: Mat<Self::Vector>,
        tb: Trans,
        beta: f32,
    ) -> Result<()>;

    /// Sparse-input forward product `out = X·W + beta·out`, `X` the sparse batch
    /// (`out`: `[batch][n_out]`, `w`: `[n_in][n_out]`).
    fn spmm(
        &self,
        out: MatMut<Self::Vector>,
        x: &Self::SparseBatch,
        w: Mat<Self::Vector>,
        beta: f32,
    ) -> Result<()>;

    /// Transposed sparse weight gradient `dw = alpha·Xᵀ·delta + beta·dw`, summed in 64-bit
    /// fixed point.
    fn sparse_weight_gradient(
        &self,
        dw: MatMut<Self::Vector>,
        x: &Self::SparseBatch,
        delta: Mat<Self::Vector>,
        alpha: f32,
        beta: f32,
    ) -> Result<()>;

    /// Sets every row of `out` to `bias`.
    fn set_rows_to_bias(&self, out: MatMut<Self::Vector>, bias: &Self::Vector) -> Result<()>;
    /// `out[b, j] += bias[j]`.
    fn add_bias(&self, out: MatMut<Self::Vector>, bias: &Self::Vector) -> Result<()>;
    /// `db = alpha·Σ_b delta[b, :] + beta·db`, in fixed point.
    fn bias_gradient(
        &self,
        db: &mut Self::Vector,
        delta: Mat<Self::Vector>,
        alpha: f32,
        beta: f32,
    ) -> Result<()>;
    /// `dst += src` element-wise over the first `len` elements.
    fn add_assign(&self, dst: &mut Self::Vector, src: &Self::Vector, len: usize) -> Result<()>;
    /// Copies the first `len` elements of `src` into `dst`.
    fn copy(&self, dst: &mut Self::Vector, src: &Self::Vector, len: usize) -> Result<()>;

    /// `x ← f(x)` (element-wise, or row-wise SoftMax).
    fn activation_forward(
        &self,
        x: MatMut<Self::Vector>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()>;
    /// `delta ← delta ⊙ f'(a)` (or the SoftMax Jacobian-vector product).
    fn activation_backward(
        &self,
        delta: MatMut<Self::Vector>,
        a: Mat<Self::Vector>,
        act: Activation,
        p: &ActivationParams,
    ) -> Result<()>;
    /// Inverted dropout, training only: element `(b, j)` is dropped when
    /// `uniform(m.seed, m.stream, m.index(b, j)) < p` and set to `dropped_value`; kept
    /// elements are scaled by `1/(1−p)`. The mask is reproduced from `m` in
    /// [`Backend::dropout_backward_at`].
    fn dropout_forward_at(
        &self,
        x: MatMut<Self::Vector>,
        p: f32,
        dropped_value: f32,
        m: DropoutMask,
    ) -> Result<()>;
    /// The gradient through [`Backend::dropout_forward_at`]: dropped elements get 0, kept
    /// ones are scaled by `1/(1−p)` (dropout with dropped value 0 and the same mask).
    fn dropout_backward_at(
        &self,
        delta: MatMut<Self::Vector>,
        p: f32,
        m: DropoutMask,
    ) -> Result<()> {
        self.dropout_forward_at(delta, p, 0.0, m)
    }
    /// [`Backend::dropout_forward_at`] over a whole layer: element `i` of the row-major
    /// matrix draws `uniform(seed, stream, i)` ([`DropoutMask::whole`]).
    fn dropout_forward(
        &self,
        x: MatMut<Self::Vector>,
        p: f32,
        dropped_value: f32,
        seed: u64,
        stream: u64,
    ) -> Result<()> {
        let m = DropoutMask::whole(seed, stream, x.cols);
        self.dropout_forward_at(x, p, dropped_value, m)
    }
    /// [`Backend::dropout_backward_at`] over a whole layer.
    fn dropout_backward(
        &self,
        delta: MatMut<Self::Vector>,
        p: f32,
        seed: u64,
        stream: u64,
    ) -> Result<()> {
        let m = DropoutMask::whole(seed, stream, delta.cols);
        self.dropout_backward_at(delta, p, m)
    }

    /// Output delta `∂L/∂z` for sparse targets (two-pass scheme).
    fn sparse_output_delta(
        &self,
        delta: MatMut<Self::Vector>,
        a: Mat<Self::Vector>,
        targets: &Self::SparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<()>;
    /// Loss for sparse targets, in fixed point.
    fn sparse_output_loss(
        &self,
        a: Mat<Self::Vector>,
        targets: &Self::SparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum>;
    /// The training forward of an output layer with sparse targets, fused with its loss
    /// and delta: `z ← f(z)` ([`Backend::activation_forward`] with `spec`'s activation and
    /// parameters), then `delta` ← [`Backend::sparse_output_delta`] of the activations and
    /// the returned loss ← [`Backend::sparse_output_loss`], with their contracts and bits.
    /// The default runs those three primitives ([`sparse_output_forward_composed`]); a
    /// device may instead read `z` once where they make four passes over the
    /// `rows × units` matrix.
    fn sparse_output_forward(
        &self,
        z: MatMut<Self::Vector>,
        delta: MatMut<Self::Vector>,
        targets: &Self::SparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum> {
        sparse_output_forward_composed(self, z, delta, targets, spec, ignore_zero)
    }
    /// Output delta for dense targets.
    fn dense_output_delta(
        &self,
        delta: MatMut<Self::Vector>,
        a: Mat<Self::Vector>,
        t: Mat<Self::Vector>,
        spec: &LossSpec,
    ) -> Result<()>;
    /// Loss for dense targets, in fixed point.
    fn dense_output_loss(
        &self,
        a: Mat<Self::Vector>,
        t: Mat<Self::Vector>,
        spec: &LossSpec,
    ) -> Result<FixedSum>;
    /// Scales each row `b` of `x` by `weights[b]` (per-example data weights).
    fn scale_rows(&self, x: MatMut<Self::Vector>, weights: &[f32]) -> Result<()>;

    /// One optimizer update of the elements `range` of `w` with gradient `g` (the negative
    /// mean gradient) and state `s0`, `s1` (the same elements of each; a state the rule does
    /// not use may be shorter); `t` is the 1-based update count. Element-wise: updating a
    /// tensor in several ranges gives the bits of one update of the whole.
    #[allow(clippy::too_many_arguments)]
    fn optimizer_step(
        &self,
        w: &mut Self::Vector,
        g: &Self::Vector,
        s0: &mut Self::Vector,
        s1: &mut Self::Vector,
        range: Range<usize>,
        opt: Optimizer,
        h: &Hyper,
        t: u64,
    ) -> Result<()>;

    /// The sparseness penalty ([`crate::ops::norm::sparseness_penalty_delta`]'s contract):
    /// `delta[b, j] += β·(−p/ρ̂_j + (1−p)/(1−ρ̂_j))`, `ρ̂_j` the clamped column mean of `a`.
    /// The default runs the host formula on downloaded buffers.
    fn sparseness_penalty(
        &self,
        delta: MatMut<Self::Vector>,
        a: Mat<Self::Vector>,
        p: f32,
        beta: f32,
    ) -> Result<()> {
        let (rows, cols) = (delta.rows, delta.cols);
        let ah = download_mat(self, a)?;
        let mut dh = vec![0.0; rows * cols];
        self.download(delta.buf, &mut dh)?;
        crate::ops::norm::sparseness_penalty_delta(&mut dh, &ah, rows, cols, p, beta);
        self.upload(delta.buf, &dh)
    }

    /// The training forward of a variational bottleneck ([`crate::ops::variational::forward`]'s
    /// contract): `z` holds `μ` and receives the sample `μ + exp(½ℓ)·ε`, `mean` receives `μ`,
    /// `noise` receives `ε` (drawn at `m`'s counters); returns `β·Σ KL` in fixed point. The
    /// default runs on the host.
    fn variational_forward(
        &self,
        z: MatMut<Self::Vector>,
        log_var: &Self::Vector,
        mean: &mut Self::Vector,
        noise: &mut Self::Vector,
        m: DropoutMask,
        beta: f32,
    ) -> Result<FixedSum> {
        host_default::variational_forward(self, z, log_var, (mean, noise), m, beta)
    }

    /// The backward pass of [`Backend::variational_forward`]
    /// ([`crate::ops::variational::backward`]'s contract): `delta_mean` holds `∂L/∂z` and
    /// becomes `∂L/∂μ`; `delta_log_var` receives `∂L/∂ℓ`. The default runs on the host.
    fn variational_backward(
        &self,
        delta_mean: MatMut<Self::Vector>,
        delta_log_var: &mut Self::Vector,
        (mean, log_var, noise): (&Self::Vector, &Self::Vector, &Self::Vector),
        beta: f32,
    ) -> Result<()> {
        host_default::variational_backward(
            self,
            delta_mean,
            delta_log_var,
            (mean, log_var, noise),
            beta,
        )
    }

    /// `WeightNorm` ([`crate::ops::norm::clip_column_norms`]): every column of `w` whose L2
    /// norm exceeds `max_norm` is scaled down to it. The default runs on the host.
    fn clip_column_norms(&self, w: MatMut<Self::Vector>, max_norm: f32) -> Result<()> {
        host_default::clip_column_norms(self, w, max_norm)
    }

    /// The first pass of a SoftMax over rows split across ranks: per row of `x` its largest
    /// value into `max` ([`crate::ops::activation::row_max`]). The default runs on the host.
    fn row_maxima(&self, x: Mat<Self::Vector>, max: &mut [f32]) -> Result<()> {
        host_default::row_maxima(self, x, max)
    }

    /// The second pass of a split SoftMax: per row `b` of `x`, `x ← exp(x − shift[b])`, and
    /// `sums[b]` receives the row's sum in `f64`
    /// ([`crate::ops::activation::exp_shifted_row`]). The default runs on the host.
    fn exp_shifted_rows(
        &self,
        x: MatMut<Self::Vector>,
        shift: &[f32],
        sums: &mut [f64],
    ) -> Result<()> {
        host_default::exp_shifted_rows(self, x, shift, sums)
    }

    /// The last pass of a split SoftMax: each row `b` of `x` scaled by `factors[b]`, the
    /// product taken in `f64` ([`crate::ops::activation::scale_row`]). The default runs on
    /// the host.
    fn scale_rows_exact(&self, x: MatMut<Self::Vector>, factors: &[f64]) -> Result<()> {
        host_default::scale_rows_exact(self, x, factors)
    }

    /// `DeltaNorm` ([`crate::ops::norm::clip_row_norms`]): every row of `x` whose L2 norm
    /// exceeds `max_norm` is scaled down to it. The default runs on the host.
    fn clip_row_norms(&self, x: MatMut<Self::Vector>, max_norm: f32) -> Result<()> {
        host_default::clip_row_norms(self, x, max_norm)
    }

    /// Batch normalisation of `z` in place ([`crate::ops::norm::batch_norm_forward`]'s
    /// contract): `xhat` (at least `rows × cols`) receives the normalised values; `factor`
    /// `Some(f)` trains (batch statistics, running ones updated by `f`, `s.inv_std` saved),
    /// `None` infers with the running statistics. The default runs on the host.
    fn batch_norm_forward(
        &self,
        z: MatMut<Self::Vector>,
        xhat: &mut Self::Vector,
        s: BatchNormState<'_, Self::Vector>,
        factor: Option<f64>,
    ) -> Result<()> {
        let (rows, cols) = (z.rows, z.cols);
        let mut zh = vec![0.0; rows * cols];
        self.download(z.buf, &mut zh)?;
        let mut xh = vec![0.0; rows * cols];
        let get = |v: &Self::Vector| -> Result<Vec<f32>> {
            let mut h = vec![0.0; cols];
            self.download(v, &mut h)?;
            Ok(h)
        };
        let (scale, bias) = (get(s.scale)?, get(s.bias)?);
        let (mut rm, mut rv, mut inv) =
            (get(s.running_mean)?, get(s.running_var)?, get(s.inv_std)?);
        crate::ops::norm::batch_norm_forward(
            &mut zh,
            &mut xh,
            rows,
            cols,
            crate::ops::norm::BatchNormBuffers {
                scale: &scale,
                bias: &bias,
                running_mean: &mut rm,
                running_var: &mut rv,
                inv_std: &mut inv,
            },
            factor,
        );
        self.upload(z.buf, &zh)?;
        self.upload(xhat, &xh)?;
        if factor.is_some() {
            self.upload(s.running_mean, &rm)?;
            self.upload(s.running_var, &rv)?;
            self.upload(s.inv_std, &inv)?;
        }
        Ok(())
    }

    /// The gradient through a training [`Backend::batch_norm_forward`]
    /// ([`crate::ops::norm::batch_norm_backward`]'s contract): `delta` becomes `∂L/∂z`;
    /// `dscale`, `dbias` receive the negative mean gradients of `γ`, `β`. The default runs on
    /// the host.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        delta: MatMut<Self::Vector>,
        xhat: &Self::Vector,
        scale: &Self::Vector,
        inv_std: &Self::Vector,
        dscale: &mut Self::Vector,
        dbias: &mut Self::Vector,
    ) -> Result<()> {
        let (rows, cols) = (delta.rows, delta.cols);
        let mut dh = vec![0.0; rows * cols];
        self.download(delta.buf, &mut dh)?;
        let mut xh = vec![0.0; rows * cols];
        self.download(xhat, &mut xh)?;
        let (mut sc, mut inv) = (vec![0.0; cols], vec![0.0; cols]);
        self.download(scale, &mut sc)?;
        self.download(inv_std, &mut inv)?;
        let (mut ds, mut db) = (vec![0.0; cols], vec![0.0; cols]);
        crate::ops::norm::batch_norm_backward(
            &mut dh, &xh, rows, cols, &sc, &inv, &mut ds, &mut db,
        );
        self.upload(delta.buf, &dh)?;
        self.upload(dscale, &ds)?;
        self.upload(dbias, &db)
    }

    /// Exact top-K of each row of `scores` over its first `items` columns, with
    /// [`crate::topk::top_k_batch`]'s contract (higher score first, ties to the lower index,
    /// NaN and `exclude`d columns never selected, padding with [`crate::topk::NO_ITEM`] and
    /// `−∞`): `indices` and `out_scores` receive `k` entries per row. The default downloads
    /// the scores and selects on the host; device backends may select where the scores are.
    #[allow(clippy::too_many_arguments)]
    fn top_k(
        &self,
        scores: Mat<Self::Vector>,
        items: usize,
        k: usize,
        exclude: Option<CsrView<'_>>,
        indices: &mut [u32],
        out_scores: &mut [f32],
    ) -> Result<()> {
        top_k_on_host(self, scores, items, k, exclude, indices, out_scores)
    }
}

/// The per-unit buffers of a batch-normalised layer on the device (each `units` long; see
/// [`crate::ops::norm::BatchNormBuffers`]).
#[derive(Debug)]
pub struct BatchNormState<'a, V> {
    pub scale: &'a V,
    pub bias: &'a V,
    pub running_mean: &'a mut V,
    pub running_var: &'a mut V,
    pub inv_std: &'a mut V,
}

/// [`Backend::sparse_output_forward`] from its three primitives: the activation in place,
/// the loss, then the delta (the trait's default, and the fallback of devices for the cases
/// their fused kernels do not take).
pub fn sparse_output_forward_composed<B: Backend + ?Sized>(
    backend: &B,
    z: MatMut<B::Vector>,
    delta: MatMut<B::Vector>,
    targets: &B::SparseBatch,
    spec: &LossSpec,
    ignore_zero: bool,
) -> Result<FixedSum> {
    let (rows, cols) = (z.rows, z.cols);
    let a = z.buf;
    backend.activation_forward(
        MatMut::new(a, rows, cols),
        spec.activation,
        &spec.act_params,
    )?;
    let loss = backend.sparse_output_loss(Mat::new(a, rows, cols), targets, spec, ignore_zero)?;
    backend.sparse_output_delta(delta, Mat::new(a, rows, cols), targets, spec, ignore_zero)?;
    Ok(loss)
}

/// The `rows × cols` values of `m`, downloaded.
fn download_mat<B: Backend + ?Sized>(b: &B, m: Mat<B::Vector>) -> Result<Vec<f32>> {
    let mut h = vec![0.0; m.rows * m.cols];
    b.download(m.buf, &mut h)?;
    Ok(h)
}

/// [`Backend::top_k`] on the host: downloads the scores, keeps the first `items` columns of
/// each row and selects with [`crate::topk::top_k_batch`] (the default of the trait, and the
/// fallback of device backends for the cases their kernels do not take).
pub fn top_k_on_host<B: Backend + ?Sized>(
    backend: &B,
    scores: Mat<B::Vector>,
    items: usize,
    k: usize,
    exclude: Option<CsrView<'_>>,
    indices: &mut [u32],
    out_scores: &mut [f32],
) -> Result<()> {
    let mut all = vec![0.0; scores.rows * scores.cols];
    backend.download(scores.buf, &mut all)?;
    let compact: Vec<f32> = if items < scores.cols {
        all.chunks(scores.cols.max(1))
            .flat_map(|r| r[..items].iter().copied())
            .collect()
    } else {
        all
    };
    crate::topk::top_k_batch(&compact, items, k, exclude, 0, indices, out_scores)
}

/// An [`crate::Error::InvalidArgument`] naming `name` unless `got == expected`.
pub fn check_dim(name: &str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            name,
            format!("expected {expected}, got {got}"),
        ))
    }
}
