//! The MPI transport: rsmpi over Open MPI, one rank per process (cargo feature `mpi`).
//!
//! MPI's default error handler aborts the whole job on a communication error, so the methods
//! here return errors only for arguments they can check first (counts, roots, sizes beyond
//! MPI's `int` counts). Signed integer sums are done on the unsigned type of the same width,
//! which wraps by definition and gives the same bits.

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::{Equivalence, Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};

use super::local::mismatched_types;
use super::{check_counts, check_root, Collective, ReduceOp, Wire, WireMut};
use crate::error::{Error, Result};

/// This process's rank of `MPI_COMM_WORLD`. A binary started without `mpirun` is rank 0 of 1.
///
/// MPI can be initialised once per process: [`Mpi::init`] fails the second time. Dropping the
/// value finalises MPI.
pub struct Mpi {
    // Dropped before the universe, which finalises MPI.
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

impl Mpi {
    /// Initialises MPI (`MPI_Init`) and joins `MPI_COMM_WORLD`.
    /// Errors: MPI already initialised (or finalised) in this process.
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Device("MPI cannot be initialised: it was initialised before".into())
        })?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Mpi {
            world,
            rank,
            size,
            _universe: universe,
        })
    }

    /// Aborts every rank of the job (`MPI_Abort`) with exit code `code`: for a rank that fails
    /// outside the sync points, so that the others do not wait for it.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    /// Makes a panic anywhere in this process abort the whole job (`MPI_Abort` with code 101,
    /// after the usual panic message), instead of unwinding into `MPI_Finalize` while the
    /// other ranks wait in a collective. For binaries; replaces the panic hook, keeping the
    /// previous one's output.
    pub fn abort_on_panic(&self) {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            SimpleCommunicator::world().abort(101);
        }));
    }

    /// The name of this processor (host), as MPI reports it.
    pub fn processor_name(&self) -> String {
        mpi::environment::processor_name().unwrap_or_else(|_| "?".into())
    }
}

/// MPI counts are `int`s.
/// The largest piece one `MPI_Allreduce` call moves.
const ALL_REDUCE_PIECE_BYTES: usize = 1 << 20;

fn count(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| {
        Error::Unsupported(format!(
            "{what} of {n} elements: MPI counts are limited to {}",
            i32::MAX
        ))
    })
}

/// MPI's `int` counts and their displacements (the running sums), for counts already checked
/// to fit ([`count`] of their total).
fn counts_and_displacements(counts: &[usize]) -> (Vec<i32>, Vec<i32>) {
    let counts: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
    let displs = counts
        .iter()
        .scan(0i32, |at, &c| {
            let d = *at;
            *at += c;
            Some(d)
        })
        .collect();
    (counts, displs)
}

fn system_op(op: ReduceOp) -> SystemOperation {
    match op {
        ReduceOp::Sum => SystemOperation::sum(),
        ReduceOp::Max => SystemOperation::max(),
    }
}

/// Reinterprets a signed buffer as its unsigned twin, for wrapping sums.
macro_rules! unsigned {
    ($b:expr, $u:ty) => {
        // SAFETY: same size and alignment, every bit pattern valid in both.
        unsafe { std::slice::from_raw_parts_mut($b.as_mut_ptr().cast::<$u>(), $b.len()) }
    };
}

impl Mpi {
    fn all_reduce_in_place<T: Equivalence + Copy>(
        &self,
        buf: &mut [T],
        op: ReduceOp,
    ) -> Result<()> {
        count(buf.len(), "all_reduce")?;
        // In pieces of at most a MiB, each copied into one reused send buffer: a large
        // all-reduce in one call (and a fresh copy of the whole buffer) ran 3-4x slower
        // with Open MPI over shared memory (1.45M i64 on 2 ranks: 50 ms against 13-18 ms).
        let piece = (ALL_REDUCE_PIECE_BYTES / std::mem::size_of::<T>().max(1)).max(1);
        let mut send: Vec<T> = Vec::with_capacity(piece.min(buf.len()));
        for part in buf.chunks_mut(piece) {
            send.clear();
            send.extend_from_slice(part);
            self.world.all_reduce_into(&send[..], part, system_op(op));
        }
        Ok(())
    }

    /// Reduce-scatter with uneven counts: every segment is padded to the largest count and
    /// `MPI_Reduce_scatter_block` does the rest.
    fn reduce_scatter_padded<T: Equivalence + Copy + Default>(
        &self,
        send: &[T],
        counts: &[usize],
        recv: &mut [T],
        op: ReduceOp,
    ) -> Result<()> {
        let block = counts.iter().copied().max().unwrap_or(0);
        count(block * self.size, "reduce_scatter")?;
        if block == 0 {
            return Ok(());
        }
        if counts.iter().all(|&c| c == block) {
            // Even counts: no padding needed.
            self.world
                .reduce_scatter_block_into(send, recv, system_op(op));
            return Ok(());
        }
        let mut padded = vec![T::default(); block * self.size];
        let mut at = 0;
        for (r, &c) in counts.iter().enumerate() {
            padded[r * block..r * block + c].copy_from_slice(&send[at..at + c]);
            at += c;
        }
        let mut out = vec![T::default(); block];
        self.world
            .reduce_scatter_block_into(&padded[..], &mut out[..], system_op(op));
        recv.copy_from_slice(&out[..recv.len()]);
        Ok(())
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }

    fn all_gather_bytes(&self, send: &[u8], counts: &[usize], recv: &mut [u8]) -> Result<()> {
        check_counts(self, counts, send.len(), recv.len(), "all_gather")?;
        count(recv.len(), "all_gather")?;
        let (counts_i, displs) = counts_and_displacements(counts);
        let mut partition = PartitionMut::new(recv, counts_i, displs);
        self.world.all_gather_varcount_into(send, &mut partition);
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
        count(send.len(), "all_to_all")?;
        count(recv.len(), "all_to_all")?;
        let (send_counts, send_displs) = counts_and_displacements(send_counts);
        let (recv_counts, recv_displs) = counts_and_displacements(recv_counts);
        let partition = Partition::new(send, send_counts, send_displs);
        let mut received = PartitionMut::new(recv, recv_counts, recv_displs);
        self.world
            .all_to_all_varcount_into(&partition, &mut received);
        Ok(())
    }

    fn broadcast_bytes(&self, root: usize, buf: &mut [u8]) -> Result<()> {
        check_root(self, root)?;
        count(buf.len(), "broadcast")?;
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }

    fn all_reduce_wire(&self, buf: WireMut<'_>, op: ReduceOp) -> Result<()> {
        match (buf, op) {
            (WireMut::F32(b), _) => self.all_reduce_in_place(b, op),
            (WireMut::F64(b), _) => self.all_reduce_in_place(b, op),
            (WireMut::I32(b), ReduceOp::Sum) => self.all_reduce_in_place(unsigned!(b, u32), op),
            (WireMut::I32(b), ReduceOp::Max) => self.all_reduce_in_place(b, op),
            (WireMut::I64(b), ReduceOp::Sum) => self.all_reduce_in_place(unsigned!(b, u64), op),
            (WireMut::I64(b), ReduceOp::Max) => self.all_reduce_in_place(b, op),
            (WireMut::U64(b), _) => self.all_reduce_in_place(b, op),
        }
    }

    fn reduce_scatter_wire(
        &self,
        send: Wire<'_>,
        counts: &[usize],
        recv: WireMut<'_>,
        op: ReduceOp,
    ) -> Result<()> {
        check_counts(self, counts, recv.len(), send.len(), "reduce_scatter")?;
        let as_unsigned = op == ReduceOp::Sum;
        match (send, recv) {
            (Wire::F32(s), WireMut::F32(r)) => self.reduce_scatter_padded(s, counts, r, op),
            (Wire::F64(s), WireMut::F64(r)) => self.reduce_scatter_padded(s, counts, r, op),
            (Wire::I32(s), WireMut::I32(r)) if as_unsigned => {
                let s: Vec<u32> = s.iter().map(|&x| x as u32).collect();
                self.reduce_scatter_padded(&s, counts, unsigned!(r, u32), op)
            }
            (Wire::I32(s), WireMut::I32(r)) => self.reduce_scatter_padded(s, counts, r, op),
            (Wire::I64(s), WireMut::I64(r)) if as_unsigned => {
                // SAFETY: i64 and u64 have the same size and alignment, every bit pattern is
                // valid for both, and wrapping sums are the same bits either way.
                let s = unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u64>(), s.len()) };
                self.reduce_scatter_padded(s, counts, unsigned!(r, u64), op)
            }
            (Wire::I64(s), WireMut::I64(r)) => self.reduce_scatter_padded(s, counts, r, op),
            (Wire::U64(s), WireMut::U64(r)) => self.reduce_scatter_padded(s, counts, r, op),
            _ => Err(mismatched_types()),
        }
    }
}
