//! Saving a [`Network`] as a model file without assembling it anywhere: rank 0 writes each
//! weight matrix (and each optimizer slot of one) a band of rows at a time, gathered from
//! the ranks' blocks as it goes ([`crate::checkpoint::save_model_streamed`]), so that no rank
//! holds more than its own blocks and one band.

use std::path::Path;

use super::model::assemble_model;
use super::Network;
use crate::backend::traits::Backend;
use crate::checkpoint::{drain_model, save_model_streamed, Extras, TensorSource};
use crate::collective::Collective;
use crate::dense::Matrix;
use crate::error::Result;
use crate::graph::EdgeId;

/// Values per band of a streamed weight (16 MiB of `f32`): a band is as many whole rows as
/// fit, at least one.
const BAND_VALUES: usize = 1 << 22;

/// An extra tensor of a saved model that is an optimizer slot of a weight matrix: extra
/// tensor `extra` is left empty in the [`Extras`] given to [`Network::save`] and streamed
/// from slot `slot` of the weight of edge `edge` (`[in][out]`, like the weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotTensor {
    pub extra: usize,
    pub edge: EdgeId,
    pub slot: usize,
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Writes the network to `path` as a model file in DSSTNE's schema, with `extras` (the
    /// tensors `slot_tensors` name left empty: they are streamed from the optimizer state),
    /// atomically (temporary file + rename), as [`Network::to_model`] and
    /// [`crate::checkpoint::save_model`] would, but without the whole model in memory: rank 0
    /// writes, every weight matrix and slot gathered a band of rows at a time. With
    /// `refuse_non_finite`, a weight matrix or bias holding NaN or infinite values stops the
    /// save, nothing written ([`crate::Error::NonFiniteWeight`]).
    ///
    /// Collective: every rank calls it with the same `slot_tensors` and an `extras` of the
    /// same layout (its tensors' values matter on rank 0 only). Returns this rank's outcome
    /// (rank 0's is the write's): make it common with [`Network::agree`].
    pub fn save(
        &self,
        path: &Path,
        extras: Extras,
        slot_tensors: &[SlotTensor],
        refuse_non_finite: bool,
    ) -> Result<()> {
        let skeleton = self
            .graph
            .edges()
            .iter()
            .map(|edge| {
                let bias = self.gather_units(edge.target, &self.biases[edge.id.0].b)?;
                Ok((Matrix::zeros(0, 0), bias))
            })
            .collect::<Result<Vec<_>>>()?;
        let model = assemble_model(&self.graph, skeleton, self.download_batch_norm()?, extras)?;
        let mut source = Gathered {
            net: self,
            slots: slot_tensors,
        };
        if self.is_root() {
            save_model_streamed(path, &model, &mut source, refuse_non_finite)
        } else {
            drain_model(&model, &mut source)
        }
    }

    /// Hands the values of weight `i`'s buffer `buf` (its value or an optimizer slot), whole
    /// `[in][out]` row-major, to `put` on rank 0, a band of rows at a time, each band
    /// all-gathered from the ranks' blocks (collective). After an error of `put` the bands are
    /// still gathered (so that the ranks stay in step) but not handed over; the error is
    /// returned at the end.
    fn stream_weight(
        &self,
        i: usize,
        buf: &B::Vector,
        put: &mut dyn FnMut(&[f32]) -> Result<()>,
    ) -> Result<()> {
        let wp = &self.plan.weights()[i];
        let size = wp.parts();
        let rank = if size > 1 { self.comm.rank() } else { 0 };
        let (rows, cols) = wp.local_shape(rank);
        let mut local = vec![0.0; rows * cols];
        self.backend.download(buf, &mut local)?;
        if size == 1 {
            return put(&local);
        }
        let (n_in, n_out) = (wp.input_units, wp.output_units);
        let band = (BAND_VALUES / n_out.max(1)).max(1);
        // Rank q's part of the band of rows `r0..r1`: its block's rows there, its columns.
        let part = |q: usize, r0: usize, r1: usize| {
            let (rows, cols) = wp.local_block(q);
            let lo = rows.start.max(r0);
            (lo..rows.end.min(r1).max(lo), cols)
        };
        let my_first_row = wp.local_block(rank).0.start;
        let (mut received, mut whole) = (Vec::new(), Vec::new());
        let mut failed = None;
        for r0 in (0..n_in).step_by(band) {
            let r1 = (r0 + band).min(n_in);
            let counts: Vec<usize> = (0..size)
                .map(|q| {
                    let (r, c) = part(q, r0, r1);
                    r.len() * c.len()
                })
                .collect();
            let (mine, my_cols) = part(rank, r0, r1);
            let start = (mine.start - my_first_row) * my_cols.len();
            let send = if counts[rank] == 0 {
                &[][..]
            } else {
                &local[start..start + counts[rank]]
            };
            received.resize(counts.iter().sum(), 0.0);
            self.comm.all_gather(send, &counts, &mut received)?;
            if rank != 0 || failed.is_some() {
                continue;
            }
            whole.resize((r1 - r0) * n_out, 0.0);
            let mut at = 0;
            for q in 0..size {
                let (r, c) = part(q, r0, r1);
                for row in r {
                    let to = (row - r0) * n_out + c.start;
                    whole[to..to + c.len()].copy_from_slice(&received[at..at + c.len()]);
                    at += c.len();
                }
            }
            if let Err(e) = put(&whole) {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// The weight matrices and optimizer slots of a network, gathered for a streamed save.
struct Gathered<'n, B: Backend, C: Collective> {
    net: &'n Network<B, C>,
    slots: &'n [SlotTensor],
}

impl<B: Backend, C: Collective> TensorSource for Gathered<'_, B, C> {
    fn weight(&mut self, i: usize, put: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let w = self.net.graph.edges()[i].weight.0;
        self.net.stream_weight(w, &self.net.params[w].w, put)
    }

    fn extra(&mut self, k: usize, put: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        let slot = self
            .slots
            .iter()
            .find(|s| s.extra == k)
            .expect("the writer asks only for the tensors extra_len gives a length");
        let w = self.net.graph.edge(slot.edge).weight.0;
        let state = &self.net.params[w].w_state[slot.slot];
        if self.net.shards_update(w) {
            // Current only on each owner's elements: gathered whole on every rank first.
            return put(&self.net.gather_owned(w, state)?);
        }
        self.net.stream_weight(w, state, put)
    }

    fn extra_len(&self, k: usize) -> usize {
        self.slots.iter().find(|s| s.extra == k).map_or(0, |s| {
            let wp = &self.net.plan.weights()[self.net.graph.edge(s.edge).weight.0];
            wp.input_units * wp.output_units
        })
    }
}
