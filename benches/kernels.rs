//! CPU kernel benchmarks at DSSTNE-like autoencoder sizes: batch B = 500, input/output width
//! I = 3,628 (MovieLens-1M-like) and 40,981, hidden H = 200, about 150 non-zeros per row.
//!
//! - `spmm/I`: sparse forward `[B x I] · W[I x H]`.
//! - `transpose/I`: building the batch's CSC (once per batch).
//! - `sparse_grad/I`: fixed-point `dW = Xᵀ·Δ` (`[I x H]`).
//! - `gemm_{xw,dwt,xtd}/I`: the output layer's products `X[B x H]·W[H x I]`,
//!   `Δ[B x I]·Wᵀ`, `Xᵀ·Δ` (throughput in FLOP: read "elem/s" as FLOP/s).
//! - `smce_delta/I`, `smce_loss/I`: sparse-target SMCE output delta and loss over `[B x I]`.
//!
//! Runs on the global rayon pool (`Par::Rayon(0)`). `cargo test --benches` runs each once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use moira::backend::cpu::{
    gemm, sparse_output_delta, sparse_output_loss, sparse_weight_gradient, spmm, Par,
    SparseTranspose,
};
use moira::dense::Matrix;
use moira::ops::{Activation, ErrorFunction, LossSpec, Trans};
use moira::rng::{u32_at, uniform_f32};
use moira::sparse::Csr;
use std::hint::black_box;
use std::time::Duration;

const B: usize = 500;
const H: usize = 200;
const WIDTHS: [usize; 2] = [3_628, 40_981];

fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    Matrix::from_fn(rows, cols, |r, c| {
        uniform_f32(seed, 0, (r * cols + c) as u64) - 0.5
    })
}

/// A batch of `B` indicator rows with 1..=300 distinct columns each (mean about 150).
fn random_batch(width: usize, seed: u64) -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for r in 0..B as u64 {
        let k = 1 + u32_at(seed, 1, r) as u64 % 300;
        let mut row: Vec<u32> = (0..k)
            .map(|i| u32_at(seed, 2, r * 512 + i) % width as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(width as u32, offsets, cols, None).expect("valid batch")
}

fn kernels(c: &mut Criterion) {
    let par = Par::Rayon(0);
    for width in WIDTHS {
        let x = random_batch(width, 1);
        let nnz = x.nnz() as u64;
        let w_in = random_matrix(width, H, 2);
        let delta_h = random_matrix(B, H, 3);

        let mut g = c.benchmark_group("sparse");
        g.throughput(Throughput::Elements(2 * nnz * H as u64));
        let mut out = Matrix::zeros(B, H);
        g.bench_function(BenchmarkId::new("spmm", width), |b| {
            b.iter(|| spmm(out.as_mut(), black_box(x.view()), w_in.as_ref(), 0.0, par).unwrap())
        });
        g.bench_function(BenchmarkId::new("transpose", width), |b| {
            b.iter(|| SparseTranspose::new(black_box(x.view())).unwrap())
        });
        let xt = SparseTranspose::new(x.view()).unwrap();
        let mut dw = Matrix::zeros(width, H);
        g.bench_function(BenchmarkId::new("sparse_grad", width), |b| {
            b.iter(|| {
                sparse_weight_gradient(
                    dw.as_mut(),
                    &xt,
                    delta_h.as_ref(),
                    -1.0 / B as f32,
                    0.0,
                    par,
                )
                .unwrap()
            })
        });
        g.finish();

        let h = random_matrix(B, H, 4);
        let w_out = random_matrix(H, width, 5);
        let delta_o = random_matrix(B, width, 6);
        let mut g = c.benchmark_group("gemm");
        g.throughput(Throughput::Elements(2 * (B * H * width) as u64));
        let mut z = Matrix::zeros(B, width);
        g.bench_function(BenchmarkId::new("xw", width), |b| {
            b.iter(|| {
                gemm(
                    z.as_mut(),
                    1.0,
                    h.as_ref(),
                    Trans::No,
                    w_out.as_ref(),
                    Trans::No,
                    0.0,
                    par,
                )
                .unwrap()
            })
        });
        let mut dh = Matrix::zeros(B, H);
        g.bench_function(BenchmarkId::new("dwt", width), |b| {
            b.iter(|| {
                gemm(
                    dh.as_mut(),
                    1.0,
                    delta_o.as_ref(),
                    Trans::No,
                    w_out.as_ref(),
                    Trans::Yes,
                    0.0,
                    par,
                )
                .unwrap()
            })
        });
        let mut dwo = Matrix::zeros(H, width);
        g.bench_function(BenchmarkId::new("xtd", width), |b| {
            b.iter(|| {
                gemm(
                    dwo.as_mut(),
                    -1.0 / B as f32,
                    h.as_ref(),
                    Trans::Yes,
                    delta_o.as_ref(),
                    Trans::No,
                    0.0,
                    par,
                )
                .unwrap()
            })
        });
        g.finish();

        let mut g = c.benchmark_group("loss");
        g.throughput(Throughput::Elements((B * width) as u64));
        let a = Matrix::from_fn(B, width, |r, c| uniform_f32(7, 0, (r * width + c) as u64));
        let spec = LossSpec::new(
            ErrorFunction::ScaledMarginalCrossEntropy,
            Activation::Sigmoid,
        );
        let mut d = Matrix::zeros(B, width);
        g.bench_function(BenchmarkId::new("smce_delta", width), |b| {
            b.iter(|| {
                sparse_output_delta(d.as_mut(), a.as_ref(), x.view(), &spec, false, par).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("smce_loss", width), |b| {
            b.iter(|| sparse_output_loss(a.as_ref(), x.view(), &spec, false, par).unwrap())
        });
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels
}
criterion_main!(benches);
