//! Reference formulas of the error functions: the per-unit loss `L(a, t)` and the output delta
//! `δ = ∂L/∂z` for output activation `a = f(z)` and target `t`, with DSSTNE's conventions
//! (`kLoss.cu`, `kDelta.cu`). Batch kernels of every backend are tested against these.
//!
//! Losses (`ln⁺(x) = ln(max(x, LOG_FLOOR))`, with the portable `ln` of [`super::math`]):
//! - **L1**: `|a − t|`; δ = `sgn(a − t)·f'` with `sgn(0) = −1` (DSSTNE's `(a−t) > 0 ? 1 : −1`).
//! - **L2**: `½(a − t)²`; δ = `(a − t)·f'`.
//! - **L2Hinge**: `d = a − |t|`, clipped to `min(0, d)` when `t > 0` and to `max(0, d)`
//!   otherwise (squared error only on the wrong side); loss `½d²`; δ = `d·f'`.
//! - **Hinge**: `max(0, 1 − t·a)`; δ = `−t·f'` where `t·a < 1`, else 0. (DSSTNE's delta kernel
//!   tests `a < 0` instead; ours is the derivative of the loss it reports.) A zero target costs
//!   1 per unit.
//! - **CrossEntropy**, Sigmoid (and any non-SoftMax) output: `−t·ln⁺a − (1−t)·ln⁺(1−a)`;
//!   SoftMax output (multinomial): `−t·ln⁺a`. δ = `a − t` for Sigmoid and SoftMax (the
//!   canonical-link simplification; exact for SoftMax when the row's targets sum to 1), the
//!   chain rule `(a−t)/(a(1−a))·f'` otherwise. DeltaBoost scales δ by `one` where `t ≠ 0` and
//!   by `zero` where `t = 0`.
//! - **ScaledMarginalCrossEntropy** (SMCE), margins `oneTarget`/`zeroTarget`, scales
//!   `oneScale`/`zeroScale`:
//!   - `t > 0` and `a < oneTarget`: loss `−oneScale·ln⁺a` (SoftMax: `−oneScale·t·ln⁺a`),
//!     δ = `oneScale·(a − 1)` (SoftMax: `oneScale·(a − t)`);
//!   - `t = 0` and `a > zeroTarget`: loss `−zeroScale·ln⁺(1−a)`, δ = `zeroScale·a`;
//!   - otherwise 0. Other activations use the chain rule `∂L/∂a · f'`.
//! - **DataScaledMarginalCrossEntropy**: as SMCE, the positive term multiplied by the data
//!   value: loss `−oneScale·t·ln⁺a`, δ = `oneScale·t·(a − 1)`. Sigmoid only in DSSTNE.
//!
//! **SoftMax outputs** get the exact gradient, where DSSTNE took the Jacobian as the identity
//! (`f' = 1`): with `g = ∂L/∂a` per unit ([`LossSpec::softmax_grad_a`]), the row's delta is
//! `δ_i = a_i·(g_i − Σ_j a_j g_j)` ([`LossSpec::softmax_row_delta`]). For CrossEntropy this
//! simplifies to `δ_i = a_i·Σ_j t_j − t_i`, which is DSSTNE's `a − t` when the targets sum
//! to 1 (indicator rows do, see below); DeltaBoost does not apply to SoftMax rows.
//!
//! **Sparse targets, two passes** (DSSTNE §5.4): pass 1 runs over the dense output as if every
//! target were 0 ([`LossSpec::zero_target_delta`], [`LossSpec::zero_target_loss`]); pass 2 visits
//! the non-zeros of each row, **overwrites** their delta with [`LossSpec::unit_delta`] and adds
//! the loss correction `L(a, t) − L(a, 0)` ([`LossSpec::nonzero_loss_correction`], which the
//! batch kernels take in fixed point as `fixed(L(a,t)) − fixed(L(a,0))`, so the sparse total
//! equals the dense total bit for bit). With DSSTNE's `SparseIgnoreZero` the first pass is a
//! fill with 0 and the non-zeros contribute `L(a, t)`. An indicator (value-less) target row
//! stands for `t = 1` on its non-zeros, or `t = 1/nnz` when the output is SoftMax (a
//! distribution), see [`LossSpec::indicator_target`].

use super::activation::{derivative, ActivationParams};
use super::{Activation, ErrorFunction};
use crate::error::{Error, Result};

/// Floor of logarithm arguments (DSSTNE clamps with its `MIN_ERROR`), so that
/// `ln⁺(0) = ln(1e−12) ≈ −27.6` instead of −∞.
pub const LOG_FLOOR: f32 = 1.0e-12;

/// Parameters of (Data)ScaledMarginalCrossEntropy; DSSTNE's defaults are
/// `oneTarget 0.9, zeroTarget 0.1, oneScale 1, zeroScale 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmceParams {
    /// Positive targets stop training once `a ≥ one_target`.
    pub one_target: f32,
    /// Zero targets stop training once `a ≤ zero_target`.
    pub zero_target: f32,
    /// Scale of the positive-target term.
    pub one_scale: f32,
    /// Scale of the zero-target term.
    pub zero_scale: f32,
}

impl Default for SmceParams {
    fn default() -> Self {
        SmceParams {
            one_target: 0.9,
            zero_target: 0.1,
            one_scale: 1.0,
            zero_scale: 1.0,
        }
    }
}

/// DSSTNE's DeltaBoost: scales of the CrossEntropy deltas of non-zero (`one`) and zero
/// (`zero`) targets. Default 1, 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeltaBoost {
    pub one: f32,
    pub zero: f32,
}

impl Default for DeltaBoost {
    fn default() -> Self {
        DeltaBoost {
            one: 1.0,
            zero: 1.0,
        }
    }
}

/// Everything that defines the loss of an output layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSpec {
    pub error: ErrorFunction,
    pub activation: Activation,
    pub act_params: ActivationParams,
    pub smce: SmceParams,
    pub delta_boost: DeltaBoost,
}

/// `ln⁺(x) = ln(max(x, LOG_FLOOR))` with the portable [`super::math::ln`].
#[inline(always)]
fn ln_floor(x: f32) -> f32 {
    super::math::ln(x.max(LOG_FLOOR))
}

impl LossSpec {
    /// A spec with default activation, SMCE and DeltaBoost parameters.
    pub fn new(error: ErrorFunction, activation: Activation) -> Self {
        LossSpec {
            error,
            activation,
            act_params: ActivationParams::default(),
            smce: SmceParams::default(),
            delta_boost: DeltaBoost::default(),
        }
    }

    /// Rejects the error-function/activation pairs DSSTNE has no kernels for: CrossEntropy
    /// and SMCE need a Sigmoid or SoftMax output; DataScaledMarginalCrossEntropy a Sigmoid.
    pub fn check(&self) -> Result<()> {
        use Activation::{Sigmoid, SoftMax};
        let ok = match self.error {
            ErrorFunction::CrossEntropy | ErrorFunction::ScaledMarginalCrossEntropy => {
                matches!(self.activation, Sigmoid | SoftMax)
            }
            ErrorFunction::DataScaledMarginalCrossEntropy => self.activation == Sigmoid,
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "error function {} with a {} output layer",
                self.error, self.activation
            )))
        }
    }

    /// The target value an indicator (value-less) sparse target row with `nnz` non-zeros
    /// stands for: `1/nnz` for a SoftMax output, 1 otherwise.
    #[inline]
    pub fn indicator_target(&self, nnz: usize) -> f32 {
        if self.activation == Activation::SoftMax && nnz > 0 {
            1.0 / nnz as f32
        } else {
            1.0
        }
    }

    #[inline(always)]
    fn f_prime(&self, a: f32) -> f32 {
        derivative(self.activation, a, &self.act_params)
    }

    /// Per-unit loss `L(a, t)` (formulas in the module docs).
    #[inline]
    pub fn unit_loss(&self, a: f32, t: f32) -> f32 {
        let softmax = self.activation == Activation::SoftMax;
        match self.error {
            ErrorFunction::L1 => (a - t).abs(),
            ErrorFunction::L2 => 0.5 * (a - t) * (a - t),
            ErrorFunction::L2Hinge => {
                let d = l2_hinge_diff(a, t);
                0.5 * d * d
            }
            ErrorFunction::Hinge => (1.0 - t * a).max(0.0),
            ErrorFunction::CrossEntropy => {
                if softmax {
                    -t * ln_floor(a)
                } else {
                    -t * ln_floor(a) - (1.0 - t) * ln_floor(1.0 - a)
                }
            }
            ErrorFunction::ScaledMarginalCrossEntropy
            | ErrorFunction::DataScaledMarginalCrossEntropy => {
                let s = &self.smce;
                if t > 0.0 {
                    if a < s.one_target {
                        let weight = if softmax
                            || self.error == ErrorFunction::DataScaledMarginalCrossEntropy
                        {
                            t
                        } else {
                            1.0
                        };
                        -s.one_scale * weight * ln_floor(a)
                    } else {
                        0.0
                    }
                } else if a > s.zero_target {
                    -s.zero_scale * ln_floor(1.0 - a)
                } else {
                    0.0
                }
            }
        }
    }

    /// Output delta `δ = ∂L/∂z` of one unit with output `a` and target `t`, with DSSTNE's
    /// simplifications for the canonical pairs (module docs).
    #[inline]
    pub fn unit_delta(&self, a: f32, t: f32) -> f32 {
        use Activation::{Sigmoid, SoftMax};
        let canonical = matches!(self.activation, Sigmoid | SoftMax);
        match self.error {
            ErrorFunction::L1 => {
                let s = if a - t > 0.0 { 1.0 } else { -1.0 };
                s * self.f_prime(a)
            }
            ErrorFunction::L2 => (a - t) * self.f_prime(a),
            ErrorFunction::L2Hinge => l2_hinge_diff(a, t) * self.f_prime(a),
            ErrorFunction::Hinge => {
                if t * a < 1.0 {
                    -t * self.f_prime(a)
                } else {
                    0.0
                }
            }
            ErrorFunction::CrossEntropy => {
                let boost = if t != 0.0 {
                    self.delta_boost.one
                } else {
                    self.delta_boost.zero
                };
                let g = if canonical {
                    a - t
                } else {
                    (a - t) / (a * (1.0 - a)).max(LOG_FLOOR) * self.f_prime(a)
                };
                boost * g
            }
            ErrorFunction::ScaledMarginalCrossEntropy
            | ErrorFunction::DataScaledMarginalCrossEntropy => {
                let s = &self.smce;
                let data = self.error == ErrorFunction::DataScaledMarginalCrossEntropy;
                if t > 0.0 {
                    if a >= s.one_target {
                        0.0
                    } else if self.activation == SoftMax {
                        s.one_scale * (a - t)
                    } else {
                        let w = if data { t } else { 1.0 };
                        if canonical {
                            s.one_scale * w * (a - 1.0)
                        } else {
                            -s.one_scale * w / a.max(LOG_FLOOR) * self.f_prime(a)
                        }
                    }
                } else if a > s.zero_target {
                    if canonical {
                        s.zero_scale * a
                    } else {
                        s.zero_scale / (1.0 - a).max(LOG_FLOOR) * self.f_prime(a)
                    }
                } else {
                    0.0
                }
            }
        }
    }

    /// Loss of a unit whose target is 0 (pass 1 of the sparse scheme): `L(a, 0)`.
    #[inline]
    pub fn zero_target_loss(&self, a: f32) -> f32 {
        self.unit_loss(a, 0.0)
    }

    /// Delta of a unit whose target is 0 (pass 1 of the sparse scheme): `δ(a, 0)`.
    #[inline]
    pub fn zero_target_delta(&self, a: f32) -> f32 {
        self.unit_delta(a, 0.0)
    }

    /// `out[i] = self.zero_target_delta(a[i])` for a whole row (the same bits), with the
    /// CrossEntropy and SMCE pairs of Sigmoid/SoftMax outputs specialised so the loop
    /// vectorises (pass 1 of the sparse scheme touches every output unit).
    #[inline(always)]
    pub fn fill_zero_target_delta(&self, out: &mut [f32], a: &[f32]) {
        use Activation::{Sigmoid, SoftMax};
        debug_assert_eq!(out.len(), a.len());
        let canonical = matches!(self.activation, Sigmoid | SoftMax);
        match self.error {
            ErrorFunction::CrossEntropy if canonical => {
                let boost = self.delta_boost.zero;
                map_row(out, a, |a| boost * (a - 0.0));
            }
            ErrorFunction::ScaledMarginalCrossEntropy
            | ErrorFunction::DataScaledMarginalCrossEntropy
                if canonical =>
            {
                let (target, scale) = (self.smce.zero_target, self.smce.zero_scale);
                map_row(out, a, |a| if a > target { scale * a } else { 0.0 });
            }
            _ => map_row(out, a, |a| self.zero_target_delta(a)),
        }
    }

    /// `Σ_i to_fixed(self.zero_target_loss(a[i]))` over a row, exactly (the same integer as
    /// the scalar sum), with the CrossEntropy and SMCE pairs specialised so the loop
    /// vectorises. Terms are summed in `i64` blocks of 2048 (at most `2⁵¹` each, so a block
    /// cannot overflow), then in `i128`.
    #[inline(always)]
    pub fn zero_target_loss_fixed(&self, a: &[f32]) -> i128 {
        use super::fixed::to_fixed;
        use Activation::{Sigmoid, SoftMax};
        match (self.error, self.activation) {
            (ErrorFunction::CrossEntropy, SoftMax) => 0,
            (ErrorFunction::CrossEntropy, _) => sum_fixed(a, |a| to_fixed(-ln_floor(1.0 - a))),
            (
                ErrorFunction::ScaledMarginalCrossEntropy
                | ErrorFunction::DataScaledMarginalCrossEntropy,
                Sigmoid | SoftMax,
            ) => {
                let (target, scale) = (self.smce.zero_target, self.smce.zero_scale);
                sum_fixed(a, |a| {
                    let l = -scale * ln_floor(1.0 - a);
                    to_fixed(if a > target { l } else { 0.0 })
                })
            }
            _ => sum_fixed(a, |a| to_fixed(self.zero_target_loss(a))),
        }
    }

    /// Loss correction of a non-zero target (pass 2): `L(a, t) − L(a, 0)`. Batch kernels use
    /// the fixed-point form `fixed(L(a,t)) − fixed(L(a,0))`.
    #[inline]
    pub fn nonzero_loss_correction(&self, a: f32, t: f32) -> f32 {
        self.unit_loss(a, t) - self.zero_target_loss(a)
    }
}

/// `Σ f(a[i])` exactly: `i64` blocks of 2048 terms (each at most `2⁵¹`), then `i128`.
#[inline(always)]
fn sum_fixed(a: &[f32], f: impl Fn(f32) -> i64) -> i128 {
    a.chunks(2048)
        .map(|c| c.iter().map(|&x| f(x)).fold(0i64, i64::wrapping_add) as i128)
        .sum()
}

#[inline(always)]
fn map_row(out: &mut [f32], a: &[f32], f: impl Fn(f32) -> f32) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = f(x);
    }
}

impl LossSpec {
    /// `∂L/∂a` of one unit of a SoftMax output (the loss's derivative with respect to the
    /// activation, before the SoftMax Jacobian). CrossEntropy's `−t/a` is never needed: its
    /// rows use the closed form of [`LossSpec::softmax_row_delta`].
    #[inline]
    pub fn softmax_grad_a(&self, a: f32, t: f32) -> f32 {
        match self.error {
            ErrorFunction::L1 => {
                if a - t > 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
            ErrorFunction::L2 => a - t,
            ErrorFunction::L2Hinge => l2_hinge_diff(a, t),
            ErrorFunction::Hinge => {
                if t * a < 1.0 {
                    -t
                } else {
                    0.0
                }
            }
            ErrorFunction::CrossEntropy => {
                if a > LOG_FLOOR {
                    -t / a
                } else {
                    0.0
                }
            }
            ErrorFunction::ScaledMarginalCrossEntropy
            | ErrorFunction::DataScaledMarginalCrossEntropy => {
                let s = &self.smce;
                if t > 0.0 {
                    if a < s.one_target && a > LOG_FLOOR {
                        -s.one_scale * t / a
                    } else {
                        0.0
                    }
                } else if a > s.zero_target && 1.0 - a > LOG_FLOOR {
                    s.zero_scale / (1.0 - a)
                } else {
                    0.0
                }
            }
        }
    }

    /// Turns one SoftMax output row into its delta `∂L/∂z`. On entry `d` holds `∂L/∂a`
    /// ([`LossSpec::softmax_grad_a`]) except for CrossEntropy, where it holds the targets
    /// `t`; `a` is the row's activation. CrossEntropy: `δ_i = a_i·Σt − t_i`; otherwise the
    /// Jacobian-vector product `δ_i = a_i·(g_i − ⟨a, g⟩)` (sums in `f64`).
    pub fn softmax_row_delta(&self, d: &mut [f32], a: &[f32]) {
        if self.error == ErrorFunction::CrossEntropy {
            let total: f64 = d.iter().map(|&t| t as f64).sum();
            for (d, &a) in d.iter_mut().zip(a) {
                *d = (a as f64 * total - *d as f64) as f32;
            }
        } else {
            let dot: f64 = a
                .iter()
                .zip(d.iter())
                .map(|(&a, &g)| a as f64 * g as f64)
                .sum();
            for (d, &a) in d.iter_mut().zip(a) {
                *d = (a as f64 * (*d as f64 - dot)) as f32;
            }
        }
    }
}

/// L2Hinge's clipped difference: `a − |t|`, at most 0 for `t > 0`, at least 0 otherwise.
#[inline(always)]
fn l2_hinge_diff(a: f32, t: f32) -> f32 {
    let d = a - t.abs();
    if t > 0.0 {
        d.min(0.0)
    } else {
        d.max(0.0)
    }
}

#[cfg(test)]
#[path = "loss_tests.rs"]
mod tests;
