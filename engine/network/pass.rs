//! Forward and backward passes of a [`Network`] (the math is in the module documentation of
//! [`crate::network`]; the update step and its fusion into the backward pass are in
//! `update.rs`).

use super::update::fuses_weight;
use super::{
    act_params, hidden_layer_delta, output_layer_delta, AlphaDropout, Loaded, Network, Targets,
};
use crate::backend::traits::{Backend, DropoutMask, Mat, MatMut};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::LayerId;
use crate::ops::fixed::FixedSum;
use crate::ops::optimizer::Hyper;
use crate::ops::Trans;

/// What one training step measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Loss summed over the minibatch's examples and output units (fixed point).
    pub loss: FixedSum,
    /// Examples in the minibatch.
    pub rows: usize,
}

/// RNG streams: dropout of layer `l` in update `t` uses stream `DROPOUT_STREAM + t·2¹⁶ + l`.
const DROPOUT_STREAM: u64 = 1 << 40;

pub(crate) fn dropout_stream(step: u64, layer: LayerId) -> u64 {
    DROPOUT_STREAM + (step << 16) + layer.0 as u64
}

/// Where a weight-gradient product writes: the gradient `dw`, or the weight itself (a fused
/// SGD update).
#[derive(Clone, Copy)]
enum GradInto {
    Gradient,
    Param,
}

/// `(&mut v[i], &v[j])` for `i < j`.
fn split_pair_mut_first<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &T) {
    debug_assert!(i < j);
    let (head, tail) = v.split_at_mut(j);
    (&mut head[i], &tail[0])
}

/// `(&v[i], &mut v[j])` for `i < j`.
fn split_pair<T>(v: &mut [T], i: usize, j: usize) -> (&T, &mut T) {
    debug_assert!(i < j);
    let (head, tail) = v.split_at_mut(j);
    (&head[i], &mut tail[0])
}

impl<B: Backend> Network<B> {
    /// Forward pass over the loaded minibatch. With `training`, hidden layers apply dropout
    /// drawn from `seed` and the current update count.
    pub fn forward(&mut self, training: bool, seed: u64) -> Result<()> {
        let rows = self.rows;
        if rows == 0 {
            return Err(Error::invalid_argument("batch", "no minibatch is loaded"));
        }
        self.fused_loss.iter_mut().for_each(|l| *l = None);
        self.fused_delta.iter_mut().for_each(|d| *d = false);
        for li in 0..self.graph.layers().len() {
            let layer = &self.graph.layers()[li];
            if layer.kind == LayerKind::Input {
                if !matches!(self.loaded[li], Loaded::Sparse(_) | Loaded::Dense) {
                    return Err(Error::invalid_argument(
                        "batch",
                        format!("input layer `{}` has no rows loaded", layer.name),
                    ));
                }
                continue;
            }
            let units = layer.units;
            for (k, &eid) in layer.incoming.iter().enumerate() {
                let edge = self.graph.edge(eid);
                let src = edge.source.0;
                let p = &self.params[edge.weight.0];
                let bias = &self.biases[eid.0].b;
                let w = Mat::new(&p.w, p.rows, p.cols);
                let tw = if edge.transposed {
                    Trans::Yes
                } else {
                    Trans::No
                };
                let src_cols = if edge.transposed { p.cols } else { p.rows };
                let (src_units, dst) = split_pair(&mut self.units, src, li);
                let dst = dst.as_mut().expect("non-input layers have unit buffers");
                if k == 0 {
                    self.backend
                        .set_rows_to_bias(MatMut::new(dst, rows, units), bias)?;
                } else {
                    self.backend.add_bias(MatMut::new(dst, rows, units), bias)?;
                }
                match (&self.loaded[src], src_units) {
                    (Loaded::Sparse(x), _) => {
                        // Network::build refuses transposed edges from sparse inputs.
                        self.backend
                            .spmm(MatMut::new(dst, rows, units), x, w, 1.0)?;
                    }
                    (_, Some(a)) => {
                        let a = Mat::new(a, rows, src_cols);
                        self.backend.gemm(
                            MatMut::new(dst, rows, units),
                            1.0,
                            a,
                            Trans::No,
                            w,
                            tw,
                            1.0,
                        )?;
                    }
                    (_, None) => {
                        return Err(Error::invalid_argument(
                            "batch",
                            format!(
                                "layer `{}` has no rows loaded",
                                self.graph.layer(edge.source).name
                            ),
                        ))
                    }
                }
            }
            for &skip in &layer.skips {
                let (src, dst) = split_pair(&mut self.units, skip.0, li);
                let src = src.as_ref().ok_or_else(|| {
                    Error::Unsupported(format!(
                        "layer `{}`: a Skip from the sparse input layer `{}`",
                        layer.name,
                        self.graph.layer(skip).name
                    ))
                })?;
                let dst = dst.as_mut().expect("non-input layers have unit buffers");
                self.backend.add_assign(dst, src, rows * units)?;
            }
            let dst = self.units[li]
                .as_mut()
                .expect("non-input layers have unit buffers");
            if let Some(bn) = self.batch_norm[li].as_mut() {
                bn.forward(&self.backend, MatMut::new(dst, rows, units), training)?;
            }
            if training && layer.kind == LayerKind::Output {
                if let (Loaded::Sparse(t), Some(spec)) = (&self.loaded[li], &self.losses[li]) {
                    let delta = self.deltas[li].as_mut().expect("outputs have deltas");
                    let loss = self.backend.sparse_output_forward(
                        MatMut::new(dst, rows, units),
                        MatMut::new(delta, rows, units),
                        t,
                        spec,
                        self.ignore_zero[li],
                    )?;
                    self.fused_loss[li] = Some(loss);
                    self.fused_delta[li] = true;
                    continue;
                }
            }
            let params = act_params(layer);
            self.backend.activation_forward(
                MatMut::new(dst, rows, units),
                layer.activation,
                &params,
            )?;
            if training && layer.kind == LayerKind::Hidden && layer.p_dropout > 0.0 {
                if let Some(pre) = self.pre_dropout[li].as_mut() {
                    self.backend.copy(pre, dst, rows * units)?;
                }
                let alpha = AlphaDropout::of(layer);
                self.backend.dropout_forward(
                    MatMut::new(dst, rows, units),
                    layer.p_dropout,
                    alpha.map_or(Self::dropped_value(layer.activation), |ad| ad.dropped),
                    seed,
                    dropout_stream(self.step, layer.id),
                )?;
                if let (Some(ad), Some(bias)) = (alpha, self.alpha_bias[li].as_ref()) {
                    self.backend
                        .scale_rows(MatMut::new(dst, rows, units), &vec![ad.scale; rows])?;
                    self.backend.add_bias(MatMut::new(dst, rows, units), bias)?;
                }
            }
        }
        Ok(())
    }

    /// Loss of the loaded minibatch after [`Network::forward`], summed over examples and
    /// output layers. Per-example data weights scale the deltas, not this reported loss.
    pub fn loss(&self) -> Result<FixedSum> {
        let mut total = FixedSum::default();
        for layer in self.graph.outputs() {
            let spec = self.losses[layer.id.0]
                .as_ref()
                .expect("outputs have a loss");
            let a = self.units_mat(layer.id).expect("outputs are dense");
            let ignore_zero = self.ignore_zero[layer.id.0];
            let loss = match (&self.loaded[layer.id.0], &self.targets[layer.id.0]) {
                (Loaded::Sparse(t), _) => match self.fused_loss[layer.id.0] {
                    Some(loss) => loss,
                    None => self.backend.sparse_output_loss(a, t, spec, ignore_zero)?,
                },
                (Loaded::Dense, Some(t)) => {
                    let t = Mat::new(t, self.rows, layer.units);
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
        Ok(total)
    }

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
        let rows = self.rows;
        let n = self.graph.layers().len();
        let mut written = vec![false; n];
        let mut grad_written = vec![false; self.params.len()];
        for li in (0..n).rev() {
            let layer = self.graph.layers()[li].clone();
            if layer.kind == LayerKind::Input {
                continue;
            }
            let units = layer.units;
            if layer.kind == LayerKind::Output {
                self.output_delta(layer.id)?;
            } else {
                self.hidden_delta(&layer, written[li], seed)?;
            }
            if layer.delta_norm > 0.0 {
                let delta = self.deltas[li]
                    .as_mut()
                    .expect("non-input layers have deltas");
                self.backend
                    .clip_row_norms(MatMut::new(delta, rows, units), layer.delta_norm)?;
            }
            if let Some(bn) = self.batch_norm[li].as_mut() {
                let delta = self.deltas[li]
                    .as_mut()
                    .expect("non-input layers have deltas");
                bn.backward(&self.backend, MatMut::new(delta, rows, units))?;
            }
            let alpha = -1.0 / rows as f32;
            for &eid in &layer.incoming {
                let edge = self.graph.edge(eid).clone();
                let src = edge.source.0;
                let wi = edge.weight.0;
                // δ_src first: it must read W before a fused update changes it.
                if self.graph.layer(edge.source).kind != LayerKind::Input {
                    let beta = if written[src] { 1.0 } else { 0.0 };
                    self.propagate_delta(li, src, wi, edge.transposed, beta)?;
                    written[src] = true;
                }
                let weight = self.graph.weight(edge.weight);
                let (into, alpha_w, beta_w) = match fused.filter(|_| fuses_weight(weight)) {
                    Some(h) => (GradInto::Param, h.alpha * alpha, 1.0 - h.alpha * h.lambda),
                    None => {
                        let beta = if grad_written[wi] { 1.0 } else { 0.0 };
                        grad_written[wi] = true;
                        let sharing = weight.sharing_count.max(1) as f32;
                        (GradInto::Gradient, alpha / sharing, beta)
                    }
                };
                self.weight_gradient(li, &edge, into, alpha_w, beta_w)?;
                let delta = self.deltas[li]
                    .as_ref()
                    .expect("non-input layers have deltas");
                let bias = &mut self.biases[eid.0];
                match fused {
                    Some(h) => self.backend.bias_gradient(
                        &mut bias.b,
                        Mat::new(delta, rows, units),
                        h.alpha * alpha,
                        1.0,
                    )?,
                    None => self.backend.bias_gradient(
                        &mut bias.db,
                        Mat::new(delta, rows, units),
                        alpha,
                        0.0,
                    )?,
                }
            }
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
                    self.backend.add_assign(dst, src, rows * units)?;
                } else {
                    self.backend.copy(dst, src, rows * units)?;
                }
                written[skip.0] = true;
            }
        }
        Ok(())
    }

    /// The weight-gradient product of `edge` into layer `dst`:
    /// `out = alpha·a_srcᵀ·δ_dst + beta·out` (transposed edge: `alpha·δ_dstᵀ·a_src`), `out`
    /// the weight's gradient `dw` or, for a fused update, the weight itself.
    fn weight_gradient(
        &mut self,
        dst: usize,
        edge: &crate::graph::Edge,
        into: GradInto,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let rows = self.rows;
        let units = self.graph.layer(edge.target).units;
        let delta = self.deltas[dst]
            .as_ref()
            .expect("non-input layers have deltas");
        let delta = Mat::new(delta, rows, units);
        let p = &mut self.params[edge.weight.0];
        let (prow, pcol) = (p.rows, p.cols);
        let out = match into {
            GradInto::Gradient => &mut p.dw,
            GradInto::Param => &mut p.w,
        };
        let out = MatMut::new(out, prow, pcol);
        match (&self.loaded[edge.source.0], &self.units[edge.source.0]) {
            (Loaded::Sparse(x), _) => self
                .backend
                .sparse_weight_gradient(out, x, delta, alpha, beta),
            // A transposed edge computes z = a·Wᵀ, so g_W = α·δᵀ·a.
            (_, Some(a)) if edge.transposed => self.backend.gemm(
                out,
                alpha,
                delta,
                Trans::Yes,
                Mat::new(a, rows, pcol),
                Trans::No,
                beta,
            ),
            (_, Some(a)) => self.backend.gemm(
                out,
                alpha,
                Mat::new(a, rows, prow),
                Trans::Yes,
                delta,
                Trans::No,
                beta,
            ),
            (_, None) => Err(Error::invalid_argument(
                "batch",
                "backward needs a forward pass over a loaded minibatch first",
            )),
        }
    }

    /// A hidden layer's `∂L/∂a` (zero when nothing was `written` to it) to `∂L/∂z` before
    /// `DeltaNorm` and batch normalisation ([`hidden_layer_delta`]).
    fn hidden_delta(
        &mut self,
        layer: &crate::graph::Layer,
        written: bool,
        seed: u64,
    ) -> Result<()> {
        let (rows, units, li) = (self.rows, layer.units, layer.id.0);
        let mask = DropoutMask::whole(seed, dropout_stream(self.step, layer.id), units);
        hidden_layer_delta(
            &self.backend,
            layer,
            self.deltas[li]
                .as_mut()
                .expect("non-input layers have deltas"),
            self.units[li].as_ref().expect("hidden layers are dense"),
            self.pre_dropout[li].as_ref(),
            (rows, units),
            written,
            mask,
        )
    }

    /// `∂L/∂a_src (+)= δ_dst · op(W)ᵀ` for the edge `src → dst` with weight `weight`
    /// (`op(W) = Wᵀ` when the edge uses it `transposed`).
    fn propagate_delta(
        &mut self,
        dst: usize,
        src: usize,
        weight: usize,
        transposed: bool,
        beta: f32,
    ) -> Result<()> {
        let rows = self.rows;
        let p = &self.params[weight];
        let (src_units, dst_units, tw) = if transposed {
            (p.cols, p.rows, Trans::No)
        } else {
            (p.rows, p.cols, Trans::Yes)
        };
        let (src_delta, dst_delta) = split_pair_mut_first(&mut self.deltas, src, dst);
        let src_delta = src_delta.as_mut().expect("hidden layers have deltas");
        let dst_delta = dst_delta.as_ref().expect("non-input layers have deltas");
        self.backend.gemm(
            MatMut::new(src_delta, rows, src_units),
            1.0,
            Mat::new(dst_delta, rows, dst_units),
            Trans::No,
            Mat::new(&p.w, p.rows, p.cols),
            tw,
            beta,
        )
    }

    /// The output layer's `δ = ∂L/∂z`, scaled per example by the data weights.
    fn output_delta(&mut self, id: LayerId) -> Result<()> {
        let layer = self.graph.layer(id);
        let spec = self.losses[id.0].expect("outputs have a loss");
        let targets = match (&self.loaded[id.0], &self.targets[id.0]) {
            _ if std::mem::take(&mut self.fused_delta[id.0]) => Targets::Written,
            (Loaded::Sparse(t), _) => Targets::Sparse(t),
            (Loaded::Dense, Some(t)) => Targets::Dense(t),
            _ => Targets::Missing,
        };
        output_layer_delta(
            &self.backend,
            layer,
            self.deltas[id.0].as_mut().expect("outputs have deltas"),
            self.units[id.0].as_ref().expect("outputs are dense"),
            targets,
            (self.rows, layer.units),
            &spec,
            self.ignore_zero[id.0],
            self.example_weights[id.0].as_deref(),
        )
    }
}
