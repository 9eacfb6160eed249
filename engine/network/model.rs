//! Conversion between a [`Network`]'s parameters and a saved [`Model`].

use super::Network;
use crate::backend::traits::Backend;
use crate::checkpoint::{resolved_descriptor, Extras, Model, WeightTensor};
use crate::dense::Matrix;
use crate::error::{Error, Result};
use crate::ops::optimizer::state_len;

impl<B: Backend> Network<B> {
    /// The network as a model file's content: the descriptor with resolved sizes, every
    /// weight and bias, and `extras`.
    pub fn to_model(&self, extras: Extras) -> Result<Model> {
        let graph = self.graph();
        let params = self.download_params()?;
        let weights = graph
            .weights()
            .iter()
            .zip(params)
            .map(|(weight, (w, bias))| WeightTensor {
                input_layer: graph.layer(weight.input).name.clone(),
                output_layer: graph.layer(weight.output).name.clone(),
                rows: w.rows(),
                cols: w.cols(),
                data: w.into_vec(),
                bias,
                shared: None,
                norm: weight.norm,
                locked: false,
            })
            .collect();
        Ok(Model {
            descriptor: resolved_descriptor(graph),
            weights,
            extras,
        })
    }

    /// Loads the weights and biases of `model` (matched to this network's weights by the
    /// names of their input and output layers).
    pub fn load_weights(&mut self, model: &Model) -> Result<()> {
        let graph = self.graph();
        let mut values = Vec::with_capacity(graph.weights().len());
        for weight in graph.weights() {
            let (input, output) = (
                &graph.layer(weight.input).name,
                &graph.layer(weight.output).name,
            );
            let t = model
                .weights
                .iter()
                .find(|t| &t.input_layer == input && &t.output_layer == output)
                .ok_or_else(|| {
                    Error::InvalidData(format!(
                        "the model has no weight from layer `{input}` to layer `{output}`"
                    ))
                })?;
            values.push((
                Matrix::from_vec(t.rows, t.cols, t.data.clone())?,
                t.bias.clone(),
            ));
        }
        self.upload_params(&values)
    }
}

/// One optimizer state slot of one weight, downloaded: slot `k` (`s0` = velocity or Adam's
/// first moment, `s1` = AdaDelta's gradient average or Adam's second moment, see
/// [`crate::ops::optimizer`]) of `W` (`rows * cols` values, `W`'s layout) and of its bias
/// (`cols` values).
#[derive(Clone, Debug, PartialEq)]
pub struct SlotState {
    /// The slot's values for `W`.
    pub weights: Vec<f32>,
    /// The slot's values for the bias.
    pub bias: Vec<f32>,
}

impl<B: Backend> Network<B> {
    /// The optimizer state, downloaded: per graph weight (in the order of
    /// [`Network::download_params`]), one [`SlotState`] per slot the optimizer keeps
    /// ([`crate::ops::optimizer::state_len`]: none for SGD, one for Momentum, Nesterov,
    /// AdaGrad and RMSProp, two for AdaDelta and Adam).
    pub fn download_optimizer_state(&self) -> Result<Vec<Vec<SlotState>>> {
        let slots = state_len(self.optimizer);
        self.params
            .iter()
            .map(|p| {
                (0..slots)
                    .map(|k| {
                        let mut weights = vec![0.0; p.rows * p.cols];
                        self.backend.download(&p.w_state[k], &mut weights)?;
                        let mut bias = vec![0.0; p.cols];
                        self.backend.download(&p.b_state[k], &mut bias)?;
                        Ok(SlotState { weights, bias })
                    })
                    .collect()
            })
            .collect()
    }

    /// Replaces the optimizer state (the shape [`Network::download_optimizer_state`] returns).
    ///
    /// Errors ([`Error::InvalidArgument`], nothing uploaded): a different number of weights
    /// or slots than this network's optimizer keeps, or a slot of the wrong length (naming
    /// the weight and both lengths).
    pub fn upload_optimizer_state(&mut self, state: &[Vec<SlotState>]) -> Result<()> {
        let slots = state_len(self.optimizer);
        if state.len() != self.params.len() {
            return Err(Error::invalid_argument(
                "optimizer state",
                format!(
                    "{} weights given, the network has {}",
                    state.len(),
                    self.params.len()
                ),
            ));
        }
        for (i, (p, s)) in self.params.iter().zip(state).enumerate() {
            let weight = &self.graph.weights()[i];
            let name = format!(
                "`{}` -> `{}`",
                self.graph.layer(weight.input).name,
                self.graph.layer(weight.output).name
            );
            if s.len() != slots {
                return Err(Error::invalid_argument(
                    "optimizer state",
                    format!(
                        "weight {name}: {} slots given; {} keeps {slots}",
                        s.len(),
                        self.optimizer.name()
                    ),
                ));
            }
            for (k, slot) in s.iter().enumerate() {
                if slot.weights.len() != p.rows * p.cols || slot.bias.len() != p.cols {
                    return Err(Error::invalid_argument(
                        "optimizer state",
                        format!(
                            "weight {name}, slot s{k}: {} values and {} biases given; \
                             expected {} and {}",
                            slot.weights.len(),
                            slot.bias.len(),
                            p.rows * p.cols,
                            p.cols
                        ),
                    ));
                }
            }
        }
        for (p, s) in self.params.iter_mut().zip(state) {
            for (k, slot) in s.iter().enumerate() {
                self.backend.upload(&mut p.w_state[k], &slot.weights)?;
                self.backend.upload(&mut p.b_state[k], &slot.bias)?;
            }
        }
        Ok(())
    }
}
