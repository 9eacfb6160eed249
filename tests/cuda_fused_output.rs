//! The CUDA backend's fused output pass (`Backend::sparse_output_forward` with
//! `Cuda::set_fused_output(true)`: one kernel for the activation, the zero-target deltas and
//! loss terms, then the non-zeros) against the same primitive composed of the activation,
//! loss and delta kernels, and against the CPU: the same activations, deltas and loss, bit
//! for bit on the GPU; on the CPU's bits for Sigmoid, within 1e-5 otherwise (`tanh` and
//! friends come from CUDA's libdevice). Prints "skipped: no CUDA device" and passes where
//! there is no device.
#![cfg(feature = "cuda")]

use moira::backend::traits::MatMut;
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
                        cuda.set_fused_output(fused);
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
