//! Elementary functions written out in plain `f32` arithmetic, for reference formulas that
//! must vectorise on the CPU and give the same bits on a GPU.
//!
//! The platform `ln` is a libm call (no SIMD) and CUDA's `logf` differs from it in the last
//! bit. [`ln`] uses only `+ − ×`, comparisons and bit operations, each rounded once, in a fixed
//! order, so a CUDA port that keeps the order and disables FMA contraction (`__fmul_rn`,
//! `__fadd_rn`, or `-fmad=false`) reproduces it exactly.

/// Natural logarithm for positive normal `x` (Cephes `logf`: `x = m·2ᵉ` with
/// `m ∈ [√½, √2)`, a degree-9 polynomial for `ln(1 + f)`, `f = m − 1`, and `ln 2` split in two
/// parts). Error within 2 ulp of the exact value. Zero, subnormal, negative, infinite and NaN
/// inputs give unspecified finite or NaN results: callers clamp (`ln(max(x, LOG_FLOOR))`).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn ln(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    // m ∈ [0.5, 1)
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    if m < SQRT_HALF {
        e -= 1;
        m = m + m - 1.0;
    } else {
        m -= 1.0;
    }
    let e = e as f32;
    let z = m * m;
    let mut y = 7.037_683_629_2e-2f32;
    y = y * m - 1.151_461_031_0e-1;
    y = y * m + 1.167_699_874_0e-1;
    y = y * m - 1.242_014_084_6e-1;
    y = y * m + 1.424_932_278_7e-1;
    y = y * m - 1.666_805_766_5e-1;
    y = y * m + 2.000_071_476_5e-1;
    y = y * m - 2.499_999_399_3e-1;
    y = y * m + 3.333_333_117_4e-1;
    y = y * m * z;
    y += -2.121_944_40e-4 * e;
    y += -0.5 * z;
    let r = m + y;
    r + 0.693_359_375 * e
}

/// `eˣ` (Cephes `expf`: `x = n·ln 2 + r`, `|r| ≤ ½ ln 2`, a degree-5 polynomial for
/// `(eʳ − 1 − r)/r²`, and `2ⁿ` built from its bits). Inputs are clamped to `[−87, 88]`, so the
/// result is always a finite normal number (`e⁻⁸⁷ ≈ 1.6e−38`, `e⁸⁸ ≈ 1.7e38`); NaN gives an
/// unspecified finite value. Within 2 ulp of the exact value over the unclamped range.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5·2²³ trick: plain adds, no libm `floorf` call on
    // baseline x86-64, and the same bits once vectorised.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_375 - n * -2.121_944_40e-4;
    let mut p = 1.987_569_150_0e-4f32;
    p = p * r + 1.398_199_950_7e-3;
    p = p * r + 8.333_451_907_3e-3;
    p = p * r + 4.166_579_589_4e-2;
    p = p * r + 1.666_666_545_9e-1;
    p = p * r + 5.000_000_120_1e-1;
    let y = p * r * r + r + 1.0;
    // 2ⁿ from the bits of `n + 127 + 1.5·2²³`, whose low mantissa bits hold `n + 127`:
    // integer operations only (an `as i32` cast is a saturating, NaN-checking scalar
    // conversion that stops the loop from vectorising).
    let biased = (n + (ROUND + 127.0))
        .to_bits()
        .wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp(x: f32) -> f64 {
        let x = x.abs();
        (f32::from_bits(x.to_bits() + 1) - x) as f64
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let exact = (x as f64).exp();
            let err = (exp(x) as f64 - exact).abs() / ulp(exact as f32);
            worst = worst.max(err);
            x += 0.000_97;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(1000.0).is_finite());
    }

    #[test]
    fn ln_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = 1.0e-12f32;
        while x < 1.0e6 {
            for v in [x, x * 1.0001, x * 1.37, x * 0.71] {
                let exact = (v as f64).ln();
                let err =
                    (ln(v) as f64 - exact).abs() / ulp(exact as f32).max(f32::MIN_POSITIVE as f64);
                worst = worst.max(err);
            }
            x *= 1.013;
        }
        // Around 1, where ln is tiny.
        for i in 1..2000 {
            let v = 1.0 + (i as f32 - 1000.0) * 1.0e-4;
            let exact = (v as f64).ln();
            if exact != 0.0 {
                let err = (ln(v) as f64 - exact).abs() / ulp(exact as f32);
                worst = worst.max(err);
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
    }
}
