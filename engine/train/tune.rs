//! Timing a few training steps of a network, to choose between ways of splitting the work by
//! measurement (`trainer --parallel tune`).

use std::time::Instant;

use super::DataBinding;
use crate::backend::traits::Backend;
use crate::collective::{Collective, ReduceOp};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::ops::optimizer::Hyper;
use crate::parallel::data::rank_examples;
use crate::parallel::Parallelism;

/// Seconds per training step (forward, loss, backward, update with `hyper`) of `network` on
/// the examples of `data` in order, minibatches of `batch` (under data parallelism each rank
/// its share of each), after one untimed step: the mean over `steps` steps of the slowest
/// rank's time (collective: every rank must call it). The network's weights change: build a
/// fresh one to train. Errors: no examples, `batch` or `steps` 0.
pub fn seconds_per_step<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    data: &DataBinding,
    batch: usize,
    steps: usize,
    hyper: &Hyper,
    seed: u64,
) -> Result<f64> {
    let n = data.examples();
    if n == 0 || batch == 0 || steps == 0 {
        return Err(Error::invalid_argument(
            "tune",
            format!("{steps} steps of minibatches of {batch} over {n} examples"),
        ));
    }
    let (rank, ranks) = match network.parallelism() {
        Parallelism::Data => (network.comm().rank(), network.comm().size()),
        _ => (0, 1),
    };
    let graph = network.graph().clone();
    let mut seconds = 0.0f64;
    for step in 0..=steps {
        // Minibatch `step`, wrapping around small data sets.
        let examples: Vec<u32> = (0..batch.min(n))
            .map(|i| ((step * batch + i) % n) as u32)
            .collect();
        let minibatch = data.batch(&graph, rank_examples(&examples, rank, ranks), None)?;
        let t = Instant::now();
        network.load_batch(minibatch)?;
        network.train_step(hyper, seed)?;
        if step > 0 {
            seconds += t.elapsed().as_secs_f64();
        }
    }
    let mut slowest = [seconds];
    network.comm().all_reduce(&mut slowest, ReduceOp::Max)?;
    Ok(slowest[0] / steps as f64)
}
