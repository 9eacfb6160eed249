//! Reading a [`Network`]'s results after a forward pass: a layer's activations and the exact
//! top-K of an output layer, whole on every rank.

use super::Network;
use crate::backend::traits::{Backend, Mat};
use crate::collective::Collective;
use crate::dense::Matrix;
use crate::error::{Error, Result};
use crate::graph::LayerId;
use crate::parallel::column_shard;
use crate::sparse::CsrView;
use crate::topk::{merge_top_k_batch, ShardTopKBatch, NO_ITEM};

impl<B: Backend, C: Collective> Network<B, C> {
    /// The activations of layer `id` for the current minibatch, row-major `[rows][units]`,
    /// on every rank (on several ranks each rank's columns, all-gathered). Errors for a
    /// sparse input layer (it has no unit buffer).
    pub fn layer_output(&self, id: LayerId) -> Result<Matrix> {
        let layer = self.graph.layer(id);
        let buf = self.units[id.0].as_ref().ok_or_else(|| {
            Error::invalid_argument("layer", format!("`{}` is a sparse input", layer.name))
        })?;
        let split = self.split(id);
        let rows = self.rows_of(id);
        let mut local = vec![0.0; rows * self.local_len(id)];
        self.backend.download(buf, &mut local)?;
        if self.splits_units(id) {
            let mut whole = vec![0.0; rows * layer.units];
            crate::parallel::exact::all_gather_columns(
                &self.comm, &local, rows, &split, &mut whole,
            )?;
            return Matrix::from_vec(rows, layer.units, whole);
        }
        if self.gathers_rows(id) {
            let total = self.share.total;
            let counts: Vec<usize> = self.row_counts.iter().map(|&c| c * layer.units).collect();
            let mut whole = vec![0.0; total * layer.units];
            self.comm.all_gather(&local, &counts, &mut whole)?;
            return Matrix::from_vec(total, layer.units, whole);
        }
        Matrix::from_vec(rows, layer.units, local)
    }

    /// Whether layer `id`'s results are this rank's rows of a minibatch every rank loaded
    /// whole (a hybrid's layer held by examples): they are all-gathered, so that every rank
    /// returns the whole minibatch's, as it loaded it.
    fn gathers_rows(&self, id: LayerId) -> bool {
        self.splits_rows(id) && !self.loads_own_rows()
    }

    /// The exact top-K of each row of layer `id`'s activations over its first `items` units,
    /// excluding `exclude`'s columns (whole rows, global columns), on every rank
    /// ([`Backend::top_k`]'s contract: higher score first, ties to the lower index, padding
    /// with [`NO_ITEM`]). On one rank the backend selects where the scores are; on several,
    /// each rank selects among its columns, and the lists are all-gathered and merged
    /// ([`merge_top_k_batch`]: the same order, ties and padding).
    pub fn top_k(
        &self,
        id: LayerId,
        items: usize,
        k: usize,
        exclude: Option<CsrView<'_>>,
        indices: &mut [u32],
        scores: &mut [f32],
    ) -> Result<()> {
        let layer = self.graph.layer(id);
        let buf = self.units[id.0].as_ref().ok_or_else(|| {
            Error::invalid_argument("layer", format!("`{}` is a sparse input", layer.name))
        })?;
        let rows = self.rows_of(id);
        if self.gathers_rows(id) {
            // This rank's rows, then every rank's lists in row order.
            let share = self.share;
            let exclude = exclude.map(|e| e.rows(share.first, share.first + share.len));
            let (mut li, mut ls) = (vec![NO_ITEM; rows * k], vec![0.0f32; rows * k]);
            let a = Mat::new(buf, rows, layer.units);
            self.backend.top_k(a, items, k, exclude, &mut li, &mut ls)?;
            let counts: Vec<usize> = self.row_counts.iter().map(|&c| c * k).collect();
            self.comm.all_gather(&li, &counts, indices)?;
            return self.comm.all_gather(&ls, &counts, scores);
        }
        if !self.splits_units(id) {
            let a = Mat::new(buf, rows, layer.units);
            return self.backend.top_k(a, items, k, exclude, indices, scores);
        }
        if k == 0 || items == 0 || items > layer.units {
            return Err(Error::invalid_argument(
                "top-k",
                format!(
                    "k {k} over {items} of `{}`'s {} units",
                    layer.name, layer.units
                ),
            ));
        }
        let (rank, size) = (self.comm.rank(), self.comm.size());
        let split = self.split(id);
        let local_items = |q: usize| items.saturating_sub(split.start(q)).min(split.len(q));
        let local_k: Vec<usize> = (0..size).map(|q| k.min(local_items(q))).collect();
        let kq = local_k[rank];
        let mut li = vec![NO_ITEM; rows * kq];
        let mut ls = vec![f32::NEG_INFINITY; rows * kq];
        if kq > 0 {
            let excl = exclude.map(|e| column_shard(e, &split, rank)).transpose()?;
            self.backend.top_k(
                Mat::new(buf, rows, split.len(rank)),
                local_items(rank),
                kq,
                excl.as_ref().map(|c| c.view()),
                &mut li,
                &mut ls,
            )?;
        }
        let counts: Vec<usize> = local_k.iter().map(|&c| c * rows).collect();
        let total: usize = counts.iter().sum();
        let (mut all_i, mut all_s) = (vec![0u32; total], vec![0.0f32; total]);
        self.comm.all_gather(&li, &counts, &mut all_i)?;
        self.comm.all_gather(&ls, &counts, &mut all_s)?;
        let mut shards = Vec::with_capacity(size);
        let mut at = 0;
        for q in 0..size {
            let n = counts[q];
            if n > 0 {
                shards.push(ShardTopKBatch {
                    offset: split.start(q) as u32,
                    k: local_k[q],
                    indices: &all_i[at..at + n],
                    scores: &all_s[at..at + n],
                });
            }
            at += n;
        }
        merge_top_k_batch(&shards, k, indices, scores)
    }
}
