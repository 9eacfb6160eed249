//! Forward pass and loss of a [`Network`] (the math is in the module documentation of
//! [`crate::network`]; the backward pass is in `backward.rs`, the update step and its fusion
//! into the backward pass in `update.rs`).

use super::{act_params, not_loaded, split_pair, AlphaDropout, Network, Route};
use crate::backend::traits::{Backend, Mat, MatMut};
use crate::collective::{Collective, ReduceOp};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::LayerId;
use crate::ops::fixed::FixedSum;
use crate::ops::{Activation, Trans};
use crate::parallel::data::{gather_rows, keep_rows};
use crate::parallel::host::relay;
use crate::parallel::host::{gather_columns, reduce_columns, softmax_rows};
use crate::parallel::Split;

/// What one training step measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Loss summed over the minibatch's examples and output units (fixed point).
    pub loss: FixedSum,
    /// Examples in the minibatch.
    pub rows: usize,
}

/// The rows a product reads: sparse rows on the device, or a dense matrix.
pub(super) enum Rows<'a, B: Backend> {
    Sparse(&'a B::SparseBatch),
    Dense(Mat<'a, B::Vector>),
}

/// Where an edge's source rows are, besides the source's own buffers: the whole rows of a
/// [`Route::GatherSource`] edge (`gathered`), the source re-laid for this edge (`relaid`, a
/// hybrid plan), and a sparse input's rows of this rank (`sparse_share`, a hybrid plan).
pub(super) struct SourceBuffers<'a, B: Backend> {
    pub units: &'a Option<B::Vector>,
    pub sparse_full: &'a Option<B::SparseBatch>,
    pub sparse_local: &'a Option<B::SparseBatch>,
    pub sparse_share: &'a Option<B::SparseBatch>,
    pub gathered: &'a Option<B::Vector>,
    pub relaid: &'a Option<B::Vector>,
}

/// The source rows of an edge on `route` (`rows` of them, as the edge reads them): an input's
/// sparse rows (whole, this rank's, or local columns for [`Route::ReducePartials`]), or dense
/// activations, `whole_cols` or `local_cols` wide: re-laid for the edge when the source is
/// held the other way, the whole rows of a [`Route::GatherSource`] edge, or the source's
/// unit buffer. `None` when the rows are missing.
pub(super) fn source_rows<'a, B: Backend>(
    route: Route,
    rows: usize,
    (whole_cols, local_cols): (usize, usize),
    from: SourceBuffers<'a, B>,
) -> Option<Rows<'a, B>> {
    let dense = |buf: &'a Option<B::Vector>, cols: usize| {
        buf.as_ref().map(|a| Rows::Dense(Mat::new(a, rows, cols)))
    };
    match route {
        Route::Whole => from
            .sparse_share
            .as_ref()
            .or(from.sparse_full.as_ref())
            .map(Rows::Sparse)
            .or_else(|| dense(from.relaid, whole_cols))
            .or_else(|| dense(from.units, whole_cols)),
        Route::GatherSource => from
            .sparse_full
            .as_ref()
            .map(Rows::Sparse)
            .or_else(|| dense(from.gathered, whole_cols)),
        Route::ReducePartials => from
            .sparse_local
            .as_ref()
            .map(Rows::Sparse)
            .or_else(|| dense(from.relaid, local_cols))
            .or_else(|| dense(from.units, local_cols)),
    }
}

/// `out = x·op(W) + beta·out`.
fn product<B: Backend>(
    backend: &B,
    out: MatMut<'_, B::Vector>,
    x: Rows<'_, B>,
    w: Mat<'_, B::Vector>,
    tw: Trans,
    beta: f32,
) -> Result<()> {
    match x {
        // Network::build_with refuses transposed edges from sparse inputs.
        Rows::Sparse(x) => backend.spmm(out, x, w, beta),
        Rows::Dense(a) => backend.gemm(out, 1.0, a, Trans::No, w, tw, beta),
    }
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Forward pass over the loaded minibatch. With `training`, hidden layers apply dropout
    /// drawn from `seed` and the current update count, and output layers with sparse
    /// targets compute their loss and delta in the same pass.
    pub fn forward(&mut self, training: bool, seed: u64) -> Result<()> {
        self.require_rows()?;
        self.fused_loss.iter_mut().for_each(|l| *l = None);
        self.fused_delta.iter_mut().for_each(|d| *d = false);
        self.kl_loss = FixedSum::default();
        for li in 0..self.graph.layers().len() {
            let layer = &self.graph.layers()[li];
            if layer.kind == LayerKind::Input {
                if !self.loaded[li] {
                    return Err(not_loaded(layer));
                }
                continue;
            }
            for k in 0..layer.incoming.len() {
                let e = self.graph.layers()[li].incoming[k];
                self.relay_source(e.0)?;
            }
            let layer = &self.graph.layers()[li];
            let split = self.plan.layer_split(layer.id);
            let (rows, local) = (self.rows_of(layer.id), self.local_len(layer.id));
            for (k, &eid) in layer.incoming.iter().enumerate() {
                let edge = self.graph.edge(eid);
                let src = edge.source.0;
                let source = self.graph.layer(edge.source);
                let route = self.routes[eid.0];
                let src_local = self.read_cols(eid);
                let p = &self.params[edge.weight.0];
                let w = Mat::new(&p.w, p.rows, p.cols);
                // A transposed shared weight: the block is the owner's, used as `Wᵀ`.
                let tw = if edge.transposed {
                    Trans::Yes
                } else {
                    Trans::No
                };
                let (src_units, dst) = split_pair(&mut self.units, src, li);
                let dst = dst.as_mut().expect("non-input layers have unit buffers");
                let bias = &self.biases[eid.0].b;
                if k == 0 {
                    self.backend
                        .set_rows_to_bias(MatMut::new(dst, rows, local), bias)?;
                } else {
                    self.backend.add_bias(MatMut::new(dst, rows, local), bias)?;
                }
                let x = source_rows::<B>(
                    route,
                    rows,
                    (source.units, src_local),
                    SourceBuffers {
                        units: src_units,
                        sparse_full: &self.sparse_full[src],
                        sparse_local: &self.sparse_local[src],
                        sparse_share: &self.sparse_share[src],
                        gathered: &self.gathered[eid.0],
                        relaid: &self.relaid[eid.0],
                    },
                )
                .ok_or_else(|| not_loaded(source))?;
                if route != Route::ReducePartials {
                    product(&self.backend, MatMut::new(dst, rows, local), x, w, tw, 1.0)?;
                } else {
                    let whole = MatMut::new(&mut self.scratch, rows, layer.units);
                    product(&self.backend, whole, x, w, tw, 0.0)?;
                    reduce_columns(
                        &self.backend,
                        &self.comm,
                        &self.timers,
                        &self.scratch,
                        rows,
                        &split,
                        &mut self.scratch_local,
                    )?;
                    self.backend
                        .add_assign(dst, &self.scratch_local, rows * local)?;
                }
            }
            for &skip in &layer.skips {
                // Network::build_with refuses skips from sparse inputs (and, on several
                // ranks, from any input).
                let (src, dst) = split_pair(&mut self.units, skip.0, li);
                let src = src.as_ref().ok_or_else(|| {
                    Error::Unsupported(format!(
                        "layer `{}`: a Skip from the sparse input layer `{}`",
                        layer.name,
                        self.graph.layer(skip).name
                    ))
                })?;
                let dst = dst.as_mut().expect("non-input layers have unit buffers");
                self.backend.add_assign(dst, src, rows * local)?;
            }
            let mask = self.mask(layer, seed);
            let (splits_rows, splits_units) = (
                self.splits_rows(LayerId(li)),
                self.splits_units(LayerId(li)),
            );
            let dst = self.units[li]
                .as_mut()
                .expect("non-input layers have unit buffers");
            if let Some(bn) = self.batch_norm[li].as_mut() {
                if training && splits_rows {
                    // The statistics of the whole minibatch: normalise its rows on every
                    // rank, keep this rank's.
                    let (counts, share) = (&self.row_counts, self.share);
                    let whole = &mut self.whole_rows[0];
                    gather_rows(&self.backend, &self.comm, dst, counts, local, whole)?;
                    let all = MatMut::new(whole, share.total, local);
                    bn.forward(&self.backend, all, training)?;
                    keep_rows(&self.backend, whole, share, local, dst)?;
                } else {
                    bn.forward(&self.backend, MatMut::new(dst, rows, local), training)?;
                }
            }
            if splits_units && layer.activation == Activation::SoftMax {
                softmax_rows(&self.backend, &self.comm, dst, rows, local)?;
                continue;
            }
            if training && layer.kind == LayerKind::Output {
                if let (Some(t), Some(spec)) = (&self.sparse_local[li], &self.losses[li]) {
                    let delta = self.deltas[li].as_mut().expect("outputs have deltas");
                    let loss = self.backend.sparse_output_forward(
                        MatMut::new(dst, rows, local),
                        MatMut::new(delta, rows, local),
                        t,
                        spec,
                        self.ignore_zero[li],
                    )?;
                    self.fused_loss[li] = Some(loss);
                    self.fused_delta[li] = true;
                    continue;
                }
            }
            self.backend.activation_forward(
                MatMut::new(dst, rows, local),
                layer.activation,
                &act_params(layer),
            )?;
            if training && layer.kind == LayerKind::Hidden && layer.p_dropout > 0.0 {
                if let Some(pre) = self.pre_dropout[li].as_mut() {
                    self.backend.copy(pre, dst, rows * local)?;
                }
                let alpha = AlphaDropout::of(layer);
                self.backend.dropout_forward_at(
                    MatMut::new(dst, rows, local),
                    layer.p_dropout,
                    alpha.map_or(Self::dropped_value(layer.activation), |ad| ad.dropped),
                    mask,
                )?;
                if let (Some(ad), Some(bias)) = (alpha, self.alpha_bias[li].as_ref()) {
                    self.backend
                        .scale_rows(MatMut::new(dst, rows, local), &vec![ad.scale; rows])?;
                    self.backend.add_bias(MatMut::new(dst, rows, local), bias)?;
                }
            }
            if training {
                if let Some(v) = self.graph.layers()[li].variational.clone() {
                    self.sample_latent(li, &v, seed)?;
                }
            }
        }
        Ok(())
    }

    /// The columns of its source an edge reads on this rank: for a [`Route::ReducePartials`]
    /// edge this rank's share of the source's units (re-laid from a source held by examples),
    /// otherwise the source's local units.
    pub(super) fn read_cols(&self, e: crate::graph::EdgeId) -> usize {
        let source = self.graph.edge(e).source;
        match self.routes[e.0] {
            Route::ReducePartials => {
                let units = self.graph.layer(source).units;
                Split::even(units, self.comm.size()).map_or(units, |s| s.len(self.comm.rank()))
            }
            _ => self.local_len(source),
        }
    }

    /// Brings edge `e`'s dense source where the edge reads it: the whole rows of a hidden
    /// source gathered for a [`Route::GatherSource`] edge (by columns from a layer split by
    /// units, by rows from one split by examples), or the source re-laid for an edge whose
    /// target is held the other way (an all-to-all). Nothing otherwise.
    pub(super) fn relay_source(&mut self, e: usize) -> Result<()> {
        let edge = self.graph.edge(crate::graph::EdgeId(e));
        let source = self.graph.layer(edge.source);
        if source.kind == LayerKind::Input && !self.splits_examples() {
            // The data is loaded as the edges read it.
            return Ok(());
        }
        let Some(a) = self.units[edge.source.0].as_ref() else {
            return Ok(()); // a sparse input: loaded as its edges read it
        };
        let (src_rows, by_rows) = (self.rows_of(edge.source), self.splits_rows(edge.source));
        let (comm, timers) = (&self.comm, &self.timers);
        if self.routes[e] == Route::GatherSource {
            let Some(gathered) = self.gathered[e].as_mut() else {
                return Ok(());
            };
            if source.kind == LayerKind::Input {
                return Ok(()); // loaded whole
            }
            return if by_rows {
                let cols = source.units;
                gather_rows(&self.backend, comm, a, &self.row_counts, cols, gathered)
            } else {
                let split = self.plan.layer_split(edge.source);
                gather_columns(&self.backend, comm, timers, a, src_rows, &split, gathered)
            };
        }
        let Some(relaid) = self.relaid[e].as_mut() else {
            return Ok(());
        };
        let rows = Split::even(self.share.total, comm.size())?;
        let cols = Split::even(source.units, comm.size())?;
        let into = self.plan.layout(edge.target);
        relay(&self.backend, comm, timers, a, (&rows, &cols), into, relaid)
    }

    /// Loss of the loaded minibatch after [`Network::forward`], summed over examples and
    /// output layers, plus `β·KL` of the variational layers after a training forward (on
    /// several ranks over every rank's columns, or under data parallelism every rank's rows:
    /// an exact `i128` all-reduce, the same on every rank). Per-example data weights scale the
    /// deltas, not this reported loss.
    pub fn loss(&self) -> Result<FixedSum> {
        let mut total = FixedSum::default();
        for layer in self.graph.outputs() {
            let spec = self.losses[layer.id.0]
                .as_ref()
                .expect("outputs have a loss");
            let a = self.units_mat(layer.id).expect("outputs are dense");
            let ignore_zero = self.ignore_zero[layer.id.0];
            let loaded = self.loaded[layer.id.0];
            let loss = match (&self.sparse_local[layer.id.0], &self.targets[layer.id.0]) {
                (Some(t), _) => match self.fused_loss[layer.id.0] {
                    Some(loss) => loss,
                    None => self.backend.sparse_output_loss(a, t, spec, ignore_zero)?,
                },
                (None, Some(t)) if loaded => {
                    let t = Mat::new(t, a.rows, a.cols);
                    self.backend.dense_output_loss(a, t, spec)?
                }
                _ => {
                    return Err(Error::invalid_argument(
                        "batch",
                        format!("output layer `{}` has no targets loaded", layer.name),
                    ))
                }
            };
            total = total + loss;
        }
        total = total + self.kl_loss;
        if self.comm.size() > 1 {
            let mut sum = [total.0];
            self.comm.all_reduce(&mut sum, ReduceOp::Sum)?;
            total = FixedSum(sum[0]);
        }
        Ok(total)
    }
}
