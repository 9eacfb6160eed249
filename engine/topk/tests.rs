//! Unit tests of [`super`], in their own file to keep the module short.

use super::*;
use crate::sparse::Csr;

/// SplitMix64: a tiny deterministic generator for test data.
pub(in crate::topk) struct Rng(pub(in crate::topk) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(in crate::topk) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Scores with many ties and the special values.
fn random_row(rng: &mut Rng, width: usize) -> Vec<f32> {
    (0..width)
        .map(|_| match rng.below(40) {
            0 => f32::NAN,
            1 => f32::NEG_INFINITY,
            2 => f32::INFINITY,
            3 => -0.0,
            4 => 0.0,
            5..=20 => (rng.below(8) as f32) / 4.0 - 1.0,
            _ => (rng.next() >> 40) as f32 / (1u64 << 24) as f32,
        })
        .collect()
}

/// Exclusions (global columns), sometimes unsorted, with duplicates and strays.
fn random_exclusions(rng: &mut Rng, offset: u32, width: usize) -> Vec<u32> {
    let n = rng.below(width / 2 + 2);
    let mut ex: Vec<u32> = (0..n)
        .map(|_| offset + rng.below(width + 4) as u32)
        .collect();
    if offset > 0 && rng.below(2) == 0 {
        ex.push(offset - 1);
    }
    if rng.below(3) != 0 {
        ex.sort_unstable();
    }
    ex
}

/// Reference: full sort of the eligible entries.
fn naive(scores: &[f32], offset: u32, exclude: &[u32], k: usize) -> (Vec<u32>, Vec<u32>) {
    let mut v: Vec<(f32, u32)> = (0..scores.len() as u32)
        .filter(|&j| !scores[j as usize].is_nan() && !exclude.contains(&(offset + j)))
        .map(|j| (scores[j as usize], j))
        .collect();
    v.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    v.truncate(k);
    v.resize(k, (f32::NEG_INFINITY, NO_ITEM));
    (
        v.iter().map(|e| e.1).collect(),
        v.iter().map(|e| e.0.to_bits()).collect(),
    )
}

pub(in crate::topk) fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn hand_example_ties_nan_exclusion_padding() {
    let row = [0.5, 0.9, f32::NAN, 0.9, f32::NEG_INFINITY, 0.1];
    let mut topk = TopK::new(3).unwrap();
    let (mut idx, mut sc) = (vec![0; 3], vec![0.0; 3]);
    assert_eq!(topk.select(&row, &[5], &mut idx, &mut sc).unwrap(), 3);
    assert_eq!(
        (idx.as_slice(), sc.as_slice()),
        (&[1, 3, 0][..], &[0.9, 0.9, 0.5][..])
    );
    let mut topk = TopK::new(6).unwrap();
    let (mut idx, mut sc) = (vec![0; 6], vec![0.0; 6]);
    assert_eq!(topk.select(&row, &[3, 0, 3], &mut idx, &mut sc).unwrap(), 3);
    assert_eq!(idx, [1, 5, 4, NO_ITEM, NO_ITEM, NO_ITEM]);
    assert_eq!(
        sc[1..],
        [
            0.1,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY
        ]
    );
}

#[test]
fn k_out_of_range_and_bad_lengths_are_errors() {
    assert!(TopK::new(0).is_err());
    let mut topk = TopK::new(4).unwrap();
    let (mut idx, mut sc) = (vec![0; 4], vec![0.0; 4]);
    let err = topk.select(&[1.0; 3], &[], &mut idx, &mut sc).unwrap_err();
    assert!(err.to_string().contains("exceeds the row width 3"), "{err}");
    assert!(topk.select(&[1.0; 5], &[], &mut idx[..3], &mut sc).is_err());
    let scores = vec![0.0; 10];
    let mut out = (vec![0; 4], vec![0.0; 4]);
    assert!(top_k_batch(&scores, 0, 2, None, 0, &mut out.0, &mut out.1).is_err());
    assert!(top_k_batch(&scores, 3, 2, None, 0, &mut out.0, &mut out.1).is_err());
    assert!(top_k_batch(&scores, 5, 6, None, 0, &mut out.0, &mut out.1).is_err());
    assert!(top_k_batch(&scores, 5, 2, None, 0, &mut out.0, &mut out.1[..3]).is_err());
    let ex = Csr::try_new(5, vec![0, 1], vec![2], None).unwrap();
    assert!(top_k_batch(&scores, 5, 2, Some(ex.view()), 0, &mut out.0, &mut out.1).is_err());
    top_k_batch(&scores, 5, 2, None, 0, &mut out.0, &mut out.1).unwrap();
    assert_eq!(out.0, [0, 1, 0, 1]);
}

#[test]
fn matches_full_sort_on_random_rows() {
    let mut rng = Rng(7);
    let mut selectors: Vec<TopK> = Vec::new();
    for case in 0..3000 {
        let width = match case % 10 {
            0 => 1 + rng.below(6000),
            _ => 1 + rng.below(300),
        };
        let k = match case % 4 {
            0 => 1,
            1 => width,
            _ => 1 + rng.below(width.min(150)),
        };
        let offset = if case % 3 == 0 {
            rng.below(1000) as u32
        } else {
            0
        };
        let row = random_row(&mut rng, width);
        let ex = random_exclusions(&mut rng, offset, width);
        // Reuse selectors across rows, as the batch code does.
        let topk = match selectors.iter_mut().find(|t| t.k() == k) {
            Some(t) => t,
            None => {
                selectors.push(TopK::new(k).unwrap());
                selectors.last_mut().unwrap()
            }
        };
        let (mut idx, mut sc) = (vec![0; k], vec![0.0; k]);
        let n = topk
            .select_shard(&row, offset, &ex, &mut idx, &mut sc)
            .unwrap();
        let (want_idx, want_sc) = naive(&row, offset, &ex, k);
        assert_eq!(idx, want_idx, "case {case}: width {width} k {k}");
        assert_eq!(bits(&sc), want_sc, "case {case}");
        assert_eq!(n, want_idx.iter().filter(|&&i| i != NO_ITEM).count());
    }
}

/// A random `[batch × width]` matrix and exclusion CSR.
pub(in crate::topk) fn random_batch(rng: &mut Rng, batch: usize, width: usize) -> (Vec<f32>, Csr) {
    let scores = (0..batch).flat_map(|_| random_row(rng, width)).collect();
    let (mut offsets, mut cols) = (vec![0u64], Vec::new());
    for _ in 0..batch {
        cols.extend(
            random_exclusions(rng, 0, width)
                .iter()
                .filter(|&&c| (c as usize) < width),
        );
        offsets.push(cols.len() as u64);
    }
    (
        scores,
        Csr::try_new(width as u32, offsets, cols, None).unwrap(),
    )
}

pub(in crate::topk) fn run_batch(
    threads: usize,
    scores: &[f32],
    width: usize,
    k: usize,
    ex: &Csr,
) -> (Vec<u32>, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let batch = scores.len() / width;
    let (mut idx, mut sc) = (vec![0; batch * k], vec![0.0; batch * k]);
    pool.install(|| top_k_batch(scores, width, k, Some(ex.view()), 0, &mut idx, &mut sc))
        .unwrap();
    (idx, sc)
}

#[test]
fn batch_is_thread_count_independent_and_matches_rows() {
    let mut rng = Rng(11);
    let (width, k, batch) = (700, 25, 53);
    let (scores, ex) = random_batch(&mut rng, batch, width);
    let one = run_batch(1, &scores, width, k, &ex);
    let two = run_batch(2, &scores, width, k, &ex);
    assert_eq!(one.0, two.0);
    assert_eq!(bits(&one.1), bits(&two.1));
    for b in 0..batch {
        let (want_idx, want_sc) = naive(&scores[b * width..(b + 1) * width], 0, ex.row(b).0, k);
        assert_eq!(one.0[b * k..(b + 1) * k], want_idx, "row {b}");
        assert_eq!(bits(&one.1[b * k..(b + 1) * k]), want_sc, "row {b}");
    }
}
