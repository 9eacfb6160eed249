//! Collective communication between the ranks of a model-parallel run.
//!
//! A [`Collective`] connects `size` ranks (processes or threads); rank `r` is `0..size`. Every
//! collective is *collective*: all ranks must call the same operations in the same order with
//! matching arguments (counts, roots), or the transports misbehave (`Threads` reports a
//! mismatch as an error; MPI may hang or abort, as MPI does).
//!
//! Transports:
//! - [`Local`]: one rank, every operation a copy;
//! - [`Threads`]: `N` ranks as threads of one process, for fast deterministic tests
//!   ([`Threads::run`] runs a closure on `N` threads, each with its rank's collective);
//! - `Mpi` (cargo feature `mpi`): rsmpi over Open MPI, one rank per process under `mpirun`.
//!
//! # Reductions and reproducibility
//! Integer sums are exact and wrap (two's complement): the result is the same bits in any
//! order and on any number of ranks. Float sums (`f32`, `f64`) are in an unspecified order
//! (`Threads` and `Local`: rank order; MPI: the library's choice), so they may differ in the
//! last bits between transports and rank counts. Sums that must be bit-identical whatever the
//! rank count go through 64-bit fixed point ([`crate::ops::fixed`]): each rank accumulates
//! `to_fixed(x)` of its terms in an `i64`, then [`Collective::all_reduce`] sums the `i64`s
//! ([`sum_fixed`] does both for a vector of terms). `i128` sums (losses over whole batches) are
//! exact too. `Max` of floats is the maximum under [`f32::total_cmp`] / [`f64::total_cmp`]
//! (`-0 < +0`, a positive NaN above `+∞`), exact and the same on every rank.
//!
//! # Failures
//! A rank that fails must not leave the others waiting forever:
//! - at sync points every rank calls [`Collective::check`] with its own status; if any rank
//!   failed, every rank gets an error: failing ranks their own, the others
//!   [`crate::Error::Collective`] with the lowest failing rank's number and message;
//! - a rank that fails between sync points: under [`Threads::run`] its closure's error (or
//!   panic) aborts the group, and every rank waiting in (or later entering) a collective gets
//!   `Error::Collective` with that rank's message; under MPI a process that exits non-zero (or
//!   calls `Mpi::abort`) makes `mpirun` stop every rank.

mod local;
#[cfg(feature = "mpi")]
mod mpi;
pub(crate) mod pool;
mod threads;
mod wire;

#[cfg(test)]
mod tests;

pub use local::Local;
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
pub use threads::Threads;
pub use wire::{Element, Reduce, ReduceOp, Wire, WireMut};

use crate::error::{Error, Result};
use crate::ops::fixed::to_fixed;

/// Collective operations among `size` ranks; see the [module documentation](self).
///
/// The required methods are the transport's byte- and wire-level primitives; the typed
/// operations ([`all_gather`](Collective::all_gather), [`all_reduce`](Collective::all_reduce),
/// …) are provided on top of them. Lengths and counts are in elements; a count or length that
/// does not match the contract is an [`Error::InvalidArgument`] on the rank that sees it
/// (callers should treat any error from a collective as fatal to the run: the ranks may no
/// longer be in step).
pub trait Collective {
    /// This rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks (≥ 1).
    fn size(&self) -> usize;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Concatenates every rank's `send` into `recv` in rank order. `counts[r]` is rank `r`'s
    /// byte count (`counts.len() == size()`, `counts[rank()] == send.len()`,
    /// `recv.len() == Σ counts`).
    fn all_gather_bytes(&self, send: &[u8], counts: &[usize], recv: &mut [u8]) -> Result<()>;

    /// Copies rank `root`'s `buf` into every rank's `buf` (same length on every rank).
    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()>;

    /// Replaces `buf` on every rank by the element-wise `op` of all ranks' `buf` (same wire type
    /// and length on every rank). Integer sums wrap.
    fn all_reduce_wire(&self, buf: WireMut<'_>, op: ReduceOp) -> Result<()>;

    /// Personalised exchange: this rank's `send` is cut into `size()` consecutive segments,
    /// `send_counts[q]` bytes for rank `q`; `recv` receives every rank's segment for this
    /// rank in rank order, `recv_counts[q]` bytes from rank `q` (`Σ send_counts == send.len()`,
    /// `Σ recv_counts == recv.len()`, and rank `q`'s `send_counts[r]` equal to rank `r`'s
    /// `recv_counts[q]`).
    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<()>;

    /// Element-wise `op` of all ranks' `send` (length `Σ counts` on every rank), of which rank
    /// `r` receives the segment `Σ counts[..r] .. Σ counts[..=r]` in `recv` (length
    /// `counts[r]`). `send` and `recv` have the same wire type.
    fn reduce_scatter_wire(
        &self,
        send: Wire<'_>,
        counts: &[usize],
        recv: WireMut<'_>,
        op: ReduceOp,
    ) -> Result<()>;

    /// Typed [`all_gather_bytes`](Collective::all_gather_bytes): every rank's `send`
    /// (`counts[r]` elements from rank `r`) concatenated in rank order into `recv`.
    fn all_gather<T: Element>(&self, send: &[T], counts: &[usize], recv: &mut [T]) -> Result<()>
    where
        Self: Sized,
    {
        check_counts(self, counts, send.len(), recv.len(), "all_gather")?;
        let bytes: Vec<usize> = counts.iter().map(|&c| c * size_of::<T>()).collect();
        self.all_gather_bytes(T::as_bytes(send), &bytes, T::as_bytes_mut(recv))
    }

    /// Typed [`all_to_all_bytes`](Collective::all_to_all_bytes): `send_counts[q]` elements of
    /// `send` (consecutive, in rank order) go to rank `q`; `recv_counts[q]` elements from rank
    /// `q` arrive in `recv`, in rank order.
    fn all_to_all<T: Element>(
        &self,
        send: &[T],
        send_counts: &[usize],
        recv: &mut [T],
        recv_counts: &[usize],
    ) -> Result<()>
    where
        Self: Sized,
    {
        check_exchange_counts(self, send_counts, send.len(), recv_counts, recv.len())?;
        let bytes = |c: &[usize]| c.iter().map(|&n| n * size_of::<T>()).collect::<Vec<_>>();
        self.all_to_all_bytes(
            T::as_bytes(send),
            &bytes(send_counts),
            T::as_bytes_mut(recv),
            &bytes(recv_counts),
        )
    }

    /// Every rank's `send`, of any lengths, concatenated in rank order, with the lengths
    /// (one extra all-gather of the lengths).
    fn all_gather_varying<T: Element>(&self, send: &[T]) -> Result<(Vec<T>, Vec<usize>)>
    where
        Self: Sized,
    {
        let mut lengths = vec![0u64; self.size()];
        self.all_gather(&[send.len() as u64], &vec![1; self.size()], &mut lengths)?;
        let counts: Vec<usize> = lengths.iter().map(|&n| n as usize).collect();
        let mut recv = vec![T::default(); counts.iter().sum()];
        self.all_gather(send, &counts, &mut recv)?;
        Ok((recv, counts))
    }

    /// Typed [`broadcast_bytes`](Collective::broadcast_bytes).
    fn broadcast<T: Element>(&self, root: usize, buf: &mut [T]) -> Result<()>
    where
        Self: Sized,
    {
        check_root(self, root)?;
        self.broadcast_bytes(root, T::as_bytes_mut(buf))
    }

    /// Replaces `buf` on every rank by the element-wise `op` of all ranks' `buf`; see the
    /// [module documentation](self) for what is exact.
    fn all_reduce<T: Reduce>(&self, buf: &mut [T], op: ReduceOp) -> Result<()>
    where
        Self: Sized,
    {
        T::all_reduce(self, buf, op)
    }

    /// Element-wise `op` of all ranks' `send` (`Σ counts` elements on every rank); rank `r`
    /// receives its segment (`counts[r]` elements, offset `Σ counts[..r]`) in `recv`.
    fn reduce_scatter<T: Reduce>(
        &self,
        send: &[T],
        counts: &[usize],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<()>
    where
        Self: Sized,
    {
        check_counts(self, counts, recv.len(), send.len(), "reduce_scatter")?;
        T::reduce_scatter(self, send, counts, recv, op)
    }

    /// The sync point of the failure protocol: every rank passes its own status. If every rank
    /// passed `Ok`, returns it. Otherwise every rank gets an error: a failing rank its own, the
    /// others [`Error::Collective`] naming the lowest failing rank and its message. Costs an
    /// all-reduce of one `u64` when all is well, plus two broadcasts when not.
    fn check<T>(&self, local: Result<T>) -> Result<T>
    where
        Self: Sized,
    {
        let (rank, size) = (self.rank(), self.size());
        // The lowest failing rank has the largest key `size - rank`; 0 means no failure.
        let mut key = [if local.is_err() {
            (size - rank) as u64
        } else {
            0
        }];
        self.all_reduce(&mut key, ReduceOp::Max)?;
        if key[0] == 0 {
            return local;
        }
        let failing = size - key[0] as usize;
        let mut message = match &local {
            Err(e) if rank == failing => e.to_string().into_bytes(),
            _ => Vec::new(),
        };
        let mut length = [message.len() as u64];
        self.broadcast(failing, &mut length)?;
        message.resize(length[0] as usize, 0);
        self.broadcast(failing, &mut message)?;
        match local {
            Err(e) => Err(e),
            Ok(_) => Err(Error::Collective {
                rank: failing,
                size,
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
        }
    }
}

/// A reference to a collective is the same collective (so that a network can hold `&Mpi` or
/// the `&Threads` of [`Threads::run`]).
impl<C: Collective + ?Sized> Collective for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn size(&self) -> usize {
        (**self).size()
    }

    fn barrier(&self) -> Result<()> {
        (**self).barrier()
    }

    fn all_gather_bytes(&self, send: &[u8], counts: &[usize], recv: &mut [u8]) -> Result<()> {
        (**self).all_gather_bytes(send, counts, recv)
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        (**self).broadcast_bytes(root, buf)
    }

    fn all_reduce_wire(&self, buf: WireMut<'_>, op: ReduceOp) -> Result<()> {
        (**self).all_reduce_wire(buf, op)
    }

    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<()> {
        (**self).all_to_all_bytes(send, send_counts, recv, recv_counts)
    }

    fn reduce_scatter_wire(
        &self,
        send: Wire<'_>,
        counts: &[usize],
        recv: WireMut<'_>,
        op: ReduceOp,
    ) -> Result<()> {
        (**self).reduce_scatter_wire(send, counts, recv, op)
    }
}

/// Sums `terms[i]` over all ranks in 64-bit fixed point, bit-identically whatever the rank
/// count and order: each rank converts its terms with [`to_fixed`], the `i64`s are summed
/// exactly (wrapping), and `sums[i]` receives the total (still in fixed point: convert with
/// [`crate::ops::fixed::from_fixed`] or `scaled_from_fixed`). A rank with several terms per
/// element should accumulate `to_fixed` of each into the `i64` itself and call
/// [`Collective::all_reduce`] directly.
pub fn sum_fixed<C: Collective>(comm: &C, terms: &[f32], sums: &mut [i64]) -> Result<()> {
    if terms.len() != sums.len() {
        return Err(Error::invalid_argument(
            "sums",
            format!("{} sums for {} terms", sums.len(), terms.len()),
        ));
    }
    for (s, &t) in sums.iter_mut().zip(terms) {
        *s = to_fixed(t);
    }
    comm.all_reduce(sums, ReduceOp::Sum)
}

/// Checks `counts` (one per rank) against this rank's part (`own` elements) and the whole
/// (`total` elements).
fn check_counts<C: Collective + ?Sized>(
    comm: &C,
    counts: &[usize],
    own: usize,
    total: usize,
    what: &str,
) -> Result<()> {
    if counts.len() != comm.size() {
        return Err(Error::invalid_argument(
            "counts",
            format!("{what}: {} counts for {} ranks", counts.len(), comm.size()),
        ));
    }
    if counts[comm.rank()] != own {
        return Err(Error::invalid_argument(
            "counts",
            format!(
                "{what}: rank {} has {own} elements but its count is {}",
                comm.rank(),
                counts[comm.rank()]
            ),
        ));
    }
    let sum: usize = counts.iter().sum();
    if sum != total {
        return Err(Error::invalid_argument(
            "counts",
            format!("{what}: the counts add up to {sum}, the whole buffer has {total} elements"),
        ));
    }
    Ok(())
}

/// Checks the counts of an all-to-all: one send and one receive count per rank, adding up to
/// the buffers' lengths (`send_len`, `recv_len`).
fn check_exchange_counts<C: Collective + ?Sized>(
    comm: &C,
    send_counts: &[usize],
    send_len: usize,
    recv_counts: &[usize],
    recv_len: usize,
) -> Result<()> {
    for (counts, len, what) in [
        (send_counts, send_len, "send"),
        (recv_counts, recv_len, "recv"),
    ] {
        if counts.len() != comm.size() {
            return Err(Error::invalid_argument(
                "counts",
                format!(
                    "all_to_all: {} {what} counts for {} ranks",
                    counts.len(),
                    comm.size()
                ),
            ));
        }
        let sum: usize = counts.iter().sum();
        if sum != len {
            return Err(Error::invalid_argument(
                "counts",
                format!("all_to_all: the {what} counts add up to {sum}, the buffer has {len}"),
            ));
        }
    }
    Ok(())
}

/// Checks that `root` is a rank.
fn check_root<C: Collective + ?Sized>(comm: &C, root: usize) -> Result<()> {
    if root >= comm.size() {
        return Err(Error::invalid_argument(
            "root",
            format!(
                "rank {root} does not exist: there are {} ranks",
                comm.size()
            ),
        ));
    }
    Ok(())
}
