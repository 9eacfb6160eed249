//! Per-user history lengths: log-normal shape, clamped to `[min, max]`, summing exactly to
//! the requested number of entries.

use crate::rng::Rng;

/// Draws one log-normal weight per user and scales them so that the clamped, rounded
/// lengths add up to exactly `entries`.
///
/// Requires `users * min <= entries <= users * max` and `min <= max` (checked by the caller).
pub fn history_lengths(
    users: u32,
    entries: u64,
    min: u32,
    max: u32,
    sigma: f64,
    rng: &mut Rng,
) -> Vec<u32> {
    let n = users as usize;
    debug_assert!(min <= max);
    debug_assert!(users as u64 * min as u64 <= entries && entries <= users as u64 * max as u64);
    let weights: Vec<f64> = (0..n).map(|_| (sigma * rng.normal()).exp()).collect();
    let (lo, hi) = (min as f64, max as f64);
    let clamped_sum = |c: f64| -> f64 { weights.iter().map(|w| (c * w).clamp(lo, hi)).sum() };

    // Bisection on the scale c: the clamped sum is non-decreasing in c.
    let target = entries as f64;
    let mean_w = weights.iter().sum::<f64>() / n as f64;
    let mut c_lo = 0.0;
    let mut c_hi = target / n as f64 / mean_w;
    while clamped_sum(c_hi) < target && c_hi < f64::MAX / 4.0 {
        c_hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (c_lo + c_hi);
        if clamped_sum(mid) < target {
            c_lo = mid;
        } else {
            c_hi = mid;
        }
        if c_hi - c_lo <= c_hi * 1e-15 {
            break;
        }
    }
    let exact: Vec<f64> = weights.iter().map(|w| (c_hi * w).clamp(lo, hi)).collect();
    let mut lengths: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
    let floor_sum: u64 = lengths.iter().map(|&l| l as u64).sum();

    // Largest-remainder rounding; the loops also absorb any floating-point slack.
    let mut order: Vec<usize> = (0..n).collect();
    let frac = |i: usize| exact[i] - exact[i].floor();
    if floor_sum < entries {
        order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
        let mut missing = entries - floor_sum;
        while missing > 0 {
            for &u in &order {
                if missing == 0 {
                    break;
                }
                if lengths[u] < max {
                    lengths[u] += 1;
                    missing -= 1;
                }
            }
        }
    } else if floor_sum > entries {
        order.sort_by(|&a, &b| frac(a).total_cmp(&frac(b)).then(a.cmp(&b)));
        let mut extra = floor_sum - entries;
        while extra > 0 {
            for &u in &order {
                if extra == 0 {
                    break;
                }
                if lengths[u] > min {
                    lengths[u] -= 1;
                    extra -= 1;
                }
            }
        }
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(users: u32, entries: u64, min: u32, max: u32, sigma: f64) -> Vec<u32> {
        let l = history_lengths(users, entries, min, max, sigma, &mut Rng::stream(5, 0));
        assert_eq!(l.len(), users as usize);
        assert_eq!(l.iter().map(|&x| x as u64).sum::<u64>(), entries);
        assert!(l.iter().all(|&x| x >= min && x <= max));
        l
    }

    #[test]
    fn sums_exactly_and_respects_bounds() {
        check(1000, 50_000, 1, 300, 1.2);
        check(1000, 1000, 1, 300, 1.2); // everyone at the minimum
        check(1000, 300_000, 1, 300, 1.2); // everyone at the maximum
        check(1000, 299_999, 1, 300, 1.2);
        check(7, 20, 0, 5, 0.0);
        check(1, 17, 1, 17, 2.0);
    }

    #[test]
    fn lengths_are_spread_out() {
        let mut l = check(10_000, 1_000_000, 20, 5000, 1.2);
        l.sort_unstable();
        let median = l[l.len() / 2];
        // Log-normal: the mean (100) is well above the median, and the tail is long.
        assert!(median < 90, "median {median}");
        assert!(l[l.len() - 1] > 800);
        assert_eq!(l[0], 20);
    }
}
