//! The variational bottleneck (descriptor `Variational`, a Moira extension; Kingma & Welling
//! 2014, Mult-VAE of Liang et al. 2018): the reference every backend matches.
//!
//! Element `(b, j)` of a `rows × cols` block, with `μ` the mean layer's pre-activation (Linear,
//! so its activation), `ℓ` the log-variance layer's, `σ = exp(½ℓ)` and
//! `ε = normal(m.seed, m.stream, m.index(b, j))` ([`crate::rng::normal_f32`], keyed by the
//! example's place in the whole minibatch and the global unit, so every rank count and mode
//! draws the same numbers):
//!
//! - forward (training): `z = μ + σ·ε` replaces the mean layer's units; `μ` and `ε` are kept
//!   for the backward pass; the loss gains `β·KL`, `KL = ½·(μ² + exp(ℓ) − ℓ − 1)` per element,
//!   summed in 64-bit fixed point ([`crate::ops::fixed`]);
//! - backward, from `g = ∂L/∂z`: `∂L/∂μ = g + β·μ`, `∂L/∂ℓ = ½·g·ε·σ + ½·β·(exp(ℓ) − 1)`.
//!
//! Prediction uses `z = μ` and does not call these.

use crate::backend::traits::DropoutMask;
use crate::ops::fixed::{to_fixed, FixedSum};
use crate::rng::normal_f32;

/// The training forward over `rows × cols` row-major blocks: `z` holds `μ` and receives the
/// sample; `mean` receives `μ`, `noise` receives `ε`; returns `β·Σ KL` in fixed point (each
/// element's term rounded to `f32`, then to fixed point).
pub fn forward(
    z: &mut [f32],
    log_var: &[f32],
    mean: &mut [f32],
    noise: &mut [f32],
    (rows, cols): (usize, usize),
    m: DropoutMask,
    beta: f32,
) -> FixedSum {
    let mut kl = 0i128;
    for b in 0..rows {
        for j in 0..cols {
            let i = b * cols + j;
            let (mu, l) = (z[i], log_var[i]);
            let eps = normal_f32(m.seed, m.stream, m.index(b, j));
            let sigma = (0.5 * l).exp();
            mean[i] = mu;
            noise[i] = eps;
            z[i] = mu + sigma * eps;
            kl += i128::from(to_fixed(kl_term(mu, l, beta)));
        }
    }
    FixedSum(kl)
}

/// `β·½·(μ² + exp(ℓ) − ℓ − 1)`, one element's share of the loss, in `f32`.
#[inline]
pub fn kl_term(mu: f32, log_var: f32, beta: f32) -> f32 {
    beta * 0.5 * (mu * mu + log_var.exp() - log_var - 1.0)
}

/// The backward pass: `delta_mean` holds `g = ∂L/∂z` and becomes `∂L/∂μ`; `delta_log_var`
/// receives `∂L/∂ℓ`.
pub fn backward(
    delta_mean: &mut [f32],
    delta_log_var: &mut [f32],
    mean: &[f32],
    log_var: &[f32],
    noise: &[f32],
    beta: f32,
) {
    for i in 0..delta_mean.len() {
        let (g, l) = (delta_mean[i], log_var[i]);
        let e = l.exp();
        let sigma = (0.5 * l).exp();
        delta_log_var[i] = 0.5 * g * noise[i] * sigma + 0.5 * beta * (e - 1.0);
        delta_mean[i] = g + beta * mean[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample is `μ + exp(½ℓ)·ε` with the generator's numbers at the mask's counters, and
    /// the loss is the closed-form KL of N(μ, σ²) against N(0, 1), times `β`.
    #[test]
    fn forward_samples_and_sums_the_kl_divergence() {
        let (rows, cols) = (3, 4);
        let mu: Vec<f32> = (0..12).map(|i| 0.1 * i as f32 - 0.5).collect();
        let lv: Vec<f32> = (0..12).map(|i| 0.2 - 0.05 * i as f32).collect();
        let m = DropoutMask {
            seed: 7,
            stream: 11,
            col_offset: 5,
            row_stride: 10,
        };
        let (mut z, mut mean, mut noise) = (mu.clone(), vec![0.0; 12], vec![0.0; 12]);
        let kl = forward(&mut z, &lv, &mut mean, &mut noise, (rows, cols), m, 0.3);
        let mut expected = 0.0f64;
        for b in 0..rows {
            for j in 0..cols {
                let i = b * cols + j;
                let eps = normal_f32(7, 11, (b * 10 + 5 + j) as u64);
                assert_eq!(noise[i], eps);
                assert_eq!(mean[i], mu[i]);
                assert!((z[i] - (mu[i] + (0.5 * lv[i]).exp() * eps)).abs() < 1e-6);
                let (m, l) = (mu[i] as f64, lv[i] as f64);
                expected += 0.3 * 0.5 * (m * m + l.exp() - l - 1.0);
            }
        }
        assert!(
            (kl.to_f64() - expected).abs() < 1e-6,
            "{} vs {expected}",
            kl.to_f64()
        );
    }

    /// The backward pass is the derivative of `g·z + β·KL` in `μ` and `ℓ` (central
    /// differences at fixed `ε`).
    #[test]
    fn backward_matches_finite_differences() {
        let (mu, l, eps, g, beta) = (0.4f64, -0.3f64, 1.3f64, 0.7f64, 0.25f64);
        let f = |mu: f64, l: f64| {
            g * (mu + (0.5 * l).exp() * eps) + beta * 0.5 * (mu * mu + l.exp() - l - 1.0)
        };
        let h = 1e-5;
        let d_mu = (f(mu + h, l) - f(mu - h, l)) / (2.0 * h);
        let d_l = (f(mu, l + h) - f(mu, l - h)) / (2.0 * h);
        let (mut dm, mut dl) = ([g as f32], [0.0f32]);
        backward(
            &mut dm,
            &mut dl,
            &[mu as f32],
            &[l as f32],
            &[eps as f32],
            beta as f32,
        );
        assert!((dm[0] as f64 - d_mu).abs() < 1e-5);
        assert!((dl[0] as f64 - d_l).abs() < 1e-5);
    }
}
