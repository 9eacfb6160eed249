//! Helpers of the CUDA parity tests: the device (or a skip), random inputs, comparisons,
//! and buffers on both backends.
#![allow(dead_code)]

use moira::backend::cuda::Cuda;
use moira::backend::Backend;
use moira::rng::{u64_at, uniform_f32};
use moira::sparse::Csr;

pub fn device() -> Option<Cuda> {
    if !Cuda::available() {
        eprintln!("skipped: no CUDA device");
        return None;
    }
    Some(Cuda::new(0, false).expect("CUDA backend on device 0"))
}

/// Fresh random values in [lo, hi) from `seed`.
pub fn random(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    (0..len as u64)
        .map(|i| lo + (hi - lo) * uniform_f32(seed, 77, i))
        .collect()
}

/// A random CSR batch: `rows` rows of up to `max_nnz` distinct columns below `cols` (some
/// rows empty), with values when `values`.
pub fn random_csr(rows: usize, cols: u32, max_nnz: u64, seed: u64, values: bool) -> Csr {
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
pub fn with_duplicates(rows: usize, cols: u32) -> Csr {
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

pub fn rel_err(gpu: &[f32], cpu: &[f32]) -> f64 {
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

pub fn close(what: &str, gpu: &[f32], cpu: &[f32]) {
    let e = rel_err(gpu, cpu);
    assert!(e < 1e-5, "{what}: relative error {e:e}");
}

pub fn same_bits(what: &str, gpu: &[f32], cpu: &[f32]) {
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
pub struct Pair {
    pub cpu: Vec<f32>,
    pub gpu: <Cuda as Backend>::Vector,
}

impl Pair {
    pub fn new(cuda: &Cuda, data: &[f32]) -> Pair {
        let mut gpu = cuda.zeros(data.len() + 7).unwrap();
        let mut padded = data.to_vec();
        padded.extend_from_slice(&[f32::NAN; 7]);
        cuda.upload(&mut gpu, &padded).unwrap();
        let mut cpu = padded.clone();
        cpu.truncate(data.len() + 7);
        Pair { cpu, gpu }
    }

    pub fn gpu_values(&self, cuda: &Cuda, len: usize) -> Vec<f32> {
        let mut out = vec![0.0; len];
        cuda.download(&self.gpu, &mut out).unwrap();
        out
    }
}
