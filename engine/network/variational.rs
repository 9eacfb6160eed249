//! The variational bottleneck's steps in a [`Network`] ([`crate::ops::variational`] has the
//! math): the training forward replaces the mean layer's units by the sample and adds `β·KL`
//! to the loss; the backward pass turns the mean layer's `∂L/∂z` into `∂L/∂μ` and writes the
//! log-variance layer's `∂L/∂ℓ`. Both run on a rank's local units and rows: the two layers
//! have the same units, so every rank count splits them alike, and the noise is keyed by the
//! global example and unit.

use super::{split_pair, Network};
use crate::backend::traits::{Backend, MatMut};
use crate::collective::Collective;
use crate::error::Result;
use crate::graph::VariationalLayer;

/// What the backward pass of a variational mean layer needs from its training forward: `μ`
/// and `ε` of this rank's units and rows (`capacity × local units` each).
pub(crate) struct LatentSample<V> {
    pub mean: V,
    pub noise: V,
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// Training forward of the variational mean layer `li` (its units hold `μ`): samples
    /// `z = μ + exp(½ℓ)·ε` in place and adds `β_t·KL` to the step's loss. The noise draws from
    /// the log-variance layer's dropout stream (that layer has no dropout) with the same
    /// counters as a dropout mask.
    pub(super) fn sample_latent(
        &mut self,
        li: usize,
        v: &VariationalLayer,
        seed: u64,
    ) -> Result<()> {
        let (rows, lv) = (self.rows_of(v.log_variance), v.log_variance.0);
        let cols = self.local_len(v.log_variance);
        let m = self.mask(self.graph.layer(v.log_variance), seed);
        let beta = v.schedule.beta_at(self.step);
        let (log_var, z) = split_pair(&mut self.units, lv, li);
        let sample = self.samples[li].as_mut().expect("allocated at build");
        let kl = self.backend.variational_forward(
            MatMut::new(z.as_mut().expect("hidden layers are dense"), rows, cols),
            log_var.as_ref().expect("hidden layers are dense"),
            &mut sample.mean,
            &mut sample.noise,
            m,
            beta,
        )?;
        self.kl_loss = self.kl_loss + kl;
        Ok(())
    }

    /// Backward step of the variational mean layer `li`, before its own delta steps: its
    /// `∂L/∂z` (zero when nothing was `written`) becomes `∂L/∂μ`, and the log-variance layer's
    /// delta receives `∂L/∂ℓ` (the caller marks it written).
    pub(super) fn latent_delta(
        &mut self,
        li: usize,
        v: &VariationalLayer,
        written: bool,
    ) -> Result<()> {
        let (rows, lv) = (self.rows_of(v.log_variance), v.log_variance.0);
        let cols = self.local_len(v.log_variance);
        let beta = v.schedule.beta_at(self.step);
        // The log-variance layer comes first in topological order.
        let (head, tail) = self.deltas.split_at_mut(li);
        let (log_var_delta, delta) = (&mut head[lv], &mut tail[0]);
        let delta = delta.as_mut().expect("non-input layers have deltas");
        if !written {
            self.backend.upload(delta, &vec![0.0; rows * cols])?;
        }
        let sample = self.samples[li].as_ref().expect("allocated at build");
        let log_var = self.units[lv].as_ref().expect("hidden layers are dense");
        self.backend.variational_backward(
            MatMut::new(delta, rows, cols),
            log_var_delta
                .as_mut()
                .expect("non-input layers have deltas"),
            (&sample.mean, log_var, &sample.noise),
            beta,
        )
    }
}
