//! Output deltas and losses of [`Cuda`] (cuda/loss.cu): dense and sparse targets, the two-pass
//! sparse scheme, SoftMax rows, fixed-point loss totals summed exactly on the host.

use cudarc::driver::{CudaSlice, CudaViewMut, PushKernelArg};

use super::backend::{check_fits, dev, mat_len, Cuda};
use super::backend::{ActParams, CudaSparseBatch, LossParams, LOSS_SPAN};
use crate::backend::traits::check_dim;
use crate::backend::traits::{sparse_output_forward_composed, Mat, MatMut};
use crate::error::Result;
use crate::ops::fixed::FixedSum;
use crate::ops::loss::LossSpec;
use crate::ops::{Activation, ErrorFunction};

impl Cuda {
    pub(super) fn sparse_output_delta_impl(
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
        let mode = target_mode(softmax, ce);
        self.sparse_target_delta(delta.buf, a, targets, &p, mode)?;
        if softmax {
            self.softmax_rows(delta.buf, a.buf, a.rows, a.cols, ce)?;
        }
        Ok(())
    }

    pub(super) fn sparse_output_loss_impl(
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
            self.sparse_loss_rows(&mut per_row.slice_mut(..), a, targets, &p, ignore_zero)?;
            total = total.wrapping_add(self.sum_partials(&per_row, a.rows)?);
        }
        Ok(FixedSum(total))
    }

    /// [`crate::backend::Backend::sparse_output_forward`]: for non-SoftMax outputs, when
    /// enabled ([`super::CudaChoices::fused_output`]), one pass over `z` (`output_zero_pass`: the
    /// activation, the zero-target deltas and loss terms) then the non-zeros' deltas and loss
    /// terms (`sparse_target_delta`, `sparse_loss_rows`), with one download of the loss
    /// partials; otherwise the composed primitives. The same bits either way: the element
    /// formulas are the same functions, and the loss is an exact integer sum.
    pub(super) fn sparse_output_forward_impl(
        &self,
        z: MatMut<CudaSlice<f32>>,
        delta: MatMut<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        spec: &LossSpec,
        ignore_zero: bool,
    ) -> Result<FixedSum> {
        if !self.choices.fused_output || spec.activation == Activation::SoftMax {
            return sparse_output_forward_composed(self, z, delta, targets, spec, ignore_zero);
        }
        check_dim("sparse output forward: target rows", targets.n_rows, z.rows)?;
        check_dim("sparse output forward: target cols", targets.n_cols, z.cols)?;
        check_dim("sparse output forward: delta rows", delta.rows, z.rows)?;
        check_dim("sparse output forward: delta cols", delta.cols, z.cols)?;
        let (rows, cols) = (z.rows, z.cols);
        let len = rows * cols;
        check_fits(len, delta.buf.len().min(z.buf.len()))?;
        if len == 0 {
            return Ok(FixedSum(0));
        }
        let cfg = self.cfg_elems(len);
        let blocks = cfg.grid_dim.0 as usize;
        // The pass's per-block partials, then one per row for the non-zeros.
        let mut partials = self
            .stream
            .alloc_zeros::<i64>(blocks + rows)
            .map_err(dev("allocating"))?;
        let p = LossParams::from(spec);
        let (n, act, ap, iz) = (
            len as u64,
            spec.activation as i32,
            ActParams::from(&spec.act_params),
            i32::from(ignore_zero),
        );
        let f = self.func("output_zero_pass")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *z.buf)
            .arg(&mut *delta.buf)
            .arg(&mut partials)
            .arg(&n)
            .arg(&act)
            .arg(&ap)
            .arg(&p)
            .arg(&iz);
        // SAFETY: `z` and `delta` hold `len` elements, `partials` one per block; the block
        // size is BLOCK = LOSS_BLOCK, the kernel's shared reduction width.
        unsafe { l.launch(cfg) }.map_err(Self::launch_err("output_zero_pass"))?;
        let a = Mat::new(&*z.buf, rows, cols);
        self.sparse_target_delta(delta.buf, a, targets, &p, target_mode(false, false))?;
        self.sparse_loss_rows(
            &mut partials.slice_mut(blocks..),
            a,
            targets,
            &p,
            ignore_zero,
        )?;
        Ok(FixedSum(self.sum_partials(&partials, blocks + rows)?))
    }

    /// Pass 2 of the sparse-target delta: each row's non-zeros overwrite their deltas
    /// (`mode`: [`target_mode`]).
    fn sparse_target_delta(
        &self,
        delta: &mut CudaSlice<f32>,
        a: Mat<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        p: &LossParams,
        mode: i32,
    ) -> Result<()> {
        let (rows, cols) = (a.rows as u64, a.cols as u64);
        let (vals, has_vals) = self.vals_arg(&targets.vals);
        let unique = i32::from(targets.unique);
        let f = self.func("sparse_target_delta")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(delta)
            .arg(a.buf)
            .arg(&targets.offsets)
            .arg(&targets.cols)
            .arg(vals)
            .arg(&has_vals)
            .arg(&rows)
            .arg(&cols)
            .arg(p)
            .arg(&mode)
            .arg(&unique);
        let cfg = Self::cfg_grid(a.rows, 1)?;
        // SAFETY: target columns are below `cols` (checked shapes, CSR invariant).
        unsafe { l.launch(cfg) }.map_err(Self::launch_err("sparse_target_delta"))?;
        Ok(())
    }

    /// Each row's loss terms over its non-zeros, `fixed(L(a, t)) − fixed(L(a, 0))` (or the
    /// first alone with `ignore_zero`), into `out[b]` (at least `a.rows` long).
    fn sparse_loss_rows(
        &self,
        out: &mut CudaViewMut<'_, i64>,
        a: Mat<CudaSlice<f32>>,
        targets: &CudaSparseBatch,
        p: &LossParams,
        ignore_zero: bool,
    ) -> Result<()> {
        check_fits(a.rows, out.len())?;
        let (rows, cols, iz) = (a.rows as u64, a.cols as u64, i32::from(ignore_zero));
        let (vals, has_vals) = self.vals_arg(&targets.vals);
        let f = self.func("sparse_loss_rows")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(out)
            .arg(a.buf)
            .arg(&targets.offsets)
            .arg(&targets.cols)
            .arg(vals)
            .arg(&has_vals)
            .arg(&rows)
            .arg(&cols)
            .arg(p)
            .arg(&iz);
        let cfg = Self::cfg_grid(a.rows, 1)?;
        // SAFETY: `out` has at least `rows` elements; target columns are below `cols`.
        unsafe { l.launch(cfg) }.map_err(Self::launch_err("sparse_loss_rows"))?;
        Ok(())
    }

    pub(super) fn dense_output_delta_impl(
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
        let mode = target_mode(softmax, ce);
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

    pub(super) fn dense_output_loss_impl(
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

    /// [`LossSpec::softmax_row_delta`] on every row.
    pub(super) fn softmax_rows(
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

    /// Σ fixed(L(a, t)) over `n` elements (`t` absent: every target 0).
    pub(super) fn loss_total(
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

    /// Sums i64 partials downloaded from the device in i128 (the CPU's order-free total).
    pub(super) fn sum_partials(&self, partials: &CudaSlice<i64>, len: usize) -> Result<i128> {
        let mut host = vec![0i64; partials.len()];
        self.stream
            .memcpy_dtoh(partials, &mut host)
            .map_err(dev("downloading a loss"))?;
        self.synchronize()?;
        Ok(host[..len].iter().map(|&x| x as i128).sum())
    }
}

/// The `mode` of the target-delta kernels (cuda/loss.cu): 0 `unit_delta` (non-SoftMax), 1 the
/// target itself (SoftMax + CrossEntropy, finished by the row's closed form), 2
/// `softmax_grad_a` (other SoftMax pairs, finished by the Jacobian-vector product).
fn target_mode(softmax: bool, ce: bool) -> i32 {
    match (softmax, ce) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => 2,
    }
}
