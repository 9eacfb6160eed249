//! The host reference of the per-layer regularisers and normalisations: DSSTNE's sparseness
//! penalty, `WeightNorm`, `DeltaNorm` and per-activation batch normalisation. Every backend's
//! default implementation runs these formulas on downloaded buffers; the CPU backend runs
//! them in place. Matrices are row-major `[rows][cols]`, examples in rows.
//!
//! Every sum here runs in a fixed order (row order for a column, column order for a row) in
//! `f64`, so the results do not depend on how a backend splits work over threads.

/// DSSTNE's clamp of the mean activation before the KL terms.
pub const RHO_MIN: f64 = 1e-6;
/// Upper clamp of the mean activation.
pub const RHO_MAX: f64 = 0.999_999;
/// cuDNN's `CUDNN_BN_MIN_EPSILON`, the variance offset of batch normalisation in DSSTNE.
pub const BN_EPSILON: f64 = 1e-5;

/// The mean of each column of `x` (`rows × cols`), summed in row order in `f64`.
pub fn column_means(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let mut sum = vec![0.0f64; cols];
    for row in x.chunks_exact(cols.max(1)).take(rows) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let n = rows.max(1) as f64;
    sum.iter_mut().for_each(|s| *s /= n);
    sum
}

/// `ρ̂_j` clamped to `[1e-6, 0.999999]` (DSSTNE's `kCalculateSparsenessPenalty`).
fn clamp_rho(rho: f64) -> f64 {
    rho.clamp(RHO_MIN, RHO_MAX)
}

/// The sparseness penalty's contribution to `∂L/∂a`:
/// `delta[b, j] += β·(−p/ρ̂_j + (1−p)/(1−ρ̂_j))` for every example `b`, where
/// `ρ̂_j = clamp(mean_b a[b, j])` (DSSTNE's `kCalculateSparsenessPenalty`).
///
/// It is the gradient of [`sparseness_penalty_loss`] (`B·β·Σ_j KL(p‖ρ̂_j)`), since
/// `∂ρ̂_j/∂a[b, j] = 1/B`, wherever the clamp is not active.
pub fn sparseness_penalty_delta(
    delta: &mut [f32],
    a: &[f32],
    rows: usize,
    cols: usize,
    p: f32,
    beta: f32,
) {
    let (p, beta) = (f64::from(p), f64::from(beta));
    let g: Vec<f32> = column_means(a, rows, cols)
        .into_iter()
        .map(|rho| {
            let rho = clamp_rho(rho);
            (beta * (-p / rho + (1.0 - p) / (1.0 - rho))) as f32
        })
        .collect();
    for row in delta.chunks_exact_mut(cols.max(1)).take(rows) {
        for (d, &gj) in row.iter_mut().zip(&g) {
            *d += gj;
        }
    }
}

/// The loss whose gradient [`sparseness_penalty_delta`] adds: `B·β·Σ_j KL(p‖ρ̂_j)` with
/// `KL(p‖ρ) = p·ln(p/ρ) + (1−p)·ln((1−p)/(1−ρ))` (a `p` of 0 or 1 drops its zero term).
/// Moira reports it nowhere (DSSTNE's error excludes it too); the gradient checks use it.
pub fn sparseness_penalty_loss(a: &[f32], rows: usize, cols: usize, p: f32, beta: f32) -> f64 {
    let (p, beta) = (f64::from(p), f64::from(beta));
    let kl = |rho: f64| {
        let rho = clamp_rho(rho);
        let pos = if p > 0.0 { p * (p / rho).ln() } else { 0.0 };
        let neg = if p < 1.0 {
            (1.0 - p) * ((1.0 - p) / (1.0 - rho)).ln()
        } else {
            0.0
        };
        pos + neg
    };
    let total: f64 = column_means(a, rows, cols).into_iter().map(kl).sum();
    rows as f64 * beta * total
}

/// `WeightNorm`: every column `j` of `w` (`rows × cols`, `W[in][out]`: the weights *into*
/// output unit `j`) whose L2 norm exceeds `max_norm` is scaled to norm `max_norm`
/// (DSSTNE's `kNormalizeWeights`, applied after each update). `max_norm ≤ 0` does nothing.
pub fn clip_column_norms(w: &mut [f32], rows: usize, cols: usize, max_norm: f32) {
    if max_norm <= 0.0 || cols == 0 {
        return;
    }
    let factors: Vec<f32> = column_squares(w, rows, cols)
        .into_iter()
        .map(|sq| clip_factor(sq, max_norm))
        .collect();
    scale_columns(w, rows, cols, &factors);
}

/// `DeltaNorm`: every row of `x` (one example's delta) whose L2 norm exceeds `max_norm` is
/// scaled to norm `max_norm` (DSSTNE's `kNormalizeDeltas`). `max_norm ≤ 0` does nothing.
pub fn clip_row_norms(x: &mut [f32], rows: usize, cols: usize, max_norm: f32) {
    if max_norm <= 0.0 || cols == 0 {
        return;
    }
    let factors: Vec<f32> = row_squares(x, rows, cols)
        .into_iter()
        .map(|sq| clip_factor(sq, max_norm))
        .collect();
    scale_rows_by(x, cols, &factors);
}

/// The squared L2 norm (in `f64`) of each of the `cols` columns of `w` (`rows × cols`).
pub fn column_squares(w: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let mut sq = vec![0.0f64; cols];
    for row in w.chunks_exact(cols.max(1)).take(rows) {
        for (s, &v) in sq.iter_mut().zip(row) {
            *s += f64::from(v) * f64::from(v);
        }
    }
    sq
}

/// The squared L2 norm (in `f64`) of each of the `rows` rows of `x` (`rows × cols`).
pub fn row_squares(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows)
        .map(|b| {
            x[b * cols..(b + 1) * cols]
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum()
        })
        .collect()
}

/// The factor that brings a vector of squared norm `sq` down to norm `max_norm`:
/// `max_norm / √sq` when `sq > max_norm²`, else 1.
pub fn clip_factor(sq: f64, max_norm: f32) -> f32 {
    let limit = f64::from(max_norm);
    if sq > limit * limit {
        (limit / sq.sqrt()) as f32
    } else {
        1.0
    }
}

/// Multiplies column `j` of `w` (`rows × cols`) by `factors[j]`.
pub fn scale_columns(w: &mut [f32], rows: usize, cols: usize, factors: &[f32]) {
    for row in w.chunks_exact_mut(cols.max(1)).take(rows) {
        for (v, &k) in row.iter_mut().zip(factors) {
            *v *= k;
        }
    }
}

/// Multiplies row `b` of `x` (`cols` wide) by `factors[b]`.
pub fn scale_rows_by(x: &mut [f32], cols: usize, factors: &[f32]) {
    for (row, &k) in x.chunks_exact_mut(cols.max(1)).zip(factors) {
        if k != 1.0 {
            row.iter_mut().for_each(|v| *v *= k);
        }
    }
}

/// The per-unit state of a batch-normalised layer (cuDNN's `CUDNN_BATCHNORM_PER_ACTIVATION`),
/// each `units` long.
#[derive(Debug)]
pub struct BatchNormBuffers<'a> {
    /// `γ`, the learned scale.
    pub scale: &'a [f32],
    /// `β`, the learned shift.
    pub bias: &'a [f32],
    /// Running mean, updated while training, used for inference.
    pub running_mean: &'a mut [f32],
    /// Running (unbiased) variance, updated while training, used for inference.
    pub running_var: &'a mut [f32],
    /// `1/√(σ²_B + ε)` of the last training batch, for the backward pass.
    pub inv_std: &'a mut [f32],
}

/// Batch normalisation of the pre-activations `z` (`rows × cols`, in place), with the
/// normalised values written to `xhat`.
///
/// Training (`factor = Some(f)`): `μ_j`, `σ²_j` are the batch mean and (biased) variance of
/// column `j`; `x̂ = (z − μ)/√(σ² + ε)`, `z ← γ·x̂ + β`; the running statistics move by
/// `r ← (1−f)·r + f·s` with `s = μ` and `s = σ²·B/(B−1)` (cuDNN's rule; DSSTNE passes
/// `f = 1/(1 + calls)`, a cumulative average). Inference (`None`): `μ`, `σ²` are the running
/// ones and nothing is updated. `ε` = [`BN_EPSILON`].
pub fn batch_norm_forward(
    z: &mut [f32],
    xhat: &mut [f32],
    rows: usize,
    cols: usize,
    s: BatchNormBuffers<'_>,
    factor: Option<f64>,
) {
    let (mean, inv_std): (Vec<f64>, Vec<f64>) = match factor {
        Some(f) => {
            let mean = column_means(z, rows, cols);
            let mut var = vec![0.0f64; cols];
            for row in z.chunks_exact(cols.max(1)).take(rows) {
                for ((v, &x), m) in var.iter_mut().zip(row).zip(&mean) {
                    let d = f64::from(x) - m;
                    *v += d * d;
                }
            }
            let n = rows.max(1) as f64;
            let unbiased = if rows > 1 { n / (n - 1.0) } else { 1.0 };
            let mut inv = Vec::with_capacity(cols);
            for j in 0..cols {
                let v = var[j] / n;
                let rm = f64::from(s.running_mean[j]);
                let rv = f64::from(s.running_var[j]);
                s.running_mean[j] = ((1.0 - f) * rm + f * mean[j]) as f32;
                s.running_var[j] = ((1.0 - f) * rv + f * v * unbiased) as f32;
                let k = 1.0 / (v + BN_EPSILON).sqrt();
                s.inv_std[j] = k as f32;
                inv.push(k);
            }
            (mean, inv)
        }
        None => (
            s.running_mean.iter().map(|&m| f64::from(m)).collect(),
            s.running_var
                .iter()
                .map(|&v| 1.0 / (f64::from(v) + BN_EPSILON).sqrt())
                .collect(),
        ),
    };
    for (zr, xr) in z
        .chunks_exact_mut(cols.max(1))
        .zip(xhat.chunks_exact_mut(cols.max(1)))
        .take(rows)
    {
        for j in 0..cols {
            let x = ((f64::from(zr[j]) - mean[j]) * inv_std[j]) as f32;
            xr[j] = x;
            zr[j] = s.scale[j] * x + s.bias[j];
        }
    }
}

/// The gradient through [`batch_norm_forward`] in training mode, `delta` (`∂L/∂y`, `rows ×
/// cols`) replaced in place by `∂L/∂z`:
/// `∂L/∂z_bj = γ_j·k_j/B · (B·δ_bj − Σ_b δ_bj − x̂_bj·Σ_b δ_bj·x̂_bj)` with `k = 1/√(σ²+ε)`.
/// `dscale` and `dbias` receive the *negative mean* gradients of `γ` and `β` (the weights'
/// convention): `−(1/B)·Σ_b δ_bj·x̂_bj` and `−(1/B)·Σ_b δ_bj`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    delta: &mut [f32],
    xhat: &[f32],
    rows: usize,
    cols: usize,
    scale: &[f32],
    inv_std: &[f32],
    dscale: &mut [f32],
    dbias: &mut [f32],
) {
    let mut sum_d = vec![0.0f64; cols];
    let mut sum_dx = vec![0.0f64; cols];
    for (dr, xr) in delta
        .chunks_exact(cols.max(1))
        .zip(xhat.chunks_exact(cols.max(1)))
        .take(rows)
    {
        for j in 0..cols {
            sum_d[j] += f64::from(dr[j]);
            sum_dx[j] += f64::from(dr[j]) * f64::from(xr[j]);
        }
    }
    let n = rows.max(1) as f64;
    for j in 0..cols {
        dscale[j] = (-sum_dx[j] / n) as f32;
        dbias[j] = (-sum_d[j] / n) as f32;
    }
    for (dr, xr) in delta
        .chunks_exact_mut(cols.max(1))
        .zip(xhat.chunks_exact(cols.max(1)))
        .take(rows)
    {
        for j in 0..cols {
            let k = f64::from(scale[j]) * f64::from(inv_std[j]) / n;
            let g = n * f64::from(dr[j]) - sum_d[j] - f64::from(xr[j]) * sum_dx[j];
            dr[j] = (k * g) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_clip_only_what_exceeds() {
        // Columns (3,4) has norm 5, (0,1) norm 1.
        let mut w = vec![3.0, 0.0, 4.0, 1.0];
        clip_column_norms(&mut w, 2, 2, 2.5);
        assert_eq!(w, vec![1.5, 0.0, 2.0, 1.0]);
        let mut x = vec![3.0, 4.0, 0.3, 0.4];
        clip_row_norms(&mut x, 2, 2, 1.0);
        assert!((x[0] - 0.6).abs() < 1e-7 && (x[1] - 0.8).abs() < 1e-7);
        assert_eq!(&x[2..], &[0.3, 0.4]);
    }

    #[test]
    fn penalty_delta_is_the_gradient_of_the_penalty_loss() {
        let a = vec![0.2f32, 0.7, 0.4, 0.1, 0.3, 0.5];
        let (rows, cols, p, beta) = (3, 2, 0.05f32, 0.3f32);
        let mut d = vec![0.0f32; 6];
        sparseness_penalty_delta(&mut d, &a, rows, cols, p, beta);
        for k in 0..6 {
            let eps = 1e-3f32;
            let mut up = a.clone();
            up[k] += eps;
            let mut down = a.clone();
            down[k] -= eps;
            let numeric = (sparseness_penalty_loss(&up, rows, cols, p, beta)
                - sparseness_penalty_loss(&down, rows, cols, p, beta))
                / (2.0 * f64::from(eps));
            assert!(
                (numeric - f64::from(d[k])).abs() < 1e-3,
                "{k}: {numeric} vs {}",
                d[k]
            );
        }
    }
}
