//! Dense kernels: GEMM through the `gemm` crate (the three products of a fully connected
//! layer: `X·W`, `Δ·Wᵀ`, `Xᵀ·Δ`), bias fill/add, and the bias gradient in fixed point.

use super::{for_each_row, multiversion, Isa, Par};
use crate::backend::traits::check_dim;
use crate::dense::{MatrixMut, MatrixRef};
use crate::error::Result;
use crate::ops::fixed::{scaled_from_fixed, to_fixed};
use rayon::prelude::*;

use crate::ops::Trans;

/// `(rows, cols, row stride, column stride)` of `op(m)` for a row-major `m`.
fn op_shape(m: &MatrixRef, t: Trans) -> (usize, usize, isize, isize) {
    match t {
        Trans::No => (m.rows(), m.cols(), m.cols() as isize, 1),
        Trans::Yes => (m.cols(), m.rows(), 1, m.cols() as isize),
    }
}

/// `C = alpha·op(A)·op(B) + beta·C`, row-major, where `op` transposes per `ta`/`tb`.
/// With `beta = 0`, `C` is overwritten and never read. Shapes: `op(A)` is `m x k`,
/// `op(B)` is `k x n`, `C` is `m x n`. Runs on the `gemm` crate with `par`
/// (`gemm::Parallelism::Rayon(n)` on the current pool); its results are the same bits for any
/// thread count.
///
/// The three products of a layer with `X: [batch][n_in]`, `W: [n_in][n_out]`,
/// `Δ: [batch][n_out]`: forward `Z = X·W` (`No, No`), backward `Δ_in = Δ·Wᵀ` (`No, Yes`),
/// weight gradient `dW = Xᵀ·Δ` (`Yes, No`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    mut c: MatrixMut,
    alpha: f32,
    a: MatrixRef,
    ta: Trans,
    b: MatrixRef,
    tb: Trans,
    beta: f32,
    par: Par,
) -> Result<()> {
    let (m, k, a_rs, a_cs) = op_shape(&a, ta);
    let (kb, n, b_rs, b_cs) = op_shape(&b, tb);
    check_dim("gemm: inner dimensions (k)", kb, k)?;
    check_dim("gemm: C rows (m)", c.rows(), m)?;
    check_dim("gemm: C cols (n)", c.cols(), n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // The product is zero: C = beta·C.
        let data = c.data_mut();
        if beta == 0.0 {
            data.fill(0.0);
        } else {
            data.iter_mut().for_each(|x| *x *= beta);
        }
        return Ok(());
    }
    let c_rs = n as isize;
    // SAFETY: the shape checks above make every (row, col) visited by the product lie inside
    // the three slices with the strides given; `c` is a unique borrow, so it aliases neither
    // `a` nor `b`. gemm computes dst = alpha'·dst + beta'·lhs·rhs, reading dst only when
    // `read_dst` is true.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data_mut().as_mut_ptr(),
            1,
            c_rs,
            beta != 0.0,
            a.data().as_ptr(),
            a_cs,
            a_rs,
            b.data().as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            par.to_gemm(),
        );
    }
    Ok(())
}

/// Weight gradient for a dense input: `dw = alpha·xᵀ·delta + beta·dw` (`x: [batch][n_in]`,
/// `delta: [batch][n_out]`, `dw: [n_in][n_out]`). A float GEMM (deterministic across thread
/// counts, but not the fixed-point sum of [`super::sparse_weight_gradient`]).
pub fn dense_weight_gradient(
    dw: MatrixMut,
    x: MatrixRef,
    delta: MatrixRef,
    alpha: f32,
    beta: f32,
    par: Par,
) -> Result<()> {
    gemm(dw, alpha, x, Trans::Yes, delta, Trans::No, beta, par)
}

/// Sets every row of `out` to `bias` (DSSTNE's `kClearUnit`, before products accumulate
/// with `beta = 1`).
pub fn set_rows_to_bias(mut out: MatrixMut, bias: &[f32], par: Par) -> Result<()> {
    check_dim("bias length", bias.len(), out.cols())?;
    let n = out.cols();
    for_each_row(par, out.data_mut(), n, |_, row| row.copy_from_slice(bias));
    Ok(())
}

/// `out[b, j] += bias[j]` for every row `b`.
pub fn add_bias(mut out: MatrixMut, bias: &[f32], par: Par) -> Result<()> {
    check_dim("bias length", bias.len(), out.cols())?;
    let n = out.cols();
    for_each_row(par, out.data_mut(), n, |_, row| {
        row.iter_mut().zip(bias).for_each(|(x, &b)| *x += b);
    });
    Ok(())
}

/// Columns of the bias gradient handled per task.
const BIAS_CHUNK: usize = 32;

/// `acc[j] += to_fixed(delta[b, j0 + j])` over all rows `b`.
#[inline(always)]
fn column_sums(acc: &mut [i64], dd: &[f32], n: usize, j0: usize, rows: usize) {
    for b in 0..rows {
        let d = &dd[b * n + j0..b * n + j0 + acc.len()];
        for (a, &x) in acc.iter_mut().zip(d) {
            *a = a.wrapping_add(to_fixed(x));
        }
    }
}
multiversion!(fn column_sums_mv = column_sums(acc: &mut [i64], dd: &[f32], n: usize, j0: usize, rows: usize));

/// Bias gradient in fixed point: `db[j] = beta·db[j] + alpha·Σ_b delta[b, j]`, each term
/// entering as `to_fixed(delta[b, j])`, the total leaving as `alpha·sum·2⁻³⁰`. DSSTNE uses
/// `alpha = −1/batch` (the negative mean delta, ready for `ops::optimizer::update` with
/// `λ = λ1 = 0`). With `beta = 0`, `db` is overwritten. Parallel over columns.
pub fn bias_gradient(
    db: &mut [f32],
    delta: MatrixRef,
    alpha: f32,
    beta: f32,
    par: Par,
) -> Result<()> {
    check_dim("bias gradient length", db.len(), delta.cols())?;
    let n = delta.cols();
    let rows = delta.rows();
    let dd = delta.data();
    let isa = Isa::detect();
    let work = |(ci, chunk): (usize, &mut [f32])| {
        let mut acc = [0i64; BIAS_CHUNK];
        column_sums_mv(isa, &mut acc[..chunk.len()], dd, n, ci * BIAS_CHUNK, rows);
        for (o, &s) in chunk.iter_mut().zip(&acc) {
            let g = scaled_from_fixed(alpha, s);
            *o = if beta == 0.0 { g } else { beta * *o + g };
        }
    };
    if par.threads() <= 1 {
        db.chunks_mut(BIAS_CHUNK).enumerate().for_each(work);
    } else {
        db.par_chunks_mut(BIAS_CHUNK).enumerate().for_each(work);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::Matrix;

    fn naive(a: &Matrix, ta: Trans, b: &Matrix, tb: Trans) -> Matrix {
        let a = if ta == Trans::Yes {
            a.transposed()
        } else {
            a.clone()
        };
        let b = if tb == Trans::Yes {
            b.transposed()
        } else {
            b.clone()
        };
        Matrix::from_fn(a.rows(), b.cols(), |i, j| {
            (0..a.cols())
                .map(|p| a.get(i, p) as f64 * b.get(p, j) as f64)
                .sum::<f64>() as f32
        })
    }

    fn rnd(rows: usize, cols: usize, seed: u64) -> Matrix {
        Matrix::from_fn(rows, cols, |r, c| {
            crate::rng::uniform_f32(seed, 0, (r * cols + c) as u64) - 0.5
        })
    }

    #[test]
    fn gemm_matches_naive_for_all_transposes_alpha_and_beta() {
        let (m, k, n) = (7, 13, 5);
        for (ta, tb) in [
            (Trans::No, Trans::No),
            (Trans::No, Trans::Yes),
            (Trans::Yes, Trans::No),
            (Trans::Yes, Trans::Yes),
        ] {
            let a = if ta == Trans::No {
                rnd(m, k, 1)
            } else {
                rnd(k, m, 1)
            };
            let b = if tb == Trans::No {
                rnd(k, n, 2)
            } else {
                rnd(n, k, 2)
            };
            let expect = naive(&a, ta, &b, tb);
            let c0 = rnd(m, n, 3);
            for (alpha, beta) in [(1.0f32, 0.0f32), (-0.5, 1.0), (2.0, 0.25)] {
                let mut c = c0.clone();
                gemm(
                    c.as_mut(),
                    alpha,
                    a.as_ref(),
                    ta,
                    b.as_ref(),
                    tb,
                    beta,
                    Par::Seq,
                )
                .unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let e = alpha * expect.get(i, j) + beta * c0.get(i, j);
                        assert!((c.get(i, j) - e).abs() < 1e-5, "{ta:?}{tb:?} {i},{j}");
                    }
                }
            }
        }
        // beta = 0 never reads C (NaN stays out).
        let mut c = Matrix::filled(2, 2, f32::NAN);
        let (a, b) = (rnd(2, 3, 4), rnd(3, 2, 5));
        gemm(
            c.as_mut(),
            1.0,
            a.as_ref(),
            Trans::No,
            b.as_ref(),
            Trans::No,
            0.0,
            Par::Seq,
        )
        .unwrap();
        assert!(c.data().iter().all(|x| x.is_finite()));
        // k = 0 and shape errors.
        let e = Matrix::zeros(2, 0);
        let mut c = Matrix::filled(2, 2, 3.0);
        let e2 = Matrix::zeros(0, 2);
        gemm(
            c.as_mut(),
            1.0,
            e.as_ref(),
            Trans::No,
            e2.as_ref(),
            Trans::No,
            0.5,
            Par::Seq,
        )
        .unwrap();
        assert_eq!(c.data(), &[1.5; 4]);
        assert!(gemm(
            c.as_mut(),
            1.0,
            a.as_ref(),
            Trans::No,
            a.as_ref(),
            Trans::No,
            0.0,
            Par::Seq
        )
        .is_err());
    }

    #[test]
    fn bias_helpers() {
        let delta = rnd(9, 40, 6);
        let mut db = vec![1.0f32; 40];
        bias_gradient(&mut db, delta.as_ref(), -0.5, 1.0, Par::Rayon(2)).unwrap();
        for (j, &g) in db.iter().enumerate() {
            let s: f64 = (0..9).map(|b| delta.get(b, j) as f64).sum();
            assert!((g as f64 - (1.0 - 0.5 * s)).abs() < 1e-6);
        }
        let mut out = Matrix::zeros(3, 4);
        set_rows_to_bias(out.as_mut(), &[1., 2., 3., 4.], Par::Seq).unwrap();
        add_bias(out.as_mut(), &[1., 1., 1., 1.], Par::Rayon(0)).unwrap();
        assert_eq!(out.row(2), &[2., 3., 4., 5.]);
        assert!(add_bias(out.as_mut(), &[1.0], Par::Seq).is_err());
        assert!(bias_gradient(&mut db[..3], delta.as_ref(), 1.0, 0.0, Par::Seq).is_err());
    }
}
