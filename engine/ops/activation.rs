//! Reference formulas of the activation functions: `a = f(z)` and `f'(z)` written from the
//! output `a` (all our derivatives can be, so backward passes need only the unit buffer, as in
//! DSSTNE). These scalar functions are the single source of truth: the CPU and CUDA kernels
//! are tested against them.
//!
//! | activation | `f(z)` | `f'(z)` from `a = f(z)` |
//! |---|---|---|
//! | Sigmoid | `1/(1+e^−z)` | `a(1−a)` |
//! | Tanh | `tanh z` | `1−a²` |
//! | RectifiedLinear | `max(z, 0)` | `a > 0 ? 1 : 0` |
//! | LeakyRectifiedLinear | `z > 0 ? z : slope·z` (DSSTNE's `max(z, slope·z)` for `0 ≤ slope ≤ 1`) | `a > 0 ? 1 : slope` |
//! | ParametricRectifiedLinear | as LeakyRectifiedLinear (DSSTNE parses no name for it) | same |
//! | ExponentialLinear | `z > 0 ? z : α(e^z−1)` | `a ≥ 0 ? 1 : a+α` |
//! | ScaledExponentialLinear | `z > 0 ? λz : λα(e^z−1)` | `a ≥ 0 ? λ : a+λα` |
//! | Linear | `z` | `1` |
//! | SoftPlus | `ln(1+e^z)` | `1−e^−a` (= σ(z)) |
//! | SoftSign | `z/(1+|z|)` | `(1−|a|)²` |
//! | ReluMax | `min(max(z, 0), 1)` | `0 < a < 1 ? 1 : 0` |
//! | LinearMax | `min(max(z, −1), 1)` | `|a| < 1 ? 1 : 0` |
//! | SoftMax | row-wise `e^{z_i−m}/Σ_j e^{z_j−m}`, `m = max_j z_j` | see [`softmax_backward`] |
//!
//! Notes on DSSTNE:
//! - DSSTNE parses SoftPlus, SoftSign, ReluMax and LinearMax but computes nothing for them
//!   (identity). Its kernels have no ReluMax/LinearMax formula at all, so Moira *defines*
//!   ReluMax as ReLU clipped at 1 and LinearMax as the identity clipped to [−1, 1].
//! - DSSTNE's SELU derivative uses `λα·e^a` for negative outputs; the exact value is
//!   `λα·e^z = a + λα`, which we use.
//! - For SoftMax, [`derivative`] returns 1: DSSTNE treats a SoftMax output layer as if its
//!   Jacobian were the identity (exact for cross-entropy with targets summing to 1, see
//!   `ops::loss`). The true Jacobian-vector product is [`softmax_backward`].

use super::{math, Activation};

/// Parameters of the parametrised activations, with DSSTNE's names and network defaults
/// (`RELUSlope` 1.0, `ELUAlpha` 1.0, `SELULambda` 1.050701).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationParams {
    /// Leaky-ReLU slope for negative inputs (`RELUSlope`).
    pub slope: f32,
    /// ELU/SELU `α` (`ELUAlpha`; also SELU's α in DSSTNE).
    pub alpha: f32,
    /// SELU scale `λ` (`SELULambda`).
    pub lambda: f32,
}

impl Default for ActivationParams {
    fn default() -> Self {
        ActivationParams {
            slope: 1.0,
            alpha: 1.0,
            lambda: 1.050701,
        }
    }
}

impl Activation {
    /// Whether `f` acts on each unit alone (everything but SoftMax, which is row-wise).
    pub fn is_elementwise(self) -> bool {
        self != Activation::SoftMax
    }
}

/// The logistic function `1/(1 + e^−z)`, with the portable [`math::exp`].
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + math::exp(-z))
}

/// `f(z)` for an element-wise activation. SoftMax is row-wise (use [`softmax_row`]); for it
/// this returns `z` unchanged.
#[inline]
pub fn forward(act: Activation, z: f32, p: &ActivationParams) -> f32 {
    match act {
        Activation::Sigmoid => sigmoid(z),
        Activation::Tanh => z.tanh(),
        Activation::RectifiedLinear => z.max(0.0),
        Activation::LeakyRectifiedLinear | Activation::ParametricRectifiedLinear => {
            if z > 0.0 {
                z
            } else {
                p.slope * z
            }
        }
        Activation::ExponentialLinear => {
            if z > 0.0 {
                z
            } else {
                p.alpha * z.exp_m1()
            }
        }
        Activation::ScaledExponentialLinear => {
            if z > 0.0 {
                p.lambda * z
            } else {
                p.lambda * p.alpha * z.exp_m1()
            }
        }
        Activation::Linear | Activation::SoftMax => z,
        Activation::SoftPlus => {
            // ln(1 + e^z) = max(z, 0) + ln(1 + e^−|z|), stable for large |z|.
            z.max(0.0) + (-z.abs()).exp().ln_1p()
        }
        Activation::SoftSign => z / (1.0 + z.abs()),
        Activation::ReluMax => z.clamp(0.0, 1.0),
        Activation::LinearMax => z.clamp(-1.0, 1.0),
    }
}

/// `f'(z)` written from the output `a = f(z)` (table in the module docs). For SoftMax this is
/// 1, DSSTNE's treatment of SoftMax output layers.
#[inline]
pub fn derivative(act: Activation, a: f32, p: &ActivationParams) -> f32 {
    match act {
        Activation::Sigmoid => a * (1.0 - a),
        Activation::Tanh => 1.0 - a * a,
        Activation::RectifiedLinear => {
            if a > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRectifiedLinear | Activation::ParametricRectifiedLinear => {
            if a > 0.0 {
                1.0
            } else {
                p.slope
            }
        }
        Activation::ExponentialLinear => {
            if a >= 0.0 {
                1.0
            } else {
                a + p.alpha
            }
        }
        Activation::ScaledExponentialLinear => {
            if a >= 0.0 {
                p.lambda
            } else {
                a + p.lambda * p.alpha
            }
        }
        Activation::Linear | Activation::SoftMax => 1.0,
        Activation::SoftPlus => -(-a).exp_m1(),
        Activation::SoftSign => {
            let s = 1.0 - a.abs();
            s * s
        }
        Activation::ReluMax => {
            if a > 0.0 && a < 1.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LinearMax => {
            if a.abs() < 1.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// Row-wise SoftMax: `out_i = e^{z_i − m} / Σ_j e^{z_j − m}` with `m = max_j z_j`
/// (numerically stable; the sum is taken in `f64`, left to right). `out` and `z` have the same
/// length; an empty row is left empty. `out` may alias nothing; see [`softmax_row_in_place`].
pub fn softmax_row(out: &mut [f32], z: &[f32]) {
    debug_assert_eq!(out.len(), z.len());
    out.copy_from_slice(z);
    softmax_row_in_place(out);
}

/// [`softmax_row`] overwriting its input.
#[inline]
pub fn softmax_row_in_place(row: &mut [f32]) {
    let m = row_max(row);
    let sum = exp_shifted_row(row, m);
    scale_row(row, 1.0 / sum);
}

/// The largest value of `row` (−∞ for an empty row; NaN is passed over unless every value
/// is NaN).
#[inline(always)]
pub fn row_max(row: &[f32]) -> f32 {
    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `x ← exp(x − shift)` for every `x` of `row` ([`math::exp`]); returns the new values' sum
/// in `f64`, added in order.
#[inline(always)]
pub fn exp_shifted_row(row: &mut [f32], shift: f32) -> f64 {
    for x in row.iter_mut() {
        *x = math::exp(*x - shift);
    }
    row.iter().map(|&x| x as f64).sum()
}

/// `x ← x · factor` for every `x` of `row`, the product in `f64` rounded once.
#[inline(always)]
pub fn scale_row(row: &mut [f32], factor: f64) {
    for x in row.iter_mut() {
        *x = (*x as f64 * factor) as f32;
    }
}

/// SoftMax Jacobian-vector product for one row: with `a = softmax(z)` and `g = ∂L/∂a`,
/// `out_i = ∂L/∂z_i = a_i · (g_i − Σ_j a_j g_j)` (the dot product in `f64`).
pub fn softmax_backward(out: &mut [f32], a: &[f32], g: &[f32]) {
    debug_assert!(out.len() == a.len() && a.len() == g.len());
    let dot: f64 = a.iter().zip(g).map(|(&a, &g)| a as f64 * g as f64).sum();
    for ((o, &a), &g) in out.iter_mut().zip(a).zip(g) {
        *o = (a as f64 * (g as f64 - dot)) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELEMENTWISE: [Activation; 12] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::RectifiedLinear,
        Activation::LeakyRectifiedLinear,
        Activation::ParametricRectifiedLinear,
        Activation::ExponentialLinear,
        Activation::ScaledExponentialLinear,
        Activation::Linear,
        Activation::SoftPlus,
        Activation::SoftSign,
        Activation::ReluMax,
        Activation::LinearMax,
    ];

    fn params() -> ActivationParams {
        ActivationParams {
            slope: 0.1,
            alpha: 1.6733,
            lambda: 1.0507,
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let p = params();
        // Points away from the kinks at 0, ±1.
        let points = [-3.1f32, -1.7, -0.62, -0.2, 0.13, 0.55, 0.9, 1.4, 2.6];
        for act in ELEMENTWISE {
            for &z in &points {
                let h = 1e-3f32;
                let fd = (forward(act, z + h, &p) as f64 - forward(act, z - h, &p) as f64)
                    / (2.0 * h as f64);
                let d = derivative(act, forward(act, z, &p), &p) as f64;
                assert!(
                    (d - fd).abs() <= 2e-3 * (1.0 + fd.abs()),
                    "{act} at z={z}: derivative {d}, finite difference {fd}"
                );
            }
        }
    }

    #[test]
    fn forward_values_and_extremes() {
        let p = ActivationParams::default();
        assert_eq!(forward(Activation::Sigmoid, 0.0, &p), 0.5);
        assert_eq!(forward(Activation::SoftPlus, 100.0, &p), 100.0);
        assert!(forward(Activation::SoftPlus, -100.0, &p) >= 0.0);
        assert_eq!(forward(Activation::ReluMax, 3.0, &p), 1.0);
        assert_eq!(forward(Activation::ReluMax, -3.0, &p), 0.0);
        assert_eq!(forward(Activation::LinearMax, -3.0, &p), -1.0);
        // Default slope 1: DSSTNE's leaky ReLU is linear unless RELUSlope is set.
        assert_eq!(forward(Activation::LeakyRectifiedLinear, -2.0, &p), -2.0);
        assert!(!Activation::SoftMax.is_elementwise());
        assert!(forward(Activation::Sigmoid, -100.0, &p).is_finite());
    }

    #[test]
    fn softmax_is_stable_and_its_jvp_matches_finite_differences() {
        let z = [1000.0f32, 999.0, 998.5, 990.0];
        let mut a = [0.0; 4];
        softmax_row(&mut a, &z);
        let s: f32 = a.iter().sum();
        assert!((s - 1.0).abs() < 1e-6 && a.iter().all(|x| x.is_finite()));

        // L(z) = Σ c_i a_i(z); ∂L/∂a = c.
        let z = [0.3f32, -1.2, 0.8, 0.05, -0.4];
        let c = [0.7f32, -0.3, 1.1, 0.2, -0.9];
        let loss = |z: &[f32]| {
            let mut a = vec![0.0; z.len()];
            softmax_row(&mut a, z);
            a.iter()
                .zip(&c)
                .map(|(&a, &c)| a as f64 * c as f64)
                .sum::<f64>()
        };
        let mut a = [0.0; 5];
        softmax_row(&mut a, &z);
        let mut dz = [0.0; 5];
        softmax_backward(&mut dz, &a, &c);
        for i in 0..5 {
            let h = 1e-3;
            let (mut zp, mut zm) = (z, z);
            zp[i] += h;
            zm[i] -= h;
            let fd = (loss(&zp) - loss(&zm)) / (2.0 * h as f64);
            assert!((dz[i] as f64 - fd).abs() < 1e-3, "{i}: {} vs {fd}", dz[i]);
        }
    }
}
