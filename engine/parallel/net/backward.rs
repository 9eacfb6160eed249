//! Backward pass and update of a [`ShardedNetwork`] (the distributed math is in the
//! [module documentation](super)).

use super::host::{
    clip_split_column_norms, clip_split_row_norms, gather_columns, reduce_columns, softmax_delta,
    SoftmaxTargets,
};
use super::pass::{not_loaded, two};
use super::ShardedNetwork;
use crate::backend::traits::{Backend, Mat, MatMut};
use crate::collective::Collective;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::Layer;
use crate::network::{hidden_layer_delta, output_layer_delta, Targets};
use crate::ops::optimizer::Hyper;
use crate::ops::Activation;
use crate::ops::Trans;
use crate::parallel::Sharding;

impl<B: Backend, C: Collective> ShardedNetwork<'_, B, C> {
    /// Backward pass: every layer's local delta and every local weight block's negative mean
    /// gradient, as [`crate::network::Network::backward`].
    pub fn backward(&mut self, seed: u64) -> Result<()> {
        let rows = self.rows;
        let rank = self.rank();
        let n = self.graph.layers().len();
        let mut written = vec![false; n];
        let mut grad_written = vec![false; self.params.len()];
        for li in (0..n).rev() {
            let layer = self.graph.layers()[li].clone();
            if layer.kind == LayerKind::Input {
                continue;
            }
            let split = self.split(layer.id);
            let local = split.len(rank);
            if layer.kind == LayerKind::Output {
                self.output_delta(&layer)?;
            } else {
                self.hidden_delta(&layer, written[li], seed)?;
            }
            if layer.delta_norm > 0.0 {
                let delta = self.deltas[li].as_mut().expect("non-input layers");
                clip_split_row_norms(
                    &self.backend,
                    self.comm,
                    delta,
                    rows,
                    local,
                    layer.delta_norm,
                )?;
            }
            if let Some(bn) = self.batch_norm[li].as_mut() {
                let delta = self.deltas[li].as_mut().expect("non-input layers");
                bn.backward(&self.backend, MatMut::new(delta, rows, local))?;
            }
            if let Some(full) = self.delta_full[li].as_mut() {
                let delta = self.deltas[li].as_ref().expect("non-input layers");
                gather_columns(
                    &self.backend,
                    self.comm,
                    &self.timers,
                    delta,
                    rows,
                    &split,
                    full,
                )?;
            }
            let alpha = -1.0 / rows as f32;
            for &eid in &layer.incoming {
                let wi = self.graph.edge(eid).weight.0;
                let sharing = self
                    .graph
                    .weight(self.graph.edge(eid).weight)
                    .sharing_count
                    .max(1);
                let beta_w = if grad_written[wi] { 1.0 } else { 0.0 };
                grad_written[wi] = true;
                let alpha_w = alpha / sharing as f32;
                let edge = self.graph.edge(eid).clone();
                let src = edge.source.0;
                let source = self.graph.layer(edge.source).clone();
                let src_split = self.split(edge.source);
                let src_local = src_split.len(rank);
                let delta = self.deltas[li].as_ref().expect("non-input layers");
                let delta_local = Mat::new(delta, rows, local);
                self.backend
                    .bias_gradient(&mut self.biases[eid.0].db, delta_local, alpha, 0.0)?;
                let p = &mut self.params[edge.weight.0];
                let (prow, pcol) = (p.rows, p.cols);
                let dw = MatMut::new(&mut p.dw, prow, pcol);
                let hidden_source = source.kind != LayerKind::Input;
                // δ_src = δ·op(W)ᵀ: `Wᵀ` for a plain edge, `W` for a transposed one.
                let back = if edge.transposed {
                    Trans::No
                } else {
                    Trans::Yes
                };
                match self.plan.edges()[eid.0].sharding {
                    Sharding::ByOutput => {
                        if let Some(x) = &self.sparse_full[src] {
                            // Network::build's rule: no transposed weight from a sparse input.
                            self.backend.sparse_weight_gradient(
                                dw,
                                x,
                                delta_local,
                                alpha_w,
                                beta_w,
                            )?;
                        } else {
                            let a = self.gathered[eid.0]
                                .as_ref()
                                .ok_or_else(|| not_loaded(&source))?;
                            let a = Mat::new(a, rows, source.units);
                            // g_W = α·aᵀ·δ, or for a transposed use (z = a·Wᵀ) α·δᵀ·a.
                            let (x, y) = if edge.transposed {
                                (delta_local, a)
                            } else {
                                (a, delta_local)
                            };
                            self.backend
                                .gemm(dw, alpha_w, x, Trans::Yes, y, Trans::No, beta_w)?;
                        }
                        if hidden_source {
                            let w = Mat::new(&self.params[edge.weight.0].w, prow, pcol);
                            self.backend.gemm(
                                MatMut::new(&mut self.scratch, rows, source.units),
                                1.0,
                                delta_local,
                                Trans::No,
                                w,
                                back,
                                0.0,
                            )?;
                            reduce_columns(
                                &self.backend,
                                self.comm,
                                &self.timers,
                                &self.scratch,
                                rows,
                                &src_split,
                                &mut self.scratch_local,
                            )?;
                            let dst = self.deltas[src].as_mut().expect("hidden layers");
                            if written[src] {
                                self.backend.add_assign(
                                    dst,
                                    &self.scratch_local,
                                    rows * src_local,
                                )?;
                            } else {
                                self.backend
                                    .copy(dst, &self.scratch_local, rows * src_local)?;
                            }
                        }
                    }
                    Sharding::ByInput => {
                        let full = self.delta_full[li].as_ref().expect("allocated at build");
                        let delta_full = Mat::new(full, rows, layer.units);
                        if let Some(x) = &self.sparse_local[src] {
                            self.backend
                                .sparse_weight_gradient(dw, x, delta_full, alpha_w, beta_w)?;
                        } else {
                            let a = self.units[src]
                                .as_ref()
                                .ok_or_else(|| not_loaded(&source))?;
                            let a = Mat::new(a, rows, src_local);
                            let (x, y) = if edge.transposed {
                                (delta_full, a)
                            } else {
                                (a, delta_full)
                            };
                            self.backend
                                .gemm(dw, alpha_w, x, Trans::Yes, y, Trans::No, beta_w)?;
                        }
                        if hidden_source {
                            let beta = if written[src] { 1.0 } else { 0.0 };
                            let w = Mat::new(&self.params[edge.weight.0].w, prow, pcol);
                            let dst = self.deltas[src].as_mut().expect("hidden layers");
                            self.backend.gemm(
                                MatMut::new(dst, rows, src_local),
                                1.0,
                                delta_full,
                                Trans::No,
                                w,
                                back,
                                beta,
                            )?;
                        }
                    }
                }
                if hidden_source {
                    written[src] = true;
                }
            }
            for &skip in &layer.skips {
                let (dst, src) = two(&mut self.deltas, skip.0, li);
                let (dst, src) = (
                    dst.as_mut().expect("skip sources are hidden layers"),
                    src.as_ref().expect("non-input layers"),
                );
                if written[skip.0] {
                    self.backend.add_assign(dst, src, rows * local)?;
                } else {
                    self.backend.copy(dst, src, rows * local)?;
                }
                written[skip.0] = true;
            }
        }
        Ok(())
    }

    /// A hidden layer's local `∂L/∂a` to `∂L/∂z` before `DeltaNorm` ([`hidden_layer_delta`]:
    /// the sparseness penalty is per unit over the batch, so local; dropout uses the global
    /// mask).
    fn hidden_delta(&mut self, layer: &Layer, written: bool, seed: u64) -> Result<()> {
        let li = layer.id.0;
        let local = self.split(layer.id).len(self.rank());
        let mask = self.mask(layer, seed);
        hidden_layer_delta(
            &self.backend,
            layer,
            self.deltas[li].as_mut().expect("non-input layers"),
            self.units[li].as_ref().expect("hidden layers are dense"),
            self.pre_dropout[li].as_ref(),
            (self.rows, local),
            written,
            mask,
        )
    }

    /// An output layer's local `δ`, scaled per example by the data weights.
    fn output_delta(&mut self, layer: &Layer) -> Result<()> {
        let (rows, id) = (self.rows, layer.id);
        let local = self.split(id).len(self.rank());
        let spec = self.losses[id.0].expect("outputs have a loss");
        let a = self.units[id.0].as_ref().expect("outputs are dense");
        let delta = self.deltas[id.0].as_mut().expect("outputs have deltas");
        if layer.activation == Activation::SoftMax {
            let targets = match (&self.softmax_targets[id.0], &self.targets[id.0]) {
                (Some(t), _) => SoftmaxTargets::Sparse(t, self.ignore_zero[id.0]),
                (None, Some(t)) if self.loaded[id.0] => {
                    let mut host = vec![0.0; rows * local];
                    self.backend.download(t, &mut host)?;
                    SoftmaxTargets::Dense(host)
                }
                _ => {
                    return Err(Error::invalid_argument(
                        "batch",
                        format!("output layer `{}` has no targets loaded", layer.name),
                    ))
                }
            };
            softmax_delta(
                &self.backend,
                self.comm,
                delta,
                a,
                rows,
                local,
                targets,
                &spec,
            )?;
            if let Some(w) = &self.example_weights[id.0] {
                self.backend
                    .scale_rows(MatMut::new(delta, rows, local), w)?;
            }
            return Ok(());
        }
        let targets = match (&self.sparse_local[id.0], &self.targets[id.0]) {
            _ if std::mem::take(&mut self.fused_delta[id.0]) => Targets::Written,
            (Some(t), _) => Targets::Sparse(t),
            (None, Some(t)) if self.loaded[id.0] => Targets::Dense(t),
            _ => Targets::Missing,
        };
        output_layer_delta(
            &self.backend,
            layer,
            delta,
            a,
            targets,
            (rows, local),
            &spec,
            self.ignore_zero[id.0],
            self.example_weights[id.0].as_deref(),
        )
    }

    /// One optimizer update of every local weight block (then `WeightNorm`, across ranks for
    /// input-sharded weights), every local bias and the local batch-normalisation `γ`, `β`,
    /// as [`crate::network::Network::update`].
    pub fn update(&mut self, h: &Hyper) -> Result<()> {
        self.step += 1;
        let t = self.step;
        let opt = self.optimizer;
        let bias_h = Hyper {
            lambda: 0.0,
            lambda1: 0.0,
            ..*h
        };
        for (i, (p, weight)) in self.params.iter_mut().zip(self.graph.weights()).enumerate() {
            let [s0, s1] = &mut p.w_state;
            let len = p.rows * p.cols;
            self.backend
                .optimizer_step(&mut p.w, &p.dw, s0, s1, len, opt, h, t)?;
            if weight.norm > 0.0 {
                match self.plan.weights()[i].sharding {
                    Sharding::ByOutput => self
                        .backend
                        .clip_column_norms(MatMut::new(&mut p.w, p.rows, p.cols), weight.norm)?,
                    Sharding::ByInput => clip_split_column_norms(
                        &self.backend,
                        self.comm,
                        &mut p.w,
                        p.rows,
                        p.cols,
                        weight.norm,
                    )?,
                }
            }
        }
        for b in &mut self.biases {
            b.update(&self.backend, opt, &bias_h, t)?;
        }
        for bn in self.batch_norm.iter_mut().flatten() {
            bn.update(&self.backend, opt, &bias_h, t)?;
        }
        Ok(())
    }
}
