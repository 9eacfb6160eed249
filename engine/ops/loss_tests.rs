//! Unit tests of [`super`], in their own file to keep the module short.

use super::super::activation::{forward, softmax_row};
use super::*;

const ACTS: [Activation; 7] = [
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Linear,
    Activation::RectifiedLinear,
    Activation::LeakyRectifiedLinear,
    Activation::ExponentialLinear,
    Activation::ScaledExponentialLinear,
];

fn spec(error: ErrorFunction, act: Activation) -> LossSpec {
    let mut s = LossSpec::new(error, act);
    s.act_params = ActivationParams {
        slope: 0.2,
        alpha: 1.3,
        lambda: 1.05,
    };
    s
}

/// δ against the finite difference of `z ↦ L(f(z), t)`, skipped where the loss has a kink
/// or margin within `h` of `z`.
fn check_fd(s: &LossSpec, z: f32, t: f32) {
    let p = s.act_params;
    let l = |z: f32| s.unit_loss(forward(s.activation, z, &p), t) as f64;
    let h = 1e-3f32;
    let fd = (l(z + h) - l(z - h)) / (2.0 * h as f64);
    let one_sided = (l(z + h) - l(z)) / h as f64;
    let other = (l(z) - l(z - h)) / h as f64;
    if (one_sided - other).abs() > 0.05 * (1.0 + fd.abs()) {
        return; // a kink (margin, hinge, ReLU at 0) lies inside [z−h, z+h]
    }
    let d = s.unit_delta(forward(s.activation, z, &p), t) as f64;
    assert!(
        (d - fd).abs() <= 3e-3 * (1.0 + fd.abs()),
        "{} / {}: z={z} t={t}: delta {d}, finite difference {fd}",
        s.error,
        s.activation
    );
}

#[test]
fn regression_losses_match_finite_differences() {
    let zs = [-2.3f32, -0.7, -0.15, 0.2, 0.45, 0.8, 1.7];
    for error in [
        ErrorFunction::L1,
        ErrorFunction::L2,
        ErrorFunction::L2Hinge,
        ErrorFunction::Hinge,
    ] {
        for act in ACTS {
            for &z in &zs {
                for t in [-1.0f32, 0.0, 0.3, 1.0] {
                    check_fd(&spec(error, act), z, t);
                }
            }
        }
    }
}

#[test]
fn cross_entropy_and_smce_match_finite_differences() {
    let zs = [-4.0f32, -1.3, -0.4, 0.1, 0.6, 1.9, 3.5];
    for &z in &zs {
        for t in [0.0f32, 0.25, 1.0] {
            check_fd(
                &spec(ErrorFunction::CrossEntropy, Activation::Sigmoid),
                z,
                t,
            );
        }
        for error in [
            ErrorFunction::ScaledMarginalCrossEntropy,
            ErrorFunction::DataScaledMarginalCrossEntropy,
        ] {
            let mut s = spec(error, Activation::Sigmoid);
            s.smce = SmceParams {
                one_target: 0.8,
                zero_target: 0.3,
                one_scale: 30.0,
                zero_scale: 2.0,
            };
            for t in [0.0f32, 0.6, 1.0] {
                check_fd(&s, z, t);
            }
            // Chain-rule forms for other activations.
            for act in [Activation::Tanh, Activation::Linear] {
                let mut s2 = s;
                s2.activation = act;
                check_fd(&s2, z * 0.2, 0.0);
                if error == ErrorFunction::ScaledMarginalCrossEntropy {
                    check_fd(&s2, z * 0.1 + 0.5, 1.0);
                }
            }
        }
    }
}

#[test]
fn smce_margins_and_delta_boost() {
    let mut s = LossSpec::new(
        ErrorFunction::ScaledMarginalCrossEntropy,
        Activation::Sigmoid,
    );
    // Inside the margins nothing trains and nothing is lost.
    assert_eq!(s.unit_delta(0.95, 1.0), 0.0);
    assert_eq!(s.unit_loss(0.95, 1.0), 0.0);
    assert_eq!(s.zero_target_delta(0.05), 0.0);
    assert_eq!(s.zero_target_loss(0.05), 0.0);
    s.smce.one_scale = 30.0;
    assert_eq!(s.unit_delta(0.5, 1.0), 30.0 * -0.5);
    assert_eq!(s.zero_target_delta(0.5), 0.5);
    let c = s.nonzero_loss_correction(0.5, 1.0);
    assert!((c - (30.0 * 2f32.ln() - 2f32.ln())).abs() < 1e-5);

    let mut ce = LossSpec::new(ErrorFunction::CrossEntropy, Activation::Sigmoid);
    ce.delta_boost = DeltaBoost {
        one: 3.0,
        zero: 0.5,
    };
    assert_eq!(ce.unit_delta(0.25, 1.0), 3.0 * -0.75);
    assert_eq!(ce.zero_target_delta(0.25), 0.5 * 0.25);
    assert!(ce.unit_loss(0.0, 1.0).is_finite());
}

#[test]
fn softmax_cross_entropy_delta_is_the_row_gradient() {
    let z = [0.4f32, -1.1, 2.0, 0.0, -0.3];
    let t = [0.5f32, 0.0, 0.25, 0.25, 0.0]; // sums to 1
    let s = LossSpec::new(ErrorFunction::CrossEntropy, Activation::SoftMax);
    let row_loss = |z: &[f32]| {
        let mut a = vec![0.0; z.len()];
        softmax_row(&mut a, z);
        a.iter()
            .zip(&t)
            .map(|(&a, &t)| s.unit_loss(a, t) as f64)
            .sum::<f64>()
    };
    let mut a = [0.0; 5];
    softmax_row(&mut a, &z);
    for i in 0..5 {
        let h = 1e-3;
        let (mut zp, mut zm) = (z, z);
        zp[i] += h;
        zm[i] -= h;
        let fd = (row_loss(&zp) - row_loss(&zm)) / (2.0 * h as f64);
        let d = s.unit_delta(a[i], t[i]) as f64;
        assert!((d - fd).abs() < 2e-3, "{i}: {d} vs {fd}");
    }
    assert_eq!(s.indicator_target(4), 0.25);
    assert_eq!(
        LossSpec::new(ErrorFunction::L2, Activation::Sigmoid).indicator_target(4),
        1.0
    );
}

#[test]
fn row_fill_equals_the_scalar_zero_target_delta() {
    let a: Vec<f32> = (0..101).map(|i| i as f32 / 50.0 - 0.7).collect();
    for error in ErrorFunction::ALL.iter().copied() {
        for act in [Activation::Sigmoid, Activation::SoftMax, Activation::Tanh] {
            let mut s = spec(error, act);
            s.delta_boost.zero = 0.3;
            let mut out = vec![0.0; a.len()];
            s.fill_zero_target_delta(&mut out, &a);
            for (o, &x) in out.iter().zip(&a) {
                assert_eq!(
                    o.to_bits(),
                    s.zero_target_delta(x).to_bits(),
                    "{error} {act}"
                );
            }
        }
    }
}

#[test]
fn row_loss_equals_the_scalar_sum() {
    use super::super::fixed::to_fixed;
    let a: Vec<f32> = (0..9001).map(|i| i as f32 / 9000.0).collect();
    for error in ErrorFunction::ALL.iter().copied() {
        for act in [Activation::Sigmoid, Activation::SoftMax, Activation::Tanh] {
            let s = spec(error, act);
            let expect: i128 = a
                .iter()
                .map(|&x| to_fixed(s.zero_target_loss(x)) as i128)
                .sum();
            assert_eq!(s.zero_target_loss_fixed(&a), expect, "{error} {act}");
        }
    }
}

#[test]
fn unsupported_pairs_are_rejected() {
    assert!(LossSpec::new(ErrorFunction::CrossEntropy, Activation::Tanh)
        .check()
        .is_err());
    assert!(LossSpec::new(
        ErrorFunction::DataScaledMarginalCrossEntropy,
        Activation::SoftMax
    )
    .check()
    .is_err());
    assert!(LossSpec::new(ErrorFunction::L2, Activation::Tanh)
        .check()
        .is_ok());
}
