//! The host defaults of [`Backend`] primitives a device may leave to the host: download the
//! operands, apply the reference math of [`crate::ops`], upload the results. The CPU backend
//! (whose buffers are host memory) overrides them in place.

use super::traits::{Backend, DropoutMask, Mat, MatMut};
use crate::error::Result;
use crate::ops::activation::{exp_shifted_row, row_max, scale_row};
use crate::ops::fixed::FixedSum;

/// `v`'s first `len` values on the host.
fn host<B: Backend + ?Sized>(b: &B, v: &B::Vector, len: usize) -> Result<Vec<f32>> {
    let mut h = vec![0.0; len];
    b.download(v, &mut h)?;
    Ok(h)
}

/// [`Backend::variational_forward`] on the host.
pub(super) fn variational_forward<B: Backend + ?Sized>(
    b: &B,
    z: MatMut<B::Vector>,
    log_var: &B::Vector,
    (mean, noise): (&mut B::Vector, &mut B::Vector),
    m: DropoutMask,
    beta: f32,
) -> Result<FixedSum> {
    let (rows, cols) = (z.rows, z.cols);
    let len = rows * cols;
    let (mut zh, lh) = (host(b, z.buf, len)?, host(b, log_var, len)?);
    let (mut mh, mut nh) = (vec![0.0; len], vec![0.0; len]);
    let kl =
        crate::ops::variational::forward(&mut zh, &lh, &mut mh, &mut nh, (rows, cols), m, beta);
    b.upload(z.buf, &zh)?;
    b.upload(mean, &mh)?;
    b.upload(noise, &nh)?;
    Ok(kl)
}

/// [`Backend::variational_backward`] on the host.
pub(super) fn variational_backward<B: Backend + ?Sized>(
    b: &B,
    delta_mean: MatMut<B::Vector>,
    delta_log_var: &mut B::Vector,
    (mean, log_var, noise): (&B::Vector, &B::Vector, &B::Vector),
    beta: f32,
) -> Result<()> {
    let len = delta_mean.rows * delta_mean.cols;
    let mut dm = host(b, delta_mean.buf, len)?;
    let (mh, lh, nh) = (
        host(b, mean, len)?,
        host(b, log_var, len)?,
        host(b, noise, len)?,
    );
    let mut dl = vec![0.0; len];
    crate::ops::variational::backward(&mut dm, &mut dl, &mh, &lh, &nh, beta);
    b.upload(delta_mean.buf, &dm)?;
    b.upload(delta_log_var, &dl)
}

/// [`Backend::clip_column_norms`] on the host.
pub(super) fn clip_column_norms<B: Backend + ?Sized>(
    b: &B,
    w: MatMut<B::Vector>,
    max_norm: f32,
) -> Result<()> {
    let (rows, cols) = (w.rows, w.cols);
    let mut h = host(b, w.buf, rows * cols)?;
    crate::ops::norm::clip_column_norms(&mut h, rows, cols, max_norm);
    b.upload(w.buf, &h)
}

/// [`Backend::clip_row_norms`] on the host.
pub(super) fn clip_row_norms<B: Backend + ?Sized>(
    b: &B,
    x: MatMut<B::Vector>,
    max_norm: f32,
) -> Result<()> {
    let (rows, cols) = (x.rows, x.cols);
    let mut h = host(b, x.buf, rows * cols)?;
    crate::ops::norm::clip_row_norms(&mut h, rows, cols, max_norm);
    b.upload(x.buf, &h)
}

/// [`Backend::row_maxima`] on the host.
pub(super) fn row_maxima<B: Backend + ?Sized>(
    b: &B,
    x: Mat<B::Vector>,
    max: &mut [f32],
) -> Result<()> {
    let h = host(b, x.buf, x.rows * x.cols)?;
    for (m, row) in max.iter_mut().zip(h.chunks(x.cols.max(1))) {
        *m = row_max(row);
    }
    Ok(())
}

/// [`Backend::exp_shifted_rows`] on the host.
pub(super) fn exp_shifted_rows<B: Backend + ?Sized>(
    b: &B,
    x: MatMut<B::Vector>,
    shift: &[f32],
    sums: &mut [f64],
) -> Result<()> {
    let mut h = host(b, x.buf, x.rows * x.cols)?;
    let rows = h.chunks_mut(x.cols.max(1)).zip(shift).zip(sums.iter_mut());
    for ((row, &m), sum) in rows {
        *sum = exp_shifted_row(row, m);
    }
    b.upload(x.buf, &h)
}

/// [`Backend::scale_rows_exact`] on the host.
pub(super) fn scale_rows_exact<B: Backend + ?Sized>(
    b: &B,
    x: MatMut<B::Vector>,
    factors: &[f64],
) -> Result<()> {
    let mut h = host(b, x.buf, x.rows * x.cols)?;
    for (row, &f) in h.chunks_mut(x.cols.max(1)).zip(factors) {
        scale_row(row, f);
    }
    b.upload(x.buf, &h)
}
