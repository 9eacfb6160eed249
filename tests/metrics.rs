//! Ranking metrics: hand-computed examples, batch/merge determinism, and the path from
//! top-K selection to metrics.

use moira::predict::metrics::user_metrics;
use moira::predict::{top_k_batch, AtK, RankingMetrics, NO_ITEM};
use moira::sparse::Csr;

fn d(i: usize) -> f64 {
    1.0 / ((i + 2) as f64).log2()
}

fn assert_close(got: AtK, k: usize, p: f64, r: f64, n: f64) {
    let ok = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert_eq!(got.k, k);
    assert!(
        ok(got.precision, p) && ok(got.recall, r) && ok(got.ndcg, n),
        "{got:?}, expected P {p} R {r} NDCG {n}"
    );
}

#[test]
fn held_out_smaller_than_k_hits_at_positions_1_and_4() {
    // |H| = 3 < K = 5; hits at ranks 1 and 4 (0-based); item 100 is never ranked.
    let m = user_metrics(&[3, 7, 1, 9, 4], &[100, 4, 7], 5)
        .unwrap()
        .unwrap();
    let dcg = d(1) + d(4);
    let idcg = d(0) + d(1) + d(2);
    assert_close(m, 5, 2.0 / 5.0, 2.0 / 3.0, dcg / idcg);
    assert!((m.ndcg - 0.477_624).abs() < 1e-6, "{}", m.ndcg);
}

#[test]
fn held_out_larger_than_k_reads_only_the_first_k() {
    // |H| = 4 > K = 2: the hit at rank 2 (item 8) is beyond the cutoff.
    let m = user_metrics(&[5, 6, 8], &[6, 8, 9, 10], 2)
        .unwrap()
        .unwrap();
    assert_close(m, 2, 0.5, 0.5, d(1) / (d(0) + d(1)));
}

#[test]
fn perfect_ranking_duplicates_and_padding() {
    let m = user_metrics(&[1, 2], &[2, 1], 2).unwrap().unwrap();
    assert_close(m, 2, 1.0, 1.0, 1.0);
    // Duplicate held-out entries count once: |H| = 1.
    let m = user_metrics(&[5, 6], &[5, 5], 2).unwrap().unwrap();
    assert_close(m, 2, 0.5, 1.0, 1.0);
    // Padding is never a hit.
    let m = user_metrics(&[NO_ITEM, 3], &[3], 2).unwrap().unwrap();
    assert_close(m, 2, 0.5, 1.0, d(1));
}

#[test]
fn empty_held_out_is_skipped() {
    assert_eq!(user_metrics(&[1, 2, 3], &[], 3).unwrap(), None);
    let mut acc = RankingMetrics::new(&[3]).unwrap();
    assert!(!acc.add_user(&[1, 2, 3], &[]).unwrap());
    assert_eq!((acc.users(), acc.skipped()), (0, 1));
    assert!(acc.means().is_empty());
}

/// Three users at K = 1 and K = 3; the third has no held-out items.
fn three_users() -> (Vec<u32>, Csr) {
    let ranked = vec![10, 11, 12, 20, 21, 22, 30, 31, 32];
    let held = Csr::try_new(40, vec![0, 1, 5, 5], vec![12, 31, 21, 20, 30], None).unwrap();
    (ranked, held)
}

#[test]
fn several_cutoffs_from_one_list_and_the_mean_over_users() {
    let (ranked, held) = three_users();
    let mut acc = RankingMetrics::new(&[3, 1]).unwrap();
    for u in 0..3 {
        acc.add_user(&ranked[u * 3..u * 3 + 3], held.row(u).0)
            .unwrap();
    }
    assert_eq!((acc.users(), acc.skipped()), (2, 1));
    // User A: one hit at rank 2, |H| = 1. User B: hits at ranks 0, 1, |H| = 4.
    let b_ndcg3 = (d(0) + d(1)) / (d(0) + d(1) + d(2));
    let means = acc.means();
    assert_close(means[0], 1, 0.5, 0.5, 0.5);
    assert_close(
        means[1],
        3,
        0.5,
        (1.0 + 2.0 / 3.0) / 2.0,
        (d(2) + b_ndcg3) / 2.0,
    );
    assert_eq!(acc.mean_at(3), Some(means[1]));
    assert_eq!(acc.mean_at(2), None);

    let json = acc.to_json();
    assert_eq!(json["users"], 2);
    assert_eq!(json["skipped"], 1);
    assert_eq!(json["metrics"][1]["k"], 3);
    assert_eq!(json["metrics"][0]["precision"], 0.5);
    let table = acc.to_string();
    assert!(table.contains("Recall@K"), "{table}");
    assert!(
        table.contains("     1    0.5000    0.5000    0.5000"),
        "{table}"
    );
    assert!(table.contains("2 evaluated, 1 skipped"), "{table}");
}

#[test]
fn batch_equals_one_by_one_and_merge_is_order_free() {
    let (ranked, held) = three_users();
    let mut one = RankingMetrics::new(&[1, 3]).unwrap();
    for u in 0..3 {
        one.add_user(&ranked[u * 3..u * 3 + 3], held.row(u).0)
            .unwrap();
    }
    let mut batch = RankingMetrics::new(&[1, 3]).unwrap();
    batch.add_batch(&ranked, 3, held.view()).unwrap();
    assert_eq!(batch.means(), one.means());

    let mut tail = RankingMetrics::new(&[1, 3]).unwrap();
    tail.add_batch(&ranked[3..], 3, held.view().rows(1, 3))
        .unwrap();
    let mut head = RankingMetrics::new(&[1, 3]).unwrap();
    head.add_batch(&ranked[..3], 3, held.view().rows(0, 1))
        .unwrap();
    tail.merge(&head).unwrap();
    assert_eq!(tail.means(), one.means());
    assert_eq!((tail.users(), tail.skipped()), (2, 1));

    assert!(tail.merge(&RankingMetrics::new(&[2]).unwrap()).is_err());
    assert!(batch.add_batch(&ranked, 2, held.view()).is_err());
    assert!(batch.add_batch(&ranked[1..], 3, held.view()).is_err());
}

/// SplitMix64 for test data.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random users: input history, held-out items, scores; top-K with the history excluded,
/// then metrics, with 1 and 2 threads: bit-identical results.
#[test]
fn top_k_then_metrics_is_thread_count_independent() {
    let (users, width, k) = (1500usize, 400usize, 20usize);
    let mut s = 5u64;
    let sets = |s: &mut u64, n: usize| -> Csr {
        let (mut offsets, mut cols) = (vec![0u64], Vec::new());
        for _ in 0..users {
            let mut row: Vec<u32> = (0..next(s) % n as u64)
                .map(|_| (next(s) % width as u64) as u32)
                .collect();
            row.sort_unstable();
            row.dedup();
            cols.extend(row);
            offsets.push(cols.len() as u64);
        }
        Csr::try_new(width as u32, offsets, cols, None).unwrap()
    };
    let input = sets(&mut s, 30);
    let held = sets(&mut s, 12);
    let scores: Vec<f32> = (0..users * width)
        .map(|_| (next(&mut s) % 1000) as f32 / 1000.0)
        .collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (mut idx, mut sc) = (vec![0; users * k], vec![0.0; users * k]);
            top_k_batch(&scores, width, k, Some(input.view()), 0, &mut idx, &mut sc).unwrap();
            let mut acc = RankingMetrics::new(&[5, 10, 20]).unwrap();
            acc.add_batch(&idx, k, held.view()).unwrap();
            acc
        })
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.to_json(), b.to_json());
    assert!(a.users() > 0 && a.skipped() > 0);
    for m in a.means() {
        // Random scores: precision near |H| / width.
        assert!(m.precision > 0.0 && m.precision < 0.1, "{m:?}");
    }
}
