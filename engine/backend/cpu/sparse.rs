//! Sparse-input kernels: the forward product `X·W` for a CSR batch `X` (DSSTNE's
//! `kCalculateSparseZ` family) and the weight gradient `Xᵀ·Δ` in 64-bit fixed point
//! (`kCalculateSparseTransposedMatrix` + `kCalculateSparseTransposedWeightGradient`).

use super::{for_each_row, multiversion, Isa, Par};
use crate::backend::traits::check_dim;
use crate::dense::{MatrixMut, MatrixRef};
use crate::error::Result;
use crate::ops::fixed::{scaled_from_fixed, to_fixed};
use crate::sparse::CsrView;

/// Output columns handled per pass over a row's non-zeros (accumulators stay in registers).
const CHUNK: usize = 32;

/// Non-zeros summed per partial sum in [`spmm`] (the CUDA kernel's block width).
pub const SPMM_NNZ_CHUNK: usize = 256;

/// Sparse forward product: for every row `b` of the batch `x`,
/// `out[b, :] = beta·out[b, :] + Σ_{(c, v) ∈ row b} v·w[c, :]`
/// (`v = 1` for an indicator `x`). Order of the sum (the CUDA kernel uses the same, so both
/// give the same bits): the row's non-zeros in storage order, in chunks of
/// [`SPMM_NNZ_CHUNK`]; each chunk is summed from 0 in order, and the chunk sums are added in
/// order to a total starting from 0 (a row of at most one chunk is a plain sum in storage
/// order). The total is then added to `beta·out` (with `beta = 0`, `out` is overwritten and
/// never read). `w` is `[n_in][n_out]` (DSSTNE's layout); `out` is `[batch][n_out]`.
/// Parallel over rows.
pub fn spmm(mut out: MatrixMut, x: CsrView, w: MatrixRef, beta: f32, par: Par) -> Result<()> {
    check_dim("spmm: out rows (batch)", out.rows(), x.n_rows())?;
    check_dim("spmm: weight rows (n_in)", w.rows(), x.n_cols() as usize)?;
    check_dim("spmm: out cols (n_out)", out.cols(), w.cols())?;
    let n = w.cols();
    let wd = w.data();
    let isa = Isa::detect();
    for_each_row(par, out.data_mut(), n, |b, out_row| {
        let (cols, vals) = x.row(b);
        spmm_row_mv(isa, out_row, wd, cols, vals, beta);
    });
    Ok(())
}

multiversion!(fn spmm_row_mv = spmm_row(out: &mut [f32], wd: &[f32], cols: &[u32], vals: Option<&[f32]>, beta: f32));

/// One output row of [`spmm`]: `out = beta·out + Σ v·w[c, :]` (`n = out.len()`), summed in
/// chunks of [`SPMM_NNZ_CHUNK`] non-zeros.
#[inline(always)]
fn spmm_row(out: &mut [f32], wd: &[f32], cols: &[u32], vals: Option<&[f32]>, beta: f32) {
    let n = out.len();
    let mut j0 = 0;
    while j0 < n {
        let width = CHUNK.min(n - j0);
        let mut acc = [0.0f32; CHUNK];
        for (i, part_cols) in cols.chunks(SPMM_NNZ_CHUNK).enumerate() {
            let part_vals = vals.map(|v| &v[i * SPMM_NNZ_CHUNK..][..part_cols.len()]);
            let mut part = [0.0f32; CHUNK];
            if width == CHUNK {
                spmm_chunk::<CHUNK>(&mut part, wd, n, j0, part_cols, part_vals);
            } else {
                spmm_tail(&mut part[..width], wd, n, j0, part_cols, part_vals);
            }
            for (a, &p) in acc.iter_mut().zip(&part) {
                *a += p;
            }
        }
        let dst = &mut out[j0..j0 + width];
        if beta == 0.0 {
            dst.copy_from_slice(&acc[..width]);
        } else {
            for (d, &s) in dst.iter_mut().zip(&acc[..width]) {
                *d = beta * *d + s;
            }
        }
        j0 += width;
    }
}

/// `acc[j] += v·w[c, j0 + j]` over the non-zeros, for a full chunk (constant trip count, so
/// the inner loop is unrolled and vectorised).
#[inline(always)]
fn spmm_chunk<const W: usize>(
    acc: &mut [f32; W],
    wd: &[f32],
    n: usize,
    j0: usize,
    cols: &[u32],
    vals: Option<&[f32]>,
) {
    match vals {
        None => {
            for &c in cols {
                let start = c as usize * n + j0;
                let wr: &[f32; W] = wd[start..start + W].try_into().expect("chunk width");
                for j in 0..W {
                    acc[j] += wr[j];
                }
            }
        }
        Some(vals) => {
            for (&c, &v) in cols.iter().zip(vals) {
                let start = c as usize * n + j0;
                let wr: &[f32; W] = wd[start..start + W].try_into().expect("chunk width");
                for j in 0..W {
                    acc[j] += v * wr[j];
                }
            }
        }
    }
}

/// [`spmm_chunk`] for the last, narrower chunk of a row.
#[inline(always)]
fn spmm_tail(acc: &mut [f32], wd: &[f32], n: usize, j0: usize, cols: &[u32], vals: Option<&[f32]>) {
    let width = acc.len();
    for (k, &c) in cols.iter().enumerate() {
        let v = vals.map_or(1.0, |v| v[k]);
        let start = c as usize * n + j0;
        for (a, &wv) in acc.iter_mut().zip(&wd[start..start + width]) {
            *a += v * wv;
        }
    }
}

/// The transpose of a sparse batch (its CSC form): for every input feature present in the
/// batch, the batch rows holding it (ascending) and their values. Built once per batch and
/// reused by every weight gradient taken from that input.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTranspose {
    n_rows: usize,
    n_cols: usize,
    /// Distinct features present, ascending.
    features: Vec<u32>,
    /// `starts[i]..starts[i + 1]` indexes `rows`/`values` for `features[i]`.
    starts: Vec<usize>,
    rows: Vec<u32>,
    values: Option<Vec<f32>>,
}

impl SparseTranspose {
    /// Transposes the batch `x`. Counting sort when the batch has enough non-zeros per
    /// feature, a sort of `(feature, row)` keys otherwise; both give the same result. Fails
    /// when the batch has more than `u32::MAX` rows or non-zeros.
    pub fn new(x: CsrView) -> Result<Self> {
        if x.n_rows() > u32::MAX as usize || x.nnz() > u32::MAX as usize {
            return Err(crate::Error::invalid_argument(
                "sparse transpose: batch",
                format!(
                    "{} rows and {} non-zeros; at most {} of each are supported",
                    x.n_rows(),
                    x.nnz(),
                    u32::MAX
                ),
            ));
        }
        let n_cols = x.n_cols() as usize;
        Ok(if n_cols <= 4 * x.nnz() + 1024 {
            Self::by_counting(x)
        } else {
            Self::by_sorting(x)
        })
    }

    pub(crate) fn by_counting(x: CsrView) -> Self {
        let n_cols = x.n_cols() as usize;
        let mut counts = vec![0usize; n_cols + 1];
        for b in 0..x.n_rows() {
            for &c in x.row(b).0 {
                counts[c as usize + 1] += 1;
            }
        }
        for c in 0..n_cols {
            counts[c + 1] += counts[c];
        }
        let nnz = counts[n_cols];
        let mut next = counts.clone();
        let mut rows = vec![0u32; nnz];
        let mut values = x.has_values().then(|| vec![0.0f32; nnz]);
        for b in 0..x.n_rows() {
            let (cols, vals) = x.row(b);
            for (k, &c) in cols.iter().enumerate() {
                let slot = next[c as usize];
                next[c as usize] += 1;
                rows[slot] = b as u32;
                if let (Some(values), Some(vals)) = (values.as_mut(), vals) {
                    values[slot] = vals[k];
                }
            }
        }
        let mut features = Vec::new();
        let mut starts = vec![0usize];
        for c in 0..n_cols {
            if counts[c + 1] > counts[c] {
                features.push(c as u32);
                starts.push(counts[c + 1]);
            }
        }
        SparseTranspose {
            n_rows: x.n_rows(),
            n_cols,
            features,
            starts,
            rows,
            values,
        }
    }

    pub(crate) fn by_sorting(x: CsrView) -> Self {
        let mut keys: Vec<(u64, u32)> = Vec::with_capacity(x.nnz());
        for b in 0..x.n_rows() {
            let (cols, _) = x.row(b);
            let base = x.row_offsets()[b] - x.row_offsets()[0];
            for (k, &c) in cols.iter().enumerate() {
                keys.push((((c as u64) << 32) | b as u64, (base as usize + k) as u32));
            }
        }
        keys.sort_unstable_by_key(|&(key, _)| key);
        let all_values = x.has_values().then(|| {
            // The values of the viewed rows, indexable by position relative to `first`.
            let mut v = Vec::with_capacity(x.nnz());
            for b in 0..x.n_rows() {
                v.extend_from_slice(x.row(b).1.unwrap_or(&[]));
            }
            v
        });
        let mut features = Vec::new();
        let mut starts = vec![0usize];
        let mut rows = Vec::with_capacity(keys.len());
        let mut values = all_values.as_ref().map(|_| Vec::with_capacity(keys.len()));
        for (i, &(key, pos)) in keys.iter().enumerate() {
            let c = (key >> 32) as u32;
            if features.last() != Some(&c) {
                if i > 0 {
                    starts.push(i);
                }
                features.push(c);
            }
            rows.push(key as u32);
            if let (Some(values), Some(all)) = (values.as_mut(), all_values.as_ref()) {
                values.push(all[pos as usize]);
            }
        }
        if !keys.is_empty() {
            starts.push(keys.len());
        }
        SparseTranspose {
            n_rows: x.n_rows(),
            n_cols: x.n_cols() as usize,
            features,
            starts,
            rows,
            values,
        }
    }

    /// Rows of the transposed batch (= `n_in`, the batch's columns).
    pub fn n_features(&self) -> usize {
        self.n_cols
    }

    /// The batch size.
    pub fn batch(&self) -> usize {
        self.n_rows
    }

    /// The distinct features present in the batch, ascending.
    pub fn features(&self) -> &[u32] {
        &self.features
    }

    /// The batch rows holding `features()[i]`, ascending, and their values (`None`: all 1).
    pub fn entries(&self, i: usize) -> (&[u32], Option<&[f32]>) {
        let (s, e) = (self.starts[i], self.starts[i + 1]);
        (&self.rows[s..e], self.values.as_deref().map(|v| &v[s..e]))
    }
}

/// Transposed sparse weight gradient, summed in 64-bit fixed point:
/// `dw[c, :] = beta·dw[c, :] + alpha · Σ_{(b, v): c ∈ row b} v·delta[b, :]`, where each term
/// enters the sum as `to_fixed(v·delta[b, j])` (`round_half_even(v·δ·2³⁰)`) and the total
/// leaves as `alpha · sum · 2⁻³⁰` (in `f64`, rounded once). The result is the same bits for
/// any `par` and pool size. Rows of features absent from the batch get `beta·dw` (with
/// `beta = 0`: zero, never read). `dw` is `[n_in][n_out]`, `delta` `[batch][n_out]`.
/// DSSTNE uses `alpha = −1/batch` (negative mean gradient). Parallel over features.
pub fn sparse_weight_gradient(
    mut dw: MatrixMut,
    xt: &SparseTranspose,
    delta: MatrixRef,
    alpha: f32,
    beta: f32,
    par: Par,
) -> Result<()> {
    check_dim(
        "sparse gradient: dw rows (n_in)",
        dw.rows(),
        xt.n_features(),
    )?;
    check_dim(
        "sparse gradient: delta rows (batch)",
        delta.rows(),
        xt.batch(),
    )?;
    check_dim("sparse gradient: dw cols (n_out)", dw.cols(), delta.cols())?;
    let n = dw.cols();
    let dd = delta.data();
    let isa = Isa::detect();
    for_each_row(par, dw.data_mut(), n, |c, out_row| {
        match xt.features.binary_search(&(c as u32)) {
            Ok(i) => {
                let (rows, vals) = xt.entries(i);
                grad_row_mv(isa, out_row, dd, rows, vals, alpha, beta);
            }
            Err(_) if beta == 0.0 => out_row.fill(0.0),
            Err(_) if beta != 1.0 => out_row.iter_mut().for_each(|x| *x *= beta),
            Err(_) => {}
        }
    });
    Ok(())
}

multiversion!(fn grad_row_mv = grad_row(out: &mut [f32], dd: &[f32], rows: &[u32], vals: Option<&[f32]>, alpha: f32, beta: f32));

/// One row of [`sparse_weight_gradient`] for a feature present in the batch
/// (`n = out.len()` output columns; `dd` is the `[batch][n]` delta).
#[inline(always)]
fn grad_row(
    out: &mut [f32],
    dd: &[f32],
    rows: &[u32],
    vals: Option<&[f32]>,
    alpha: f32,
    beta: f32,
) {
    let n = out.len();
    let mut j0 = 0;
    while j0 < n {
        let width = CHUNK.min(n - j0);
        let mut acc = [0i64; CHUNK];
        if width == CHUNK {
            grad_chunk::<CHUNK>(&mut acc, dd, n, j0, rows, vals);
        } else {
            grad_tail(&mut acc[..width], dd, n, j0, rows, vals);
        }
        for (o, &s) in out[j0..j0 + width].iter_mut().zip(&acc) {
            let g = scaled_from_fixed(alpha, s);
            *o = if beta == 0.0 { g } else { beta * *o + g };
        }
        j0 += width;
    }
}

/// `acc[j] += to_fixed(v·δ[b, j0 + j])` over the feature's batch rows, for a full chunk.
#[inline(always)]
fn grad_chunk<const W: usize>(
    acc: &mut [i64; W],
    dd: &[f32],
    n: usize,
    j0: usize,
    rows: &[u32],
    vals: Option<&[f32]>,
) {
    match vals {
        None => {
            for &b in rows {
                let start = b as usize * n + j0;
                let d: &[f32; W] = dd[start..start + W].try_into().expect("chunk width");
                for j in 0..W {
                    acc[j] = acc[j].wrapping_add(to_fixed(d[j]));
                }
            }
        }
        Some(vals) => {
            for (&b, &v) in rows.iter().zip(vals) {
                let start = b as usize * n + j0;
                let d: &[f32; W] = dd[start..start + W].try_into().expect("chunk width");
                for j in 0..W {
                    acc[j] = acc[j].wrapping_add(to_fixed(v * d[j]));
                }
            }
        }
    }
}

/// [`grad_chunk`] for the last, narrower chunk of a row.
#[inline(always)]
fn grad_tail(acc: &mut [i64], dd: &[f32], n: usize, j0: usize, rows: &[u32], vals: Option<&[f32]>) {
    let width = acc.len();
    for (k, &b) in rows.iter().enumerate() {
        let start = b as usize * n + j0;
        let d = &dd[start..start + width];
        match vals {
            None => acc
                .iter_mut()
                .zip(d)
                .for_each(|(a, &x)| *a = a.wrapping_add(to_fixed(x))),
            Some(v) => {
                let v = v[k];
                acc.iter_mut()
                    .zip(d)
                    .for_each(|(a, &x)| *a = a.wrapping_add(to_fixed(v * x)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::uniform_f32;

    /// Every vector-extension level of the row kernels gives the same bits.
    #[test]
    fn isa_levels_agree_bit_for_bit() {
        let n = 77;
        let w: Vec<f32> = (0..50 * n)
            .map(|i| uniform_f32(1, 0, i as u64) - 0.5)
            .collect();
        let cols = [3u32, 9, 10, 31, 49];
        let vals = [0.5f32, 1.5, 2.0, 0.25, 3.0];
        let run = |isa: Isa| {
            let mut f = vec![0.1f32; n];
            let mut g = vec![0.1f32; n];
            spmm_row_mv(isa, &mut f, &w, &cols, Some(&vals), 0.5);
            grad_row_mv(isa, &mut g, &w, &cols, Some(&vals), -0.01, 1.0);
            let mut h = vec![0.0f32; n];
            grad_row_mv(isa, &mut h, &w, &cols, None, 1.0, 0.0);
            (f, g, h)
        };
        let base = run(Isa::Baseline);
        for isa in Isa::available() {
            assert_eq!(run(isa), base, "{isa:?}");
        }
    }
}
