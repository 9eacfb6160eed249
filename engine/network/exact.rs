//! Exact sums: a training step whose result is the same bits on any number of ranks.
//!
//! With [`Network::set_exact_chunk`]`(Some(C))` a minibatch of `B` examples is processed in
//! fixed chunks of `C` consecutive examples (the last one shorter), whatever the rank count:
//! chunk `k` holds rows `k·C .. min((k+1)·C, B)` of the minibatch. Each chunk runs its own
//! forward and backward pass ([`Network::load_chunk`]) with exactly the shapes and inputs it
//! has on one rank (dropout draws by the row in the whole minibatch, denoising by the
//! example), so its gradients are the same `f32` bits wherever it runs. Each chunk's
//! gradient of every weight and bias, `−Σ_{b∈chunk} …` (the sum, not yet the mean), enters a
//! 64-bit fixed-point accumulator as `to_fixed(g)` ([`crate::ops::fixed`]); integer addition
//! is associative, so the accumulators hold the same integers whichever rank added which
//! chunk, and after [`Network::finish_exact_step`] (an all-reduce of the integers) every
//! rank's gradient is `(1/B)·Σ_chunks g_chunk · 2⁻³⁰`, rounded once: the one-rank bits.
//! The update then runs whole on every rank (no sharded update), the same bits everywhere.
//!
//! Under data parallelism rank `r` of `P` takes chunks `r, r + P, r + 2P, …`; every rank runs
//! the same number of chunk passes per step (`⌈chunks / P⌉`, a rank without a chunk in the
//! last one passes no rows), so the loss and finiteness checks inside the passes stay
//! collective. The loss is summed in fixed point over the passes, so it is exact too.
//!
//! The cost: each chunk pass is a full pass over `C` rows (smaller products than one pass
//! over the rank's share), every chunk adds one conversion of every gradient to fixed point,
//! the gradients cross the ranks as `i64` (8 bytes per parameter each way, against the
//! sharded update's 2·(P−1)/P·4), and every rank runs the optimizer over every parameter.
//!
//! Steps coupled across the examples of a minibatch (batch normalisation, the sparseness
//! penalty) would see a chunk instead of the minibatch: exact sums refuse them, as they
//! refuse model parallelism and hybrids (whose weights are split, not summed).

use super::{EdgeBias, Network, Param};
use crate::backend::cpu::{multiversion, Isa};
use crate::backend::traits::Backend;
use crate::collective::{Collective, ReduceOp};
use crate::error::{Error, Result};
use crate::ops::fixed::{scaled_from_fixed, to_fixed};
use crate::parallel::{Parallelism, RowShare};

/// The fixed-point gradient accumulators of a step under exact sums.
pub(crate) struct ExactSums {
    /// Examples per chunk.
    pub chunk: usize,
    /// Per weight, then per edge bias: `Σ to_fixed(g_chunk)` over the chunks added so far.
    sums: Vec<Vec<i64>>,
    /// Whether a chunk was added since the last step ended (otherwise `sums` is stale, and
    /// the next chunk overwrites it instead of adding).
    started: bool,
    /// Host copies of gradients for backends whose buffers are not host memory.
    host: Vec<f32>,
}

/// The chunks of a minibatch of `rows` examples, `chunk` examples each (the last one
/// shorter), that rank `rank` of `ranks` trains on, in its order of passes: chunks `rank`,
/// `rank + ranks`, …, each as `first..end` rows of the minibatch. `None` in the last passes
/// of a rank with fewer chunks than others: it runs the pass without rows.
/// Every rank gets the same number of entries, `⌈⌈rows / chunk⌉ / ranks⌉`.
pub fn chunk_passes(
    rows: usize,
    chunk: usize,
    rank: usize,
    ranks: usize,
) -> Vec<Option<std::ops::Range<usize>>> {
    let chunk = chunk.max(1);
    let ranks = ranks.max(1);
    let chunks = rows.div_ceil(chunk);
    let passes = chunks.div_ceil(ranks);
    (0..passes)
        .map(|p| {
            let k = p * ranks + rank;
            (k < chunks).then(|| k * chunk..((k + 1) * chunk).min(rows))
        })
        .collect()
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Turns exact sums on with chunks of `chunk` examples (`Some`) or off (`None`, the
    /// default). Under exact sums a minibatch of `B` examples runs as the chunks of
    /// [`chunk_passes`], each loaded by [`Network::load_chunk`] and run forward and backward
    /// on its own; each chunk's gradient sums enter 64-bit fixed point, and
    /// [`Network::finish_exact_step`] adds every rank's exactly and sets the gradients to
    /// their mean over `B`: the same bits on any number of ranks. Set it before training.
    /// Errors: a chunk of 0, a plan that splits weights (model parallelism or a hybrid on
    /// several ranks), batch normalisation or a sparseness penalty (steps that couple the
    /// examples of a minibatch).
    pub fn set_exact_chunk(&mut self, chunk: Option<usize>) -> Result<()> {
        let Some(chunk) = chunk else {
            self.exact = None;
            return Ok(());
        };
        if chunk == 0 {
            return Err(Error::invalid_argument(
                "exact_chunk",
                "0 examples; a chunk holds at least 1",
            ));
        }
        if self.comm.size() > 1 && self.parallelism != Parallelism::Data {
            return Err(Error::Unsupported(format!(
                "exact sums need data parallelism on several ranks (this run uses {:?}): \
                 they sum gradients of whole weights",
                self.parallelism
            )));
        }
        if let Some(layer) = self
            .graph
            .layers()
            .iter()
            .find(|l| l.batch_normalization || l.sparseness_penalty.is_some())
        {
            return Err(Error::Unsupported(format!(
                "exact sums process a minibatch in chunks, but layer `{}` has batch \
                 normalisation or a sparseness penalty, which take the whole minibatch",
                layer.name
            )));
        }
        let sums = self
            .params
            .iter()
            .map(|p| vec![0i64; p.rows * p.cols])
            .chain(self.biases.iter().map(|b| vec![0i64; b.cols]))
            .collect();
        self.exact = Some(ExactSums {
            chunk,
            sums,
            started: false,
            host: Vec::new(),
        });
        Ok(())
    }

    /// The examples per chunk under exact sums ([`Network::set_exact_chunk`]).
    pub fn exact_chunk(&self) -> Option<usize> {
        self.exact.as_ref().map(|e| e.chunk)
    }

    /// Under exact sums: loads rows `first..first + batch.rows` of a minibatch of `total`
    /// examples (a chunk of [`chunk_passes`], or no rows), on this rank alone (no
    /// collective). The backward pass then adds this chunk's gradients to the step's
    /// fixed-point sums instead of summing them across ranks.
    pub fn load_chunk(
        &mut self,
        batch: super::MiniBatch,
        first: usize,
        total: usize,
    ) -> Result<()> {
        let Some(exact) = &self.exact else {
            return Err(Error::invalid_argument(
                "exact_chunk",
                "load_chunk needs exact sums (Network::set_exact_chunk)",
            ));
        };
        if batch.rows > exact.chunk || first + batch.rows > total {
            return Err(Error::invalid_argument(
                "batch",
                format!(
                    "rows {first}..{} of a minibatch of {total} are not a chunk of {}",
                    first + batch.rows,
                    exact.chunk
                ),
            ));
        }
        let share = RowShare {
            first,
            len: batch.rows,
            total,
        };
        self.load_with_share(batch, share, Vec::new())
    }

    /// After a backward pass under exact sums: `sums += to_fixed(g)` for every weight and
    /// bias gradient of the chunk (`sums = to_fixed(g)` for the step's first chunk).
    pub(super) fn add_exact_chunk(&mut self) -> Result<()> {
        let exact = self.exact.as_mut().expect("called under exact sums");
        let (isa, first) = (Isa::detect(), !exact.started);
        let grads = gradients(&mut self.params, &mut self.biases);
        for ((buf, n), sums) in grads.zip(&mut exact.sums) {
            let values = match self.backend.host_values(buf) {
                Some(values) => &values[..n],
                None => {
                    exact.host.resize(n, 0.0);
                    self.backend.download(buf, &mut exact.host[..n])?;
                    &exact.host[..n]
                }
            };
            add_fixed_mv(isa, sums, values, first);
        }
        exact.started = true;
        Ok(())
    }

    /// Ends a step under exact sums: the fixed-point sums of every rank added exactly (an
    /// `i64` all-reduce), every gradient set to `(1/total)·sum·2⁻³⁰` rounded once (`total`
    /// the minibatch's examples), and the sums cleared for the next step. Collective.
    pub fn finish_exact_step(&mut self, total: usize) -> Result<()> {
        let mut exact = self.exact.take().ok_or_else(|| {
            Error::invalid_argument("exact_chunk", "no step under exact sums to finish")
        })?;
        let result = self.apply_exact_sums(&mut exact, total);
        exact.started = false;
        self.exact = Some(exact);
        result
    }

    /// Errors when chunks were added to the step's sums and not yet applied
    /// ([`Network::finish_exact_step`]): the gradient buffers then hold the last chunk's raw
    /// sums, which no update may read.
    pub(super) fn require_exact_step_finished(&self) -> Result<()> {
        match &self.exact {
            Some(exact) if exact.started => Err(Error::invalid_argument(
                "exact_chunk",
                "under exact sums the step's chunks are summed but not applied: call \
                 Network::finish_exact_step before the update",
            )),
            _ => Ok(()),
        }
    }

    /// Clears the fixed-point sums of a step that is not applied (the divergence brake
    /// skipped its update, or an output was not finite).
    pub fn discard_exact_step(&mut self) {
        if let Some(exact) = self.exact.as_mut() {
            exact.started = false;
        }
    }

    fn apply_exact_sums(&mut self, exact: &mut ExactSums, total: usize) -> Result<()> {
        let (isa, scale) = (Isa::detect(), 1.0 / total.max(1) as f32);
        if !exact.started {
            // A rank without a chunk in this step (more ranks than chunks): its share is 0.
            exact.sums.iter_mut().for_each(|s| s.fill(0));
        }
        let grads = gradients(&mut self.params, &mut self.biases);
        for ((buf, n), sums) in grads.zip(&mut exact.sums) {
            if self.comm.size() > 1 {
                self.comm.all_reduce(sums, ReduceOp::Sum)?;
            }
            if let Some(values) = self.backend.host_values(buf) {
                from_fixed_mv(isa, &mut values[..n], sums, scale);
            } else {
                exact.host.resize(n, 0.0);
                from_fixed_mv(isa, &mut exact.host[..n], sums, scale);
                self.backend.upload(buf, &exact.host[..n])?;
            }
        }
        Ok(())
    }
}

/// Every weight's gradient buffer, then every edge bias's, with its length: the order of
/// [`ExactSums`]' sums.
fn gradients<'a, V>(
    params: &'a mut [Param<V>],
    biases: &'a mut [EdgeBias<V>],
) -> impl Iterator<Item = (&'a mut V, usize)> {
    params
        .iter_mut()
        .map(|p| (&mut p.dw, p.rows * p.cols))
        .chain(biases.iter_mut().map(|b| (&mut b.db, b.cols)))
}

/// `sums[i] += to_fixed(values[i])`, or `sums[i] = to_fixed(values[i])` when `first`
/// (wrapping, like every fixed-point sum).
#[inline(always)]
fn add_fixed(sums: &mut [i64], values: &[f32], first: bool) {
    if first {
        for (s, &g) in sums.iter_mut().zip(values) {
            *s = to_fixed(g);
        }
    } else {
        for (s, &g) in sums.iter_mut().zip(values) {
            *s = s.wrapping_add(to_fixed(g));
        }
    }
}
multiversion!(fn add_fixed_mv = add_fixed(sums: &mut [i64], values: &[f32], first: bool));

/// `values[i] = scale·sums[i]·2⁻³⁰`, rounded once.
#[inline(always)]
fn from_fixed(values: &mut [f32], sums: &[i64], scale: f32) {
    for (v, &s) in values.iter_mut().zip(sums) {
        *v = scaled_from_fixed(scale, s);
    }
}
multiversion!(fn from_fixed_mv = from_fixed(values: &mut [f32], sums: &[i64], scale: f32));

#[cfg(test)]
mod tests {
    use super::chunk_passes;

    #[test]
    fn every_rank_runs_as_many_passes_and_the_chunks_tile_the_minibatch() {
        for rows in [1, 7, 64, 500, 501] {
            for chunk in [1, 50, 64, 1000] {
                for ranks in 1..=4 {
                    let passes: Vec<_> = (0..ranks)
                        .map(|r| chunk_passes(rows, chunk, r, ranks))
                        .collect();
                    assert!(passes.iter().all(|p| p.len() == passes[0].len()));
                    let mut seen = vec![0u8; rows];
                    for range in passes.iter().flatten().flatten() {
                        assert!(range.len() <= chunk && range.start % chunk == 0);
                        range.clone().for_each(|i| seen[i] += 1);
                    }
                    assert!(seen.iter().all(|&s| s == 1), "{rows} {chunk} {ranks}");
                }
            }
        }
    }
}
