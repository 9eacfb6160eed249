//! Weight initialisation with DSSTNE's distributions (`NNWeight::Randomize`), drawn from the
//! counter-based generator of [`crate::rng`] so that any shard of a matrix, on any device,
//! gets the same values: weight number `index` (row-major position in the full
//! `[n_in][n_out]` matrix) is a pure function of `(seed, stream, index)`.
//!
//! With `u ∈ (0, 1]` the uniform number `index`, `n` the standard normal number `index`,
//! `S = Scale` (`WeightInit.Scale`) and DSSTNE's `x·scale − bias` transform in `f32`:
//!
//! | scheme | value | distribution |
//! |---|---|---|
//! | Xavier | `u·s − s/2`, `s = S·√(6/(n_in+n_out))` | U(−s/2, s/2] (half Glorot's range) |
//! | CaffeXavier | `u·s − s/2`, `s = 2S·√(3/n_out)` | U(−S√(3/n_out), +S√(3/n_out)] |
//! | Uniform | `u·2S − S` | U(−S, S] |
//! | Gaussian | `S·n` | N(0, S²) |
//! | UnitBall | `u·S` | U(0, S] |
//! | SELU | `n/n_in` | N(0, (1/n_in)²) (standard deviation 1/n_in, as DSSTNE) |
//! | Constant | `S` | every weight = S |
//!
//! DSSTNE's Constant case actually computes `0·0 − S = −S` (its `kScaleAndBias` subtracts the
//! bias); we follow its documented intent, `+S`. Biases are the constant `WeightInit.Bias`.

use super::WeightInitScheme;
use crate::error::{Error, Result};
use crate::rng;

/// The distribution a scheme draws from, resolved for a layer pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// `u·scale − shift` with `u` uniform in (0, 1]: uniform on (−shift, scale − shift].
    Uniform { scale: f32, shift: f32 },
    /// `std·n` with `n` standard normal.
    Normal { std: f32 },
    /// Every value equal.
    Constant(f32),
}

impl Distribution {
    /// The distribution of `scheme` with scale `s` for a `[n_in][n_out]` weight matrix.
    /// Fails when a fan the scheme divides by is 0.
    pub fn new(scheme: WeightInitScheme, s: f32, n_in: u64, n_out: u64) -> Result<Self> {
        let need = |n: u64, what: &str| {
            if n == 0 {
                Err(Error::invalid_argument(
                    what,
                    format!("{scheme} initialisation needs a non-zero {what}"),
                ))
            } else {
                Ok(n as f32)
            }
        };
        Ok(match scheme {
            WeightInitScheme::Xavier => {
                let fan = need(n_in + n_out, "n_in + n_out")?;
                let scale = s * (6.0f32 / fan).sqrt();
                Distribution::Uniform {
                    scale,
                    shift: 0.5 * scale,
                }
            }
            WeightInitScheme::CaffeXavier => {
                let scale = s * 2.0 * (3.0f32 / need(n_out, "n_out")?).sqrt();
                Distribution::Uniform {
                    scale,
                    shift: 0.5 * scale,
                }
            }
            WeightInitScheme::Uniform => {
                let scale = 2.0 * s;
                Distribution::Uniform {
                    scale,
                    shift: 0.5 * scale,
                }
            }
            WeightInitScheme::Gaussian => Distribution::Normal { std: s },
            WeightInitScheme::UnitBall => Distribution::Uniform {
                scale: s,
                shift: 0.0,
            },
            WeightInitScheme::Selu => Distribution::Normal {
                std: 1.0 / need(n_in, "n_in")?,
            },
            WeightInitScheme::Constant => Distribution::Constant(s),
        })
    }

    /// Value number `index` of `stream` under `seed`.
    #[inline]
    pub fn sample(&self, seed: u64, stream: u64, index: u64) -> f32 {
        match *self {
            Distribution::Uniform { scale, shift } => {
                rng::uniform_f32(seed, stream, index) * scale - shift
            }
            Distribution::Normal { std } => std * rng::normal_f32(seed, stream, index),
            Distribution::Constant(v) => v,
        }
    }

    /// Fills `out[i]` with value number `first + i` (a shard starting at global position
    /// `first` gets exactly the values of the whole matrix there).
    pub fn fill(&self, out: &mut [f32], seed: u64, stream: u64, first: u64) {
        match *self {
            Distribution::Uniform { scale, shift } => {
                rng::fill_uniform(out, seed, stream, first);
                out.iter_mut().for_each(|x| *x = *x * scale - shift);
            }
            Distribution::Normal { std } => {
                rng::fill_normal(out, seed, stream, first);
                out.iter_mut().for_each(|x| *x *= std);
            }
            Distribution::Constant(v) => out.fill(v),
        }
    }

    /// Mean and variance of the distribution (for tests and diagnostics).
    pub fn moments(&self) -> (f64, f64) {
        match *self {
            Distribution::Uniform { scale, shift } => {
                let (s, b) = (scale as f64, shift as f64);
                (0.5 * s - b, s * s / 12.0)
            }
            Distribution::Normal { std } => (0.0, std as f64 * std as f64),
            Distribution::Constant(v) => (v as f64, 0.0),
        }
    }
}

/// Initialises (a shard of) a `[n_in][n_out]` weight matrix: `out[i]` = weight number
/// `first + i` of `scheme` with scale `scale`.
#[allow(clippy::too_many_arguments)]
pub fn init_weights(
    out: &mut [f32],
    first: u64,
    scheme: WeightInitScheme,
    scale: f32,
    n_in: u64,
    n_out: u64,
    seed: u64,
    stream: u64,
) -> Result<()> {
    Distribution::new(scheme, scale, n_in, n_out)?.fill(out, seed, stream, first);
    Ok(())
}

/// Initialises biases to the constant `bias` (`WeightInit.Bias`).
pub fn init_bias(out: &mut [f32], bias: f32) {
    out.fill(bias);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f32]) -> (f64, f64, f32, f32) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (mean, var, lo, hi)
    }

    #[test]
    fn every_scheme_has_dsstne_moments_and_range() {
        let (n_in, n_out) = (300u64, 200u64);
        let cases = [
            (
                WeightInitScheme::Xavier,
                1.0f32,
                0.5 * (6.0f64 / 500.0).sqrt(),
            ),
            (
                WeightInitScheme::CaffeXavier,
                2.0,
                2.0 * (3.0f64 / 200.0).sqrt(),
            ),
            (WeightInitScheme::Uniform, 0.3, 0.3),
            (WeightInitScheme::UnitBall, 0.7, 0.7),
        ];
        let mut w = vec![0.0f32; (n_in * n_out) as usize];
        for (scheme, s, bound) in cases {
            init_weights(&mut w, 0, scheme, s, n_in, n_out, 5, 1).unwrap();
            let (mean, var, lo, hi) = stats(&w);
            let d = Distribution::new(scheme, s, n_in, n_out).unwrap();
            let (m0, v0) = d.moments();
            let tol = (v0 / w.len() as f64).sqrt() * 5.0;
            assert!((mean - m0).abs() < tol, "{scheme}: mean {mean} vs {m0}");
            assert!((var - v0).abs() < 0.02 * v0, "{scheme}: var {var} vs {v0}");
            let lower = if scheme == WeightInitScheme::UnitBall {
                0.0
            } else {
                -bound
            };
            assert!(
                lo as f64 > lower - 1e-6 && hi as f64 <= bound + 1e-6,
                "{scheme}"
            );
            assert!(hi as f64 > bound * 0.99 && (lo as f64) < lower + bound * 0.01);
        }
        for (scheme, s, std) in [
            (WeightInitScheme::Gaussian, 0.05f32, 0.05f64),
            (WeightInitScheme::Selu, 1.0, 1.0 / 300.0),
        ] {
            init_weights(&mut w, 0, scheme, s, n_in, n_out, 5, 2).unwrap();
            let (mean, var, _, _) = stats(&w);
            assert!(mean.abs() < 5.0 * std / (w.len() as f64).sqrt(), "{scheme}");
            assert!(
                (var.sqrt() - std).abs() < 0.01 * std,
                "{scheme}: {}",
                var.sqrt()
            );
        }
        init_weights(
            &mut w,
            0,
            WeightInitScheme::Constant,
            0.25,
            n_in,
            n_out,
            5,
            3,
        )
        .unwrap();
        assert!(w.iter().all(|&x| x == 0.25));
        let mut b = [0.0; 3];
        init_bias(&mut b, -10.2);
        assert_eq!(b, [-10.2; 3]);
    }

    #[test]
    fn deterministic_per_seed_and_shard_independent() {
        let scheme = WeightInitScheme::Xavier;
        let mut a = vec![0.0f32; 1000];
        let mut b = vec![0.0f32; 1000];
        init_weights(&mut a, 0, scheme, 1.0, 40, 25, 123, 7).unwrap();
        init_weights(&mut b, 0, scheme, 1.0, 40, 25, 123, 7).unwrap();
        assert_eq!(a, b);
        init_weights(&mut b, 0, scheme, 1.0, 40, 25, 124, 7).unwrap();
        assert_ne!(a, b);
        // A shard starting at 333 reproduces the same slice of the full matrix.
        let mut shard = vec![0.0f32; 101];
        for scheme in [WeightInitScheme::Xavier, WeightInitScheme::Gaussian] {
            init_weights(&mut a, 0, scheme, 1.0, 40, 25, 9, 0).unwrap();
            init_weights(&mut shard, 333, scheme, 1.0, 40, 25, 9, 0).unwrap();
            assert_eq!(&a[333..434], &shard[..]);
        }
        assert!(init_weights(&mut a, 0, WeightInitScheme::Selu, 1.0, 0, 5, 0, 0).is_err());
    }
}
