//! CUDA top-K against the CPU's (engine/predict/topk.rs contract): the same indices and score
//! bits for narrow rows (the in-place kernel) and rows wider than 65,536 items (the key-array
//! kernels), with ties, NaN, ±∞, −0 and exclusions. Prints "skipped: no CUDA device" and passes
//! where there is no device.
#![cfg(feature = "cuda")]

mod cuda_common;
use cuda_common::{device, random, random_csr, same_bits, Pair};
use moira::backend::traits::Mat;
use moira::backend::{Backend, Cpu};

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
