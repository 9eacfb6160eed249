//! Dropout variants beyond the plain primitive: DSSTNE's alpha-dropout of ELU/SELU layers.

use crate::ops::Activation;

/// DSSTNE's alpha-dropout of ELU and SELU layers (`kCalculateScaledBiasedDropout`, Klambauer
/// et al. 2017), which keeps the mean and variance of the units: with `α' = −λ·ELUAlpha`
/// (`λ = SELULambda` for SELU, 1 for ELU), `q = 1 − p`, `a = (q + α'²·p·q)^(−1/2)` and
/// `b = −a·p·α'` (in `f32`), a dropped unit becomes `a·α' + b`, a kept one `a·x + b`.
/// Moira composes it from the plain dropout primitive — dropped value `α'/q`, kept `x/q` —
/// followed by `z ↦ (a·q)·z + b`; its gradient is `a·q/q` on kept units and 0 on dropped ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AlphaDropout {
    /// The value plain dropout gives a dropped unit: `α'/q`.
    pub dropped: f32,
    /// The scale after plain dropout: `a·q`.
    pub scale: f32,
    /// The bias after it: `b`.
    pub bias: f32,
}

impl AlphaDropout {
    /// The alpha-dropout of `layer`, if it is an ELU or SELU layer with dropout.
    pub(crate) fn of(layer: &crate::graph::Layer) -> Option<Self> {
        Self::new(
            layer.activation,
            layer.p_dropout,
            layer.elu_alpha,
            layer.selu_lambda,
        )
    }

    /// The alpha-dropout of an `activation` layer with dropout `p` (None unless ELU or SELU
    /// and `0 < p < 1`).
    pub(crate) fn new(
        activation: Activation,
        p: f32,
        elu_alpha: f32,
        selu_lambda: f32,
    ) -> Option<Self> {
        let lambda = match activation {
            Activation::ExponentialLinear => 1.0f32,
            Activation::ScaledExponentialLinear => selu_lambda,
            _ => return None,
        };
        if p <= 0.0 || p >= 1.0 {
            return None;
        }
        let alpha = -lambda * elu_alpha;
        let q = 1.0 - p;
        let a = 1.0 / (q + alpha * alpha * p * q).sqrt();
        Some(AlphaDropout {
            dropped: alpha / q,
            scale: a * q,
            bias: -a * p * alpha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AlphaDropout;
    use crate::ops::Activation;

    /// Klambauer et al.'s constants for SELU (λ 1.0507, α 1.6733) at p = 0.1, and the
    /// composition dropped ↦ scale·dropped + b = a·α' + b; standard-normal SELU inputs keep
    /// mean ≈ 0 and variance ≈ 1.
    #[test]
    fn selu_alpha_dropout_keeps_mean_and_variance() {
        let ad =
            AlphaDropout::new(Activation::ScaledExponentialLinear, 0.1, 1.6733, 1.0507).unwrap();
        let alpha = -1.0507f32 * 1.6733;
        let a = 1.0 / (0.9f32 + alpha * alpha * 0.1 * 0.9).sqrt();
        assert!((a - 0.92127).abs() < 1e-4 && (ad.bias - 0.16197).abs() < 1e-4);
        assert!((ad.scale * ad.dropped + ad.bias - (a * alpha + ad.bias)).abs() < 1e-5);
        // Mean and variance of the output over SELU(N(0, 1)) and the dropout draws.
        let n = 200_000u64;
        let (mut m1, mut m2) = (0.0f64, 0.0f64);
        for i in 0..n {
            let z = crate::rng::normal_f32(3, 0, i);
            let x = crate::ops::activation::forward(
                Activation::ScaledExponentialLinear,
                z,
                &crate::ops::ActivationParams {
                    slope: 1.0,
                    alpha: 1.6733,
                    lambda: 1.0507,
                },
            );
            let kept = crate::rng::uniform_f32(3, 1, i) >= 0.1;
            let y = if kept { x / 0.9 } else { ad.dropped } * ad.scale + ad.bias;
            m1 += y as f64;
            m2 += (y as f64) * (y as f64);
        }
        let mean = m1 / n as f64;
        let var = m2 / n as f64 - mean * mean;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
            "mean {mean} var {var}"
        );
        assert!(AlphaDropout::new(Activation::Tanh, 0.1, 1.0, 1.0).is_none());
        assert!(AlphaDropout::new(Activation::ExponentialLinear, 0.0, 1.0, 1.0).is_none());
    }
}
