//! The sparse-input primitives of [`Cuda`]: batch upload (with its per-feature transpose built
//! on the device), the forward product and the fixed-point weight gradient (cuda/sparse.cu).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::backend::{check_fits, dev, mat_len, Cuda, BLOCK};
use super::backend::{CudaSparseBatch, DeviceTranspose};
use crate::backend::cpu::SPMM_NNZ_CHUNK;
use crate::backend::traits::check_dim;
use crate::backend::traits::{Mat, MatMut};
use crate::error::{Error, Result};
use crate::sparse::{Csr, CsrView};

impl Cuda {
    pub(super) fn upload_sparse_impl(
        &self,
        rows: Csr,
        for_gradient: bool,
    ) -> Result<CudaSparseBatch> {
        let view = rows.view();
        let offsets = view.row_offsets();
        let first = offsets.first().copied().unwrap_or(0);
        let rebased: Vec<u64> = offsets.iter().map(|&o| o - first).collect();
        let (lo, hi) = (first as usize, *offsets.last().unwrap_or(&0) as usize);
        let cols = rows
            .col_indices()
            .get(lo..hi)
            .ok_or_else(|| Error::InvalidData("sparse batch: offsets beyond the columns".into()))?;
        let vals = rows
            .values()
            .map(|v| {
                v.get(lo..hi).ok_or_else(|| {
                    Error::InvalidData("sparse batch: offsets beyond the values".into())
                })
            })
            .transpose()?;
        let n_cols = view.n_cols() as usize;
        // Host-side facts first: an upload from pageable memory may wait for the queued
        // kernels, and the device is idle from then until the next launch.
        let unique = rows_are_unique(&view);
        let max_row_nnz = (0..view.n_rows())
            .map(|b| view.row(b).0.len())
            .max()
            .unwrap_or(0);
        let (offsets_d, cols_d, vals_d) = if self.choices.pinned_uploads {
            self.upload_staged(&rebased, cols, vals)?
        } else {
            (
                self.upload_vec(&rebased)?,
                self.upload_vec(cols)?,
                vals.map(|v| self.upload_vec(v)).transpose()?,
            )
        };
        let transposed = if for_gradient {
            Some(self.transpose(&offsets_d, &cols_d, &vals_d, view.n_rows(), n_cols, hi - lo)?)
        } else {
            None
        };
        Ok(CudaSparseBatch {
            n_rows: view.n_rows(),
            n_cols,
            unique,
            max_row_nnz,
            offsets: offsets_d,
            cols: cols_d,
            vals: vals_d,
            transposed,
        })
    }

    pub(super) fn spmm_impl(
        &self,
        out: MatMut<CudaSlice<f32>>,
        x: &CudaSparseBatch,
        w: Mat<CudaSlice<f32>>,
        beta: f32,
    ) -> Result<()> {
        check_dim("spmm: out rows (batch)", out.rows, x.n_rows)?;
        check_dim("spmm: weight rows (n_in)", w.rows, x.n_cols)?;
        check_dim("spmm: out cols (n_out)", out.cols, w.cols)?;
        check_fits(out.rows * out.cols, out.buf.len())?;
        check_fits(mat_len(&w), w.buf.len())?;
        if x.n_rows == 0 || w.cols == 0 {
            return Ok(());
        }
        let n = w.cols as u64;
        let (vals, has_vals) = self.vals_arg(&x.vals);
        let chunks = x.max_row_nnz.div_ceil(SPMM_NNZ_CHUNK).max(1);
        if chunks > 65535 {
            return Err(Error::invalid_argument(
                "spmm",
                format!(
                    "a row of {} non-zeros exceeds the kernel's limit",
                    x.max_row_nnz
                ),
            ));
        }
        // Chunk sums of rows longer than one chunk (a one-element buffer when none is).
        let mut parts = self
            .stream
            .alloc_zeros::<f32>(if chunks > 1 {
                x.n_rows * chunks * w.cols
            } else {
                1
            })
            .map_err(dev("allocating spmm partial sums"))?;
        let col_blocks = w.cols.div_ceil(BLOCK as usize);
        // Four columns per thread where every row of `W`, `out` and `parts` starts on a
        // 16-byte boundary (allocations are 256-byte aligned).
        let quads = self.choices.spmm_quads && w.cols.is_multiple_of(4);
        // A narrow layer's quads take a smaller block (a multiple of 32 threads).
        let (name, launch_col_blocks, threads) = if quads {
            let threads = (w.cols / 4).next_multiple_of(32).clamp(32, BLOCK as usize);
            ("spmm_quads", (w.cols / 4).div_ceil(threads), threads as u32)
        } else {
            ("spmm", col_blocks, BLOCK)
        };
        let f = self.func(name)?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *out.buf)
            .arg(&x.offsets)
            .arg(&x.cols)
            .arg(vals)
            .arg(&has_vals)
            .arg(w.buf)
            .arg(&n)
            .arg(&beta)
            .arg(&mut parts);
        let cfg = LaunchConfig {
            grid_dim: (x.n_rows as u32, launch_col_blocks as u32, chunks as u32),
            block_dim: (threads, 1, 1),
            ..Self::cfg_grid(x.n_rows, launch_col_blocks)?
        };
        // SAFETY: shapes checked; column indices are below `n_in` by the CSR's invariant;
        // `parts` holds rows·chunks·n_out when any row spans several chunks.
        unsafe { l.launch(cfg) }.map_err(Self::launch_err(name))?;
        if chunks > 1 {
            let chunks64 = chunks as u64;
            let f = self.func("spmm_combine")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *out.buf)
                .arg(&x.offsets)
                .arg(&parts)
                .arg(&n)
                .arg(&chunks64)
                .arg(&beta);
            // SAFETY: as above.
            unsafe { l.launch(Self::cfg_grid(x.n_rows, col_blocks)?) }
                .map_err(Self::launch_err("spmm_combine"))?;
        }
        Ok(())
    }

    pub(super) fn sparse_weight_gradient_impl(
        &self,
        dw: MatMut<CudaSlice<f32>>,
        x: &CudaSparseBatch,
        delta: Mat<CudaSlice<f32>>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let t = x.transposed.as_ref().ok_or_else(|| {
            Error::invalid_argument(
                "sparse batch",
                "uploaded without `for_gradient`, so it has no transposed structure",
            )
        })?;
        check_dim("sparse gradient: dw rows (n_in)", dw.rows, x.n_cols)?;
        check_dim("sparse gradient: delta rows (batch)", delta.rows, x.n_rows)?;
        check_dim("sparse gradient: dw cols (n_out)", dw.cols, delta.cols)?;
        let len = dw.rows * dw.cols;
        check_fits(len, dw.buf.len())?;
        check_fits(mat_len(&delta), delta.buf.len())?;
        if len == 0 {
            return Ok(());
        }
        let (n, n_in) = (dw.cols as u64, dw.rows as u64);
        let split = self.choices.split_sparse_gradient;
        if split && beta != 1.0 {
            let per_row = if dw.cols.is_multiple_of(4) {
                dw.cols / 4
            } else {
                dw.cols
            };
            let f = self.func("sparse_gradient_absent_rows")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(&mut *dw.buf)
                .arg(&t.starts)
                .arg(&n)
                .arg(&n_in)
                .arg(&beta);
            // SAFETY: `dw` holds `n_in · n` elements (checked); `starts` has `n_in + 1`; a
            // float4 row access happens only when `n % 4 == 0`, where every row starts on a
            // 16-byte boundary of the (256-byte aligned) allocation.
            unsafe { l.launch(self.cfg_elems(dw.rows * per_row)) }
                .map_err(Self::launch_err("sparse_gradient_absent_rows"))?;
        }
        let absent_rows = i32::from(!split);
        let (vals, has_vals) = self.vals_arg(&t.vals);
        let f = self.func("sparse_weight_gradient")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut *dw.buf)
            .arg(&t.starts)
            .arg(&t.rows)
            .arg(vals)
            .arg(&has_vals)
            .arg(delta.buf)
            .arg(&n)
            .arg(&n_in)
            .arg(&alpha)
            .arg(&beta)
            .arg(&absent_rows);
        // Blocks stride over the features: about four waves of the device (32 blocks of 256
        // per SM, 8 resident), not one block per feature.
        let col_blocks = dw.cols.div_ceil(BLOCK as usize);
        let feature_blocks = dw
            .rows
            .min((self.sm_count as usize * 32).div_ceil(col_blocks).max(1));
        let cfg = Self::cfg_grid(feature_blocks, col_blocks)?;
        // SAFETY: shapes checked; every row index of the transpose is below the batch size.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(Self::launch_err("sparse_weight_gradient"))
    }

    /// Builds the per-feature (CSC) structure of a CSR batch on the device: column counts,
    /// their exclusive scan, then a scatter of every non-zero.
    pub(super) fn transpose(
        &self,
        offsets: &CudaSlice<u64>,
        cols: &CudaSlice<u32>,
        vals: &Option<CudaSlice<f32>>,
        n_rows: usize,
        n_cols: usize,
        nnz: usize,
    ) -> Result<DeviceTranspose> {
        let alloc = dev("allocating a transpose");
        let mut counts = self
            .stream
            .alloc_zeros::<u32>(n_cols.max(1))
            .map_err(&alloc)?;
        let mut starts = self.stream.alloc_zeros::<u64>(n_cols + 1).map_err(&alloc)?;
        let mut cursor = self
            .stream
            .alloc_zeros::<u64>(n_cols.max(1))
            .map_err(&alloc)?;
        let mut rows = self.stream.alloc_zeros::<u32>(nnz.max(1)).map_err(&alloc)?;
        let mut tvals = match vals {
            Some(_) => Some(self.stream.alloc_zeros::<f32>(nnz.max(1)).map_err(&alloc)?),
            None => None,
        };
        let (nnz64, n64) = (nnz as u64, n_cols as u64);
        if nnz > 0 {
            let f = self.func("csc_count")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(cols).arg(&nnz64).arg(&mut counts);
            // SAFETY: `cols` holds `nnz` indices below `n_cols`, the length of `counts`.
            unsafe { l.launch(self.cfg_elems(nnz)) }.map_err(Self::launch_err("csc_count"))?;
        }
        let tiles = n_cols.div_ceil(1024).max(1);
        let mut totals = self.stream.alloc_zeros::<u64>(tiles + 1).map_err(&alloc)?;
        let tiles64 = tiles as u64;
        let block = |grid: usize| LaunchConfig {
            grid_dim: (grid as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.func("csc_scan_blocks")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&counts).arg(&n64).arg(&mut starts).arg(&mut totals);
        // SAFETY: `tiles` blocks of 1024 cover the `n_cols` counts; `totals` has `tiles + 1`.
        unsafe { l.launch(block(tiles)) }.map_err(Self::launch_err("csc_scan_blocks"))?;
        let f = self.func("csc_scan_totals")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut totals).arg(&tiles64);
        // SAFETY: one block over the `tiles + 1` totals.
        unsafe { l.launch(block(1)) }.map_err(Self::launch_err("csc_scan_totals"))?;
        let f = self.func("csc_scan_finish")?;
        let mut l = self.stream.launch_builder(f);
        l.arg(&mut starts)
            .arg(&mut cursor)
            .arg(&totals)
            .arg(&n64)
            .arg(&tiles64);
        // SAFETY: `starts` has `n_cols + 1` elements, `cursor` `n_cols`.
        unsafe { l.launch(block(tiles)) }.map_err(Self::launch_err("csc_scan_finish"))?;
        if nnz > 0 && n_rows > 0 {
            let (vin, has_vals) = self.vals_arg(vals);
            let tv = match tvals.as_mut() {
                Some(v) => v,
                None => &mut self.dummy_out()?,
            };
            let f = self.func("csc_fill")?;
            let mut l = self.stream.launch_builder(f);
            l.arg(offsets)
                .arg(cols)
                .arg(vin)
                .arg(&has_vals)
                .arg(&mut cursor)
                .arg(&mut rows)
                .arg(tv);
            // SAFETY: one block per row; positions come from the scan of the same columns.
            unsafe { l.launch(Self::cfg_grid(n_rows, 1)?) }
                .map_err(Self::launch_err("csc_fill"))?;
        }
        Ok(DeviceTranspose {
            starts,
            rows,
            vals: tvals,
        })
    }

    /// A one-element scratch output for kernels whose optional output is absent.
    pub(super) fn dummy_out(&self) -> Result<CudaSlice<f32>> {
        self.stream.alloc_zeros(1).map_err(dev("allocating"))
    }
}

/// Whether no row of `x` lists a column twice (one bit per column, cleared after each row).
fn rows_are_unique(x: &CsrView) -> bool {
    let mut seen = vec![0u64; (x.n_cols() as usize).div_ceil(64)];
    for b in 0..x.n_rows() {
        let cols = x.row(b).0;
        let mut unique = true;
        for &c in cols {
            let (w, bit) = (c as usize / 64, 1u64 << (c % 64));
            unique &= seen[w] & bit == 0;
            seen[w] |= bit;
        }
        for &c in cols {
            seen[c as usize / 64] = 0;
        }
        if !unique {
            return false;
        }
    }
    true
}
