//! Loading a minibatch into a [`Network`]: each rank keeps what its routes need.

use super::{HostRows, MiniBatch, Network, Route};
use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::ops::loss::LossSpec;
use crate::ops::Activation;
use crate::parallel::column_shard;
use crate::parallel::data::share_rows;
use crate::parallel::{RowShare, Split};
use crate::sparse::Csr;

impl<B: Backend, C: Collective> Network<B, C> {
    /// Uploads a minibatch given as whole rows: the rows of every data-bound layer. Input
    /// layers must all be given; output layers must be given for training and loss, not for
    /// prediction.
    ///
    /// Each rank keeps what it needs: an Input's whole rows when a `Route::Whole` or
    /// `Route::GatherSource` edge leaves it, its local columns when a
    /// `Route::ReducePartials` one does, and each Output's local columns. Rows of a
    /// column-sharded dataset may carry only this rank's columns
    /// ([`crate::dataset::Dataset::retain_columns`]); the columns outside the local range are
    /// dropped here either way.
    ///
    /// Under data parallelism (collective) each rank passes its rows of the whole minibatch,
    /// ranks in order ([`crate::parallel::data`]); a rank may pass none when the whole
    /// minibatch has fewer rows than there are ranks, and the whole must fit the capacity.
    /// Under a hybrid every rank passes the whole minibatch; its layers held by examples keep
    /// the rank's [`Split::even`] share of the rows.
    pub fn load_batch(&mut self, batch: MiniBatch) -> Result<()> {
        let own_rows = self.loads_own_rows();
        let (share, counts) = if own_rows {
            share_rows(&self.comm, batch.rows)?
        } else if self.splits_examples() {
            // A hybrid: every rank has the whole minibatch; its layers held by examples keep
            // the rank's rows.
            let split = Split::even(batch.rows, self.comm.size())?;
            let rank = self.comm.rank();
            let share = RowShare {
                first: split.start(rank),
                len: split.len(rank),
                total: batch.rows,
            };
            (share, split.counts())
        } else {
            (RowShare::whole(batch.rows), Vec::new())
        };
        if batch.rows == 0 && !own_rows {
            return Err(Error::invalid_argument(
                "batch",
                format!("0 rows; this network holds 1 to {}", self.capacity),
            ));
        }
        self.load_with_share(batch, share, counts)
    }

    /// [`Network::load_batch`] with this rank's share of the minibatch and every rank's row
    /// count (where the examples are split) decided.
    pub(super) fn load_with_share(
        &mut self,
        batch: MiniBatch,
        share: RowShare,
        counts: Vec<usize>,
    ) -> Result<()> {
        let own_rows = self.loads_own_rows();
        if share.total == 0 || share.total > self.capacity {
            return Err(Error::invalid_argument(
                "batch",
                format!(
                    "{} rows; this network holds 1 to {}",
                    share.total, self.capacity
                ),
            ));
        }
        self.share = share;
        self.row_counts = counts;
        self.fused_loss.iter_mut().for_each(|l| *l = None);
        self.kl_loss = Default::default();
        self.fused_delta.iter_mut().for_each(|d| *d = false);
        self.loaded.iter_mut().for_each(|l| *l = false);
        self.sparse_full.iter_mut().for_each(|s| *s = None);
        self.sparse_local.iter_mut().for_each(|s| *s = None);
        self.sparse_share.iter_mut().for_each(|s| *s = None);
        self.softmax_targets.iter_mut().for_each(|s| *s = None);
        self.example_weights.iter_mut().for_each(|w| *w = None);
        self.ignore_zero.iter_mut().for_each(|f| *f = false);
        for id in &batch.ignore_zero {
            if let Some(flag) = self.ignore_zero.get_mut(id.0) {
                *flag = true;
            }
        }
        // Rows this rank keeps of a whole minibatch, for a layer held by examples.
        let mine = share.first..share.first + share.len;
        for (id, rows) in batch.layers {
            let layer = self.graph.layer(id);
            let (name, units) = (layer.name.clone(), layer.units);
            let is_output = layer.kind == LayerKind::Output;
            let (by_units, rank) = (self.splits_units(id), self.layer_rank(id));
            // The loaded rows are whole, and this layer keeps the rank's.
            let keeps_share = self.splits_rows(id) && !own_rows;
            let softmax = by_units && is_output && layer.activation == Activation::SoftMax;
            let out_routes: Vec<Route> = layer.outgoing.iter().map(|e| self.routes[e.0]).collect();
            // Edges into layers held by examples read this rank's rows (a hybrid).
            let rows_readers: Vec<bool> = layer
                .outgoing
                .iter()
                .map(|&e| self.splits_rows(self.graph.edge(e).target) && !own_rows)
                .collect();
            let wants_share = !is_output && rows_readers.contains(&true);
            let wants_full = !is_output
                && out_routes
                    .iter()
                    .zip(&rows_readers)
                    .any(|(&r, &share)| r != Route::ReducePartials && !share);
            let wants_local = is_output || out_routes.contains(&Route::ReducePartials);
            let split = self.split(id);
            match rows {
                HostRows::Sparse(csr) => {
                    if csr.n_rows() != batch.rows || csr.n_cols() as usize != units {
                        return Err(shape_error(
                            &name,
                            csr.n_rows(),
                            csr.n_cols() as usize,
                            batch.rows,
                            units,
                        ));
                    }
                    if is_output && !by_units {
                        let csr = match keeps_share {
                            true => csr.slice_rows(mine.clone()),
                            false => csr,
                        };
                        self.sparse_local[id.0] = Some(self.backend.upload_sparse(csr, false)?);
                        self.loaded[id.0] = true;
                        continue;
                    }
                    let csr = if softmax {
                        with_indicator_values(csr, self.losses[id.0].as_ref())
                    } else {
                        csr
                    };
                    if wants_local {
                        let local = match by_units {
                            true => column_shard(csr.view(), &split, rank)?,
                            false => csr.clone(),
                        };
                        if softmax {
                            self.softmax_targets[id.0] = Some(local.clone());
                        }
                        self.sparse_local[id.0] =
                            Some(self.backend.upload_sparse(local, !is_output)?);
                    }
                    if wants_share {
                        let rows = csr.slice_rows(mine.clone());
                        self.sparse_share[id.0] = Some(self.backend.upload_sparse(rows, true)?);
                    }
                    if wants_full {
                        self.sparse_full[id.0] = Some(self.backend.upload_sparse(csr, true)?);
                    }
                }
                HostRows::Dense(values) => {
                    if values.len() != batch.rows * units {
                        return Err(shape_error(
                            &name,
                            values.len() / units.max(1),
                            units,
                            batch.rows,
                            units,
                        ));
                    }
                    let range = split.range(rank);
                    let kept: Option<Vec<f32>> = if by_units {
                        Some(
                            values
                                .chunks_exact(units.max(1))
                                .flat_map(|row| row[range.clone()].iter().copied())
                                .collect(),
                        )
                    } else if keeps_share {
                        Some(values[mine.start * units..mine.end * units].to_vec())
                    } else {
                        None
                    };
                    let local_values = kept.as_deref().unwrap_or(&values);
                    if is_output {
                        if self.targets[id.0].is_none() {
                            self.targets[id.0] =
                                Some(self.backend.zeros(self.capacity * range.len())?);
                        }
                        let t = self.targets[id.0].as_mut().expect("allocated above");
                        self.backend.upload(t, local_values)?;
                    } else {
                        let slot = self.units[id.0].as_mut().ok_or_else(|| {
                            Error::invalid_argument(
                                "batch",
                                format!("layer `{name}` is sparse; dense rows were given"),
                            )
                        })?;
                        self.backend.upload(slot, local_values)?;
                        let outgoing = self.graph.layer(id).outgoing.clone();
                        for e in outgoing {
                            if let Some(g) = self.gathered[e.0].as_mut() {
                                self.backend.upload(g, &values)?;
                            }
                        }
                    }
                }
            }
            self.loaded[id.0] = true;
        }
        for (id, w) in batch.example_weights {
            if w.len() != batch.rows {
                return Err(Error::invalid_argument(
                    "example weights",
                    format!("{} weights for {} rows", w.len(), batch.rows),
                ));
            }
            let keeps_share = self.splits_rows(id) && !own_rows;
            self.example_weights[id.0] = Some(match keeps_share {
                true => w[mine.clone()].to_vec(),
                false => w,
            });
        }
        Ok(())
    }
}

/// A SoftMax output's indicator target rows with their values made explicit: `1/nnz` of
/// the whole row ([`LossSpec::indicator_target`]), so that a rank's columns carry the same
/// targets as the whole row.
fn with_indicator_values(csr: Csr, spec: Option<&LossSpec>) -> Csr {
    let Some(spec) = spec.filter(|_| csr.values().is_none()) else {
        return csr;
    };
    let offsets = csr.row_offsets().to_vec();
    let values: Vec<f32> = offsets
        .windows(2)
        .flat_map(|w| {
            let nnz = (w[1] - w[0]) as usize;
            std::iter::repeat_n(spec.indicator_target(nnz), nnz)
        })
        .collect();
    let (n_cols, offsets, cols, _) = csr.into_parts();
    Csr::new_checked(n_cols, offsets, cols, Some(values))
}

fn shape_error(layer: &str, rows: usize, cols: usize, want_rows: usize, want_cols: usize) -> Error {
    Error::invalid_argument(
        "batch",
        format!("layer `{layer}` was given {rows}x{cols} rows; expected {want_rows}x{want_cols}"),
    )
}
