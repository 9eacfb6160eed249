//! Item popularity (Zipf-Mandelbrot) and per-user sampling of distinct items.

use crate::alias::AliasTable;
use crate::rng::Rng;

/// Item popularity: the item of popularity rank `r` (0 = most popular) has weight
/// `(r + 1 + offset)^-exponent`. Ranks are mapped to item ids by a seeded permutation, so
/// popular items are spread over the id range as in real catalogues.
#[derive(Clone, Debug)]
pub struct Popularity {
    weights: Vec<f64>,
    table: AliasTable,
    rank_to_item: Vec<u32>,
}

impl Popularity {
    pub fn new(items: u32, exponent: f64, offset: f64, rng: &mut Rng) -> Self {
        // Relative to the head, so that the largest weight is 1 and never underflows.
        let head = 1.0 + offset;
        let weights: Vec<f64> = (0..items)
            .map(|r| ((r as f64 + head) / head).powf(-exponent))
            .collect();
        let table = AliasTable::new(&weights);
        let mut rank_to_item: Vec<u32> = (0..items).collect();
        shuffle(&mut rank_to_item, rng);
        Self {
            weights,
            table,
            rank_to_item,
        }
    }

    pub fn items(&self) -> usize {
        self.weights.len()
    }

    #[inline]
    pub fn item_of_rank(&self, rank: u32) -> u32 {
        self.rank_to_item[rank as usize]
    }
}

/// Per-thread buffers reused across users.
#[derive(Clone, Debug)]
pub struct Scratch {
    taken: Vec<u64>,
    keys: Vec<(f64, u32)>,
    /// The ranks picked for the current user, in (random) history order.
    pub picked: Vec<u32>,
}

impl Scratch {
    pub fn new(items: usize) -> Self {
        Self {
            taken: vec![0; items.div_ceil(64)],
            keys: Vec::new(),
            picked: Vec::new(),
        }
    }
}

/// Picks `len` distinct items (as popularity ranks, into `scratch.picked`) by sampling from
/// the popularity distribution without replacement, then shuffles them into history order.
///
/// Draws are rejection-sampled while duplicates are rare. When a long history has used up
/// most of the popular mass, the remaining picks are finished by Efraimidis-Spirakis keys
/// (`-ln U / w` over the items not yet taken), which continues the same without-replacement
/// process exactly, in O(items).
pub fn pick_items(pop: &Popularity, len: usize, rng: &mut Rng, scratch: &mut Scratch) {
    let items = pop.items();
    debug_assert!(len <= items);
    let Scratch {
        taken,
        keys,
        picked,
    } = scratch;
    picked.clear();
    let dup_limit = len + items / 16;
    let mut dups = 0;
    while picked.len() < len && dups <= dup_limit {
        let r = pop.table.sample(rng);
        let (word, bit) = ((r / 64) as usize, 1u64 << (r % 64));
        if taken[word] & bit == 0 {
            taken[word] |= bit;
            picked.push(r);
        } else {
            dups += 1;
        }
    }
    let missing = len - picked.len();
    if missing > 0 {
        keys.clear();
        for (r, &w) in pop.weights.iter().enumerate() {
            if taken[r / 64] & (1u64 << (r % 64)) == 0 {
                keys.push((-rng.next_f64_open0().ln() / w, r as u32));
            }
        }
        keys.select_nth_unstable_by(missing - 1, |a, b| a.0.total_cmp(&b.0));
        keys.truncate(missing);
        keys.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        picked.extend(keys.iter().map(|&(_, r)| r));
    }
    for &r in picked.iter() {
        taken[(r / 64) as usize] &= !(1u64 << (r % 64));
    }
    shuffle(picked, rng);
}

/// Fisher-Yates shuffle.
pub fn shuffle(v: &mut [u32], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_distinct_and_bits_are_cleared() {
        let pop = Popularity::new(500, 1.1, 2.0, &mut Rng::stream(1, 1));
        let mut s = Scratch::new(500);
        let mut rng = Rng::stream(1, 2);
        for len in [0, 1, 10, 250, 499, 500] {
            pick_items(&pop, len, &mut rng, &mut s);
            let mut p = s.picked.clone();
            assert_eq!(p.len(), len);
            p.sort_unstable();
            p.dedup();
            assert_eq!(p.len(), len, "duplicates for len {len}");
            assert!(s.taken.iter().all(|&w| w == 0));
        }
    }

    #[test]
    fn fallback_keeps_popular_items_popular() {
        // With a steep law most of a long history comes from the Efraimidis-Spirakis path;
        // the most popular rank must still be picked far more often than the least.
        let pop = Popularity::new(1000, 1.5, 0.0, &mut Rng::stream(2, 1));
        let mut s = Scratch::new(1000);
        let mut rng = Rng::stream(2, 2);
        let (mut first, mut last) = (0, 0);
        for _ in 0..300 {
            pick_items(&pop, 600, &mut rng, &mut s);
            first += s.picked.contains(&0) as u32;
            last += s.picked.contains(&999) as u32;
        }
        assert_eq!(first, 300);
        assert!(last < 250, "least popular picked {last} times of 300");
    }

    #[test]
    fn permutation_covers_all_items() {
        let pop = Popularity::new(100, 1.0, 0.0, &mut Rng::stream(9, 1));
        let mut ids: Vec<u32> = (0..100).map(|r| pop.item_of_rank(r)).collect();
        assert_ne!(ids, (0..100).collect::<Vec<_>>());
        ids.sort_unstable();
        assert_eq!(ids, (0..100).collect::<Vec<_>>());
    }
}
