//! Exact top-K on the device (cuda/sparse.cu): `topk_small` reads rows of up to 65,536 items
//! in place; wider rows go through 64-bit keys in a scratch array (`topk_keys`,
//! `topk_select`). Both follow [`crate::topk::top_k_batch`]'s contract.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::backend::{dev, Cuda};
use crate::backend::traits::Mat;
use crate::error::Result;
use crate::sparse::CsrView;

/// Rows of at most this many items take the in-place kernel (`TOPK_SMALL_ITEMS` in
/// cuda/sparse.cu).
const TOPK_SMALL_ITEMS: usize = 65536;

impl Cuda {
    /// The device part of [`crate::backend::Backend::top_k`]; arguments already checked
    /// (`1 ≤ k ≤ TOPK_MAX`, `k ≤ items ≤ scores.cols`, output lengths `rows·k`).
    pub(super) fn top_k_device(
        &self,
        scores: Mat<CudaSlice<f32>>,
        items: usize,
        k: usize,
        exclude: Option<CsrView<'_>>,
        indices: &mut [u32],
        out_scores: &mut [f32],
    ) -> Result<()> {
        let rows = scores.rows;
        let alloc = dev("allocating top-k scratch");
        let ex = exclude
            .map(|v| -> Result<(CudaSlice<u64>, CudaSlice<u32>)> {
                let offs = v.row_offsets();
                let first = offs.first().copied().unwrap_or(0);
                let rebased: Vec<u64> = offs.iter().map(|&o| o - first).collect();
                let mut cols = Vec::with_capacity(v.nnz());
                for b in 0..v.n_rows() {
                    cols.extend_from_slice(v.row(b).0);
                }
                Ok((self.upload_vec(&rebased)?, self.upload_vec(&cols)?))
            })
            .transpose()?;
        let (ld, items64, k32) = (scores.cols as u64, items as u64, k as i32);
        let dummy_offsets;
        let dummy_cols;
        let (ex_offsets, ex_cols, has_ex) = match &ex {
            Some((o, c)) => (o, c, 1i32),
            None => {
                dummy_offsets = self.stream().alloc_zeros::<u64>(1).map_err(&alloc)?;
                dummy_cols = self.stream().alloc_zeros::<u32>(1).map_err(&alloc)?;
                (&dummy_offsets, &dummy_cols, 0i32)
            }
        };
        let block = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut idx_d = self.stream().alloc_zeros::<u32>(rows * k).map_err(&alloc)?;
        let mut score_d = self.stream().alloc_zeros::<f32>(rows * k).map_err(&alloc)?;
        if items <= TOPK_SMALL_ITEMS {
            let f = self.func("topk_small")?;
            let mut l = self.stream().launch_builder(f);
            l.arg(scores.buf)
                .arg(&ld)
                .arg(&items64)
                .arg(ex_offsets)
                .arg(ex_cols)
                .arg(&has_ex)
                .arg(&k32)
                .arg(&mut idx_d)
                .arg(&mut score_d);
            // SAFETY: one block per row of `ld` scores; outputs hold rows·k; k ≤ TOPK_MAX.
            unsafe { l.launch(block) }.map_err(Self::launch_err("topk_small"))?;
        } else {
            let mut keys = self
                .stream()
                .alloc_zeros::<u64>(rows * items)
                .map_err(&alloc)?;
            let f = self.func("topk_keys")?;
            let mut l = self.stream().launch_builder(f);
            l.arg(&mut keys)
                .arg(scores.buf)
                .arg(&ld)
                .arg(&items64)
                .arg(ex_offsets)
                .arg(ex_cols)
                .arg(&has_ex);
            // SAFETY: `keys` holds rows·items, the scores rows·ld; excluded columns checked.
            unsafe { l.launch(block) }.map_err(Self::launch_err("topk_keys"))?;
            let f = self.func("topk_select")?;
            let mut l = self.stream().launch_builder(f);
            l.arg(&keys)
                .arg(scores.buf)
                .arg(&ld)
                .arg(&items64)
                .arg(&k32)
                .arg(&mut idx_d)
                .arg(&mut score_d);
            // SAFETY: one block per row; outputs hold rows·k entries; k ≤ TOPK_MAX.
            unsafe { l.launch(block) }.map_err(Self::launch_err("topk_select"))?;
        }
        self.stream()
            .memcpy_dtoh(&idx_d, indices)
            .map_err(dev("downloading top-k"))?;
        self.stream()
            .memcpy_dtoh(&score_d, out_scores)
            .map_err(dev("downloading top-k"))?;
        self.synchronize()
    }
}
