//! Batch normalisation of hidden layers (DSSTNE's `BatchNormalization`, cuDNN's
//! per-activation mode): the state a layer keeps and how it is read and replaced.
//!
//! In training, `z ← γ·(z − μ_B)/√(σ²_B + ε) + β` with the batch statistics (see
//! [`crate::ops::norm::batch_norm_forward`]), between the incoming sums (and skips) and the
//! activation; the running mean and variance follow DSSTNE's cumulative average
//! (`f = 1/(1 + calls)`). Prediction uses the running statistics. `γ` starts at 1, `β` at 0,
//! and both train with the network's optimizer, unregularised.

use super::{Network, SlotState};
use crate::backend::traits::Backend;
use crate::error::{Error, Result};
use crate::ops::optimizer::state_len;

/// The batch-normalisation state of one layer on the device.
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

    /// Bytes of device memory held.
    pub fn bytes(&self, capacity: usize) -> u64 {
        4 * (self.units as u64 * (11 + capacity as u64))
    }
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

impl<B: Backend> Network<B> {
    /// The batch-normalisation values of every `BatchNormalization` layer, in layer order.
    pub fn download_batch_norm(&self) -> Result<Vec<BatchNormValues>> {
        let get = |v: &B::Vector, n: usize| -> Result<Vec<f32>> {
            let mut h = vec![0.0; n];
            self.backend.download(v, &mut h)?;
            Ok(h)
        };
        self.graph
            .layers()
            .iter()
            .zip(&self.batch_norm)
            .filter_map(|(l, bn)| bn.as_ref().map(|bn| (l, bn)))
            .map(|(l, bn)| {
                Ok(BatchNormValues {
                    layer: l.name.clone(),
                    scale: get(&bn.scale, bn.units)?,
                    bias: get(&bn.bias, bn.units)?,
                    running_mean: get(&bn.running_mean, bn.units)?,
                    running_var: get(&bn.running_var, bn.units)?,
                })
            })
            .collect()
    }

    /// The negative mean gradients of `γ` and `β` of the last [`Network::backward`], per
    /// batch-normalised layer in layer order (`running_*` are empty).
    pub fn download_batch_norm_gradients(&self) -> Result<Vec<BatchNormValues>> {
        self.graph
            .layers()
            .iter()
            .zip(&self.batch_norm)
            .filter_map(|(l, bn)| bn.as_ref().map(|bn| (l, bn)))
            .map(|(l, bn)| {
                let (mut s, mut b) = (vec![0.0; bn.units], vec![0.0; bn.units]);
                self.backend.download(&bn.dscale, &mut s)?;
                self.backend.download(&bn.dbias, &mut b)?;
                Ok(BatchNormValues {
                    layer: l.name.clone(),
                    scale: s,
                    bias: b,
                    running_mean: Vec::new(),
                    running_var: Vec::new(),
                })
            })
            .collect()
    }

    /// Replaces the values of the batch-normalised layers named in `values`. Errors (nothing
    /// uploaded) for a layer that is not batch-normalised or a vector of the wrong length.
    pub fn upload_batch_norm(&mut self, values: &[BatchNormValues]) -> Result<()> {
        let mut targets = Vec::with_capacity(values.len());
        for v in values {
            let layer = self.graph.layer_by_name(&v.layer).ok_or_else(|| {
                Error::invalid_argument(
                    "batch normalization",
                    format!("the network has no layer `{}`", v.layer),
                )
            })?;
            let bn = self.batch_norm[layer.id.0].as_ref().ok_or_else(|| {
                Error::invalid_argument(
                    "batch normalization",
                    format!("layer `{}` has no BatchNormalization", v.layer),
                )
            })?;
            for (what, x) in [
                ("scale", &v.scale),
                ("bias", &v.bias),
                ("running mean", &v.running_mean),
                ("running variance", &v.running_var),
            ] {
                if x.len() != bn.units {
                    return Err(Error::invalid_argument(
                        "batch normalization",
                        format!(
                            "layer `{}`: {} {what} values; the layer has {} units",
                            v.layer,
                            x.len(),
                            bn.units
                        ),
                    ));
                }
            }
            targets.push(layer.id.0);
        }
        for (v, i) in values.iter().zip(targets) {
            let bn = self.batch_norm[i].as_mut().expect("checked above");
            self.backend.upload(&mut bn.scale, &v.scale)?;
            self.backend.upload(&mut bn.bias, &v.bias)?;
            self.backend.upload(&mut bn.running_mean, &v.running_mean)?;
            self.backend.upload(&mut bn.running_var, &v.running_var)?;
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

impl<B: Backend> Network<B> {
    /// The training state of every batch-normalised layer, in layer order.
    pub fn download_batch_norm_state(&self) -> Result<Vec<BatchNormTrainState>> {
        let slots = state_len(self.optimizer);
        let mut out = Vec::new();
        for (l, bn) in self.graph.layers().iter().zip(&self.batch_norm) {
            let Some(bn) = bn else { continue };
            let mut s = Vec::with_capacity(slots);
            for k in 0..slots {
                let (mut weights, mut bias) = (vec![0.0; bn.units], vec![0.0; bn.units]);
                self.backend.download(&bn.scale_state[k], &mut weights)?;
                self.backend.download(&bn.bias_state[k], &mut bias)?;
                s.push(SlotState { weights, bias });
            }
            out.push(BatchNormTrainState {
                layer: l.name.clone(),
                calls: bn.calls,
                slots: s,
            });
        }
        Ok(out)
    }

    /// Replaces the training state of the batch-normalised layers (the shape
    /// [`Network::download_batch_norm_state`] returns). Errors (nothing uploaded) for an
    /// unknown or unnormalised layer, a wrong number of slots or a wrong length.
    pub fn upload_batch_norm_state(&mut self, state: &[BatchNormTrainState]) -> Result<()> {
        let slots = state_len(self.optimizer);
        let mut targets = Vec::with_capacity(state.len());
        for s in state {
            let bad = |m: String| {
                Error::invalid_argument(
                    "batch normalization state",
                    format!("layer `{}`: {m}", s.layer),
                )
            };
            let id = self
                .graph
                .layer_by_name(&s.layer)
                .map(|l| l.id.0)
                .ok_or_else(|| bad("not a layer of the network".into()))?;
            let bn = self.batch_norm[id]
                .as_ref()
                .ok_or_else(|| bad("has no BatchNormalization".into()))?;
            if s.slots.len() != slots {
                return Err(bad(format!(
                    "{} slots given; expected {slots}",
                    s.slots.len()
                )));
            }
            if s.slots
                .iter()
                .any(|x| x.weights.len() != bn.units || x.bias.len() != bn.units)
            {
                return Err(bad(format!("slots must hold {} values each", bn.units)));
            }
            targets.push(id);
        }
        for (s, id) in state.iter().zip(targets) {
            let bn = self.batch_norm[id].as_mut().expect("checked above");
            bn.calls = s.calls;
            for (k, slot) in s.slots.iter().enumerate() {
                self.backend.upload(&mut bn.scale_state[k], &slot.weights)?;
                self.backend.upload(&mut bn.bias_state[k], &slot.bias)?;
            }
        }
        Ok(())
    }
}
