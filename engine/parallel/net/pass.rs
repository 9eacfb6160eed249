//! Forward, loss, backward and update of a [`ShardedNetwork`] (the distributed math is in the
//! [module documentation](super)).

use super::host::{
    clip_split_column_norms, clip_split_row_norms, gather_columns, reduce_columns, softmax_delta,
    softmax_rows, SoftmaxTargets,
};
use super::ShardedNetwork;
use crate::backend::cpu::FixedSum;
use crate::backend::traits::{Backend, BatchNormState, DropoutMask, Mat, MatMut, Trans};
use crate::collective::{Collective, ReduceOp};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::Layer;
use crate::network::{act_params, dropout_stream, AlphaDropout};
use crate::ops::optimizer::Hyper;
use crate::ops::Activation;
use crate::parallel::Sharding;

/// `(&mut v[i], &v[j])` or `(&v[j], ...)` helpers for two distinct entries.
fn two<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i != j, "two distinct layers");
    if i < j {
        let (head, tail) = v.split_at_mut(j);
        (&mut head[i], &mut tail[0])
    } else {
        let (head, tail) = v.split_at_mut(i);
        (&mut tail[0], &mut head[j])
    }
}

fn not_loaded(layer: &Layer) -> Error {
    Error::invalid_argument(
        "batch",
        format!("layer `{}` has no rows loaded", layer.name),
    )
}

impl<B: Backend, C: Collective> ShardedNetwork<'_, B, C> {
    fn mask(&self, layer: &Layer, seed: u64) -> DropoutMask {
        DropoutMask {
            seed,
            stream: dropout_stream(self.step, layer.id),
            col_offset: self.local_units(layer.id).start as u64,
            row_stride: layer.units as u64,
        }
    }

    /// Forward pass over the loaded minibatch (with dropout when `training`), as
    /// [`crate::network::Network::forward`].
    pub fn forward(&mut self, training: bool, seed: u64) -> Result<()> {
        let rows = self.rows;
        if rows == 0 {
            return Err(Error::invalid_argument("batch", "no minibatch is loaded"));
        }
        let rank = self.rank();
        for li in 0..self.graph.layers().len() {
            let layer = self.graph.layers()[li].clone();
            if layer.kind == LayerKind::Input {
                if !self.loaded[li] {
                    return Err(not_loaded(&layer));
                }
                continue;
            }
            let split = self.split(layer.id);
            let local = split.len(rank);
            for (k, &eid) in layer.incoming.iter().enumerate() {
                let edge = self.graph.edge(eid).clone();
                let src = edge.source.0;
                let source = self.graph.layer(edge.source).clone();
                let src_split = self.split(edge.source);
                {
                    let dst = self.units[li]
                        .as_mut()
                        .expect("non-input layers have units");
                    let bias = &self.biases[eid.0].b;
                    if k == 0 {
                        self.backend
                            .set_rows_to_bias(MatMut::new(dst, rows, local), bias)?;
                    } else {
                        self.backend.add_bias(MatMut::new(dst, rows, local), bias)?;
                    }
                }
                let p = &self.params[edge.weight.0];
                let w = Mat::new(&p.w, p.rows, p.cols);
                // A transposed shared weight: the block is the owner's, used as `Wᵀ`.
                let tw = if edge.transposed {
                    Trans::Yes
                } else {
                    Trans::No
                };
                match self.plan.edges()[eid.0].sharding {
                    Sharding::ByOutput => {
                        if let Some(x) = &self.sparse_full[src] {
                            let dst = self.units[li].as_mut().expect("non-input layers");
                            self.backend
                                .spmm(MatMut::new(dst, rows, local), x, w, 1.0)?;
                            continue;
                        }
                        let gathered = self.gathered[eid.0]
                            .as_mut()
                            .ok_or_else(|| not_loaded(&source))?;
                        if source.kind != LayerKind::Input {
                            let a = self.units[src].as_ref().expect("hidden layers are dense");
                            gather_columns(
                                &self.backend,
                                self.comm,
                                a,
                                rows,
                                &src_split,
                                gathered,
                            )?;
                        } else if !self.loaded[src] {
                            return Err(not_loaded(&source));
                        }
                        let dst = self.units[li].as_mut().expect("non-input layers");
                        self.backend.gemm(
                            MatMut::new(dst, rows, local),
                            1.0,
                            Mat::new(gathered, rows, source.units),
                            Trans::No,
                            w,
                            tw,
                            1.0,
                        )?;
                    }
                    Sharding::ByInput => {
                        let whole = MatMut::new(&mut self.scratch, rows, layer.units);
                        if let Some(x) = &self.sparse_local[src] {
                            self.backend.spmm(whole, x, w, 0.0)?;
                        } else {
                            let a = self.units[src]
                                .as_ref()
                                .filter(|_| self.loaded[src] || source.kind != LayerKind::Input)
                                .ok_or_else(|| not_loaded(&source))?;
                            let a = Mat::new(a, rows, src_split.len(rank));
                            self.backend.gemm(whole, 1.0, a, Trans::No, w, tw, 0.0)?;
                        }
                        reduce_columns(
                            &self.backend,
                            self.comm,
                            &self.scratch,
                            rows,
                            &split,
                            &mut self.scratch_local,
                        )?;
                        let dst = self.units[li].as_mut().expect("non-input layers");
                        self.backend
                            .add_assign(dst, &self.scratch_local, rows * local)?;
                    }
                }
            }
            for &skip in &layer.skips {
                let (dst, src) = two(&mut self.units, li, skip.0);
                let (dst, src) = (
                    dst.as_mut().expect("non-input layers"),
                    src.as_ref().expect("skip sources are hidden layers"),
                );
                self.backend.add_assign(dst, src, rows * local)?;
            }
            let dst = self.units[li].as_mut().expect("non-input layers");
            if let Some(bn) = self.batch_norm[li].as_mut() {
                let factor = if training {
                    let f = 1.0 / (1.0 + bn.calls as f64);
                    bn.calls += 1;
                    Some(f)
                } else {
                    None
                };
                self.backend.batch_norm_forward(
                    MatMut::new(dst, rows, local),
                    &mut bn.xhat,
                    BatchNormState {
                        scale: &bn.scale,
                        bias: &bn.bias,
                        running_mean: &mut bn.running_mean,
                        running_var: &mut bn.running_var,
                        inv_std: &mut bn.inv_std,
                    },
                    factor,
                )?;
            }
            if layer.activation == Activation::SoftMax {
                softmax_rows(&self.backend, self.comm, dst, rows, local)?;
            } else {
                self.backend.activation_forward(
                    MatMut::new(dst, rows, local),
                    layer.activation,
                    &act_params(&layer),
                )?;
            }
            if training && layer.kind == LayerKind::Hidden && layer.p_dropout > 0.0 {
                let mask = self.mask(&layer, seed);
                let dst = self.units[li].as_mut().expect("non-input layers");
                if let Some(pre) = self.pre_dropout[li].as_mut() {
                    self.backend.copy(pre, dst, rows * local)?;
                }
                let alpha = AlphaDropout::of(&layer);
                let dropped = alpha.map_or(
                    crate::network::Network::<B>::dropped_value(layer.activation),
                    |ad| ad.dropped,
                );
                self.backend.dropout_forward_at(
                    MatMut::new(dst, rows, local),
                    layer.p_dropout,
                    dropped,
                    mask,
                )?;
                if let (Some(ad), Some(bias)) = (alpha, self.alpha_bias[li].as_ref()) {
                    self.backend
                        .scale_rows(MatMut::new(dst, rows, local), &vec![ad.scale; rows])?;
                    self.backend.add_bias(MatMut::new(dst, rows, local), bias)?;
                }
            }
        }
        Ok(())
    }

    /// This rank's part of the loss: every output layer over its local columns.
    fn local_loss(&self) -> Result<FixedSum> {
        let rank = self.rank();
        let mut total = FixedSum::default();
        for layer in self.graph.outputs() {
            let spec = self.losses[layer.id.0]
                .as_ref()
                .expect("outputs have a loss");
            let local = self.split(layer.id).len(rank);
            let a = self.units[layer.id.0].as_ref().expect("outputs are dense");
            let a = Mat::new(a, self.rows, local);
            let loss = match (&self.sparse_local[layer.id.0], &self.targets[layer.id.0]) {
                (Some(t), _) => {
                    self.backend
                        .sparse_output_loss(a, t, spec, self.ignore_zero[layer.id.0])?
                }
                (None, Some(t)) if self.loaded[layer.id.0] => {
                    self.backend
                        .dense_output_loss(a, Mat::new(t, self.rows, local), spec)?
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

    /// The loss of the loaded minibatch after [`ShardedNetwork::forward`], summed over every
    /// rank's columns (exact: an `i128` all-reduce); the same on every rank.
    pub fn loss(&self) -> Result<FixedSum> {
        let mut sum = [self.local_loss()?.0];
        self.comm.all_reduce(&mut sum, ReduceOp::Sum)?;
        Ok(FixedSum(sum[0]))
    }

    /// After [`ShardedNetwork::forward`]: the first output layer with a NaN or infinite
    /// activation on any rank (the same answer on every rank), as
    /// [`crate::network::Network::non_finite_output`].
    pub fn non_finite_output(&mut self) -> Result<Option<String>> {
        let rows = self.rows;
        if rows == 0 {
            return Err(Error::invalid_argument("batch", "no minibatch is loaded"));
        }
        let rank = self.rank();
        let outputs: Vec<_> = self
            .graph
            .outputs()
            .map(|l| (l.id, l.name.clone()))
            .collect();
        let mut flags = vec![0u64; outputs.len()];
        let mut sums = vec![0.0f32; rows];
        for (flag, (id, _)) in flags.iter_mut().zip(&outputs) {
            let local = self.split(*id).len(rank);
            let a = self.units[id.0].as_ref().expect("outputs are dense");
            let (ones, out) = &mut self.finite_check;
            self.backend.gemm(
                MatMut::new(out, rows, 1),
                1.0,
                Mat::new(a, rows, local),
                Trans::No,
                Mat::new(ones, local, 1),
                Trans::No,
                0.0,
            )?;
            self.backend.download(out, &mut sums)?;
            *flag = u64::from(!sums.iter().all(|s| s.is_finite()));
        }
        self.comm.all_reduce(&mut flags, ReduceOp::Max)?;
        Ok(flags
            .iter()
            .zip(outputs)
            .find(|(&f, _)| f != 0)
            .map(|(_, (_, name))| name))
    }

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
                self.backend.batch_norm_backward(
                    MatMut::new(delta, rows, local),
                    &bn.xhat,
                    &bn.scale,
                    &bn.inv_std,
                    &mut bn.dscale,
                    &mut bn.dbias,
                )?;
            }
            if let Some(full) = self.delta_full[li].as_mut() {
                let delta = self.deltas[li].as_ref().expect("non-input layers");
                gather_columns(&self.backend, self.comm, delta, rows, &split, full)?;
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

    /// A hidden layer's local `∂L/∂a` to `∂L/∂z` before `DeltaNorm`: sparseness penalty
    /// (per unit over the batch: local), dropout (the global mask), `f'`.
    fn hidden_delta(&mut self, layer: &Layer, written: bool, seed: u64) -> Result<()> {
        let (rows, li) = (self.rows, layer.id.0);
        let local = self.split(layer.id).len(self.rank());
        let mask = self.mask(layer, seed);
        let delta = self.deltas[li].as_mut().expect("non-input layers");
        if !written {
            self.backend.upload(delta, &vec![0.0; rows * local])?;
        }
        if let Some(penalty) = layer.sparseness_penalty {
            let a = self.units[li].as_ref().expect("hidden layers are dense");
            self.backend.sparseness_penalty(
                MatMut::new(delta, rows, local),
                Mat::new(a, rows, local),
                penalty.p,
                penalty.beta,
            )?;
        }
        if layer.p_dropout > 0.0 {
            self.backend.dropout_backward_at(
                MatMut::new(delta, rows, local),
                layer.p_dropout,
                mask,
            )?;
            if let Some(ad) = AlphaDropout::of(layer) {
                self.backend
                    .scale_rows(MatMut::new(delta, rows, local), &vec![ad.scale; rows])?;
            }
        }
        let a = match (&self.pre_dropout[li], layer.p_dropout > 0.0) {
            (Some(pre), true) => pre,
            _ => self.units[li].as_ref().expect("hidden layers are dense"),
        };
        self.backend.activation_backward(
            MatMut::new(delta, rows, local),
            Mat::new(a, rows, local),
            layer.activation,
            &act_params(layer),
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
        } else {
            match (&self.sparse_local[id.0], &self.targets[id.0]) {
                (Some(t), _) => self.backend.sparse_output_delta(
                    MatMut::new(delta, rows, local),
                    Mat::new(a, rows, local),
                    t,
                    &spec,
                    self.ignore_zero[id.0],
                )?,
                (None, Some(t)) if self.loaded[id.0] => self.backend.dense_output_delta(
                    MatMut::new(delta, rows, local),
                    Mat::new(a, rows, local),
                    Mat::new(t, rows, local),
                    &spec,
                )?,
                _ => {
                    return Err(Error::invalid_argument(
                        "batch",
                        format!("output layer `{}` has no targets loaded", layer.name),
                    ))
                }
            }
        }
        if let Some(w) = &self.example_weights[id.0] {
            self.backend
                .scale_rows(MatMut::new(delta, rows, local), w)?;
        }
        Ok(())
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
            let [s0, s1] = &mut b.state;
            self.backend
                .optimizer_step(&mut b.b, &b.db, s0, s1, b.cols, opt, &bias_h, t)?;
        }
        for bn in self.batch_norm.iter_mut().flatten() {
            let [s0, s1] = &mut bn.scale_state;
            self.backend.optimizer_step(
                &mut bn.scale,
                &bn.dscale,
                s0,
                s1,
                bn.units,
                opt,
                &bias_h,
                t,
            )?;
            let [s0, s1] = &mut bn.bias_state;
            self.backend.optimizer_step(
                &mut bn.bias,
                &bn.dbias,
                s0,
                s1,
                bn.units,
                opt,
                &bias_h,
                t,
            )?;
        }
        Ok(())
    }
}
