//! The CUDA backend's optional kernel paths against the paths they replace and the CPU:
//! - the fused output pass (`Backend::sparse_output_forward` with
//!   `CudaChoices::fused_output`: one kernel for the activation, the zero-target deltas and
//!   loss terms, then the non-zeros) against the activation, loss and delta kernels one after
//!   the other: the same activations, deltas and loss, bit for bit; on the CPU's bits for
//!   Sigmoid, within 1e-5 otherwise (`tanh` and friends come from CUDA's libdevice);
//! - the split sparse gradient (`CudaChoices::split_sparse_gradient`: absent features' rows
//!   in a pass of their own) against the single kernel and the CPU, bit for bit;
//! - `spmm` four columns per thread (`CudaChoices::spmm_quads`) against one column per
//!   thread and the CPU, bit for bit, with rows longer than one chunk;
//! - minibatch uploads through the pinned staging ring (`CudaChoices::pinned_uploads`): more
//!   batches than the ring has slots, of growing sizes, all uploaded before any is used, give
//!   the products and gradients of ordinary uploads, bit for bit.
//!
//! Prints "skipped: no CUDA device" and passes where there is no device.
#![cfg(feature = "cuda")]

use moira::backend::cuda::{Cuda, CudaChoices};
use moira::backend::traits::{Mat, MatMut};
use moira::backend::{Backend, Cpu};
use moira::ops::loss::LossSpec;
use moira::ops::{Activation, ErrorFunction};

mod cuda_common;
use cuda_common::{close, device, random, random_csr, same_bits, with_duplicates, Pair};

#[test]
fn fused_output_pass_matches_the_composed_kernels_and_the_cpu() {
    let Some(mut cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    // The second shape has more elements than one grid-stride sweep of the pass covers.
    for (rows, cols) in [(41, 777), (300, 2777)] {
        let len = rows * cols;
        let z = random(len, 70, -4.0, 4.0);
        for error in ErrorFunction::ALL.iter().copied() {
            for act in [
                Activation::Sigmoid,
                Activation::Tanh,
                Activation::Linear,
                Activation::RectifiedLinear,
                Activation::SoftPlus,
                Activation::SoftMax,
            ] {
                let spec = LossSpec::new(error, act);
                if spec.check().is_err() {
                    continue;
                }
                for (values, ignore_zero, dup) in [
                    (false, false, false),
                    (true, false, false),
                    (false, true, false),
                    (true, false, true),
                ] {
                    let what = format!(
                        "{rows}x{cols} {error} {act} values={values} ignore_zero={ignore_zero} \
                         duplicates={dup}"
                    );
                    let t = if dup {
                        with_duplicates(rows, cols as u32)
                    } else {
                        random_csr(rows, cols as u32, 60, 90, values)
                    };
                    let mut run = |fused: bool| {
                        cuda.set_choices(CudaChoices {
                            fused_output: fused,
                            ..CudaChoices::default()
                        });
                        let tg = cuda.upload_sparse(t.clone(), false).unwrap();
                        let mut a = Pair::new(&cuda, &z);
                        let mut d = Pair::new(&cuda, &random(len, 71, -1.0, 1.0));
                        let loss = cuda
                            .sparse_output_forward(
                                MatMut::new(&mut a.gpu, rows, cols),
                                MatMut::new(&mut d.gpu, rows, cols),
                                &tg,
                                &spec,
                                ignore_zero,
                            )
                            .unwrap();
                        // One past the matrix: the NaN poison must be untouched.
                        let a = a.gpu_values(&cuda, len + 1);
                        let d = d.gpu_values(&cuda, len + 1);
                        assert!(a[len].is_nan() && d[len].is_nan(), "{what}: wrote past");
                        (a[..len].to_vec(), d[..len].to_vec(), loss)
                    };
                    let (fa, fd, fl) = run(true);
                    let (ca, cd, cl) = run(false);
                    same_bits(&format!("{what}: activations, fused vs composed"), &fa, &ca);
                    same_bits(&format!("{what}: deltas, fused vs composed"), &fd, &cd);
                    assert_eq!(fl, cl, "{what}: loss, fused vs composed");

                    let tc = cpu.upload_sparse(t.clone(), false).unwrap();
                    let mut a = z.clone();
                    let mut d = vec![0.0; len];
                    let loss = cpu
                        .sparse_output_forward(
                            MatMut::new(&mut a, rows, cols),
                            MatMut::new(&mut d, rows, cols),
                            &tc,
                            &spec,
                            ignore_zero,
                        )
                        .unwrap();
                    close(&format!("{what}: activations vs CPU"), &fa, &a);
                    close(&format!("{what}: deltas vs CPU"), &fd, &d);
                    if act == Activation::Sigmoid {
                        same_bits(&format!("{what}: activations vs CPU"), &fa, &a);
                        same_bits(&format!("{what}: deltas vs CPU"), &fd, &d);
                        assert_eq!(fl, loss, "{what}: loss vs CPU");
                    } else {
                        let (g, c) = (fl.to_f64(), loss.to_f64());
                        assert!(
                            (g - c).abs() <= 1e-5 * c.abs().max(1.0),
                            "{what}: loss {g} vs CPU {c}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn split_sparse_gradient_matches_the_single_kernel_and_the_cpu() {
    let Some(mut cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (batch, n_in) = (61, 3000);
    // Rows of 300 floats take the float4 pass, rows of 301 the scalar one.
    for n_out in [300, 301] {
        for values in [false, true] {
            let x = random_csr(batch, n_in, 40, 11, values);
            let xc = cpu.upload_sparse(x.clone(), true).unwrap();
            let xg = cuda.upload_sparse(x.clone(), true).unwrap();
            let delta = Pair::new(&cuda, &random(batch * n_out, 14, -1.0, 1.0));
            let len = n_in as usize * n_out;
            for beta in [0.0f32, 1.0, 0.5] {
                let what = format!("n_out={n_out} values={values} beta={beta}");
                let mut run = |split: bool| {
                    cuda.set_choices(CudaChoices {
                        split_sparse_gradient: split,
                        ..CudaChoices::default()
                    });
                    let mut dw = Pair::new(&cuda, &random(len, 15, -1.0, 1.0));
                    cuda.sparse_weight_gradient(
                        MatMut::new(&mut dw.gpu, n_in as usize, n_out),
                        &xg,
                        Mat::new(&delta.gpu, batch, n_out),
                        -1.0 / batch as f32,
                        beta,
                    )
                    .unwrap();
                    let out = dw.gpu_values(&cuda, len + 1);
                    assert!(out[len].is_nan(), "{what}: wrote past the matrix");
                    out[..len].to_vec()
                };
                let split = run(true);
                let single = run(false);
                same_bits(&format!("{what}: split vs single kernel"), &split, &single);
                let mut dw = random(len, 15, -1.0, 1.0);
                cpu.sparse_weight_gradient(
                    MatMut::new(&mut dw, n_in as usize, n_out),
                    &xc,
                    Mat::new(&delta.cpu, batch, n_out),
                    -1.0 / batch as f32,
                    beta,
                )
                .unwrap();
                same_bits(&format!("{what}: split vs CPU"), &split, &dw);
            }
        }
    }
}

#[test]
fn spmm_quads_match_the_scalar_kernel_and_the_cpu() {
    let Some(mut cuda) = device() else { return };
    let cpu = Cpu::new(2).unwrap();
    let (batch, n_in) = (61, 3000);
    // 300 and 1028 columns take the quads (1028: a second, partial block of columns); 301
    // falls back to the scalar kernel.
    for n_out in [300, 1028, 301] {
        for (values, max_nnz) in [(false, 5000), (true, 40), (true, 700)] {
            let x = random_csr(batch, n_in, max_nnz, 11, values);
            let xc = cpu.upload_sparse(x.clone(), false).unwrap();
            let xg = cuda.upload_sparse(x.clone(), false).unwrap();
            let w = Pair::new(&cuda, &random(n_in as usize * n_out, 12, -0.1, 0.1));
            let len = batch * n_out;
            for beta in [0.0f32, 1.0] {
                let what = format!("n_out={n_out} values={values} max_nnz={max_nnz} beta={beta}");
                let mut run = |quads: bool| {
                    cuda.set_choices(CudaChoices {
                        spmm_quads: quads,
                        ..CudaChoices::default()
                    });
                    let mut out = Pair::new(&cuda, &random(len, 13, -1.0, 1.0));
                    cuda.spmm(
                        MatMut::new(&mut out.gpu, batch, n_out),
                        &xg,
                        Mat::new(&w.gpu, n_in as usize, n_out),
                        beta,
                    )
                    .unwrap();
                    let v = out.gpu_values(&cuda, len + 1);
                    assert!(v[len].is_nan(), "{what}: wrote past the matrix");
                    v[..len].to_vec()
                };
                let quads = run(true);
                let scalar = run(false);
                same_bits(&format!("{what}: quads vs scalar"), &quads, &scalar);
                let mut out = random(len, 13, -1.0, 1.0);
                cpu.spmm(
                    MatMut::new(&mut out, batch, n_out),
                    &xc,
                    Mat::new(&w.cpu, n_in as usize, n_out),
                    beta,
                )
                .unwrap();
                same_bits(&format!("{what}: quads vs CPU"), &quads, &out);
            }
        }
    }
}

#[test]
fn pinned_uploads_give_the_batches_of_ordinary_uploads() {
    let Some(mut cuda) = device() else { return };
    let (batch, n_in, n_out) = (61, 3000, 128);
    let hosts: Vec<_> = [3u64, 40, 700, 10, 5000, 0, 200, 5000]
        .iter()
        .enumerate()
        .map(|(i, &max_nnz)| random_csr(batch, n_in, max_nnz, 30 + i as u64, i % 2 == 1))
        .collect();
    let upload_all = |cuda: &mut Cuda, pinned: bool| {
        cuda.set_choices(CudaChoices {
            pinned_uploads: pinned,
            ..CudaChoices::default()
        });
        hosts
            .iter()
            .map(|x| cuda.upload_sparse(x.clone(), true).unwrap())
            .collect::<Vec<_>>()
    };
    let pinned = upload_all(&mut cuda, true);
    let ordinary = upload_all(&mut cuda, false);
    let w = Pair::new(&cuda, &random(n_in as usize * n_out, 12, -0.1, 0.1));
    let delta = Pair::new(&cuda, &random(batch * n_out, 14, -1.0, 1.0));
    let results = |x: &<Cuda as Backend>::SparseBatch| {
        let mut out = Pair::new(&cuda, &random(batch * n_out, 13, -1.0, 1.0));
        cuda.spmm(
            MatMut::new(&mut out.gpu, batch, n_out),
            x,
            Mat::new(&w.gpu, n_in as usize, n_out),
            0.0,
        )
        .unwrap();
        let len = n_in as usize * n_out;
        let mut dw = Pair::new(&cuda, &random(len, 15, -1.0, 1.0));
        cuda.sparse_weight_gradient(
            MatMut::new(&mut dw.gpu, n_in as usize, n_out),
            x,
            Mat::new(&delta.gpu, batch, n_out),
            -1.0 / batch as f32,
            0.0,
        )
        .unwrap();
        (
            out.gpu_values(&cuda, batch * n_out),
            dw.gpu_values(&cuda, len),
        )
    };
    for (i, (p, o)) in pinned.iter().zip(&ordinary).enumerate() {
        let (p_out, p_dw) = results(p);
        let (o_out, o_dw) = results(o);
        same_bits(
            &format!("batch {i}: spmm, pinned vs ordinary"),
            &p_out,
            &o_out,
        );
        same_bits(
            &format!("batch {i}: gradient, pinned vs ordinary"),
            &p_dw,
            &o_dw,
        );
    }
}
