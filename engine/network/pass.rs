//! Forward pass and loss of a [`Network`] (the math is in the module documentation of
//! [`crate::network`]; the backward pass is in `backward.rs`, the update step and its fusion
//! into the backward pass in `update.rs`).

use super::{act_params, not_loaded, split_pair, AlphaDropout, Network, Route};
use crate::backend::traits::{Backend, Mat, MatMut};
use crate::collective::{Collective, ReduceOp};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::ops::fixed::FixedSum;
use crate::ops::{Activation, Trans};
use crate::parallel::data::{gather_rows, keep_rows};
use crate::parallel::host::{gather_columns, reduce_columns, softmax_rows};
use crate::parallel::Parallelism;

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

/// The source rows of an edge on `route`: an input's sparse rows (whole, or local columns for
/// [`Route::ReducePartials`]), or dense activations (`units`: the source's unit buffer,
/// `whole_cols` or `local_cols` wide; `gathered`: the whole rows of a
/// [`Route::GatherSource`] edge). `None` when the rows are missing.
#[allow(clippy::too_many_arguments)]
pub(super) fn source_rows<'a, B: Backend>(
    route: Route,
    rows: usize,
    (whole_cols, local_cols): (usize, usize),
    units: &'a Option<B::Vector>,
    sparse_full: &'a Option<B::SparseBatch>,
    sparse_local: &'a Option<B::SparseBatch>,
    gathered: &'a Option<B::Vector>,
) -> Option<Rows<'a, B>> {
    let dense = |buf: &'a Option<B::Vector>, cols: usize| {
        buf.as_ref().map(|a| Rows::Dense(Mat::new(a, rows, cols)))
    };
    match route {
        Route::Whole => sparse_full
            .as_ref()
            .map(Rows::Sparse)
            .or_else(|| dense(units, whole_cols)),
        Route::GatherSource => sparse_full
            .as_ref()
            .map(Rows::Sparse)
            .or_else(|| dense(gathered, whole_cols)),
        Route::ReducePartials => sparse_local
            .as_ref()
            .map(Rows::Sparse)
            .or_else(|| dense(units, local_cols)),
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
        let rows = self.rows;
        self.require_rows()?;
        let (rank, sharded) = (self.rank(), self.is_sharded());
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
            let split = self.plan.layer_split(layer.id);
            let local = split.len(rank);
            for (k, &eid) in layer.incoming.iter().enumerate() {
                let edge = self.graph.edge(eid);
                let src = edge.source.0;
                let source = self.graph.layer(edge.source);
                let src_split = self.plan.layer_split(edge.source);
                let route = self.routes[eid.0];
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
                if route == Route::GatherSource && source.kind != LayerKind::Input {
                    let (a, gathered) = (
                        src_units.as_ref().expect("hidden layers are dense"),
                        self.gathered[eid.0].as_mut().expect("allocated at build"),
                    );
                    gather_columns(
                        &self.backend,
                        &self.comm,
                        &self.timers,
                        a,
                        rows,
                        &src_split,
                        gathered,
                    )?;
                }
                let x = source_rows::<B>(
                    route,
                    rows,
                    (source.units, src_split.len(rank)),
                    src_units,
                    &self.sparse_full[src],
                    &self.sparse_local[src],
                    &self.gathered[eid.0],
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
            let dst = self.units[li]
                .as_mut()
                .expect("non-input layers have unit buffers");
            if let Some(bn) = self.batch_norm[li].as_mut() {
                if training && self.parallelism == Parallelism::Data && self.comm.size() > 1 {
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
            if sharded && layer.activation == Activation::SoftMax {
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
                    let t = Mat::new(t, self.rows, a.cols);
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
