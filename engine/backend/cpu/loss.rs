//! Output-layer loss and delta over a batch, for dense targets and for sparse (CSR) targets
//! with DSSTNE's two-pass scheme (`ops::loss` module docs). Losses are summed in fixed point:
//! each unit's loss enters as `to_fixed(L)`, so the total is the same bits on any number of
//! threads, and the sparse and dense paths give the same total for the same targets.

use super::{for_each_row, multiversion, sum_rows_i128, Isa, Par};
use crate::backend::traits::check_dim;
use crate::dense::{MatrixMut, MatrixRef};
use crate::error::Result;
use crate::ops::fixed::{to_fixed, FixedSum};
use crate::ops::{Activation, ErrorFunction, LossSpec};
use crate::sparse::CsrView;

#[inline(always)]
fn zero_delta(spec: &LossSpec, d: &mut [f32], a: &[f32]) {
    spec.fill_zero_target_delta(d, a)
}
multiversion!(fn zero_delta_mv = zero_delta(spec: &LossSpec, d: &mut [f32], a: &[f32]));

#[inline(always)]
fn zero_loss(spec: &LossSpec, a: &[f32]) -> i128 {
    spec.zero_target_loss_fixed(a)
}
multiversion!(fn zero_loss_mv = zero_loss(spec: &LossSpec, a: &[f32]) -> i128);

fn check_sparse(a: &MatrixRef, targets: &CsrView, what: &str) -> Result<()> {
    check_dim(
        &format!("{what}: target rows (batch)"),
        targets.n_rows(),
        a.rows(),
    )?;
    check_dim(
        &format!("{what}: target columns (n_out)"),
        targets.n_cols() as usize,
        a.cols(),
    )
}

/// The target value of the `k`-th non-zero of a target row (`t = value`, or
/// [`LossSpec::indicator_target`] for indicator targets).
#[inline]
fn target_value(spec: &LossSpec, vals: Option<&[f32]>, k: usize, nnz: usize) -> f32 {
    match vals {
        Some(v) => v[k],
        None => spec.indicator_target(nnz),
    }
}

/// The delta of one SoftMax output row with sparse targets: `∂L/∂a` (or, for CrossEntropy,
/// the targets) in two passes as for other outputs, then [`LossSpec::softmax_row_delta`].
/// With `ignore_zero`, units without a target contribute no gradient of their own.
fn softmax_sparse_row(
    spec: &LossSpec,
    d: &mut [f32],
    a: &[f32],
    (cols, vals): (&[u32], Option<&[f32]>),
    ignore_zero: bool,
) {
    let ce = spec.error == ErrorFunction::CrossEntropy;
    if ce || ignore_zero {
        d.fill(0.0);
    } else {
        d.iter_mut()
            .zip(a)
            .for_each(|(d, &a)| *d = spec.softmax_grad_a(a, 0.0));
    }
    for (k, &c) in cols.iter().enumerate() {
        let t = target_value(spec, vals, k, cols.len());
        let c = c as usize;
        d[c] = if ce { t } else { spec.softmax_grad_a(a[c], t) };
    }
    spec.softmax_row_delta(d, a);
}

/// Output delta for sparse targets, two passes per row: every unit gets
/// `spec.zero_target_delta(a)` (or 0 when `ignore_zero`, DSSTNE's `SparseIgnoreZero`), then the
/// row's non-zeros are overwritten with `spec.unit_delta(a, t)`. `delta` and `a` are
/// `[batch][n_out]`; `targets` has `batch` rows and `n_out` columns. Parallel over rows.
pub fn sparse_output_delta(
    mut delta: MatrixMut,
    a: MatrixRef,
    targets: CsrView,
    spec: &LossSpec,
    ignore_zero: bool,
    par: Par,
) -> Result<()> {
    check_sparse(&a, &targets, "sparse output delta")?;
    check_dim("sparse output delta: delta rows", delta.rows(), a.rows())?;
    check_dim("sparse output delta: delta cols", delta.cols(), a.cols())?;
    let n = a.cols();
    let isa = Isa::detect();
    let softmax = spec.activation == Activation::SoftMax;
    for_each_row(par, delta.data_mut(), n, |b, d| {
        let ar = a.row(b);
        if softmax {
            softmax_sparse_row(spec, d, ar, targets.row(b), ignore_zero);
            return;
        }
        if ignore_zero {
            d.fill(0.0);
        } else {
            zero_delta_mv(isa, spec, d, ar);
        }
        let (cols, vals) = targets.row(b);
        for (k, &c) in cols.iter().enumerate() {
            let t = target_value(spec, vals, k, cols.len());
            d[c as usize] = spec.unit_delta(ar[c as usize], t);
        }
    });
    Ok(())
}

/// Loss for sparse targets, two passes per row: `Σ_units fixed(L(a, 0))` (skipped when
/// `ignore_zero`), then for every non-zero `fixed(L(a, t)) − fixed(L(a, 0))` (or
/// `fixed(L(a, t))` when `ignore_zero`). A column listed twice in a row counts twice.
pub fn sparse_output_loss(
    a: MatrixRef,
    targets: CsrView,
    spec: &LossSpec,
    ignore_zero: bool,
    par: Par,
) -> Result<FixedSum> {
    check_sparse(&a, &targets, "sparse output loss")?;
    let isa = Isa::detect();
    let sum = sum_rows_i128(par, a.rows(), |b| {
        let ar = a.row(b);
        let mut row: i128 = 0;
        if !ignore_zero {
            row += zero_loss_mv(isa, spec, ar);
        }
        let (cols, vals) = targets.row(b);
        for (k, &c) in cols.iter().enumerate() {
            let t = target_value(spec, vals, k, cols.len());
            let a = ar[c as usize];
            row += to_fixed(spec.unit_loss(a, t)) as i128;
            if !ignore_zero {
                row -= to_fixed(spec.zero_target_loss(a)) as i128;
            }
        }
        row
    });
    Ok(FixedSum(sum))
}

fn check_dense(a: &MatrixRef, t: &MatrixRef, what: &str) -> Result<()> {
    check_dim(&format!("{what}: target rows"), t.rows(), a.rows())?;
    check_dim(&format!("{what}: target cols"), t.cols(), a.cols())
}

/// Output delta for dense targets: `delta[b, j] = spec.unit_delta(a[b, j], t[b, j])`.
pub fn dense_output_delta(
    mut delta: MatrixMut,
    a: MatrixRef,
    t: MatrixRef,
    spec: &LossSpec,
    par: Par,
) -> Result<()> {
    check_dense(&a, &t, "dense output delta")?;
    check_dim("dense output delta: delta rows", delta.rows(), a.rows())?;
    check_dim("dense output delta: delta cols", delta.cols(), a.cols())?;
    let n = a.cols();
    let softmax = spec.activation == Activation::SoftMax;
    let ce = spec.error == ErrorFunction::CrossEntropy;
    for_each_row(par, delta.data_mut(), n, |b, d| {
        for ((d, &a), &t) in d.iter_mut().zip(a.row(b)).zip(t.row(b)) {
            *d = match (softmax, ce) {
                (false, _) => spec.unit_delta(a, t),
                (true, true) => t,
                (true, false) => spec.softmax_grad_a(a, t),
            };
        }
        if softmax {
            spec.softmax_row_delta(d, a.row(b));
        }
    });
    Ok(())
}

/// Loss for dense targets: `Σ_{b, j} fixed(L(a[b, j], t[b, j]))`.
pub fn dense_output_loss(
    a: MatrixRef,
    t: MatrixRef,
    spec: &LossSpec,
    par: Par,
) -> Result<FixedSum> {
    check_dense(&a, &t, "dense output loss")?;
    let sum = sum_rows_i128(par, a.rows(), |b| {
        a.row(b)
            .iter()
            .zip(t.row(b))
            .map(|(&a, &t)| to_fixed(spec.unit_loss(a, t)) as i128)
            .sum::<i128>()
    });
    Ok(FixedSum(sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, ErrorFunction};

    /// The loss row helpers give the same bits at every vector-extension level.
    #[test]
    fn loss_rows_agree_across_isa_levels() {
        let a: Vec<f32> = (0..5000)
            .map(|i| crate::rng::uniform_f32(5, 0, i))
            .collect();
        for error in [
            ErrorFunction::CrossEntropy,
            ErrorFunction::ScaledMarginalCrossEntropy,
            ErrorFunction::L2,
        ] {
            let spec = LossSpec::new(error, Activation::Sigmoid);
            let base_loss = spec.zero_target_loss_fixed(&a);
            let mut base_delta = vec![0.0; a.len()];
            spec.fill_zero_target_delta(&mut base_delta, &a);
            for isa in Isa::available() {
                assert_eq!(zero_loss_mv(isa, &spec, &a), base_loss, "{isa:?}");
                let mut d = vec![0.0; a.len()];
                zero_delta_mv(isa, &spec, &mut d, &a);
                assert_eq!(d, base_delta, "{isa:?}");
            }
        }
    }
}
