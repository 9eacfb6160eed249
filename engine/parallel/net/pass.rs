//! Forward pass, loss and finite check of a [`ShardedNetwork`] (the distributed math is in the
//! [module documentation](super)).

use super::host::{gather_columns, reduce_columns, softmax_rows};
use super::ShardedNetwork;
use crate::backend::traits::{Backend, DropoutMask, Mat, MatMut};
use crate::collective::{Collective, ReduceOp};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::Layer;
use crate::network::{act_params, dropout_stream, rows_finite, AlphaDropout};
use crate::ops::fixed::FixedSum;
use crate::ops::Activation;
use crate::ops::Trans;
use crate::parallel::Sharding;

/// `(&mut v[i], &v[j])` or `(&v[j], ...)` helpers for two distinct entries.
pub(super) fn two<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i != j, "two distinct layers");
    if i < j {
        let (head, tail) = v.split_at_mut(j);
        (&mut head[i], &mut tail[0])
    } else {
        let (head, tail) = v.split_at_mut(i);
        (&mut tail[0], &mut head[j])
    }
}

pub(super) fn not_loaded(layer: &Layer) -> Error {
    Error::invalid_argument(
        "batch",
        format!("layer `{}` has no rows loaded", layer.name),
    )
}

impl<B: Backend, C: Collective> ShardedNetwork<'_, B, C> {
    /// The dropout mask of this rank's units of `layer` (global unit positions).
    pub(super) fn mask(&self, layer: &Layer, seed: u64) -> DropoutMask {
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
        self.fused_loss.iter_mut().for_each(|l| *l = None);
        self.fused_delta.iter_mut().for_each(|d| *d = false);
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
                                &self.timers,
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
                            &self.timers,
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
                bn.forward(&self.backend, MatMut::new(dst, rows, local), training)?;
            }
            let fused_targets = (training && layer.kind == LayerKind::Output)
                .then(|| self.sparse_local[li].as_ref())
                .flatten();
            if layer.activation == Activation::SoftMax {
                softmax_rows(&self.backend, self.comm, dst, rows, local)?;
            } else if let (Some(t), Some(spec)) = (fused_targets, self.losses[li].as_ref()) {
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
                (Some(t), _) => match self.fused_loss[layer.id.0] {
                    Some(loss) => loss,
                    None => {
                        self.backend
                            .sparse_output_loss(a, t, spec, self.ignore_zero[layer.id.0])?
                    }
                },
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
        for (flag, (id, _)) in flags.iter_mut().zip(&outputs) {
            let local = self.split(*id).len(rank);
            let a = self.units[id.0].as_ref().expect("outputs are dense");
            let (ones, sums) = &mut self.finite_check;
            *flag = u64::from(!rows_finite(
                &self.backend,
                Mat::new(a, rows, local),
                ones,
                sums,
            )?);
        }
        self.comm.all_reduce(&mut flags, ReduceOp::Max)?;
        Ok(flags
            .iter()
            .zip(outputs)
            .find(|(&f, _)| f != 0)
            .map(|(_, (_, name))| name))
    }
}
