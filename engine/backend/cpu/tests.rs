//! CPU kernels against naive dense references, and bit-reproducibility across thread counts.

use super::*;
use crate::dense::Matrix;
use crate::ops::fixed::FixedSum;
use crate::ops::{Activation, ActivationParams, ErrorFunction, Hyper, LossSpec, Optimizer, Trans};
use crate::rng::{u32_at, uniform_f32};
use crate::sparse::Csr;

fn rnd(rows: usize, cols: usize, seed: u64) -> Matrix {
    Matrix::from_fn(rows, cols, |r, c| {
        uniform_f32(seed, 1, (r * cols + c) as u64) * 2.0 - 1.0
    })
}

/// A random CSR batch: row `r` has up to `max_nnz` distinct ascending columns (some rows
/// empty); values in (0, 2] when `valued`.
fn rnd_csr(rows: usize, n_cols: u32, max_nnz: usize, valued: bool, seed: u64) -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    let mut ctr = 0u64;
    for _ in 0..rows {
        let k = u32_at(seed, 2, ctr) as usize % (max_nnz + 1);
        ctr += 1;
        let mut row: Vec<u32> = (0..k)
            .map(|_| {
                ctr += 1;
                u32_at(seed, 3, ctr) % n_cols
            })
            .collect();
        row.sort_unstable();
        row.dedup();
        for &c in &row {
            cols.push(c);
            ctr += 1;
            vals.push(2.0 * uniform_f32(seed, 4, ctr));
        }
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(n_cols, offsets, cols, valued.then_some(vals)).unwrap()
}

fn densify(x: &Csr, value_of: impl Fn(usize, f32) -> f32) -> Matrix {
    let mut m = Matrix::zeros(x.n_rows(), x.n_cols() as usize);
    for b in 0..x.n_rows() {
        let (cols, vals) = x.row(b);
        for (k, &c) in cols.iter().enumerate() {
            m.row_mut(b)[c as usize] = value_of(cols.len(), vals.map_or(1.0, |v| v[k]));
        }
    }
    m
}

/// Runs `f` in a rayon pool of `n` threads.
fn in_pool<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn spmm_matches_dense_product() {
    for (valued, n_out) in [(false, 45), (true, 70), (false, 32), (true, 5)] {
        let x = rnd_csr(23, 57, 12, valued, 10);
        let w = rnd(57, n_out, 11);
        let xd = densify(&x, |_, v| v);
        let c0 = rnd(23, n_out, 12);
        for beta in [0.0f32, 0.5] {
            let mut out = c0.clone();
            spmm(out.as_mut(), x.view(), w.as_ref(), beta, Par::Rayon(3)).unwrap();
            for b in 0..23 {
                for j in 0..n_out {
                    let e: f64 = (0..57)
                        .map(|i| xd.get(b, i) as f64 * w.get(i, j) as f64)
                        .sum();
                    let e = e + beta as f64 * c0.get(b, j) as f64;
                    assert!((out.get(b, j) as f64 - e).abs() < 1e-4, "{b},{j}");
                }
            }
        }
    }
    let x = rnd_csr(3, 10, 4, false, 1);
    let w = rnd(9, 4, 1);
    assert!(spmm(
        Matrix::zeros(3, 4).as_mut(),
        x.view(),
        w.as_ref(),
        0.0,
        Par::Seq
    )
    .is_err());
}

#[test]
fn spmm_is_bit_identical_across_threads_and_on_row_views() {
    let x = rnd_csr(64, 300, 40, true, 20);
    let w = rnd(300, 77, 21);
    let run = |n| {
        in_pool(n, || {
            let mut out = Matrix::zeros(64, 77);
            spmm(out.as_mut(), x.view(), w.as_ref(), 0.0, Par::Rayon(n)).unwrap();
            out
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    // A view of rows 10..30 computes exactly those rows.
    let mut part = Matrix::zeros(20, 77);
    spmm(
        part.as_mut(),
        x.view().rows(10, 30),
        w.as_ref(),
        0.0,
        Par::Seq,
    )
    .unwrap();
    assert_eq!(part.data(), &one.data()[10 * 77..30 * 77]);
}

#[test]
fn transpose_builders_agree() {
    for valued in [false, true] {
        let x = rnd_csr(40, 1000, 30, valued, 30);
        for view in [x.view(), x.view().rows(5, 33)] {
            let a = SparseTranspose::by_counting(view);
            let b = SparseTranspose::by_sorting(view);
            assert_eq!(a, b);
            let total: usize = (0..a.features().len()).map(|i| a.entries(i).0.len()).sum();
            assert_eq!(total, view.nnz());
        }
    }
}

#[test]
fn sparse_gradient_matches_naive_and_handles_beta() {
    for valued in [false, true] {
        let x = rnd_csr(31, 90, 15, valued, 40);
        let delta = rnd(31, 70, 41);
        let xd = densify(&x, |_, v| v);
        let xt = SparseTranspose::new(x.view()).unwrap();
        let alpha = -1.0 / 31.0;
        let mut dw = Matrix::filled(90, 70, f32::NAN);
        sparse_weight_gradient(dw.as_mut(), &xt, delta.as_ref(), alpha, 0.0, Par::Rayon(2))
            .unwrap();
        let prev = rnd(90, 70, 42);
        let mut dw2 = prev.clone();
        sparse_weight_gradient(dw2.as_mut(), &xt, delta.as_ref(), alpha, 1.0, Par::Seq).unwrap();
        for i in 0..90 {
            for j in 0..70 {
                let e: f64 = (0..31)
                    .map(|b| xd.get(b, i) as f64 * delta.get(b, j) as f64)
                    .sum();
                let e = alpha as f64 * e;
                assert!((dw.get(i, j) as f64 - e).abs() < 1e-6, "{i},{j}");
                assert!((dw2.get(i, j) as f64 - (prev.get(i, j) as f64 + e)).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn sparse_gradient_is_bit_identical_with_1_2_3_threads() {
    let x = rnd_csr(128, 2000, 60, true, 50);
    let delta = rnd(128, 200, 51);
    let run = |n| {
        in_pool(n, || {
            let xt = SparseTranspose::new(x.view()).unwrap();
            let mut dw = Matrix::zeros(2000, 200);
            sparse_weight_gradient(dw.as_mut(), &xt, delta.as_ref(), -0.01, 0.0, Par::Rayon(n))
                .unwrap();
            dw
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    // And equal to the sequential kernel.
    let mut seq = Matrix::zeros(2000, 200);
    let xt = SparseTranspose::new(x.view()).unwrap();
    sparse_weight_gradient(seq.as_mut(), &xt, delta.as_ref(), -0.01, 0.0, Par::Seq).unwrap();
    assert_eq!(one, seq);
}

#[test]
fn gemm_is_bit_identical_across_thread_counts() {
    let (m, k, n) = (300, 257, 190);
    let a = rnd(m, k, 60);
    let b = rnd(k, n, 61);
    let bt = b.transposed();
    let at = a.transposed();
    let run = |threads: usize, ta: Trans, tb: Trans| {
        in_pool(threads.max(1), || {
            let (aa, bb) = (
                if ta == Trans::No { &a } else { &at },
                if tb == Trans::No { &b } else { &bt },
            );
            let mut c = Matrix::zeros(m, n);
            let par = if threads == 0 {
                Par::Seq
            } else {
                Par::Rayon(threads)
            };
            gemm(c.as_mut(), 0.5, aa.as_ref(), ta, bb.as_ref(), tb, 0.0, par).unwrap();
            c
        })
    };
    for (ta, tb) in [
        (Trans::No, Trans::No),
        (Trans::No, Trans::Yes),
        (Trans::Yes, Trans::No),
    ] {
        let seq = run(0, ta, tb);
        for t in [1, 2, 3] {
            assert_eq!(seq, run(t, ta, tb), "{ta:?} {tb:?} with {t} threads");
        }
    }
}

/// Every supported (error, activation) pair with indicator and valued targets: the sparse
/// two-pass kernels equal the dense kernels on the densified targets (deltas bit for bit,
/// fixed-point losses exactly), and are independent of the thread count.
#[test]
fn sparse_and_dense_targets_agree_exactly() {
    let n_out = 37;
    let z = rnd(19, n_out, 70);
    for error in ErrorFunction::ALL.iter().copied() {
        for act in [
            Activation::Sigmoid,
            Activation::SoftMax,
            Activation::Tanh,
            Activation::RectifiedLinear,
        ] {
            let mut spec = LossSpec::new(error, act);
            if spec.check().is_err() {
                continue;
            }
            spec.smce.one_scale = 3.0;
            spec.delta_boost.zero = 0.5;
            let mut a = z.clone();
            activation_forward(a.as_mut(), act, &spec.act_params, Par::Seq);
            for valued in [false, true] {
                let t = rnd_csr(19, n_out as u32, 6, valued, 71);
                let td = densify(&t, |nnz, v| {
                    if valued {
                        v
                    } else {
                        spec.indicator_target(nnz)
                    }
                });
                let mut ds = Matrix::zeros(19, n_out);
                let mut dd = Matrix::zeros(19, n_out);
                sparse_output_delta(
                    ds.as_mut(),
                    a.as_ref(),
                    t.view(),
                    &spec,
                    false,
                    Par::Rayon(2),
                )
                .unwrap();
                dense_output_delta(dd.as_mut(), a.as_ref(), td.as_ref(), &spec, Par::Seq).unwrap();
                assert_eq!(ds, dd, "{error} {act} valued={valued}");
                let ls = sparse_output_loss(a.as_ref(), t.view(), &spec, false, Par::Seq).unwrap();
                let ld = dense_output_loss(a.as_ref(), td.as_ref(), &spec, Par::Seq).unwrap();
                assert_eq!(ls, ld, "{error} {act} valued={valued}");
                let l3 = in_pool(3, || {
                    sparse_output_loss(a.as_ref(), t.view(), &spec, false, Par::Rayon(3)).unwrap()
                });
                assert_eq!(ls, l3);
                // The f64 total is the sum of the scalar losses up to fixed-point rounding.
                let direct: f64 = (0..19)
                    .flat_map(|b| (0..n_out).map(move |j| (b, j)))
                    .map(|(b, j)| spec.unit_loss(a.get(b, j), td.get(b, j)) as f64)
                    .sum();
                assert!((ls.to_f64() - direct).abs() < 1e-3 * (1.0 + direct.abs()));
            }
        }
    }
}

#[test]
fn ignore_zero_trains_only_the_non_zeros() {
    let spec = LossSpec::new(
        ErrorFunction::ScaledMarginalCrossEntropy,
        Activation::Sigmoid,
    );
    let mut a = rnd(8, 20, 80);
    activation_forward(a.as_mut(), Activation::Sigmoid, &spec.act_params, Par::Seq);
    let t = rnd_csr(8, 20, 5, false, 81);
    let mut d = Matrix::filled(8, 20, 9.0);
    sparse_output_delta(d.as_mut(), a.as_ref(), t.view(), &spec, true, Par::Seq).unwrap();
    let loss = sparse_output_loss(a.as_ref(), t.view(), &spec, true, Par::Seq).unwrap();
    let mut expect = 0i128;
    for b in 0..8 {
        let (cols, _) = t.row(b);
        for j in 0..20 {
            let hit = cols.contains(&(j as u32));
            let e = if hit {
                spec.unit_delta(a.get(b, j), 1.0)
            } else {
                0.0
            };
            assert_eq!(d.get(b, j), e);
            if hit {
                expect += crate::ops::fixed::to_fixed(spec.unit_loss(a.get(b, j), 1.0)) as i128;
            }
        }
    }
    assert_eq!(loss, FixedSum(expect));
    assert!(sparse_output_loss(
        a.as_ref(),
        rnd_csr(7, 20, 2, false, 1).view(),
        &spec,
        true,
        Par::Seq
    )
    .is_err());
}

#[test]
fn activation_kernels_follow_the_scalar_formulas() {
    let p = ActivationParams::default();
    let z = rnd(6, 50, 90);
    let g = rnd(6, 50, 91);
    for act in [Activation::Tanh, Activation::SoftPlus, Activation::SoftMax] {
        let mut a = z.clone();
        activation_forward(a.as_mut(), act, &p, Par::Rayon(2));
        let mut d = g.clone();
        activation_backward(d.as_mut(), a.as_ref(), act, &p, Par::Seq).unwrap();
        for b in 0..6 {
            if act == Activation::SoftMax {
                let mut row = vec![0.0; 50];
                crate::ops::activation::softmax_row(&mut row, z.row(b));
                assert_eq!(a.row(b), &row[..]);
                let mut jvp = vec![0.0; 50];
                crate::ops::activation::softmax_backward(&mut jvp, &row, g.row(b));
                assert_eq!(d.row(b), &jvp[..]);
            } else {
                for j in 0..50 {
                    let e = crate::ops::activation::forward(act, z.get(b, j), &p);
                    assert_eq!(a.get(b, j), e);
                    let de = g.get(b, j) * crate::ops::activation::derivative(act, e, &p);
                    assert_eq!(d.get(b, j), de);
                }
            }
        }
    }
}

#[test]
fn optimizer_step_follows_the_scalar_rule() {
    let h = Hyper {
        alpha: 0.01,
        lambda: 0.001,
        lambda1: 0.0001,
        mu: 0.9,
        mu1: 0.999,
    };
    let n = 10_000;
    let g: Vec<f32> = (0..n).map(|i| uniform_f32(3, 0, i as u64) - 0.5).collect();
    for opt in Optimizer::ALL.iter().copied() {
        let w0: Vec<f32> = (0..n).map(|i| uniform_f32(4, 0, i as u64) - 0.5).collect();
        let mut w = w0.clone();
        let k = crate::ops::optimizer::state_len(opt);
        let mut s0 = vec![0.01f32; if k >= 1 { n } else { 0 }];
        let mut s1 = vec![0.02f32; if k >= 2 { n } else { 0 }];
        optimizer_step(&mut w, &g, &mut s0, &mut s1, opt, &h, 3, Par::Rayon(2)).unwrap();
        for i in (0..n).step_by(997) {
            let (ew, es) = crate::ops::optimizer::update(opt, &h, 3, w0[i], g[i], [0.01, 0.02]);
            assert_eq!(w[i], ew, "{opt}");
            if k >= 1 {
                assert_eq!(s0[i], es[0]);
            }
            if k >= 2 {
                assert_eq!(s1[i], es[1]);
            }
        }
        if k >= 1 {
            let mut short = vec![0.0f32; 3];
            assert!(optimizer_step(&mut w, &g, &mut short, &mut s1, opt, &h, 1, Par::Seq).is_err());
        }
    }
}

/// A buffer that cannot be allocated is an error, not an abort; small ones are zeros.
#[test]
fn impossible_allocations_are_errors() {
    use crate::backend::traits::Backend;
    let cpu = Cpu::new(1).unwrap();
    assert!(cpu.zeros(usize::MAX / 2).is_err());
    assert!(cpu.zeros(1 << 60).is_err());
    assert_eq!(cpu.zeros(5).unwrap(), vec![0.0; 5]);
    assert!(cpu.zeros(0).unwrap().is_empty());
}

/// The three passes of a SoftMax split across ranks, on one rank, compose to the row SoftMax
/// bit for bit, on 1 and 2 threads, and the host defaults (what a device without its own
/// kernels runs) give the same bits.
#[test]
fn split_softmax_passes_compose_to_the_row_softmax() {
    use crate::backend::host_default;
    use crate::backend::traits::{Backend, Mat, MatMut};
    let (rows, cols) = (7, 61);
    let z = rnd(rows, cols, 92);
    for threads in [1, 2] {
        let cpu = Cpu::new(threads).unwrap();
        let mut x = z.data().to_vec();
        let mut host_x = x.clone();
        let (mut max, mut host_max) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        cpu.row_maxima(Mat::new(&x, rows, cols), &mut max).unwrap();
        host_default::row_maxima(&cpu, Mat::new(&host_x, rows, cols), &mut host_max).unwrap();
        assert_eq!(max, host_max);
        let (mut sums, mut host_sums) = (vec![0.0f64; rows], vec![0.0f64; rows]);
        cpu.exp_shifted_rows(MatMut::new(&mut x, rows, cols), &max, &mut sums)
            .unwrap();
        let host = MatMut::new(&mut host_x, rows, cols);
        host_default::exp_shifted_rows(&cpu, host, &max, &mut host_sums).unwrap();
        assert_eq!(sums, host_sums);
        let inverses: Vec<f64> = sums.iter().map(|&s| 1.0 / s).collect();
        cpu.scale_rows_exact(MatMut::new(&mut x, rows, cols), &inverses)
            .unwrap();
        let host = MatMut::new(&mut host_x, rows, cols);
        host_default::scale_rows_exact(&cpu, host, &inverses).unwrap();
        assert_eq!(x, host_x);
        for b in 0..rows {
            let mut row = vec![0.0; cols];
            crate::ops::activation::softmax_row(&mut row, z.row(b));
            assert_eq!(
                &x[b * cols..(b + 1) * cols],
                &row[..],
                "{threads} threads, row {b}"
            );
        }
    }
}
