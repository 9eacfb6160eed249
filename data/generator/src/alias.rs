//! Walker/Vose alias table: O(1) draws from a fixed discrete distribution.

use crate::rng::Rng;

/// A discrete distribution over `0..n` prepared for constant-time sampling.
#[derive(Clone, Debug)]
pub struct AliasTable {
    /// Probability of keeping column `i` (scaled to [0, 1]).
    keep: Vec<f64>,
    /// Where column `i` sends the draw otherwise.
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table from non-negative weights (not necessarily normalised, sum > 0).
    pub fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        assert!(
            n > 0 && n <= u32::MAX as usize,
            "alias table needs 1..=u32::MAX weights"
        );
        let total: f64 = weights.iter().sum();
        let mut keep: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let mut small: Vec<u32> = Vec::new();
        let mut large: Vec<u32> = Vec::new();
        for (i, &p) in keep.iter().enumerate() {
            if p < 1.0 {
                small.push(i as u32);
            } else {
                large.push(i as u32);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s as usize] = l;
            keep[l as usize] -= 1.0 - keep[s as usize];
            if keep[l as usize] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left is 1 up to rounding.
        for i in small.into_iter().chain(large) {
            keep[i as usize] = 1.0;
        }
        Self { keep, alias }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        let col = rng.below(self.keep.len() as u64) as usize;
        let u = rng.next_f64();
        if u < self.keep[col] {
            col as u32
        } else {
            self.alias[col]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_match_weights() {
        let w = [1.0, 2.0, 3.0, 0.0, 4.0];
        let t = AliasTable::new(&w);
        assert_eq!(t.len(), 5);
        let mut rng = Rng::stream(3, 0);
        let mut counts = [0u32; 5];
        let n = 400_000;
        for _ in 0..n {
            counts[t.sample(&mut rng) as usize] += 1;
        }
        assert_eq!(counts[3], 0);
        for (i, &c) in counts.iter().enumerate() {
            let expected = w[i] / 10.0;
            assert!(
                (c as f64 / n as f64 - expected).abs() < 0.005,
                "item {i}: {c}"
            );
        }
    }
}
