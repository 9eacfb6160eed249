//! CUDA backend against the CPU backend: every primitive on fresh random inputs, and whole
//! training epochs. Runs where a CUDA device is present; elsewhere each test prints
//! "skipped: no CUDA device" and passes.
//!
//! Contract checked: relative error `‖gpu − cpu‖ / ‖cpu‖ < 1e-5` for every primitive; bit
//! equality where both backends evaluate the same formula in the same order (sparse products,
//! fixed-point gradients and losses, dropout masks, optimizer updates, Sigmoid); bit-identical
//! GPU results run to run.
#![cfg(feature = "cuda")]

use moira::backend::traits::{Mat, MatMut};
use moira::backend::{Backend, Cpu};
use moira::ops::activation::ActivationParams;
use moira::ops::loss::LossSpec;
use moira::ops::optimizer::Hyper;
use moira::ops::{Activation, ErrorFunction, Optimizer};

use moira::ops::Trans;

mod cuda_common;
use cuda_common::{close, device, random, random_csr, same_bits, with_duplicates, Pair};

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
                0..len,
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
                0..len,
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
