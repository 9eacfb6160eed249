//! Data parallelism: every rank holds the whole network and trains on its share of each
//! minibatch (the examples are split, not the weights).
//!
//! A minibatch of `B` examples is split over `P` ranks in rank order by [`Split::even`]: rank
//! `r` trains on rows `first(r)..first(r) + len(r)` of it ([`RowShare`]). Every quantity of a
//! step that sums over the minibatch is taken over all `B` rows, so the step is the one-rank
//! step up to float rounding:
//!
//! - weight and bias gradients `g = −(1/B)·Σ_b …`: each rank sums its rows with the global
//!   `1/B`, and the partial gradients are summed across ranks in an order no transport can
//!   change, so every rank applies the same update bits and the run repeats bit for bit. A
//!   weight's gradient goes to the owners of its elements only
//!   ([`reduce_scatter_weight_gradients`], added in rank order), each rank updates its own
//!   elements, and the updated elements are copied to every rank ([`all_gather_weights`]):
//!   the sharded update of [`super::owned`]. The biases' gradients are summed whole
//!   ([`sum_gradients`]: gathered and added in rank order on up to 4 ranks, in 64-bit fixed
//!   point beyond);
//! - the loss: each rank's fixed-point sum, all-reduced exactly;
//! - steps coupled across examples (batch normalisation's statistics, the sparseness penalty's
//!   mean activation): the rows are gathered to every rank (`gather_rows`), the one-rank
//!   kernel runs on the whole minibatch (the same bits on every rank), and each rank keeps its
//!   rows (`keep_rows`);
//! - random draws are keyed by the global example (dropout by the row in the whole minibatch,
//!   denoising by the dataset example), so the masks are the one-rank masks.
//!
//! The same steps serve the [`Layout::Rows`](super::Layout) layers of a hybrid plan
//! ([`super::choice`]), whose replicated weights alone have their gradients summed.
//!
//! The result is the one-rank step up to the rounding of the partial sums. For the one-rank
//! bits on any rank count, exact sums ([`crate::network::Network::set_exact_chunk`]) process
//! the minibatch in fixed chunks of examples and sum the chunks' gradients in fixed point.
//!
//! The cross-rank steps here stage through host memory, like the model-parallel ones.

use super::exact::{sum_blocks, sum_in_rank_order, RANK_ORDER_MAX_RANKS};
use super::owned::{all_gather_owned, reduce_scatter_owned};
use super::Split;
use std::cell::RefCell;

use super::host::Timers;
use crate::backend::traits::Backend;
use crate::collective::pool::with_buffer;
use crate::collective::Collective;
use crate::error::Result;

/// The rows of a minibatch this rank trains on: rows `first..first + len` of a minibatch of
/// `total` examples split over the ranks in rank order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowShare {
    pub first: usize,
    pub len: usize,
    pub total: usize,
}

impl RowShare {
    /// The whole minibatch of `rows` examples on one rank.
    pub fn whole(rows: usize) -> RowShare {
        RowShare {
            first: 0,
            len: rows,
            total: rows,
        }
    }
}

thread_local! {
    /// Host copies of the gradients summed across ranks.
    static GRADIENTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Every rank's row count of the current minibatch, from each rank's own (`rows`): an
/// all-gather of one number per rank. Returns this rank's share and the counts.
pub(crate) fn share_rows<C: Collective>(comm: &C, rows: usize) -> Result<(RowShare, Vec<usize>)> {
    let size = comm.size();
    let mut counts = vec![0u64; size];
    comm.all_gather(&[rows as u64], &vec![1; size], &mut counts)?;
    let counts: Vec<usize> = counts.into_iter().map(|c| c as usize).collect();
    let first = counts[..comm.rank()].iter().sum();
    let share = RowShare {
        first,
        len: rows,
        total: counts.iter().sum(),
    };
    Ok((share, counts))
}

/// The examples rank `rank` of `ranks` trains on from a minibatch `chunk` (in order): its
/// [`Split::even`] share of the rows.
pub fn rank_examples(chunk: &[u32], rank: usize, ranks: usize) -> &[u32] {
    match Split::even(chunk.len(), ranks.max(1)) {
        Ok(split) => &chunk[split.range(rank.min(ranks.saturating_sub(1)))],
        Err(_) => chunk,
    }
}

/// Assembles the whole minibatch's rows of a `cols`-wide matrix in `whole` (device,
/// `Σ counts · cols`) from every rank's rows in `local` (device, `counts[rank] · cols`),
/// through the host.
pub(crate) fn gather_rows<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    local: &B::Vector,
    counts: &[usize],
    cols: usize,
    whole: &mut B::Vector,
) -> Result<()> {
    let mut mine = vec![0.0f32; counts[comm.rank()] * cols];
    backend.download(local, &mut mine)?;
    let value_counts: Vec<usize> = counts.iter().map(|&c| c * cols).collect();
    let mut all = vec![0.0f32; value_counts.iter().sum()];
    comm.all_gather(&mine, &value_counts, &mut all)?;
    backend.upload(whole, &all)
}

/// Copies this rank's rows (`share`) of the whole minibatch's `cols`-wide matrix `whole`
/// (device) into `local` (device), through the host.
pub(crate) fn keep_rows<B: Backend>(
    backend: &B,
    whole: &B::Vector,
    share: RowShare,
    cols: usize,
    local: &mut B::Vector,
) -> Result<()> {
    let mut all = vec![0.0f32; share.total * cols];
    backend.download(whole, &mut all)?;
    backend.upload(
        local,
        &all[share.first * cols..(share.first + share.len) * cols],
    )
}

/// Replaces each buffer of `grads` (device vectors with their lengths) by its sum over the
/// ranks, the same bits on every rank and run to run, through the host: on up to
/// [`RANK_ORDER_MAX_RANKS`] ranks gathered and added in rank order ([`sum_in_rank_order`],
/// half the bytes of the alternative on 2 ranks; in place when the backend's buffers are in
/// host memory), on more in 64-bit fixed point with one scale per buffer ([`sum_blocks`]).
/// The copies count as `timers`' staging time, the sum as exchange time.
pub(crate) fn sum_gradients<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    grads: &mut [(&mut B::Vector, usize)],
) -> Result<()> {
    if comm.size() <= RANK_ORDER_MAX_RANKS {
        // Buffers in host memory are summed in place, tensor by tensor: no staging copies.
        let in_place: Option<Vec<&mut [f32]>> = grads
            .iter_mut()
            .map(|(buf, n)| backend.host_values(buf).and_then(|h| h.get_mut(..*n)))
            .collect();
        if let Some(tensors) = in_place {
            return Timers::add(&timers.exchange, || {
                tensors
                    .into_iter()
                    .try_for_each(|t| sum_in_rank_order(comm, t))
            });
        }
    }
    let lens: Vec<usize> = grads.iter().map(|(_, n)| *n).collect();
    with_buffer(&GRADIENTS, lens.iter().sum(), |host| {
        Timers::add(&timers.staging, || {
            let mut at = 0;
            for (buf, n) in grads.iter() {
                backend.download(buf, &mut host[at..at + n])?;
                at += n;
            }
            Ok::<_, crate::error::Error>(())
        })?;
        Timers::add(&timers.exchange, || {
            if comm.size() <= RANK_ORDER_MAX_RANKS {
                sum_in_rank_order(comm, host)
            } else {
                sum_blocks(comm, host, &lens)
            }
        })?;
        Timers::add(&timers.staging, || {
            let mut at = 0;
            for (buf, n) in grads.iter_mut() {
                backend.upload(buf, &host[at..at + *n])?;
                at += *n;
            }
            Ok(())
        })
    })
}

/// Runs `op` on the first `n` values of every buffer of `tensors` (device vectors with their
/// lengths) on the host: in place where the backend's buffers are host memory, otherwise
/// downloaded, changed and uploaded (the copies count as `timers`' staging time, `op` as
/// exchange time).
fn on_host<B: Backend>(
    backend: &B,
    timers: &Timers,
    tensors: &mut [(&mut B::Vector, usize)],
    op: impl Fn(&mut [f32]) -> Result<()>,
) -> Result<()> {
    for (buf, n) in tensors.iter_mut() {
        if let Some(values) = backend.host_values(buf).and_then(|h| h.get_mut(..*n)) {
            Timers::add(&timers.exchange, || op(values))?;
            continue;
        }
        with_buffer(&GRADIENTS, *n, |host| {
            Timers::add(&timers.staging, || backend.download(buf, host))?;
            Timers::add(&timers.exchange, || op(host))?;
            Timers::add(&timers.staging, || backend.upload(buf, host))
        })?;
    }
    Ok(())
}

/// Step 1 of the sharded update ([`super::owned`]): each buffer of `grads` (the replicated
/// weights' gradients, with their lengths) holds, on the elements this rank owns, the sum over
/// the ranks ([`reduce_scatter_owned`]); its other elements keep this rank's partial sums.
pub(crate) fn reduce_scatter_weight_gradients<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    grads: &mut [(&mut B::Vector, usize)],
) -> Result<()> {
    on_host(backend, timers, grads, |g| reduce_scatter_owned(comm, g))
}

/// Step 3 of the sharded update ([`super::owned`]): every rank's updated elements of each
/// buffer of `weights` (with their lengths) copied to every other rank ([`all_gather_owned`]).
pub(crate) fn all_gather_weights<B: Backend, C: Collective>(
    backend: &B,
    comm: &C,
    timers: &Timers,
    weights: &mut [(&mut B::Vector, usize)],
) -> Result<()> {
    on_host(backend, timers, weights, |w| all_gather_owned(comm, w))
}
