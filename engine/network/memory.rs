//! [`MemoryPlan`]: the bytes a rank's network buffers take, counted before they are
//! allocated, and the error when they do not fit the device.

use super::batchnorm::batch_norm_floats;
use super::build::{reduced_width, relaid_width};
use super::Route;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::ops::optimizer::state_len;
use crate::ops::Optimizer;
use crate::parallel::ShardPlan;

/// The bytes of the buffers [`Network::build_with`] allocates on one rank, computed before
/// allocating them (in `u128`: sizes that overflow are still measured), and the largest
/// single part, for the message when they do not fit.
pub(super) struct MemoryPlan {
    pub(super) total: u128,
    largest: (String, u128),
}

impl MemoryPlan {
    pub(super) fn new(
        graph: &Graph,
        plan: &ShardPlan,
        routes: &[Route],
        capacity: usize,
        optimizer: Optimizer,
        rank: usize,
        coupled: usize,
    ) -> Self {
        let mut memory = MemoryPlan {
            total: 0,
            largest: (String::new(), 0),
        };
        let cap = capacity as u128;
        let slots = 2 + state_len(optimizer) as u128;
        for (i, weight) in graph.weights().iter().enumerate() {
            let (rows, cols) = plan.weights()[i].local_shape(rank);
            let what = format!(
                "weight `{}` -> `{}` ({rows} x {cols}, with its gradient and optimizer state)",
                graph.layer(weight.input).name,
                graph.layer(weight.output).name
            );
            memory.add(what, rows as u128 * cols as u128 * slots);
        }
        for layer in graph.layers() {
            let local = plan.local_len(layer.id, rank) as u128;
            let is_input = layer.kind == LayerKind::Input;
            let buffers = u128::from(!(is_input && layer.sparse))
                + u128::from(!is_input)
                + u128::from(layer.kind == LayerKind::Hidden && layer.p_dropout > 0.0)
                + 2 * u128::from(layer.variational.is_some());
            let reduces_in = layer
                .incoming
                .iter()
                .any(|&e| routes[e.0] == Route::ReducePartials);
            let mut values = cap * local * buffers
                + cap * layer.units as u128 * u128::from(reduces_in)
                + graph
                    .edges()
                    .iter()
                    .filter(|e| e.target == layer.id)
                    .count() as u128
                    * local
                    * slots;
            if layer.batch_normalization {
                values += batch_norm_floats(local as usize, capacity);
            }
            let what = format!(
                "layer `{}` ({local} units x batch {capacity}: activations, deltas and biases)",
                layer.name
            );
            memory.add(what, values);
        }
        for edge in graph.edges() {
            let source = graph.layer(edge.source);
            let dense_source = !(source.kind == LayerKind::Input && source.sparse);
            if routes[edge.id.0] == Route::GatherSource && dense_source {
                let what = format!("the gathered rows of layer `{}`", source.name);
                memory.add(what, cap * source.units as u128);
            }
            if let Some(width) = relaid_width(plan, routes, edge, dense_source, rank) {
                let what = format!("the re-laid rows of layer `{}`", source.name);
                memory.add(what, cap * width as u128);
            }
        }
        let (widest, widest_local) = reduced_width(graph, plan, routes, rank);
        memory.add(
            "the partial products' scratch".into(),
            cap * (widest + widest_local) as u128,
        );
        memory.add(
            "the whole minibatch's rows of a step coupling the examples".into(),
            2 * cap * coupled as u128,
        );
        memory
    }

    /// Adds `values` floats, from `what`.
    fn add(&mut self, what: String, values: u128) {
        let bytes = 4 * values;
        self.total += bytes;
        if bytes > self.largest.1 {
            self.largest = (what, bytes);
        }
    }

    /// Errors ([`Error::InvalidArgument`] about `batch`) when the buffers need more than the
    /// device's `available` bytes (when known) or more than the address space.
    pub(super) fn check(
        &self,
        available: Option<u64>,
        capacity: usize,
        device: &str,
    ) -> Result<()> {
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        let limit = available.map_or(isize::MAX as u128, |a| (a as u128).min(isize::MAX as u128));
        if self.total <= limit {
            return Ok(());
        }
        Err(Error::invalid_argument(
            "batch",
            format!(
                "the network's buffers for minibatches of {capacity} need {:.2} GiB, and the \
                 {device} has {} available; the largest part is {} ({:.2} GiB): use a smaller \
                 batch or smaller layers",
                gib(self.total),
                available.map_or("less".to_owned(), |a| format!("{:.2} GiB", gib(a as u128))),
                self.largest.0,
                gib(self.largest.1)
            ),
        ))
    }
}
