//! Activation forward (in place) and backward (Hadamard product with `f'`, or the SoftMax
//! Jacobian-vector product) over a batch, from the formulas of [`crate::ops::activation`].

use super::{for_each_row, multiversion, Isa, Par};
use crate::backend::traits::check_dim;
use crate::dense::{MatrixMut, MatrixRef};
use crate::error::Result;
use crate::ops::activation::{
    derivative, forward, sigmoid, softmax_backward, softmax_row_in_place,
};
use crate::ops::{Activation, ActivationParams};

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
