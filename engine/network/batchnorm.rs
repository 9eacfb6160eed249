//! Batch normalisation of hidden layers (DSSTNE's `BatchNormalization`, cuDNN's
//! per-activation mode): the state a layer keeps and how it is read and replaced.
//!
//! In training, `z ← γ·(z − μ_B)/√(σ²_B + ε) + β` with the batch statistics (see
//! [`crate::ops::norm::batch_norm_forward`]), between the incoming sums (and skips) and the
//! activation; the running mean and variance follow DSSTNE's cumulative average
//! (`f = 1/(1 + calls)`). Prediction uses the running statistics. `γ` starts at 1, `β` at 0,
//! and both train with the network's optimizer, unregularised. Normalisation is per unit, so
//! each rank normalises its units over the minibatch exactly as one rank would.

use super::{Network, SlotState};
use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::ops::optimizer::state_len;

/// The batch-normalisation state of one layer's local units on the device.
pub(crate) struct BatchNorm<V> {
    pub scale: V,
    pub bias: V,
    pub dscale: V,
    pub dbias: V,
    pub scale_state: [V; 2],
    pub bias_state: [V; 2],
    pub running_mean: V,
    pub running_var: V,
    pub inv_std: V,
    /// `x̂` of the last training forward pass, `[capacity][units]`.
    pub xhat: V,
    /// Training forward passes so far (DSSTNE's `_bnCalls`).
    pub calls: u64,
    pub units: usize,
}

impl<V> BatchNorm<V> {
    /// Fresh state: `γ = 1`, `β = 0`, running mean 0 and variance 0 (DSSTNE's start).
    pub fn new<B: Backend<Vector = V>>(
        backend: &B,
        units: usize,
        capacity: usize,
        state: usize,
    ) -> Result<Self> {
        let state_buf = |k: usize| backend.zeros(if state > k { units } else { 0 });
        let mut scale = backend.zeros(units)?;
        backend.upload(&mut scale, &vec![1.0; units])?;
        Ok(BatchNorm {
            scale,
            bias: backend.zeros(units)?,
            dscale: backend.zeros(units)?,
            dbias: backend.zeros(units)?,
            scale_state: [state_buf(0)?, state_buf(1)?],
            bias_state: [state_buf(0)?, state_buf(1)?],
            running_mean: backend.zeros(units)?,
            running_var: backend.zeros(units)?,
            inv_std: backend.zeros(units)?,
            xhat: backend.zeros(units * capacity)?,
            calls: 0,
            units,
        })
    }
}

/// The floats [`BatchNorm::new`] allocates for `units` units and `capacity` examples, at
/// most: eleven per unit (values, gradients, two optimizer slots each of `γ` and `β`,
/// running statistics, `1/σ`) and `x̂`.
pub(crate) fn batch_norm_floats(units: usize, capacity: usize) -> u128 {
    units as u128 * (11 + capacity as u128)
}

/// The saved values of one batch-normalised layer (each `units` long), as DSSTNE's model
/// file holds them (`scaleBN`, `biasBN`, `runningMeanBN`, `runningVarianceBN`).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormValues {
    /// The layer's name.
    pub layer: String,
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

impl<B: Backend, C: Collective> Network<B, C> {
    /// The batch-normalised layers with their local state, in layer order.
    fn batch_norm_layers(
        &self,
    ) -> impl Iterator<Item = (&crate::graph::Layer, &BatchNorm<B::Vector>)> {
        self.graph
            .layers()
            .iter()
            .zip(&self.batch_norm)
            .filter_map(|(l, bn)| bn.as_ref().map(|bn| (l, bn)))
    }

    /// The batch-normalisation values of every `BatchNormalization` layer, in layer order
    /// (whole on rank 0, empty elsewhere).
    pub fn download_batch_norm(&self) -> Result<Vec<BatchNormValues>> {
        self.batch_norm_layers()
            .map(|(l, bn)| {
                Ok(BatchNormValues {
                    layer: l.name.clone(),
                    scale: self.gather_units(l.id, &bn.scale)?,
                    bias: self.gather_units(l.id, &bn.bias)?,
                    running_mean: self.gather_units(l.id, &bn.running_mean)?,
                    running_var: self.gather_units(l.id, &bn.running_var)?,
                })
            })
            .collect()
    }

    /// The negative mean gradients of `γ` and `β` of the last [`Network::backward`], per
    /// batch-normalised layer in layer order (`running_*` are empty; whole on rank 0).
    pub fn download_batch_norm_gradients(&self) -> Result<Vec<BatchNormValues>> {
        self.batch_norm_layers()
            .map(|(l, bn)| {
                Ok(BatchNormValues {
                    layer: l.name.clone(),
                    scale: self.gather_units(l.id, &bn.dscale)?,
                    bias: self.gather_units(l.id, &bn.dbias)?,
                    running_mean: Vec::new(),
                    running_var: Vec::new(),
                })
            })
            .collect()
    }

    /// The batch-normalised layer `name`'s index; errors naming `what` for an unknown or
    /// unnormalised layer or a vector whose length (one of `lens`) is not the layer's units.
    fn batch_norm_target(&self, name: &str, lens: &[usize], what: &str) -> Result<usize> {
        let bad = |m: String| Error::invalid_argument(what, format!("layer `{name}`: {m}"));
        let layer = self
            .graph
            .layer_by_name(name)
            .ok_or_else(|| bad("not a layer of the network".into()))?;
        if self.batch_norm[layer.id.0].is_none() {
            return Err(bad("has no BatchNormalization".into()));
        }
        if let Some(&n) = lens.iter().find(|&&n| n != layer.units) {
            return Err(bad(format!(
                "{n} values; the layer has {} units",
                layer.units
            )));
        }
        Ok(layer.id.0)
    }

    /// Replaces the values of the batch-normalised layers named in `values` (whole, the same
    /// on every rank). Errors (nothing uploaded) for a layer that is not batch-normalised or a
    /// vector of the wrong length.
    pub fn upload_batch_norm(&mut self, values: &[BatchNormValues]) -> Result<()> {
        let mut targets = Vec::with_capacity(values.len());
        for v in values {
            let lens = [
                v.scale.len(),
                v.bias.len(),
                v.running_mean.len(),
                v.running_var.len(),
            ];
            targets.push(self.batch_norm_target(&v.layer, &lens, "batch normalization")?);
        }
        for (v, i) in values.iter().zip(targets) {
            let range = self.local_units(crate::graph::LayerId(i));
            let bn = self.batch_norm[i].as_mut().expect("checked above");
            self.backend
                .upload(&mut bn.scale, &v.scale[range.clone()])?;
            self.backend.upload(&mut bn.bias, &v.bias[range.clone()])?;
            self.backend
                .upload(&mut bn.running_mean, &v.running_mean[range.clone()])?;
            self.backend
                .upload(&mut bn.running_var, &v.running_var[range])?;
        }
        Ok(())
    }

    /// The training state of every batch-normalised layer, in layer order (whole on rank 0,
    /// empty slots elsewhere).
    pub fn download_batch_norm_state(&self) -> Result<Vec<BatchNormTrainState>> {
        let slots = state_len(self.optimizer);
        self.batch_norm_layers()
            .map(|(l, bn)| {
                let slots = (0..slots)
                    .map(|k| {
                        Ok(SlotState {
                            weights: self.gather_units(l.id, &bn.scale_state[k])?,
                            bias: self.gather_units(l.id, &bn.bias_state[k])?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(BatchNormTrainState {
                    layer: l.name.clone(),
                    calls: bn.calls,
                    slots,
                })
            })
            .collect()
    }

    /// Replaces the training state of the batch-normalised layers (the shape
    /// [`Network::download_batch_norm_state`] returns, whole, the same on every rank). Errors
    /// (nothing uploaded) for an unknown or unnormalised layer, a wrong number of slots or a
    /// wrong length.
    pub fn upload_batch_norm_state(&mut self, state: &[BatchNormTrainState]) -> Result<()> {
        let slots = state_len(self.optimizer);
        let mut targets = Vec::with_capacity(state.len());
        for s in state {
            if s.slots.len() != slots {
                return Err(Error::invalid_argument(
                    "batch normalization state",
                    format!(
                        "layer `{}`: {} slots given; expected {slots}",
                        s.layer,
                        s.slots.len()
                    ),
                ));
            }
            let lens: Vec<usize> = s
                .slots
                .iter()
                .flat_map(|x| [x.weights.len(), x.bias.len()])
                .collect();
            targets.push(self.batch_norm_target(&s.layer, &lens, "batch normalization state")?);
        }
        for (s, i) in state.iter().zip(targets) {
            let range = self.local_units(crate::graph::LayerId(i));
            let bn = self.batch_norm[i].as_mut().expect("checked above");
            bn.calls = s.calls;
            for (k, slot) in s.slots.iter().enumerate() {
                self.backend
                    .upload(&mut bn.scale_state[k], &slot.weights[range.clone()])?;
                self.backend
                    .upload(&mut bn.bias_state[k], &slot.bias[range.clone()])?;
            }
        }
        Ok(())
    }
}

/// The training state of one batch-normalised layer beyond its values: the optimizer slots
/// of `γ` (in [`SlotState::weights`]) and `β` (in [`SlotState::bias`]), and the number of
/// training passes that set the running-average factor.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormTrainState {
    pub layer: String,
    pub calls: u64,
    pub slots: Vec<SlotState>,
}
