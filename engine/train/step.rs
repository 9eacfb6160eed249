//! One training step of the epoch loop, on the whole of this rank's share of a minibatch or,
//! under exact sums ([`Network::set_exact_chunk`]), chunk by chunk.

use std::time::{Duration, Instant};

use super::DataBinding;
use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::error::Result;
use crate::graph::Graph;
use crate::network::{chunk_passes, MiniBatch, Network};
use crate::ops::fixed::FixedSum;
use crate::ops::optimizer::Hyper;
use crate::parallel::data::rank_examples;

/// The host data of one step, built ahead of it ([`super::prefetch`]).
pub(crate) enum Work {
    /// This rank's rows of the minibatch (all of it on one rank).
    Whole(MiniBatch),
    /// Under exact sums: this rank's chunk passes, each a chunk's rows and its first row in
    /// the minibatch (or no rows), and the minibatch's size.
    Chunks(Vec<(MiniBatch, usize)>, usize),
}

/// Builds step `examples`' [`Work`] for rank `rank` of `ranks`: its [`rank_examples`] share,
/// or under exact sums (`exact_chunk`) its [`chunk_passes`].
pub(crate) fn build(
    data: &DataBinding,
    graph: &Graph,
    examples: &[u32],
    (rank, ranks): (usize, usize),
    exact_chunk: Option<usize>,
    denoise: Option<(f32, u64, u32)>,
) -> Result<Work> {
    let Some(chunk) = exact_chunk else {
        let mine = rank_examples(examples, rank, ranks);
        return data.batch(graph, mine, denoise).map(Work::Whole);
    };
    let passes = chunk_passes(examples.len(), chunk, rank, ranks)
        .into_iter()
        .map(|rows| {
            let rows = rows.unwrap_or(examples.len()..examples.len());
            let first = rows.start;
            Ok((data.batch(graph, &examples[rows], denoise)?, first))
        })
        .collect::<Result<_>>()?;
    Ok(Work::Chunks(passes, examples.len()))
}

/// What the forward part of a step found.
pub(crate) struct Forward {
    /// The minibatch's loss (all ranks').
    pub loss: FixedSum,
    /// The minibatch's examples (all ranks').
    pub rows: usize,
    /// An output layer with NaN or infinite activations: the step must not be applied.
    pub non_finite: Option<String>,
    /// Whether the gradients are computed already (exact sums).
    exact: bool,
}

/// Loads `work` and runs the forward pass and loss (under exact sums, every chunk's forward
/// and backward pass, adding up the gradients), stopping at non-finite outputs. The uploads
/// count as `load` time.
pub(crate) fn forward<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    work: Work,
    seed: u64,
    load: &mut Duration,
) -> Result<Forward> {
    match work {
        Work::Whole(batch) => {
            let t0 = Instant::now();
            network.load_batch(batch)?;
            *load += t0.elapsed();
            network.forward(true, seed)?;
            Ok(Forward {
                loss: network.loss()?,
                rows: network.batch_rows(),
                non_finite: network.non_finite_output()?,
                exact: false,
            })
        }
        Work::Chunks(passes, total) => {
            let mut loss = FixedSum::default();
            for (batch, first) in passes {
                let t0 = Instant::now();
                network.load_chunk(batch, first, total)?;
                *load += t0.elapsed();
                network.forward(true, seed)?;
                loss = loss + network.loss()?;
                if let Some(layer) = network.non_finite_output()? {
                    network.discard_exact_step();
                    return Ok(Forward {
                        loss,
                        rows: total,
                        non_finite: Some(layer),
                        exact: true,
                    });
                }
                network.backward(seed)?;
            }
            Ok(Forward {
                loss,
                rows: total,
                non_finite: None,
                exact: true,
            })
        }
    }
}

/// After [`forward`]: the backward pass (unless done) and the update with `h` when `update`;
/// under exact sums the step's gradient sums are applied or discarded.
pub(crate) fn finish<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    pass: &Forward,
    h: &Hyper,
    seed: u64,
    update: bool,
) -> Result<()> {
    match (pass.exact, update) {
        (false, true) => network.backward_update(h, seed),
        (false, false) => Ok(()),
        (true, true) => {
            network.finish_exact_step(pass.rows)?;
            network.update(h)
        }
        (true, false) => {
            network.discard_exact_step();
            Ok(())
        }
    }
}
