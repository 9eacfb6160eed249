//! `N` ranks as threads of one process: the test transport.
//!
//! Every collective is one rendezvous: each rank deposits its contribution (bytes and a tag
//! naming the operation), the last to arrive publishes all contributions, and each rank then
//! computes its own result from them in rank order. Reductions are therefore deterministic
//! (floats are summed in rank order) and the same on every rank. Ranks that call different
//! operations (different tags) all get an error instead of a wrong answer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::local::mismatched_types;
use super::{check_root, Collective, Element, ReduceOp, Wire, WireMut};
use crate::error::{Error, Result};

/// One rank of a group of threads; created by [`Threads::run`] / [`Threads::run_each`].
#[derive(Debug)]
pub struct Threads {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    tag: String,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    /// Completed rendezvous so far.
    generation: u64,
    /// Ranks that have deposited into `slots` for the current rendezvous.
    arrived: usize,
    slots: Vec<Slot>,
    /// The contributions of the last completed rendezvous.
    done: Arc<Vec<Slot>>,
    /// The first rank that failed (closure error or panic) and its message.
    failure: Option<(usize, String)>,
    /// A rank whose closure returned while others may still call collectives.
    finished: Option<usize>,
}

impl Threads {
    /// Runs `f` on `size` threads, rank `r` with its own `Threads` of rank `r`, and returns each
    /// rank's result in rank order. A rank whose `f` returns an error or panics aborts the
    /// group: the others get [`Error::Collective`] from their current or next collective
    /// instead of waiting forever (a panic becomes that rank's `Error::Collective` too).
    /// Errors: `size == 0`, or a thread that cannot be spawned.
    pub fn run_each<T, F>(size: usize, f: F) -> Result<Vec<Result<T>>>
    where
        T: Send,
        F: Fn(&Threads) -> Result<T> + Sync,
    {
        if size == 0 {
            return Err(Error::invalid_argument(
                "size",
                "a group needs at least 1 rank",
            ));
        }
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(State {
                slots: vec![Slot::default(); size],
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        let f = &f;
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(size);
            for rank in 0..size {
                let comm = Threads {
                    rank,
                    shared: Arc::clone(&shared),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("rank-{rank}"))
                    .spawn_scoped(scope, move || comm.run_rank(f))
                    .map_err(|e| {
                        Error::Device(format!("cannot spawn the thread of rank {rank}: {e}"))
                    });
                match handle {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        shared.fail(rank, e.to_string());
                        return Err(e);
                    }
                }
            }
            Ok(handles
                .into_iter()
                .enumerate()
                .map(|(rank, h)| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Collective {
                            rank,
                            size,
                            message: "the thread panicked".into(),
                        })
                    })
                })
                .collect())
        })
    }

    /// As [`Threads::run_each`], but all or nothing: every rank's value, or the error of the
    /// rank where the failure started (the lowest rank whose error is not an
    /// [`Error::Collective`] raised on its behalf; failing that, the lowest rank's error).
    pub fn run<T, F>(size: usize, f: F) -> Result<Vec<T>>
    where
        T: Send,
        F: Fn(&Threads) -> Result<T> + Sync,
    {
        let results = Self::run_each(size, f)?;
        if results.iter().all(Result::is_ok) {
            return Ok(results.into_iter().filter_map(Result::ok).collect());
        }
        let origin = results
            .iter()
            .position(|r| matches!(r, Err(e) if !matches!(e, Error::Collective { .. })));
        let pick = origin.or_else(|| results.iter().position(Result::is_err));
        match results.into_iter().nth(pick.unwrap_or(0)) {
            Some(Err(e)) => Err(e),
            _ => Err(Error::InvalidData("a rank failed without an error".into())),
        }
    }

    /// Runs `f` for this rank, reporting a failure or the end of the rank to the group.
    fn run_rank<T, F>(&self, f: &F) -> Result<T>
    where
        F: Fn(&Threads) -> Result<T>,
    {
        let result = match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                Err(Error::Collective {
                    rank: self.rank,
                    size: self.shared.size,
                    message: format!("panicked: {what}"),
                })
            }
        };
        match &result {
            Err(e) => self.shared.fail(self.rank, e.to_string()),
            Ok(_) => self.shared.finish(self.rank),
        }
        result
    }

    /// The rendezvous: deposits `data` under `tag`, waits for every rank, returns everyone's.
    fn exchange(&self, tag: String, data: Vec<u8>) -> Result<Arc<Vec<Slot>>> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        shared.abandoned(&st)?;
        let generation = st.generation;
        st.slots[self.rank] = Slot { tag, data };
        st.arrived += 1;
        if st.arrived == shared.size {
            let slots = std::mem::replace(&mut st.slots, vec![Slot::default(); shared.size]);
            st.done = Arc::new(slots);
            st.arrived = 0;
            st.generation += 1;
            shared.wake.notify_all();
        } else {
            while st.generation == generation {
                shared.abandoned(&st)?;
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        let done = Arc::clone(&st.done);
        drop(st);
        let first = &done[0].tag;
        if let Some((r, slot)) = done.iter().enumerate().find(|(_, s)| &s.tag != first) {
            return Err(Error::invalid_argument(
                "collective",
                format!(
                    "the ranks called different collectives: rank 0 `{first}`, rank {r} `{}`",
                    slot.tag
                ),
            ));
        }
        Ok(done)
    }

    /// Reduces the ranks' `send` (the bytes of equally long `[T]`s) element-wise in rank order; this rank gets
    /// the elements `offset..offset + recv.len()`.
    fn reduce<T: Element + Combine>(
        &self,
        tag: String,
        send: Vec<u8>,
        offset: usize,
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<()> {
        let done = self.exchange(tag, send)?;
        let width = size_of::<T>();
        let bytes = offset * width..(offset + recv.len()) * width;
        let mut part = vec![T::default(); recv.len()];
        for (r, slot) in done.iter().enumerate() {
            T::as_bytes_mut(if r == 0 { &mut *recv } else { &mut part })
                .copy_from_slice(&slot.data[bytes.clone()]);
            if r > 0 {
                for (a, &b) in recv.iter_mut().zip(&part) {
                    *a = a.combine(b, op);
                }
            }
        }
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the first failure and wakes every waiting rank.
    fn fail(&self, rank: usize, message: String) {
        let mut st = self.lock();
        if st.failure.is_none() {
            st.failure = Some((rank, message));
        }
        self.wake.notify_all();
    }

    /// Records that `rank` returned and wakes every waiting rank.
    fn finish(&self, rank: usize) {
        let mut st = self.lock();
        st.finished.get_or_insert(rank);
        self.wake.notify_all();
    }

    /// The error for a rank that waits (or is about to) on a group that cannot complete.
    fn abandoned(&self, st: &State) -> Result<()> {
        if let Some((rank, message)) = &st.failure {
            return Err(Error::Collective {
                rank: *rank,
                size: self.size,
                message: message.clone(),
            });
        }
        if let Some(rank) = st.finished {
            return Err(Error::Collective {
                rank,
                size: self.size,
                message: "it returned while other ranks were still in a collective".into(),
            });
        }
        Ok(())
    }
}

/// A copy of the elements' bytes.
fn bytes<T: Element>(s: &[T]) -> Vec<u8> {
    T::as_bytes(s).to_vec()
}

/// Element-wise combination for the reductions.
trait Combine: Copy {
    fn combine(self, other: Self, op: ReduceOp) -> Self;
}

macro_rules! combine_int {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn combine(self, other: Self, op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum => self.wrapping_add(other),
                    ReduceOp::Max => self.max(other),
                }
            }
        }
    )*};
}
combine_int!(i32, i64, u64);

macro_rules! combine_float {
    ($($t:ty),*) => {$(
        impl Combine for $t {
            fn combine(self, other: Self, op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum => self + other,
                    ReduceOp::Max => {
                        if other.total_cmp(&self).is_gt() { other } else { self }
                    }
                }
            }
        }
    )*};
}
combine_float!(f32, f64);

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn barrier(&self) -> Result<()> {
        self.exchange("barrier".into(), Vec::new()).map(|_| ())
    }

    fn all_gather_bytes(&self, send: &[u8], counts: &[usize], recv: &mut [u8]) -> Result<()> {
        super::check_counts(self, counts, send.len(), recv.len(), "all_gather")?;
        let done = self.exchange(format!("all_gather {counts:?}"), send.to_vec())?;
        let mut at = 0;
        for slot in done.iter() {
            recv[at..at + slot.data.len()].copy_from_slice(&slot.data);
            at += slot.data.len();
        }
        Ok(())
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        check_root(self, root)?;
        let data = if self.rank == root {
            buf.to_vec()
        } else {
            Vec::new()
        };
        let done = self.exchange(format!("broadcast {root} {}", buf.len()), data)?;
        buf.copy_from_slice(&done[root].data);
        Ok(())
    }

    fn all_to_all_bytes(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) -> Result<()> {
        super::check_exchange_counts(self, send_counts, send.len(), recv_counts, recv.len())?;
        // Each rank deposits its segments' byte counts, then the bytes; rank r reads segment r
        // of every deposit.
        let mut data = Vec::with_capacity(8 * send_counts.len() + send.len());
        for &c in send_counts {
            data.extend_from_slice(&(c as u64).to_le_bytes());
        }
        data.extend_from_slice(send);
        let done = self.exchange("all_to_all".into(), data)?;
        let size = self.shared.size;
        let mut at = 0;
        for (q, slot) in done.iter().enumerate() {
            let counts: Vec<usize> = slot.data[..8 * size]
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
                .collect();
            let start = 8 * size + counts[..self.rank].iter().sum::<usize>();
            if counts[self.rank] != recv_counts[q] {
                return Err(Error::invalid_argument(
                    "counts",
                    format!(
                        "all_to_all: rank {q} sends {} bytes to rank {}, which expects {}",
                        counts[self.rank], self.rank, recv_counts[q]
                    ),
                ));
            }
            recv[at..at + recv_counts[q]]
                .copy_from_slice(&slot.data[start..start + recv_counts[q]]);
            at += recv_counts[q];
        }
        Ok(())
    }

    fn all_reduce_wire(&self, buf: WireMut<'_>, op: ReduceOp) -> Result<()> {
        let tag = |t: &str, n: usize| format!("all_reduce {t} {op:?} {n}");
        match buf {
            WireMut::F32(b) => self.reduce(tag("f32", b.len()), bytes(b), 0, b, op),
            WireMut::F64(b) => self.reduce(tag("f64", b.len()), bytes(b), 0, b, op),
            WireMut::I32(b) => self.reduce(tag("i32", b.len()), bytes(b), 0, b, op),
            WireMut::I64(b) => self.reduce(tag("i64", b.len()), bytes(b), 0, b, op),
            WireMut::U64(b) => self.reduce(tag("u64", b.len()), bytes(b), 0, b, op),
        }
    }

    fn reduce_scatter_wire(
        &self,
        send: Wire<'_>,
        counts: &[usize],
        recv: WireMut<'_>,
        op: ReduceOp,
    ) -> Result<()> {
        super::check_counts(self, counts, recv.len(), send.len(), "reduce_scatter")?;
        let offset: usize = counts[..self.rank].iter().sum();
        let tag = |t: &str| format!("reduce_scatter {t} {op:?} {counts:?}");
        match (send, recv) {
            (Wire::F32(s), WireMut::F32(r)) => self.reduce(tag("f32"), bytes(s), offset, r, op),
            (Wire::F64(s), WireMut::F64(r)) => self.reduce(tag("f64"), bytes(s), offset, r, op),
            (Wire::I32(s), WireMut::I32(r)) => self.reduce(tag("i32"), bytes(s), offset, r, op),
            (Wire::I64(s), WireMut::I64(r)) => self.reduce(tag("i64"), bytes(s), offset, r, op),
            (Wire::U64(s), WireMut::U64(r)) => self.reduce(tag("u64"), bytes(s), offset, r, op),
            _ => Err(mismatched_types()),
        }
    }
}
