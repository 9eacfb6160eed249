//! Top-K selection: 1,000 rows × 27,278 scores (MovieLens-20M item count), K = 10 and 100.
//! Throughput is reported in rows/s (criterion "elements").
//!
//! `cargo bench --bench topk`; set `RAYON_NUM_THREADS` to choose the thread count.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use moira::predict::top_k_batch;
use moira::sparse::Csr;

const ROWS: usize = 1000;
const WIDTH: usize = 27_278;

/// SplitMix64.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform scores in [0, 1), like sigmoid outputs without structure.
fn random_scores(seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..ROWS * WIDTH)
        .map(|_| (next(&mut s) >> 40) as f32 / (1u64 << 24) as f32)
        .collect()
}

/// About `per_row` sorted exclusions per row (a user's input history).
fn exclusions(seed: u64, per_row: usize) -> Csr {
    let mut s = seed;
    let (mut offsets, mut cols) = (vec![0u64], Vec::new());
    for _ in 0..ROWS {
        let mut row: Vec<u32> = (0..per_row)
            .map(|_| (next(&mut s) % WIDTH as u64) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend(row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(WIDTH as u32, offsets, cols, None).expect("valid CSR")
}

fn bench_topk(c: &mut Criterion) {
    let random = random_scores(1);
    let ascending: Vec<f32> = (0..ROWS * WIDTH).map(|i| (i % WIDTH) as f32).collect();
    let history = exclusions(2, 100);
    let mut group = c.benchmark_group("topk_1000x27278");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    let cases: [(&str, &[f32], usize, Option<&Csr>); 4] = [
        ("k10", &random, 10, None),
        ("k100", &random, 100, None),
        ("k100_exclude100", &random, 100, Some(&history)),
        ("k100_ascending", &ascending, 100, None),
    ];
    for (name, scores, k, exclude) in cases {
        let (mut idx, mut sc) = (vec![0u32; ROWS * k], vec![0f32; ROWS * k]);
        group.bench_function(name, |b| {
            b.iter(|| {
                top_k_batch(
                    black_box(scores),
                    WIDTH,
                    k,
                    exclude.map(Csr::view),
                    0,
                    &mut idx,
                    &mut sc,
                )
                .expect("valid arguments");
                black_box(&idx);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_topk);
criterion_main!(benches);
