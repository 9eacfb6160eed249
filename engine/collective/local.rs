//! The one-rank collective: every operation is a copy (or nothing).

use super::{check_root, Collective, ReduceOp, Wire, WireMut};
use crate::error::{Error, Result};

/// A single rank (rank 0 of 1). Reductions leave their buffer as it is; gathers, scatters and
/// broadcasts copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn all_gather_bytes(&self, send: &[u8], counts: &[usize], recv: &mut [u8]) -> Result<()> {
        if counts != [send.len()] || recv.len() != send.len() {
            return Err(Error::invalid_argument(
                "counts",
                format!(
                    "all_gather on 1 rank: counts {counts:?}, {} bytes sent, {} received",
                    send.len(),
                    recv.len()
                ),
            ));
        }
        recv.copy_from_slice(send);
        Ok(())
    }

    fn broadcast_bytes(&self, root: usize, _buf: &mut [u8]) -> Result<()> {
        check_root(self, root)
    }

    fn all_reduce_wire(&self, _buf: WireMut<'_>, _op: ReduceOp) -> Result<()> {
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
        if send.len() != recv.len() {
            return Err(Error::invalid_argument(
                "counts",
                format!(
                    "all_to_all on 1 rank: {} bytes sent, {} received",
                    send.len(),
                    recv.len()
                ),
            ));
        }
        recv.copy_from_slice(send);
        Ok(())
    }

    fn reduce_scatter_wire(
        &self,
        send: Wire<'_>,
        counts: &[usize],
        recv: WireMut<'_>,
        _op: ReduceOp,
    ) -> Result<()> {
        if counts != [send.len()] || recv.len() != send.len() {
            return Err(Error::invalid_argument(
                "counts",
                format!(
                    "reduce_scatter on 1 rank: counts {counts:?}, {} elements sent, {} received",
                    send.len(),
                    recv.len()
                ),
            ));
        }
        match (send, recv) {
            (Wire::F32(s), WireMut::F32(r)) => r.copy_from_slice(s),
            (Wire::F64(s), WireMut::F64(r)) => r.copy_from_slice(s),
            (Wire::I32(s), WireMut::I32(r)) => r.copy_from_slice(s),
            (Wire::I64(s), WireMut::I64(r)) => r.copy_from_slice(s),
            (Wire::U64(s), WireMut::U64(r)) => r.copy_from_slice(s),
            _ => return Err(mismatched_types()),
        }
        Ok(())
    }
}

/// The error for a reduce-scatter whose send and receive buffers differ in type.
pub(super) fn mismatched_types() -> Error {
    Error::invalid_argument(
        "recv",
        "reduce_scatter: the send and receive buffers have different element types",
    )
}
