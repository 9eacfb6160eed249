//! Minibatch uploads through pinned host memory ([`super::CudaChoices::pinned_uploads`]).
//!
//! A copy from pageable memory may make the host wait until the stream has run every kernel
//! queued before it (the driver stages it through its own pinned buffer), so the device idles
//! from the end of one step until the host has copied the next batch and launched again. From
//! pinned memory the copy is queued like a kernel and the host goes on at once.
//!
//! A ring of [`SLOTS`] pinned buffers: an upload writes the batch's arrays into the next slot
//! (after waiting for the copies that last read that slot), queues one asynchronous copy per
//! array and records an event behind them. A slot grows (to the next power of two) when a
//! batch does not fit.

use std::sync::Arc;

use cudarc::driver::{
    result, CudaContext, CudaEvent, CudaSlice, DevicePtrMut, DeviceRepr, PinnedHostSlice,
    ValidAsZeroBits,
};

use super::backend::{dev, Cuda};
use crate::error::{Error, Result};

/// Buffers in the ring: a slot is rewritten two uploads after its copies were queued.
pub(super) const SLOTS: usize = 3;
/// The smallest slot, in bytes.
const MIN_SLOT_BYTES: usize = 1 << 16;

/// The ring of pinned staging buffers of one backend.
pub(super) struct Staging {
    slots: Vec<Slot>,
    next: usize,
}

struct Slot {
    bytes: Option<PinnedHostSlice<u8>>,
    /// Recorded on the stream after the copies that read `bytes`.
    copied: CudaEvent,
}

impl Staging {
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        let slots = (0..SLOTS)
            .map(|_| {
                Ok(Slot {
                    bytes: None,
                    copied: ctx.new_event(None).map_err(dev("creating an event"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Staging { slots, next: 0 })
    }
}

impl Drop for Staging {
    /// Frees the buffers only after the copies reading them are done.
    fn drop(&mut self) {
        for slot in &self.slots {
            let _ = slot.copied.synchronize();
        }
    }
}

/// A CSR batch's offsets, columns and values (if any) on the device.
pub(super) type CsrOnDevice = (CudaSlice<u64>, CudaSlice<u32>, Option<CudaSlice<f32>>);

/// `x` rounded up to a multiple of 8.
fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

impl Cuda {
    /// Uploads the CSR arrays of one minibatch through the next pinned slot, with
    /// asynchronous copies; an empty array becomes a one-element zero buffer, as in
    /// `upload_vec`.
    pub(super) fn upload_staged(
        &self,
        offsets: &[u64],
        cols: &[u32],
        vals: Option<&[f32]>,
    ) -> Result<CsrOnDevice> {
        let mut staging = self
            .staging
            .lock()
            .map_err(|_| Error::Device("the staging ring's lock is poisoned".into()))?;
        let index = staging.next;
        staging.next = (index + 1) % SLOTS;
        let slot = &mut staging.slots[index];
        let cols_at = align8(std::mem::size_of_val(offsets));
        let vals_at = align8(cols_at + std::mem::size_of_val(cols));
        let need = vals_at + vals.map_or(0, std::mem::size_of_val);
        // The copies that last read this slot must be done before it is rewritten.
        slot.copied
            .synchronize()
            .map_err(dev("waiting for a staging buffer"))?;
        if slot.bytes.as_ref().is_none_or(|b| b.len() < need) {
            let len = need.next_power_of_two().max(MIN_SLOT_BYTES);
            slot.bytes = None;
            // SAFETY: the buffer's bytes are written below before any copy reads them.
            let fresh = unsafe { self.ctx.alloc_pinned::<u8>(len) }
                .map_err(dev("allocating pinned host memory"))?;
            slot.bytes = Some(fresh);
        }
        let host = slot
            .bytes
            .as_mut()
            .expect("a slot was just sized")
            .as_mut_slice()
            .map_err(dev("mapping a staging buffer"))?;
        let put =
            |host: &mut [u8], at: usize, src: &[u8]| host[at..at + src.len()].copy_from_slice(src);
        put(host, 0, bytemuck::cast_slice(offsets));
        put(host, cols_at, bytemuck::cast_slice(cols));
        if let Some(v) = vals {
            put(host, vals_at, bytemuck::cast_slice(v));
        }
        let host: &[u8] = host;
        let copies = (|| {
            let offsets_d = self.copy_staged(host, 0, offsets.len())?;
            let cols_d = self.copy_staged(host, cols_at, cols.len())?;
            let vals_d = vals
                .map(|v| self.copy_staged(host, vals_at, v.len()))
                .transpose()?;
            Ok((offsets_d, cols_d, vals_d))
        })();
        // Recorded even when a copy failed, so that the slot is not rewritten under the
        // copies that were queued.
        let recorded = slot
            .copied
            .record(&self.stream)
            .map_err(dev("recording a staging event"));
        let device = copies?;
        recorded?;
        Ok(device)
    }

    /// A device buffer of `len` elements of `T` filled from `host[at..]` by an asynchronous
    /// copy (one zero element when `len` is 0).
    fn copy_staged<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        host: &[u8],
        at: usize,
        len: usize,
    ) -> Result<CudaSlice<T>> {
        if len == 0 {
            return self.stream.alloc_zeros(1).map_err(dev("allocating"));
        }
        let bytes = &host[at..at + len * std::mem::size_of::<T>()];
        // SAFETY: every element is written by the copy below before any kernel reads it
        // (same stream).
        let mut device = unsafe { self.stream.alloc::<T>(len) }.map_err(dev("allocating"))?;
        let (ptr, written) = device.device_ptr_mut(&self.stream);
        // The raw copy below needs the context current on this thread.
        self.ctx
            .bind_to_thread()
            .map_err(dev("binding the context"))?;
        // SAFETY: `ptr` holds `len` elements of `T`, exactly `bytes.len()` bytes; `bytes` is
        // pinned memory that the caller's slot event keeps unchanged until the copy is done.
        unsafe { result::memcpy_htod_async(ptr, bytes, self.stream.cu_stream()) }
            .map_err(dev("uploading"))?;
        drop(written);
        Ok(device)
    }
}
