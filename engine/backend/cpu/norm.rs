//! CPU versions of the norm and normalisation primitives: the formulas of
//! [`crate::ops::norm`] run in place on the host buffers, the large ones split over rayon in
//! a way that does not change the order of any sum.

use crate::ops::norm;
use rayon::prelude::*;

/// Rows per block of the column sums of [`clip_column_norms`]: the blocks are fixed by the
/// matrix, not by the thread count, and their partial sums are added in block order.
const ROW_BLOCK: usize = 256;

/// [`norm::clip_column_norms`]: column sums of squares per block of [`ROW_BLOCK`] rows in
/// parallel, added in block order in `f64`, then the scaling in parallel over rows.
pub fn clip_column_norms(w: &mut [f32], rows: usize, cols: usize, max_norm: f32) {
    if max_norm <= 0.0 || cols == 0 || rows == 0 {
        return;
    }
    let w = &mut w[..rows * cols];
    let partial: Vec<Vec<f64>> = w
        .par_chunks(ROW_BLOCK * cols)
        .map(|block| {
            let mut sq = vec![0.0f64; cols];
            for row in block.chunks_exact(cols) {
                for (s, &v) in sq.iter_mut().zip(row) {
                    *s += f64::from(v) * f64::from(v);
                }
            }
            sq
        })
        .collect();
    let limit = f64::from(max_norm);
    let mut scale = vec![1.0f32; cols];
    let mut any = false;
    for (j, k) in scale.iter_mut().enumerate() {
        let s: f64 = partial.iter().map(|p| p[j]).sum();
        if s > limit * limit {
            *k = (limit / s.sqrt()) as f32;
            any = true;
        }
    }
    if any {
        w.par_chunks_mut(cols).for_each(|row| {
            for (v, &k) in row.iter_mut().zip(&scale) {
                *v *= k;
            }
        });
    }
}

/// [`norm::clip_row_norms`], rows in parallel (each row's sum is sequential).
pub fn clip_row_norms(x: &mut [f32], rows: usize, cols: usize, max_norm: f32) {
    if max_norm <= 0.0 || cols == 0 {
        return;
    }
    x[..rows * cols]
        .par_chunks_mut(cols)
        .for_each(|row| norm::clip_row_norms(row, 1, cols, max_norm));
}
