//! Backward pass of a [`Network`] (the math is in the module documentation of
//! [`crate::network`]), with plain SGD optionally fused into its gradient products
//! (`update.rs`).

use super::build::crosses_layouts;
use super::pass::SourceBuffers;
use super::pass::{source_rows, Rows};
use super::update::fuses_weight;
use super::{
    hidden_layer_delta, not_loaded, output_layer_delta, split_pair_mut_first, Network, Route,
    Targets,
};
use crate::backend::traits::{Backend, Mat, MatMut};
use crate::collective::Collective;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::EdgeId;
use crate::graph::Layer;
use crate::ops::optimizer::Hyper;
use crate::ops::{Activation, Trans};
use crate::parallel::data::{
    gather_rows, keep_rows, reduce_scatter_weight_gradients, sum_gradients,
};
use crate::parallel::host::{
    clip_split_row_norms, gather_columns, reduce_columns, softmax_delta, SoftmaxTargets,
};
use crate::parallel::host::{reduce_rows, relay};
use crate::parallel::{Layout, Split};

/// `out = alpha·xᵀ·δ + beta·out` (`transposed`: `alpha·δᵀ·x`), the weight-gradient product of
/// an edge with source rows `x`; `out` is the gradient or, for a fused update, the weight.
fn gradient_product<B: Backend>(
    backend: &B,
    out: MatMut<'_, B::Vector>,
    x: Rows<'_, B>,
    delta: Mat<'_, B::Vector>,
    transposed: bool,
    alpha: f32,
    beta: f32,
) -> Result<()> {
    match x {
        // Network::build_with refuses transposed edges from sparse inputs.
        Rows::Sparse(x) => backend.sparse_weight_gradient(out, x, delta, alpha, beta),
        // A transposed edge computes z = a·Wᵀ, so g_W = α·δᵀ·a.
        Rows::Dense(a) if transposed => {
            backend.gemm(out, alpha, delta, Trans::Yes, a, Trans::No, beta)
        }
        Rows::Dense(a) => backend.gemm(out, alpha, a, Trans::Yes, delta, Trans::No, beta),
    }
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Backward pass: output deltas from the loaded targets, then every layer's delta and
    /// every weight's negative mean gradient.
    ///
    /// A hidden layer's `∂L/∂a` (from its outgoing edges and skip targets) gets, in DSSTNE's
    /// order: the sparseness penalty (on the activations after dropout, what the next layers
    /// see), the gradient through dropout, `f'`, `DeltaNorm`, and the gradient through batch
    /// normalisation. An output layer's delta gets `DeltaNorm` after the data weights.
    pub fn backward(&mut self, seed: u64) -> Result<()> {
        self.backward_inner(seed, None)
    }

    /// [`Network::backward`]; with `fused = Some(h)` (plain SGD without L1, see
    /// `update.rs`) the gradient products of every unshared weight and of every edge's bias
    /// write the SGD update straight into the weight or bias instead of into `dw`, `db`:
    /// `W ← (1 − αλ)·W + α·g_W` and `b ← b + α·g_b`. Every edge propagates its delta
    /// `δ_src = δ·op(W)ᵀ` before its gradient product, so that it reads `W` before the update.
    pub(super) fn backward_inner(&mut self, seed: u64, fused: Option<&Hyper>) -> Result<()> {
        let n = self.graph.layers().len();
        let mut written = vec![false; n];
        let mut grad_written = vec![false; self.params.len()];
        for li in (0..n).rev() {
            let layer = &self.graph.layers()[li];
            if layer.kind == LayerKind::Input {
                continue;
            }
            let split = self.plan.layer_split(layer.id);
            let (rows, local) = (self.rows_of(layer.id), self.local_len(layer.id));
            let (by_rows, by_units) = (self.splits_rows(layer.id), self.splits_units(layer.id));
            if layer.kind == LayerKind::Output {
                self.output_delta(li)?;
            } else if let Some(v) = layer.variational.clone() {
                // ∂L/∂z of the sample into ∂L/∂μ here and ∂L/∂ℓ of the log-variance layer
                // (ordered before this one, so its turn comes later).
                self.latent_delta(li, &v, written[li])?;
                written[v.log_variance.0] = true;
                self.hidden_delta(li, true, seed)?;
            } else {
                self.hidden_delta(li, written[li], seed)?;
            }
            let layer = &self.graph.layers()[li];
            let delta = self.deltas[li]
                .as_mut()
                .expect("non-input layers have deltas");
            if layer.delta_norm > 0.0 {
                if by_units {
                    let norm = layer.delta_norm;
                    clip_split_row_norms(&self.backend, &self.comm, delta, rows, local, norm)?;
                } else {
                    self.backend
                        .clip_row_norms(MatMut::new(delta, rows, local), layer.delta_norm)?;
                }
            }
            if let Some(bn) = self.batch_norm[li].as_mut() {
                if by_rows {
                    // Through the whole minibatch's statistics: the whole minibatch's rows on
                    // every rank (γ's and β's gradients are then the same on every rank).
                    let (counts, share) = (&self.row_counts, self.share);
                    let whole = &mut self.whole_rows[0];
                    gather_rows(&self.backend, &self.comm, delta, counts, local, whole)?;
                    bn.backward(&self.backend, MatMut::new(whole, share.total, local))?;
                    keep_rows(&self.backend, whole, share, local, delta)?;
                } else {
                    bn.backward(&self.backend, MatMut::new(delta, rows, local))?;
                }
            }
            if let Some(full) = self.delta_full[li].as_mut() {
                let timers = &self.timers;
                gather_columns(&self.backend, &self.comm, timers, delta, rows, &split, full)?;
            }
            // The mean over the whole minibatch (every rank's rows under data parallelism);
            // under exact sums the chunk's sum, divided by the minibatch's size at the end.
            let alpha = if self.exact.is_some() {
                -1.0
            } else {
                -1.0 / self.share.total as f32
            };
            for k in 0..layer.incoming.len() {
                let eid = self.graph.layers()[li].incoming[k];
                let edge = self.graph.edge(eid);
                let (src, wi, route) = (edge.source.0, edge.weight.0, self.routes[eid.0]);
                // δ_src first: it must read W before a fused update changes it.
                if self.graph.layer(edge.source).kind != LayerKind::Input {
                    self.source_delta(eid, written[src])?;
                    written[src] = true;
                }
                let (layer, edge) = (&self.graph.layers()[li], self.graph.edge(eid));
                let source = self.graph.layer(edge.source);
                let src_local = self.read_cols(eid);
                let weight = self.graph.weight(edge.weight);
                let (alpha_w, beta_w, into_param) = match fused.filter(|_| fuses_weight(weight)) {
                    Some(h) => (h.alpha * alpha, 1.0 - h.alpha * h.lambda, true),
                    None => {
                        let beta = if grad_written[wi] { 1.0 } else { 0.0 };
                        grad_written[wi] = true;
                        let sharing = weight.sharing_count.max(1) as f32;
                        (alpha / sharing, beta, false)
                    }
                };
                let delta = self.deltas[li]
                    .as_ref()
                    .expect("non-input layers have deltas");
                let delta_local = Mat::new(delta, rows, local);
                let delta_for_grad = match route {
                    Route::ReducePartials => Mat::new(
                        self.delta_full[li].as_ref().expect("allocated at build"),
                        rows,
                        layer.units,
                    ),
                    Route::Whole | Route::GatherSource => delta_local,
                };
                let x = source_rows::<B>(
                    route,
                    rows,
                    (source.units, src_local),
                    SourceBuffers {
                        units: &self.units[src],
                        sparse_full: &self.sparse_full[src],
                        sparse_local: &self.sparse_local[src],
                        sparse_share: &self.sparse_share[src],
                        gathered: &self.gathered[eid.0],
                        relaid: &self.relaid[eid.0],
                    },
                )
                .ok_or_else(|| not_loaded(source))?;
                let p = &mut self.params[wi];
                let out = if into_param { &mut p.w } else { &mut p.dw };
                gradient_product(
                    &self.backend,
                    MatMut::new(out, p.rows, p.cols),
                    x,
                    delta_for_grad,
                    edge.transposed,
                    alpha_w,
                    beta_w,
                )?;
                let bias = &mut self.biases[eid.0];
                match fused {
                    Some(h) => self.backend.bias_gradient(
                        &mut bias.b,
                        delta_local,
                        h.alpha * alpha,
                        1.0,
                    )?,
                    None => self
                        .backend
                        .bias_gradient(&mut bias.db, delta_local, alpha, 0.0)?,
                }
            }
            let layer = &self.graph.layers()[li];
            for &skip in &layer.skips {
                if self.graph.layer(skip).kind == LayerKind::Input {
                    continue;
                }
                let (dst, src) = split_pair_mut_first(&mut self.deltas, skip.0, li);
                let (dst, src) = (
                    dst.as_mut().expect("skip sources are hidden layers"),
                    src.as_ref().expect("non-input layers have deltas"),
                );
                if written[skip.0] {
                    self.backend.add_assign(dst, src, rows * local)?;
                } else {
                    self.backend.copy(dst, src, rows * local)?;
                }
                written[skip.0] = true;
            }
        }
        if self.exact.is_some() {
            self.add_exact_chunk()?;
        } else if self.splits_examples() {
            self.sum_gradients()?;
        }
        Ok(())
    }

    /// Edge `eid`'s part of its (hidden) source's `∂L/∂a`, `δ_src = δ·op(W)ᵀ`, added to the
    /// source's delta buffer (`written`) or written into it, in the source's layout: computed
    /// where the edge runs, then reduce-scattered (by columns, or by rows into a source held
    /// by examples) for an output-sharded edge, or laid back by an all-to-all when the source
    /// is held the other way.
    fn source_delta(&mut self, eid: EdgeId, written: bool) -> Result<()> {
        let edge = self.graph.edge(eid);
        let (src, li, route) = (edge.source, edge.target, self.routes[eid.0]);
        let (source, layer) = (self.graph.layer(src), self.graph.layer(li));
        let (rows, local) = (self.rows_of(li), self.local_len(li));
        let (src_rows, src_local) = (self.rows_of(src), self.local_len(src));
        let read_cols = self.read_cols(eid);
        let crosses = crosses_layouts(&self.plan, edge);
        // `Wᵀ` for a plain edge, `W` for a transposed one.
        let back = if edge.transposed {
            Trans::No
        } else {
            Trans::Yes
        };
        let p = &self.params[edge.weight.0];
        let w = Mat::new(&p.w, p.rows, p.cols);
        let (src_delta, delta) = split_pair_mut_first(&mut self.deltas, src.0, li.0);
        let src_delta = src_delta.as_mut().expect("hidden layers have deltas");
        let delta = delta.as_ref().expect("non-input layers have deltas");
        let (d, width) = match route {
            Route::ReducePartials => (
                self.delta_full[li.0].as_ref().expect("allocated at build"),
                layer.units,
            ),
            Route::Whole | Route::GatherSource => (delta, local),
        };
        let d = Mat::new(d, rows, width);
        if route != Route::GatherSource && !crosses {
            let beta = if written { 1.0 } else { 0.0 };
            let out = MatMut::new(src_delta, rows, read_cols);
            return self.backend.gemm(out, 1.0, d, Trans::No, w, back, beta);
        }
        // The edge's part of δ_src as the edge holds it, into the scratch.
        let cols = match route {
            Route::ReducePartials => read_cols,
            _ => source.units,
        };
        let out = MatMut::new(&mut self.scratch, rows, cols);
        self.backend.gemm(out, 1.0, d, Trans::No, w, back, 0.0)?;
        let (comm, timers) = (&self.comm, &self.timers);
        let row_split = Split::even(self.share.total, comm.size())?;
        let unit_split = Split::even(source.units, comm.size())?;
        let laid = &mut self.scratch_local;
        match (route, self.plan.layout(src)) {
            (Route::GatherSource, Layout::Units) => {
                let split = self.plan.layer_split(src);
                reduce_columns(
                    &self.backend,
                    comm,
                    timers,
                    &self.scratch,
                    rows,
                    &split,
                    laid,
                )?
            }
            (Route::GatherSource, Layout::Rows) => {
                let width = source.units;
                reduce_rows(
                    &self.backend,
                    comm,
                    timers,
                    &self.scratch,
                    &row_split,
                    width,
                    laid,
                )?
            }
            // A replicated edge into a source split by units, or an input-sharded edge into one
            // split by examples: lay the part back.
            (_, into) => {
                let splits = (&row_split, &unit_split);
                relay(
                    &self.backend,
                    comm,
                    timers,
                    &self.scratch,
                    splits,
                    into,
                    laid,
                )?
            }
        }
        let n = src_rows * src_local;
        if written {
            self.backend.add_assign(src_delta, &self.scratch_local, n)
        } else {
            self.backend.copy(src_delta, &self.scratch_local, n)
        }
    }

    /// Where the ranks split the examples: every replicated weight's gradient summed over
    /// the ranks on the elements this rank owns (the sharded update,
    /// [`crate::parallel::owned`]), and the bias gradient of every edge into a layer held by
    /// examples summed whole ([`crate::parallel::data::sum_gradients`]); both exact, the same
    /// bits whatever the transport. Batch normalisation's come from the whole minibatch
    /// already.
    fn sum_gradients(&mut self) -> Result<()> {
        let mut weights: Vec<(&mut B::Vector, usize)> = Vec::new();
        for (p, wp) in self.params.iter_mut().zip(self.plan.weights()) {
            if wp.replicated {
                let n = p.rows * p.cols;
                weights.push((&mut p.dw, n));
            }
        }
        reduce_scatter_weight_gradients(&self.backend, &self.comm, &self.timers, &mut weights)?;
        let mut biases: Vec<(&mut B::Vector, usize)> = Vec::new();
        for (b, e) in self.biases.iter_mut().zip(self.plan.edges()) {
            if e.replicated {
                let n = b.cols;
                biases.push((&mut b.db, n));
            }
        }
        sum_gradients(&self.backend, &self.comm, &self.timers, &mut biases)
    }

    /// Hidden layer `li`'s local `∂L/∂a` (zero when nothing was `written` to it) to `∂L/∂z`
    /// before `DeltaNorm` and batch normalisation ([`hidden_layer_delta`]: the sparseness
    /// penalty is per unit over the batch, so local; dropout draws the global mask).
    fn hidden_delta(&mut self, li: usize, mut written: bool, seed: u64) -> Result<()> {
        let layer = &self.graph.layers()[li];
        let (mask, cols) = (self.mask(layer, seed), self.local_len(layer.id));
        let split_penalty = self.splits_rows(layer.id) && layer.sparseness_penalty.is_some();
        let rows = self.rows_of(layer.id);
        if let (true, Some(penalty)) = (split_penalty, layer.sparseness_penalty) {
            // The mean activation of the whole minibatch: the penalty on its rows on every
            // rank, this rank's rows kept.
            let delta = self.deltas[li].as_mut().expect("hidden layers have deltas");
            if !written {
                self.backend
                    .upload(delta, &vec![0.0; self.share.len * cols])?;
                written = true;
            }
            let a = self.units[li].as_ref().expect("hidden layers are dense");
            let (counts, share) = (&self.row_counts, self.share);
            let [whole_a, whole_delta] = &mut self.whole_rows;
            gather_rows(&self.backend, &self.comm, a, counts, cols, whole_a)?;
            gather_rows(&self.backend, &self.comm, delta, counts, cols, whole_delta)?;
            self.backend.sparseness_penalty(
                MatMut::new(whole_delta, share.total, cols),
                Mat::new(whole_a, share.total, cols),
                penalty.p,
                penalty.beta,
            )?;
            keep_rows(&self.backend, whole_delta, share, cols, delta)?;
        }
        let layer = &self.graph.layers()[li];
        hidden_layer_delta(
            &self.backend,
            layer,
            self.deltas[li]
                .as_mut()
                .expect("non-input layers have deltas"),
            self.units[li].as_ref().expect("hidden layers are dense"),
            self.pre_dropout[li].as_ref(),
            (rows, cols),
            written,
            !split_penalty,
            mask,
        )
    }

    /// Output layer `li`'s local `δ = ∂L/∂z`, scaled per example by the data weights.
    fn output_delta(&mut self, li: usize) -> Result<()> {
        let layer = &self.graph.layers()[li];
        let (rows, cols) = (self.rows_of(layer.id), self.local_len(layer.id));
        let spec = self.losses[li].expect("outputs have a loss");
        let sharded_softmax =
            self.splits_units(layer.id) && layer.activation == Activation::SoftMax;
        let a = self.units[li].as_ref().expect("outputs are dense");
        let delta = self.deltas[li].as_mut().expect("outputs have deltas");
        if sharded_softmax {
            return softmax_output_delta(
                &self.backend,
                &self.comm,
                layer,
                delta,
                a,
                (rows, cols),
                &spec,
                (
                    self.softmax_targets[li].as_ref(),
                    self.targets[li].as_ref().filter(|_| self.loaded[li]),
                    self.ignore_zero[li],
                ),
                self.example_weights[li].as_deref(),
            );
        }
        let targets = match (&self.sparse_local[li], &self.targets[li]) {
            _ if std::mem::take(&mut self.fused_delta[li]) => Targets::Written,
            (Some(t), _) => Targets::Sparse(t),
            (None, Some(t)) if self.loaded[li] => Targets::Dense(t),
            _ => Targets::Missing,
        };
        output_layer_delta(
            &self.backend,
            layer,
            delta,
            a,
            targets,
            (rows, cols),
            &spec,
            self.ignore_zero[li],
            self.example_weights[li].as_deref(),
        )
    }
}

/// The local delta of a SoftMax output layer split over several ranks ([`softmax_delta`]:
/// the row sums across ranks), from its sparse targets on the host (`targets.0`) or its
/// dense targets on the device (`targets.1`), then scaled per example by the data weights.
#[allow(clippy::too_many_arguments)]
fn softmax_output_delta<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    layer: &Layer,
    delta: &mut B::Vector,
    a: &B::Vector,
    (rows, cols): (usize, usize),
    spec: &crate::ops::loss::LossSpec,
    targets: (Option<&crate::sparse::Csr>, Option<&B::Vector>, bool),
    example_weights: Option<&[f32]>,
) -> Result<()> {
    let targets = match targets {
        (Some(t), _, ignore_zero) => SoftmaxTargets::Sparse(t, ignore_zero),
        (None, Some(t), _) => {
            let mut host = vec![0.0; rows * cols];
            backend.download(t, &mut host)?;
            SoftmaxTargets::Dense(host)
        }
        _ => {
            return Err(Error::invalid_argument(
                "batch",
                format!("output layer `{}` has no targets loaded", layer.name),
            ))
        }
    };
    softmax_delta(backend, comm, delta, a, rows, cols, targets, spec)?;
    if let Some(w) = example_weights {
        backend.scale_rows(MatMut::new(delta, rows, cols), w)?;
    }
    Ok(())
}
