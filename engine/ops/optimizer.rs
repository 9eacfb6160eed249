//! Reference weight-update rules (DSSTNE `kernels.cu`, `k*UpdateWeights`), one element at a
//! time, plus the learning-rate schedules.
//!
//! Conventions (DSSTNE §1.7):
//! - `g` is the **negative mean gradient** (the weight-gradient product runs with
//!   `alpha = −1/batch`), so every rule *adds* to `w`.
//! - Regularised gradient `g' = g − λ·w − λ1·sgn(w)` (`sgn(0) = 0`); biases use `λ = λ1 = 0`
//!   and `g = −mean_b δ[b]`.
//! - `α` learning rate, `μ` momentum/decay, `μ1` Adam's β₂, `t` the 1-based update count.
//!
//! | rule | state | update |
//! |---|---|---|
//! | SGD | – | `w += α·g'` |
//! | Momentum | `v` | `v = μv + α·g'; w += v` |
//! | Nesterov | `v` | `v' = μv + α·g'; w += v' + μ(v' − v); v = v'` |
//! | AdaGrad | `v` | `v += g'²; w += α·g'/√max(1e−9, v)` |
//! | RMSProp | `v` | `v = μv + (1−μ)g'²; w += α·g'/√max(1e−9, v)` |
//! | AdaDelta | `v, s` | `s = μs + (1−μ)g'²; Δ = √(max(1e−9,v)/max(1e−9,s))·g'; v = μv + (1−μ)Δ²; w += Δ` (no α) |
//! | Adam | `m, v` | `m = μm + (1−μ)g'; v = μ1·v + (1−μ1)g'²; w += α·m̂/(√v̂ + 1e−8)`, `m̂ = m/(1−μᵗ)`, `v̂ = v/(1−μ1ᵗ)` |
//!
//! DSSTNE's Adam kernel writes the bias-*corrected* `m̂`, `v̂` back into its state, which
//! compounds the correction every step; we keep the uncorrected moments (standard Adam).

use super::Optimizer;

/// Hyperparameters of an update, with DSSTNE's names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    /// Learning rate `α`.
    pub alpha: f32,
    /// L2 weight decay `λ`.
    pub lambda: f32,
    /// L1 penalty `λ1`.
    pub lambda1: f32,
    /// Momentum / running-average decay `μ` (Adam's β₁).
    pub mu: f32,
    /// Adam's β₂ (`μ1`).
    pub mu1: f32,
}

impl Hyper {
    /// The hyperparameters of `optimizer` from the trainer's settings (shared by `trainer`
    /// and the Python package, so that both train the same bits): `mu` defaults to 0.9 for
    /// Adam, RMSProp and AdaDelta and to DSSTNE's 0.5 otherwise; Adam's `mu1` (β₂) of 0 means
    /// 0.999.
    pub fn for_optimizer(
        optimizer: Optimizer,
        alpha: f32,
        lambda: f32,
        lambda1: f32,
        mu: Option<f32>,
        mu1: f32,
    ) -> Self {
        let mu = mu.unwrap_or(match optimizer {
            Optimizer::Adam | Optimizer::RmsProp | Optimizer::AdaDelta => 0.9,
            _ => 0.5,
        });
        let mu1 = if optimizer == Optimizer::Adam && mu1 == 0.0 {
            0.999
        } else {
            mu1
        };
        Hyper {
            alpha,
            lambda,
            lambda1,
            mu,
            mu1,
        }
    }
}

impl Default for Hyper {
    /// DSSTNE's `train` CLI defaults: α 0.025, λ 0.0001, λ1 0, μ 0.5, μ1 0.
    fn default() -> Self {
        Hyper {
            alpha: 0.025,
            lambda: 0.0001,
            lambda1: 0.0,
            mu: 0.5,
            mu1: 0.0,
        }
    }
}

const EPS: f32 = 1.0e-9;
const ADAM_EPS: f32 = 1.0e-8;

#[inline(always)]
fn sgn(w: f32) -> f32 {
    if w > 0.0 {
        1.0
    } else if w < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `base^n` by binary exponentiation in `f64`, rounded once to `f32`. Written out (rather
/// than `powi`, which the compiler may expand differently for constant and runtime `n`) so
/// that every call site, and a CUDA port doing the same loop, gets the same bits.
pub fn pow_u64(base: f32, mut n: u64) -> f32 {
    let mut result = 1.0f64;
    let mut b = base as f64;
    while n > 0 {
        if n & 1 == 1 {
            result *= b;
        }
        b *= b;
        n >>= 1;
    }
    result as f32
}

/// `g' = g − λ·w − λ1·sgn(w)`.
#[inline(always)]
pub fn regularized(g: f32, w: f32, h: &Hyper) -> f32 {
    g - (h.lambda * w + h.lambda1 * sgn(w))
}

/// Number of per-element state values a rule keeps (0, 1 or 2).
pub fn state_len(opt: Optimizer) -> usize {
    match opt {
        Optimizer::Sgd => 0,
        Optimizer::Momentum | Optimizer::Nesterov | Optimizer::AdaGrad | Optimizer::RmsProp => 1,
        Optimizer::AdaDelta | Optimizer::Adam => 2,
    }
}

/// One update of one element: returns the new weight and state. `s[0]` is the velocity `v`
/// (Adam: the first moment `m`); `s[1]` is AdaDelta's gradient average `s` or Adam's second
/// moment `v`. Unused state entries are returned unchanged. `t` is the 1-based update count
/// (Adam only; `t = 0` is treated as 1).
#[inline]
pub fn update(opt: Optimizer, h: &Hyper, t: u64, w: f32, g: f32, s: [f32; 2]) -> (f32, [f32; 2]) {
    update_step(opt, h, &StepConsts::new(h, t), w, g, s)
}

/// The per-update constants of a rule, computed once per step rather than per element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepConsts {
    /// Adam's bias correction of the first moment, `1 − μ^t`.
    pub adam_m: f32,
    /// Adam's bias correction of the second moment, `1 − μ1^t`.
    pub adam_v: f32,
}

impl StepConsts {
    /// The constants of update number `t` (1-based; `t = 0` is treated as 1).
    pub fn new(h: &Hyper, t: u64) -> Self {
        let t = t.max(1);
        StepConsts {
            adam_m: 1.0 - pow_u64(h.mu, t),
            adam_v: 1.0 - pow_u64(h.mu1, t),
        }
    }
}

/// [`update`] with the per-step constants precomputed: the form batch kernels inline.
#[inline(always)]
pub fn update_step(
    opt: Optimizer,
    h: &Hyper,
    c: &StepConsts,
    w: f32,
    g: f32,
    s: [f32; 2],
) -> (f32, [f32; 2]) {
    let g = regularized(g, w, h);
    let [s0, s1] = s;
    match opt {
        Optimizer::Sgd => (w + h.alpha * g, s),
        Optimizer::Momentum => {
            let v = h.mu * s0 + h.alpha * g;
            (w + v, [v, s1])
        }
        Optimizer::Nesterov => {
            let v = h.mu * s0 + h.alpha * g;
            (w + v + h.mu * (v - s0), [v, s1])
        }
        Optimizer::AdaGrad => {
            let v = s0 + g * g;
            (w + h.alpha * g / v.max(EPS).sqrt(), [v, s1])
        }
        Optimizer::RmsProp => {
            let v = h.mu * s0 + (1.0 - h.mu) * g * g;
            (w + h.alpha * g / v.max(EPS).sqrt(), [v, s1])
        }
        Optimizer::AdaDelta => {
            let sg = h.mu * s1 + (1.0 - h.mu) * g * g;
            let dw = (s0.max(EPS) / sg.max(EPS)).sqrt() * g;
            let v = h.mu * s0 + (1.0 - h.mu) * dw * dw;
            (w + dw, [v, sg])
        }
        Optimizer::Adam => {
            let m = h.mu * s0 + (1.0 - h.mu) * g;
            let v = h.mu1 * s1 + (1.0 - h.mu1) * g * g;
            let m_hat = m / c.adam_m;
            let v_hat = v / c.adam_v;
            (w + h.alpha * m_hat / (v_hat.sqrt() + ADAM_EPS), [m, v])
        }
    }
}

/// How the learning rate changes during training.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum LrSchedule {
    /// `α` throughout.
    #[default]
    Constant,
    /// DSSTNE's `Decay`: `α / (1 + decay·t)` with `t` the number of batches trained so far.
    Decay { decay: f32 },
    /// DSSTNE's CDL `AlphaInterval`/`AlphaMultiplier`: `α · multiplier^⌊epoch/interval⌋`
    /// (`epoch` 0-based; an interval of 0 means constant).
    Step { interval: u32, multiplier: f32 },
}

impl LrSchedule {
    /// The schedule the trainer (and the Python package) derive from their settings: the
    /// descriptor's `Decay` when positive, else a step schedule of `multiplier` every
    /// `interval` epochs when `interval > 0`, else constant.
    pub fn from_settings(descriptor_decay: f32, interval: u32, multiplier: f32) -> Self {
        if descriptor_decay > 0.0 {
            LrSchedule::Decay {
                decay: descriptor_decay,
            }
        } else if interval > 0 {
            LrSchedule::Step {
                interval,
                multiplier,
            }
        } else {
            LrSchedule::Constant
        }
    }
}

/// The learning rate for `epoch` (0-based) after `batches` batches, from base rate `alpha`.
pub fn learning_rate(alpha: f32, schedule: LrSchedule, epoch: u32, batches: u64) -> f32 {
    match schedule {
        LrSchedule::Constant => alpha,
        LrSchedule::Decay { decay } => {
            (alpha as f64 / (1.0 + decay as f64 * batches as f64)) as f32
        }
        LrSchedule::Step {
            interval,
            multiplier,
        } => match epoch.checked_div(interval) {
            None => alpha,
            Some(k) => alpha * multiplier.powi(k.min(i32::MAX as u32) as i32),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Hyper {
        Hyper {
            alpha: 0.1,
            lambda: 0.01,
            lambda1: 0.001,
            mu: 0.9,
            mu1: 0.999,
        }
    }

    #[test]
    fn rules_by_hand() {
        let h = h();
        let (w, g) = (0.5f32, 0.2f32);
        let gp = 0.2 - (0.01 * 0.5 + 0.001);
        assert_eq!(regularized(g, w, &h), gp);
        assert_eq!(
            update(Optimizer::Sgd, &h, 1, w, g, [0.0; 2]).0,
            w + 0.1 * gp
        );
        let (w1, s) = update(Optimizer::Momentum, &h, 1, w, g, [0.3, 0.0]);
        assert_eq!(s[0], 0.9 * 0.3 + 0.1 * gp);
        assert_eq!(w1, w + s[0]);
        let (w1, s) = update(Optimizer::Nesterov, &h, 1, w, g, [0.3, 0.0]);
        assert_eq!(w1, w + s[0] + 0.9 * (s[0] - 0.3));
        let (w1, s) = update(Optimizer::AdaGrad, &h, 1, w, g, [0.04, 0.0]);
        assert_eq!(s[0], 0.04 + gp * gp);
        assert_eq!(w1, w + 0.1 * gp / s[0].sqrt());
        let (_, s) = update(Optimizer::RmsProp, &h, 1, w, g, [0.04, 0.0]);
        assert_eq!(s[0], 0.9 * 0.04 + (1.0 - 0.9) * gp * gp);
        // L1 term vanishes at w = 0.
        assert_eq!(regularized(g, 0.0, &h), g);
    }

    #[test]
    fn adam_first_step_moves_by_alpha_times_sign() {
        let mut h = h();
        h.lambda = 0.0;
        h.lambda1 = 0.0;
        for g in [0.3f32, -0.02] {
            let (w, [m, v]) = update(Optimizer::Adam, &h, 1, 1.0, g, [0.0, 0.0]);
            assert!((w - (1.0 + 0.1 * g.signum())).abs() < 1e-5, "{w}");
            assert_eq!(m, (1.0 - h.mu) * g);
            assert_eq!(v, (1.0 - h.mu1) * g * g);
        }
        // Constant gradient: steps stay ≈ α.
        let (mut w, mut s) = (0.0f32, [0.0f32; 2]);
        for t in 1..=50 {
            let prev = w;
            (w, s) = update(Optimizer::Adam, &h, t, w, 0.5, s);
            assert!(((w - prev) - 0.1).abs() < 1e-3);
        }
    }

    #[test]
    fn adadelta_and_state_sizes() {
        let h = h();
        let (w, [v, sg]) = update(Optimizer::AdaDelta, &h, 1, 0.0, 0.5, [0.0, 0.0]);
        let expect_sg = (1.0 - h.mu) * 0.5f32 * 0.5;
        assert_eq!(sg, expect_sg);
        let dw = (1e-9f32 / expect_sg).sqrt() * 0.5;
        assert_eq!(w, dw);
        assert_eq!(v, (1.0 - h.mu) * dw * dw);
        assert_eq!(state_len(Optimizer::Sgd), 0);
        assert_eq!(state_len(Optimizer::Nesterov), 1);
        assert_eq!(state_len(Optimizer::Adam), 2);
    }

    #[test]
    fn schedules() {
        assert_eq!(learning_rate(0.1, LrSchedule::Constant, 9, 999), 0.1);
        let d = LrSchedule::Decay { decay: 0.01 };
        assert!((learning_rate(0.1, d, 0, 100) - 0.05).abs() < 1e-8);
        let s = LrSchedule::Step {
            interval: 3,
            multiplier: 0.5,
        };
        assert_eq!(learning_rate(0.1, s, 2, 0), 0.1);
        assert_eq!(learning_rate(0.1, s, 3, 0), 0.05);
        assert_eq!(learning_rate(0.1, s, 7, 0), 0.025);
        let s0 = LrSchedule::Step {
            interval: 0,
            multiplier: 0.5,
        };
        assert_eq!(learning_rate(0.1, s0, 7, 0), 0.1);
        assert_eq!(pow_u64(0.5, 10), 1.0 / 1024.0);
        assert_eq!(pow_u64(0.9, 0), 1.0);
        assert!((pow_u64(0.999, 1000) - 0.999f32.powf(1000.0)).abs() < 1e-6);
    }
}
