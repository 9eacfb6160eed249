//! Activation forward (in place) and backward (Hadamard product with `f'`, or the SoftMax
//! Jacobian-vector product) over a batch, from the formulas of [`crate::ops::activation`].

use super::{for_each_row, multiversion, Isa, Par};
use crate::backend::traits::check_dim;
use crate::dense::{MatrixMut, MatrixRef};
use crate::error::Result;
use crate::ops::activation::{
    derivative, exp_shifted_row, forward, row_max, scale_row, sigmoid, softmax_backward,
    softmax_row_in_place,
};
use crate::ops::{Activation, ActivationParams};
use rayon::prelude::*;

/// `x ← f(x)` element-wise, or row-wise SoftMax. Parallel over rows.
pub fn activation_forward(mut x: MatrixMut, act: Activation, p: &ActivationParams, par: Par) {
    let n = x.cols();
    if act == Activation::Linear {
        return;
    }
    let isa = Isa::detect();
    for_each_row(par, x.data_mut(), n, |_, row| {
        forward_row_mv(isa, act, p, row)
    });
}

/// One row of [`activation_forward`]; the common output activations get their own loop so
/// that it vectorises (the same formula as every other element, so the same bits).
#[inline(always)]
fn forward_row(act: Activation, p: &ActivationParams, row: &mut [f32]) {
    match act {
        Activation::Sigmoid => row.iter_mut().for_each(|z| *z = sigmoid(*z)),
        Activation::SoftMax => softmax_row_in_place(row),
        _ => row.iter_mut().for_each(|z| *z = forward(act, *z, p)),
    }
}
multiversion!(fn forward_row_mv = forward_row(act: Activation, p: &ActivationParams, row: &mut [f32]));

/// Backward through the activation of a hidden layer, in place: with `delta = ∂L/∂a` on entry,
/// leaves `∂L/∂z`: `delta ⊙ f'(a)` element-wise, or the SoftMax Jacobian-vector product
/// `a ⊙ (delta − ⟨a, delta⟩)` per row. `a` is the layer's output, same shape as `delta`.
pub fn activation_backward(
    mut delta: MatrixMut,
    a: MatrixRef,
    act: Activation,
    p: &ActivationParams,
    par: Par,
) -> Result<()> {
    check_dim("activation backward: rows", delta.rows(), a.rows())?;
    check_dim("activation backward: cols", delta.cols(), a.cols())?;
    let n = a.cols();
    if act == Activation::Linear {
        return Ok(());
    }
    for_each_row(par, delta.data_mut(), n, |b, d| {
        let ar = a.row(b);
        if act == Activation::SoftMax {
            let g = d.to_vec();
            softmax_backward(d, ar, &g);
        } else {
            for (d, &a) in d.iter_mut().zip(ar) {
                *d *= derivative(act, a, p);
            }
        }
    });
    Ok(())
}

/// Per row of `x` its largest value into `max` (the first pass of a SoftMax split across
/// ranks). Parallel over rows.
pub fn row_maxima(x: MatrixRef, max: &mut [f32], par: Par) -> Result<()> {
    check_dim("row maxima: rows", max.len(), x.rows())?;
    let isa = Isa::detect();
    let cols = x.cols().max(1);
    let rows = x.data().par_chunks(cols).zip(max.par_iter_mut());
    let f = |(row, m): (&[f32], &mut f32)| *m = row_max_mv(isa, row);
    match par.threads() {
        0 | 1 => x.data().chunks(cols).zip(max.iter_mut()).for_each(f),
        _ => rows.for_each(f),
    }
    Ok(())
}
multiversion!(fn row_max_mv = row_max(row: &[f32]) -> f32);

/// Per row `b` of `x`: `x ← exp(x − shift[b])`, its sum in `f64` into `sums[b]`. Parallel
/// over rows.
pub fn exp_shifted_rows(mut x: MatrixMut, shift: &[f32], sums: &mut [f64], par: Par) -> Result<()> {
    check_dim("exp shifted rows: shifts", shift.len(), x.rows())?;
    check_dim("exp shifted rows: sums", sums.len(), x.rows())?;
    let isa = Isa::detect();
    let cols = x.cols().max(1);
    let f =
        |((row, &m), sum): ((&mut [f32], &f32), &mut f64)| *sum = exp_shifted_row_mv(isa, row, m);
    let data = x.data_mut();
    match par.threads() {
        0 | 1 => data
            .chunks_mut(cols)
            .zip(shift)
            .zip(sums.iter_mut())
            .for_each(f),
        _ => data
            .par_chunks_mut(cols)
            .zip(shift.par_iter())
            .zip(sums.par_iter_mut())
            .for_each(f),
    }
    Ok(())
}
multiversion!(fn exp_shifted_row_mv = exp_shifted_row(row: &mut [f32], shift: f32) -> f64);

/// Each row `b` of `x` scaled by `factors[b]` in `f64`. Parallel over rows.
pub fn scale_rows_exact(mut x: MatrixMut, factors: &[f64], par: Par) -> Result<()> {
    check_dim("scale rows: factors", factors.len(), x.rows())?;
    let isa = Isa::detect();
    let n = x.cols();
    for_each_row(par, x.data_mut(), n, |b, row| {
        scale_row_mv(isa, row, factors[b])
    });
    Ok(())
}
multiversion!(fn scale_row_mv = scale_row(row: &mut [f32], factor: f64));
