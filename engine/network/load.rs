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
use crate::parallel::RowShare;
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
    pub fn load_batch(&mut self, batch: MiniBatch) -> Result<()> {
        let empty_allowed = self.splits_examples();
        let (share, counts) = if self.splits_examples() {
            share_rows(&self.comm, batch.rows)?
        } else {
            (RowShare::whole(batch.rows), Vec::new())
        };
        if (batch.rows == 0 && !empty_allowed) || share.total == 0 || share.total > self.capacity {
            return Err(Error::invalid_argument(
                "batch",
                format!(
                    "{} rows; this network holds 1 to {}",
                    share.total, self.capacity
                ),
            ));
        }
        self.rows = batch.rows;
        self.share = share;
        self.row_counts = counts;
        self.fused_loss.iter_mut().for_each(|l| *l = None);
        self.kl_loss = Default::default();
        self.fused_delta.iter_mut().for_each(|d| *d = false);
        self.loaded.iter_mut().for_each(|l| *l = false);
        self.sparse_full.iter_mut().for_each(|s| *s = None);
        self.sparse_local.iter_mut().for_each(|s| *s = None);
        self.softmax_targets.iter_mut().for_each(|s| *s = None);
        self.example_weights.iter_mut().for_each(|w| *w = None);
        self.ignore_zero.iter_mut().for_each(|f| *f = false);
        for id in &batch.ignore_zero {
            if let Some(flag) = self.ignore_zero.get_mut(id.0) {
                *flag = true;
            }
        }
        let (rank, sharded) = (self.rank(), self.is_sharded());
        for (id, rows) in batch.layers {
            let layer = self.graph.layer(id);
            let (name, units) = (layer.name.clone(), layer.units);
            let is_output = layer.kind == LayerKind::Output;
            let softmax = sharded && is_output && layer.activation == Activation::SoftMax;
            let out_routes: Vec<Route> = layer.outgoing.iter().map(|e| self.routes[e.0]).collect();
            let wants_full = !is_output && out_routes.iter().any(|&r| r != Route::ReducePartials);
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
                    if !sharded {
                        let slot = if is_output {
                            &mut self.sparse_local[id.0]
                        } else {
                            &mut self.sparse_full[id.0]
                        };
                        *slot = Some(self.backend.upload_sparse(csr, !is_output)?);
                        self.loaded[id.0] = true;
                        continue;
                    }
                    let csr = if softmax {
                        with_indicator_values(csr, self.losses[id.0].as_ref())
                    } else {
                        csr
                    };
                    if wants_local {
                        let local = column_shard(csr.view(), &split, rank)?;
                        if softmax {
                            self.softmax_targets[id.0] = Some(local.clone());
                        }
                        self.sparse_local[id.0] =
                            Some(self.backend.upload_sparse(local, !is_output)?);
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
                    let local: Option<Vec<f32>> = sharded.then(|| {
                        values
                            .chunks_exact(units.max(1))
                            .flat_map(|row| row[range.clone()].iter().copied())
                            .collect()
                    });
                    let local_values = local.as_deref().unwrap_or(&values);
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
            self.example_weights[id.0] = Some(w);
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
