//! Detecting a diverged forward pass.
//!
//! The loss is summed in fixed point, where a NaN term counts as 0 and an infinite one
//! saturates (see [`crate::ops::fixed`]), so the loss alone cannot show that a network has
//! diverged. Instead the activations of every output layer are summed per example with one
//! matrix–vector product on the device (`a · 1`): the sum is NaN or infinite when any
//! activation is, and only one number per example is downloaded.

use super::Network;
use crate::backend::traits::{Backend, Mat, MatMut};
use crate::collective::{Collective, ReduceOp};
use crate::error::Result;
use crate::ops::Trans;

impl<B: Backend, C: Collective> Network<B, C> {
    /// After [`Network::forward`]: the name of the first output layer (in graph order) with a
    /// NaN or infinite activation in the loaded minibatch on any rank, or `None` when all are
    /// finite (the same answer on every rank).
    ///
    /// The test is `Σ_j a[b][j]` per example `b`, so finite activations whose sum overflows
    /// `f32` (beyond ~3.4e38, which only a diverged network reaches) count as infinite too.
    /// Costs one `[rows × units] · [units]` product per output layer and a download of `rows`
    /// floats (and, on several ranks, an all-reduce of one flag per output layer). Errors
    /// when no minibatch is loaded.
    pub fn non_finite_output(&mut self) -> Result<Option<String>> {
        self.require_rows()?;
        let mut flags = Vec::new();
        for layer in self.graph.outputs() {
            let rows = self.rows_of(layer.id);
            let a = self.units[layer.id.0]
                .as_ref()
                .expect("output layers have a unit buffer");
            let cols = self.local_len(layer.id);
            let (ones, sums) = &mut self.finite_check;
            flags.push(u64::from(!rows_finite(
                &self.backend,
                Mat::new(a, rows, cols),
                ones,
                sums,
            )?));
        }
        if self.comm.size() > 1 {
            self.comm.all_reduce(&mut flags, ReduceOp::Max)?;
        }
        Ok(self
            .graph
            .outputs()
            .zip(&flags)
            .find(|(_, &f)| f != 0)
            .map(|(l, _)| l.name.clone()))
    }
}

/// Whether every row sum of `a` (`Σ_j a[b][j]`, one `[rows × cols] · [cols]` product on the
/// device with `ones` holding at least `cols` ones, into `sums`, at least `rows` long) is
/// finite: false when an element is NaN or infinite (or the sum overflows).
fn rows_finite<B: Backend>(
    backend: &B,
    a: Mat<'_, B::Vector>,
    ones: &B::Vector,
    sums: &mut B::Vector,
) -> Result<bool> {
    backend.gemm(
        MatMut::new(sums, a.rows, 1),
        1.0,
        a,
        Trans::No,
        Mat::new(ones, a.cols, 1),
        Trans::No,
        0.0,
    )?;
    let mut host = vec![0.0f32; a.rows];
    backend.download(sums, &mut host)?;
    Ok(host.iter().all(|s| s.is_finite()))
}
