//! Minibatches built one ahead on a helper thread: while the network trains on batch `i`,
//! batch `i + 1` is gathered from the host data (rows copied, denoising drawn), so a device
//! backend is not left idle while the host prepares its next input. The batches are the same
//! whichever thread builds them (each is a pure function of the examples and the seed).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Host time spent per phase of an epoch (reported with `RUST_LOG=debug`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timing {
    /// Waiting for the helper thread to finish the next batch.
    pub wait: Duration,
    /// In `Network::load_batch` (uploads).
    pub load: Duration,
    /// In the forward, loss, backward and update passes (launches, and waiting for the
    /// device's loss).
    pub step: Duration,
}

/// Calls `f(work, wait)` for the minibatches of `order` in chunks of `batch_size`, each built
/// by `build` (from the chunk's examples) on a helper thread while `f` runs on the previous
/// one; `wait` is how long the caller waited for it. Stops at the first error (from a build
/// or from `f`).
pub(crate) fn for_each_batch<T: Send>(
    order: &[u32],
    batch_size: usize,
    build: impl Fn(&[u32]) -> Result<T> + Sync,
    mut f: impl FnMut(T, Duration) -> Result<()>,
) -> Result<()> {
    let mut chunks = order.chunks(batch_size.max(1));
    let build = &build;
    std::thread::scope(|scope| {
        let mut pending = chunks.next().map(|c| scope.spawn(move || build(c)));
        while let Some(handle) = pending.take() {
            let t0 = Instant::now();
            let work = handle
                .join()
                .map_err(|_| Error::InvalidData("the batch-building thread panicked".into()))??;
            let waited = t0.elapsed();
            pending = chunks.next().map(|c| scope.spawn(move || build(c)));
            f(work, waited)?;
        }
        Ok(())
    })
}
