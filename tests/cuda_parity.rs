//! CUDA backend against the CPU backend: every primitive on fresh random inputs, and whole
//! training epochs. Runs where a CUDA device is present; elsewhere each test prints
//! "skipped: no CUDA device" and passes.
//!
//! Contract checked: relative error `‖gpu − cpu‖ / ‖cpu‖ < 1e-5` for every primitive; bit
//! equality where both backends evaluate the same formula in the same order (sparse products,
//! fixed-point gradients and losses, dropout masks, optimizer updates, Sigmoid); bit-identical
//! GPU results run to run.
#![cfg(feature = "cuda")]

use moira::backend::cuda::Cuda;
use moira::backend::traits::{Mat, MatMut};
use moira::backend::{Backend, Cpu};
use moira::ops::activation::ActivationParams;
use moira::ops::loss::LossSpec;
use moira::ops::optimizer::Hyper;
use moira::ops::{Activation, ErrorFunction, Optimizer};
use moira::rng::{u64_at, uniform_f32};
use moira::sparse::Csr;

use moira::backend::cpu::Trans;

fn device() -> Option<Cuda> {
    if !Cuda::available() {
        eprintln!("skipped: no CUDA device");
        return None;
    }
    Some(Cuda::new(0, false).expect("CUDA backend on device 0"))
}

/// Fresh random values in [lo, hi) from `seed`.
fn random(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    (0..len as u64)
        .map(|i| lo + (hi - lo) * uniform_f32(seed, 77, i))
        .collect()
}

/// A random CSR batch: `rows` rows of up to `max_nnz` distinct columns below `cols` (some
/// rows empty), with values when `values`.
fn random_csr(rows: usize, cols: u32, max_nnz: u64, seed: u64, values: bool) -> Csr {
    let mut offsets = vec![0u64];
    let mut idx = Vec::new();
    for r in 0..rows as u64 {
        let n = u64_at(seed, 1, r) % (max_nnz + 1);
        let mut row: Vec<u32> = (0..n)
            .map(|k| (u64_at(seed, 2, r * 4096 + k) % cols as u64) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        idx.extend_from_slice(&row);
        offsets.push(idx.len() as u64);
    }
    let vals = values.then(|| random(idx.len(), seed + 9, 0.1, 2.0));
    Csr::try_new(cols, offsets, idx, vals).unwrap()
}

/// Rows listing some columns twice (and one row longer than a block), values differing
/// between the copies: the last copy's value counts, on both backends.
fn with_duplicates(rows: usize, cols: u32) -> Csr {
    let mut offsets = vec![0u64];
    let mut idx = Vec::new();
    for r in 0..rows as u32 {
        let len = if r == 3 { 700 } else { 12 };
        for k in 0..len {
            idx.push((r * 31 + (k % 9) * 17 + k / 9) % cols);
        }
        offsets.push(idx.len() as u64);
    }
    let vals = random(idx.len(), 97, 0.1, 2.0);
    Csr::try_new(cols, offsets, idx, Some(vals)).unwrap()
}

fn rel_err(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &c) in gpu.iter().zip(cpu) {
        assert!(
            !g.is_nan() || c.is_nan(),
            "NaN from the GPU where the CPU has {c}"
        );
        num += (g as f64 - c as f64).powi(2);
        den += (c as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

fn close(what: &str, gpu: &[f32], cpu: &[f32]) {
    let e = rel_err(gpu, cpu);
    assert!(e < 1e-5, "{what}: relative error {e:e}");
}

fn same_bits(what: &str, gpu: &[f32], cpu: &[f32]) {
    let diff = gpu
        .iter()
        .zip(cpu)
        .filter(|(g, c)| g.to_bits() != c.to_bits())
        .count();
    assert!(
        diff == 0,
        "{what}: {diff} of {} elements differ in bits (relative error {:e})",
        cpu.len(),
        rel_err(gpu, cpu)
    );
}

/// A buffer on both backends, poisoned past `data` so unwritten elements show.
struct Pair {
    cpu: Vec<f32>,
    gpu: <Cuda as Backend>::Vector,
}

impl Pair {
    fn new(cuda: &Cuda, data: &[f32]) -> Pair {
        let mut gpu = cuda.zeros(data.len() + 7).unwrap();
        let mut padded = data.to_vec();
        padded.extend_from_slice(&[f32::NAN; 7]);
        cuda.upload(&mut gpu, &padded).unwrap();
        let mut cpu = padded.clone();
        cpu.truncate(data.len() + 7);
        Pair { cpu, gpu }
    }

    fn gpu_values(&self, cuda: &Cuda, len: usize) -> Vec<f32> {
        let mut out = vec![0.0; len];
        cuda.download(&self.gpu, &mut out).unwrap();
        out
    }
}

#[test]
fn dense_primitives_match_the_cpu() {
    let Some(cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (m, k, n) = (37, 300, 129);
    for (ta, tb) in [
        (Trans::No, Trans::No),
        (Trans::Yes, Trans::No),
        (Trans::No, Trans::Yes),
        (Trans::Yes, Trans::Yes),
    ] {
        for beta in [0.0f32, 1.0, 0.5] {
            let a = Pair::new(&cuda, &random(m * k, 1, -1.0, 1.0));
            let b = Pair::new(&cuda, &random(k * n, 2, -1.0, 1.0));
            let mut c = Pair::new(&cuda, &random(m * n, 3, -1.0, 1.0));
            let (ar, ac) = if ta == Trans::No { (m, k) } else { (k, m) };
            let (br, bc) = if tb == Trans::No { (k, n) } else { (n, k) };
            cpu.gemm(
                MatMut::new(&mut c.cpu, m, n),
                0.7,
                Mat::new(&a.cpu, ar, ac),
                ta,
                Mat::new(&b.cpu, br, bc),
                tb,
                beta,
            )
            .unwrap();
            cuda.gemm(
                MatMut::new(&mut c.gpu, m, n),
                0.7,
                Mat::new(&a.gpu, ar, ac),
                ta,
                Mat::new(&b.gpu, br, bc),
                tb,
                beta,
            )
            .unwrap();
            close(
                &format!("gemm {ta:?} {tb:?} beta {beta}"),
                &c.gpu_values(&cuda, m * n),
                &c.cpu[..m * n],
            );
        }
    }

    // Bias, copies, bias gradient.
    let (rows, cols) = (33, 517);
    let bias = Pair::new(&cuda, &random(cols, 4, -1.0, 1.0));
    let mut x = Pair::new(&cuda, &random(rows * cols, 5, -2.0, 2.0));
    cpu.add_bias(
        MatMut::new(&mut x.cpu, rows, cols),
        &bias.cpu[..cols].to_vec(),
    )
    .unwrap();
    cuda.add_bias(MatMut::new(&mut x.gpu, rows, cols), &bias.gpu)
        .unwrap();
    same_bits(
        "add_bias",
        &x.gpu_values(&cuda, rows * cols),
        &x.cpu[..rows * cols],
    );
    let mut y = Pair::new(&cuda, &random(rows * cols, 6, -2.0, 2.0));
    cpu.set_rows_to_bias(
        MatMut::new(&mut y.cpu, rows, cols),
        &bias.cpu[..cols].to_vec(),
    )
    .unwrap();
    cuda.set_rows_to_bias(MatMut::new(&mut y.gpu, rows, cols), &bias.gpu)
        .unwrap();
    same_bits(
        "set_rows_to_bias",
        &y.gpu_values(&cuda, rows * cols),
        &y.cpu[..rows * cols],
    );
    cpu.add_assign(&mut y.cpu, &x.cpu, rows * cols).unwrap();
    cuda.add_assign(&mut y.gpu, &x.gpu, rows * cols).unwrap();
    same_bits(
        "add_assign",
        &y.gpu_values(&cuda, rows * cols),
        &y.cpu[..rows * cols],
    );
    for beta in [0.0f32, 0.9] {
        let mut db = Pair::new(&cuda, &random(cols, 7, -1.0, 1.0));
        let mut dbc = db.cpu[..cols].to_vec();
        cpu.bias_gradient(&mut dbc, Mat::new(&x.cpu, rows, cols), -1.0 / 33.0, beta)
            .unwrap();
        cuda.bias_gradient(&mut db.gpu, Mat::new(&x.gpu, rows, cols), -1.0 / 33.0, beta)
            .unwrap();
        same_bits("bias_gradient", &db.gpu_values(&cuda, cols), &dbc);
    }
    let weights = random(rows, 8, 0.5, 3.0);
    cpu.scale_rows(MatMut::new(&mut y.cpu, rows, cols), &weights)
        .unwrap();
    cuda.scale_rows(MatMut::new(&mut y.gpu, rows, cols), &weights)
        .unwrap();
    same_bits(
        "scale_rows",
        &y.gpu_values(&cuda, rows * cols),
        &y.cpu[..rows * cols],
    );
    cpu.copy(&mut x.cpu, &y.cpu, rows * cols).unwrap();
    cuda.copy(&mut x.gpu, &y.gpu, rows * cols).unwrap();
    same_bits(
        "copy",
        &x.gpu_values(&cuda, rows * cols),
        &x.cpu[..rows * cols],
    );
}

#[test]
fn sparse_kernels_match_the_cpu_bit_for_bit() {
    let Some(cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (batch, n_in, n_out) = (61, 3000, 300);
    for values in [false, true] {
        // Rows up to 5000 non-zeros: no per-row cap.
        let x = random_csr(batch, n_in, if values { 40 } else { 5000 }, 11, values);
        let xc = cpu.upload_sparse(x.clone(), true).unwrap();
        let xg = cuda.upload_sparse(x.clone(), true).unwrap();
        let w = Pair::new(&cuda, &random(n_in as usize * n_out, 12, -0.1, 0.1));
        for beta in [0.0f32, 1.0] {
            let mut out = Pair::new(&cuda, &random(batch * n_out, 13, -1.0, 1.0));
            cpu.spmm(
                MatMut::new(&mut out.cpu, batch, n_out),
                &xc,
                Mat::new(&w.cpu, n_in as usize, n_out),
                beta,
            )
            .unwrap();
            cuda.spmm(
                MatMut::new(&mut out.gpu, batch, n_out),
                &xg,
                Mat::new(&w.gpu, n_in as usize, n_out),
                beta,
            )
            .unwrap();
            same_bits(
                &format!("spmm values={values} beta={beta}"),
                &out.gpu_values(&cuda, batch * n_out),
                &out.cpu[..batch * n_out],
            );
        }
        let delta = Pair::new(&cuda, &random(batch * n_out, 14, -1.0, 1.0));
        for beta in [0.0f32, 1.0, 0.5] {
            let len = n_in as usize * n_out;
            let mut dw = Pair::new(&cuda, &random(len, 15, -1.0, 1.0));
            cpu.sparse_weight_gradient(
                MatMut::new(&mut dw.cpu, n_in as usize, n_out),
                &xc,
                Mat::new(&delta.cpu, batch, n_out),
                -1.0 / batch as f32,
                beta,
            )
            .unwrap();
            cuda.sparse_weight_gradient(
                MatMut::new(&mut dw.gpu, n_in as usize, n_out),
                &xg,
                Mat::new(&delta.gpu, batch, n_out),
                -1.0 / batch as f32,
                beta,
            )
            .unwrap();
            same_bits(
                &format!("sparse_weight_gradient values={values} beta={beta}"),
                &dw.gpu_values(&cuda, len),
                &dw.cpu[..len],
            );
        }
    }
}

const ACTIVATIONS: [Activation; 13] = [
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::RectifiedLinear,
    Activation::Linear,
    Activation::ParametricRectifiedLinear,
    Activation::SoftPlus,
    Activation::SoftSign,
    Activation::SoftMax,
    Activation::ReluMax,
    Activation::LinearMax,
    Activation::ExponentialLinear,
    Activation::LeakyRectifiedLinear,
    Activation::ScaledExponentialLinear,
];

#[test]
fn activations_and_dropout_match_the_cpu() {
    let Some(cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (rows, cols) = (29, 1031);
    let len = rows * cols;
    let p = ActivationParams {
        slope: 0.1,
        alpha: 1.6733,
        lambda: 1.0507,
    };
    for act in ACTIVATIONS {
        let mut x = Pair::new(&cuda, &random(len, 20 + act as u64, -4.0, 4.0));
        cpu.activation_forward(MatMut::new(&mut x.cpu, rows, cols), act, &p)
            .unwrap();
        cuda.activation_forward(MatMut::new(&mut x.gpu, rows, cols), act, &p)
            .unwrap();
        let fwd = x.gpu_values(&cuda, len);
        close(&format!("{act} forward"), &fwd, &x.cpu[..len]);
        if matches!(act, Activation::Sigmoid | Activation::RectifiedLinear) {
            same_bits(&format!("{act} forward"), &fwd, &x.cpu[..len]);
        }
        let mut d = Pair::new(&cuda, &random(len, 40 + act as u64, -1.0, 1.0));
        // Backward from the CPU's activations on both sides, so only the backward differs.
        cuda.upload(&mut x.gpu, &x.cpu[..len]).unwrap();
        cpu.activation_backward(
            MatMut::new(&mut d.cpu, rows, cols),
            Mat::new(&x.cpu, rows, cols),
            act,
            &p,
        )
        .unwrap();
        cuda.activation_backward(
            MatMut::new(&mut d.gpu, rows, cols),
            Mat::new(&x.gpu, rows, cols),
            act,
            &p,
        )
        .unwrap();
        close(
            &format!("{act} backward"),
            &d.gpu_values(&cuda, len),
            &d.cpu[..len],
        );
    }
    let mut x = Pair::new(&cuda, &random(len, 60, -1.0, 1.0));
    cpu.dropout_forward(MatMut::new(&mut x.cpu, rows, cols), 0.3, 0.0, 1234, 17)
        .unwrap();
    cuda.dropout_forward(MatMut::new(&mut x.gpu, rows, cols), 0.3, 0.0, 1234, 17)
        .unwrap();
    same_bits("dropout forward", &x.gpu_values(&cuda, len), &x.cpu[..len]);
    cpu.dropout_backward(MatMut::new(&mut x.cpu, rows, cols), 0.3, 1234, 17)
        .unwrap();
    cuda.dropout_backward(MatMut::new(&mut x.gpu, rows, cols), 0.3, 1234, 17)
        .unwrap();
    same_bits("dropout backward", &x.gpu_values(&cuda, len), &x.cpu[..len]);
}

#[test]
fn output_losses_and_deltas_match_the_cpu() {
    let Some(cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (rows, cols) = (41, 777);
    let len = rows * cols;
    for error in ErrorFunction::ALL.iter().copied() {
        for act in [
            Activation::Sigmoid,
            Activation::SoftMax,
            Activation::Tanh,
            Activation::Linear,
        ] {
            let spec = LossSpec::new(error, act);
            if spec.check().is_err() {
                continue;
            }
            // Activations in the output's range: a softmax row, or (0, 1) / (−1, 1).
            let mut a = Pair::new(&cuda, &random(len, 80, -3.0, 3.0));
            cpu.activation_forward(
                MatMut::new(&mut a.cpu, rows, cols),
                act,
                &ActivationParams::default(),
            )
            .unwrap();
            cuda.upload(&mut a.gpu, &a.cpu[..len]).unwrap();
            for (values, ignore_zero, dup) in [
                (false, false, false),
                (true, false, false),
                (false, true, false),
                (true, false, true),
            ] {
                let what = format!(
                    "{error} {act} values={values} ignore_zero={ignore_zero} duplicates={dup}"
                );
                let t = if dup {
                    with_duplicates(rows, cols as u32)
                } else {
                    random_csr(rows, cols as u32, 30, 90, values)
                };
                let tc = cpu.upload_sparse(t.clone(), false).unwrap();
                let tg = cuda.upload_sparse(t.clone(), false).unwrap();
                let mut d = Pair::new(&cuda, &random(len, 91, -1.0, 1.0));
                cpu.sparse_output_delta(
                    MatMut::new(&mut d.cpu, rows, cols),
                    Mat::new(&a.cpu, rows, cols),
                    &tc,
                    &spec,
                    ignore_zero,
                )
                .unwrap();
                cuda.sparse_output_delta(
                    MatMut::new(&mut d.gpu, rows, cols),
                    Mat::new(&a.gpu, rows, cols),
                    &tg,
                    &spec,
                    ignore_zero,
                )
                .unwrap();
                let dg = d.gpu_values(&cuda, len);
                close(&format!("sparse delta {what}"), &dg, &d.cpu[..len]);
                if act == Activation::Sigmoid {
                    same_bits(&format!("sparse delta {what}"), &dg, &d.cpu[..len]);
                }
                let lc = cpu
                    .sparse_output_loss(Mat::new(&a.cpu, rows, cols), &tc, &spec, ignore_zero)
                    .unwrap();
                let lg = cuda
                    .sparse_output_loss(Mat::new(&a.gpu, rows, cols), &tg, &spec, ignore_zero)
                    .unwrap();
                if matches!(act, Activation::Sigmoid | Activation::SoftMax) {
                    assert_eq!(lg, lc, "sparse loss {what}");
                } else {
                    let (g, c) = (lg.to_f64(), lc.to_f64());
                    assert!(
                        (g - c).abs() <= 1e-5 * c.abs().max(1.0),
                        "{what}: {g} vs {c}"
                    );
                }
            }
            // Dense targets.
            let t = Pair::new(&cuda, &random(len, 95, 0.0, 1.0));
            let mut d = Pair::new(&cuda, &random(len, 96, -1.0, 1.0));
            cpu.dense_output_delta(
                MatMut::new(&mut d.cpu, rows, cols),
                Mat::new(&a.cpu, rows, cols),
                Mat::new(&t.cpu, rows, cols),
                &spec,
            )
            .unwrap();
            cuda.dense_output_delta(
                MatMut::new(&mut d.gpu, rows, cols),
                Mat::new(&a.gpu, rows, cols),
                Mat::new(&t.gpu, rows, cols),
                &spec,
            )
            .unwrap();
            close(
                &format!("dense delta {error} {act}"),
                &d.gpu_values(&cuda, len),
                &d.cpu[..len],
            );
            let lc = cpu
                .dense_output_loss(
                    Mat::new(&a.cpu, rows, cols),
                    Mat::new(&t.cpu, rows, cols),
                    &spec,
                )
                .unwrap();
            let lg = cuda
                .dense_output_loss(
                    Mat::new(&a.gpu, rows, cols),
                    Mat::new(&t.gpu, rows, cols),
                    &spec,
                )
                .unwrap();
            let (g, c) = (lg.to_f64(), lc.to_f64());
            assert!(
                (g - c).abs() <= 1e-5 * c.abs().max(1.0),
                "dense loss {error} {act}: {g} vs {c}"
            );
        }
    }
}

#[test]
fn optimizer_steps_match_the_cpu_bit_for_bit() {
    let Some(cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let len = 10_007;
    let h = Hyper {
        alpha: 0.01,
        lambda: 0.001,
        lambda1: 0.0001,
        mu: 0.9,
        mu1: 0.999,
    };
    for opt in Optimizer::ALL.iter().copied() {
        let mut w = Pair::new(&cuda, &random(len, 100, -1.0, 1.0));
        let g = Pair::new(&cuda, &random(len, 101, -0.1, 0.1));
        let mut s0 = Pair::new(&cuda, &random(len, 102, 0.0, 0.01));
        let mut s1 = Pair::new(&cuda, &random(len, 103, 0.0, 0.01));
        for t in 1..=3 {
            cpu.optimizer_step(
                &mut w.cpu,
                &g.cpu,
                &mut s0.cpu,
                &mut s1.cpu,
                len,
                opt,
                &h,
                t,
            )
            .unwrap();
            cuda.optimizer_step(
                &mut w.gpu,
                &g.gpu,
                &mut s0.gpu,
                &mut s1.gpu,
                len,
                opt,
                &h,
                t,
            )
            .unwrap();
        }
        same_bits(
            &format!("{opt} weights"),
            &w.gpu_values(&cuda, len),
            &w.cpu[..len],
        );
        same_bits(
            &format!("{opt} state 0"),
            &s0.gpu_values(&cuda, len),
            &s0.cpu[..len],
        );
        same_bits(
            &format!("{opt} state 1"),
            &s1.gpu_values(&cuda, len),
            &s1.cpu[..len],
        );
    }
}

#[test]
fn top_k_matches_the_cpu_exactly() {
    let Some(cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (rows, cols) = (37, 3001);
    // Coarse scores (many ties), a few NaN, ±∞ and −0.
    let mut s: Vec<f32> = random(rows * cols, 150, -4.0, 4.0)
        .into_iter()
        .map(|x| (x * 8.0).round() / 8.0)
        .collect();
    for (i, v) in s.iter_mut().enumerate() {
        match i % 97 {
            3 => *v = f32::NAN,
            5 => *v = f32::INFINITY,
            7 => *v = f32::NEG_INFINITY,
            11 => *v = -0.0,
            _ => {}
        }
    }
    let scores = Pair::new(&cuda, &s);
    let exclude = random_csr(rows, cols as u32, 400, 151, false);
    for items in [cols, cols - 500] {
        for k in [1usize, 10, 100, 1000, 2048, 2500] {
            for ex in [None, Some(exclude.view())] {
                let what = format!("top-{k} of {items} exclusions={}", ex.is_some());
                let (mut ic, mut sc) = (vec![0u32; rows * k], vec![0.0f32; rows * k]);
                let (mut ig, mut sg) = (vec![0u32; rows * k], vec![0.0f32; rows * k]);
                cpu.top_k(
                    Mat::new(&scores.cpu, rows, cols),
                    items,
                    k,
                    ex,
                    &mut ic,
                    &mut sc,
                )
                .unwrap();
                cuda.top_k(
                    Mat::new(&scores.gpu, rows, cols),
                    items,
                    k,
                    ex,
                    &mut ig,
                    &mut sg,
                )
                .unwrap();
                assert_eq!(ig, ic, "{what}: indices");
                same_bits(&what, &sg, &sc);
            }
        }
    }
    // Rows wider than 65,536 items take the key-array kernels.
    let (rows, cols) = (3, 70_001);
    let s: Vec<f32> = random(rows * cols, 160, -1.0, 1.0)
        .into_iter()
        .map(|x| (x * 64.0).round() / 64.0)
        .collect();
    let scores = Pair::new(&cuda, &s);
    let exclude = random_csr(rows, cols as u32, 300, 161, false);
    for k in [1usize, 100, 2048] {
        for ex in [None, Some(exclude.view())] {
            let (mut ic, mut sc) = (vec![0u32; rows * k], vec![0.0f32; rows * k]);
            let (mut ig, mut sg) = (vec![0u32; rows * k], vec![0.0f32; rows * k]);
            cpu.top_k(
                Mat::new(&scores.cpu, rows, cols),
                cols,
                k,
                ex,
                &mut ic,
                &mut sc,
            )
            .unwrap();
            cuda.top_k(
                Mat::new(&scores.gpu, rows, cols),
                cols,
                k,
                ex,
                &mut ig,
                &mut sg,
            )
            .unwrap();
            assert_eq!(ig, ic, "wide top-{k}: indices");
            same_bits(&format!("wide top-{k}"), &sg, &sc);
        }
    }
}
