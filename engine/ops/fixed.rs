//! 64-bit fixed-point accumulation, DSSTNE's recipe for sums that must not depend on the
//! order of addition (sparse weight gradients, bias gradients, losses).
//!
//! A float `x` enters the sum as `to_fixed(x) = round_half_even(x · 2³⁰)` (DSSTNE:
//! `llrintf(ERRORSCALEF * x)`, `ERRORSCALE = 2³⁰`); integer addition is associative, so the
//! total is the same bits in any order and on any number of threads or devices. The total
//! leaves fixed point once: `alpha · (sum as f64) · 2⁻³⁰`.
//!
//! Resolution is `2⁻³⁰ ≈ 9.3e−10` per term. Terms saturate at `±2⁵¹` (`|x| ≥ 2²¹`, values
//! that are already divergent) and sums wrap, like DSSTNE's unsigned 64-bit `atomicAdd`
//! (wrapping addition stays associative, so the result is still order-independent).

/// `log2` of the fixed-point scale.
pub const FIXED_SCALE_BITS: u32 = 30;
/// The fixed-point scale `2³⁰` (DSSTNE's `ERRORSCALE`).
pub const FIXED_SCALE: f32 = (1u64 << FIXED_SCALE_BITS) as f32;
/// `2⁻³⁰` (DSSTNE's `ONEOVERERRORSCALE`).
pub const FIXED_UNIT: f64 = 1.0 / (1u64 << FIXED_SCALE_BITS) as f64;

/// `1.5 · 2⁵²`: adding it to an `f64` of magnitude at most `2⁵¹` rounds to an integer
/// (half to even) and leaves that integer in the low mantissa bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// Terms saturate at `±2⁵¹` (that is, `|x| ≥ 2²¹`).
const LIMIT: f64 = 2_251_799_813_685_248.0;

/// `round_half_even(clamp(x · 2³⁰, −2⁵¹, 2⁵¹))` as `i64`; NaN gives 0. Branch-free, so loops of
/// it vectorise. (CUDA: `llrint(fmin(fmax((double)x * 0x1p30, -0x1p51), 0x1p51))`, NaN → 0.)
#[inline(always)]
pub fn to_fixed(x: f32) -> i64 {
    // Scaling by a power of two is exact in f64.
    let y = (x as f64 * (1u64 << FIXED_SCALE_BITS) as f64).clamp(-LIMIT, LIMIT);
    let y = if x.is_nan() { 0.0 } else { y };
    ((y + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64)
}

/// A fixed-point sum back to a float: `sum · 2⁻³⁰` (exact up to the rounding of `sum` to `f64`).
#[inline(always)]
pub fn from_fixed(sum: i64) -> f64 {
    sum as f64 * FIXED_UNIT
}

/// `alpha · sum · 2⁻³⁰` rounded once to `f32` (DSSTNE: `alpha * (double)sum * ONEOVERERRORSCALE`).
#[inline(always)]
pub fn scaled_from_fixed(alpha: f32, sum: i64) -> f32 {
    (alpha as f64 * from_fixed(sum)) as f32
}

/// A 128-bit fixed-point sum (for losses over whole batches) back to `f64`.
#[inline]
pub fn from_fixed_wide(sum: i128) -> f64 {
    sum as f64 * FIXED_UNIT
}

/// A loss total in fixed point (units of `2⁻³⁰`), exact and order-independent; add totals of
/// several batches or ranks with `+` before converting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FixedSum(pub i128);

impl FixedSum {
    /// The total as a float: `sum · 2⁻³⁰`.
    pub fn to_f64(self) -> f64 {
        from_fixed_wide(self.0)
    }
}

impl std::ops::Add for FixedSum {
    type Output = FixedSum;
    fn add(self, rhs: FixedSum) -> FixedSum {
        FixedSum(self.0.wrapping_add(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_fixed_rounds_half_to_even_and_saturates() {
        let unit = 1.0 / FIXED_SCALE;
        assert_eq!(to_fixed(1.0), 1 << 30);
        assert_eq!(to_fixed(-0.25), -(1 << 28));
        assert_eq!(to_fixed(0.5 * unit), 0);
        assert_eq!(to_fixed(1.5 * unit), 2);
        assert_eq!(to_fixed(2.5 * unit), 2);
        assert_eq!(to_fixed(-2.5 * unit), -2);
        assert_eq!(to_fixed(-3.5 * unit), -4);
        assert_eq!(to_fixed(f32::INFINITY), 1 << 51);
        assert_eq!(to_fixed(-1e30), -(1 << 51));
        assert_eq!(
            to_fixed(2_097_151.5),
            (2_097_151.5f64 * (1u64 << 30) as f64) as i64
        );
        assert_eq!(to_fixed(f32::NAN), 0);
        // Agrees with the slow definition across magnitudes.
        let mut x = 1.0e-12f32;
        while x < 2.0e6 {
            for v in [x, -x, x * 1.37, -x * 0.61] {
                let expect = (v * FIXED_SCALE).round_ties_even() as i64;
                assert_eq!(to_fixed(v), expect, "{v}");
            }
            x *= 3.3;
        }
        assert_eq!(scaled_from_fixed(0.5, to_fixed(3.0)), 1.5);
        assert_eq!(from_fixed_wide(-(1i128 << 31)), -2.0);
    }
}
