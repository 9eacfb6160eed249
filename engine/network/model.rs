//! Conversion between a [`Network`]'s parameters and a saved [`Model`].

use super::BatchNormValues;
use super::Network;
use crate::backend::traits::Backend;
use crate::checkpoint::{
    resolved_descriptor, BatchNormTensors, Extras, Model, SharedRef, WeightTensor,
};
use crate::collective::Collective;
use crate::dense::Matrix;
use crate::error::{Error, Result};
use crate::ops::optimizer::state_len;

impl<B: Backend, C: Collective> Network<B, C> {
    /// The network as a model file's content: the descriptor with resolved sizes, one tensor
    /// per edge (a shared edge with its own bias and a reference to the weight it uses), the
    /// batch-normalisation values, and `extras` (on several ranks: whole on rank 0, empty
    /// tensors elsewhere).
    pub fn to_model(&self, extras: Extras) -> Result<Model> {
        assemble_model(
            self.graph(),
            self.download_params()?,
            self.download_batch_norm()?,
            extras,
        )
    }

    /// Loads the weights and biases of `model` (matched to this network's edges by the names
    /// of their input and output layers) and the batch-normalisation values of its
    /// batch-normalised layers (a model without them, e.g. DSSTNE's of a network without
    /// BatchNormalization, leaves the fresh values: γ = 1, β = 0, running mean 0 and
    /// variance 0). On several ranks every rank passes the whole model and keeps its blocks.
    pub fn load_weights(&mut self, model: &Model) -> Result<()> {
        let (values, bn) = model_values(self.graph(), model)?;
        self.upload_params(&values)?;
        self.upload_batch_norm(&bn)
    }
}

/// Per graph edge: `(W, bias)` (the order and shapes of [`Network::download_params`]).
pub(crate) type EdgeValues = Vec<(Matrix, Vec<f32>)>;

/// A model file's content from per-edge parameters (the order and shapes of
/// [`Network::download_params`]), batch-normalisation values and `extras`: the descriptor
/// with resolved sizes, one tensor per edge (a shared edge with its own bias and a reference
/// to the weight it uses).
pub(crate) fn assemble_model(
    graph: &crate::graph::Graph,
    params: Vec<(Matrix, Vec<f32>)>,
    batch_norm: Vec<BatchNormValues>,
    extras: Extras,
) -> Result<Model> {
    let weights = graph
        .edges()
        .iter()
        .zip(params)
        .map(|(edge, (w, bias))| {
            let weight = graph.weight(edge.weight);
            let shared = edge.is_shared(graph).then(|| SharedRef {
                source_input_layer: graph.layer(weight.input).name.clone(),
                source_output_layer: graph.layer(weight.output).name.clone(),
                transposed: edge.transposed,
            });
            WeightTensor {
                input_layer: graph.layer(edge.source).name.clone(),
                output_layer: graph.layer(edge.target).name.clone(),
                rows: graph.layer(edge.source).units,
                cols: graph.layer(edge.target).units,
                data: w.into_vec(),
                bias,
                shared,
                norm: graph.layer(edge.target).weight_norm,
                locked: false,
            }
        })
        .collect();
    let batch_norm = batch_norm
        .into_iter()
        .map(|v| BatchNormTensors {
            layer: v.layer,
            scale: v.scale,
            bias: v.bias,
            running_mean: v.running_mean,
            running_variance: v.running_var,
        })
        .collect();
    Ok(Model {
        descriptor: resolved_descriptor(graph),
        weights,
        batch_norm,
        extras,
    })
}

/// The per-edge parameters of `model` for `graph` (matched by the names of each edge's input
/// and output layers; the order and shapes of [`Network::download_params`]) and the
/// batch-normalisation values of `graph`'s batch-normalised layers that `model` has.
pub(crate) fn model_values(
    graph: &crate::graph::Graph,
    model: &Model,
) -> Result<(EdgeValues, Vec<BatchNormValues>)> {
    let mut values = Vec::with_capacity(graph.edges().len());
    for edge in graph.edges() {
        let (input, output) = (
            &graph.layer(edge.source).name,
            &graph.layer(edge.target).name,
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
        let w = if edge.is_shared(graph) {
            Matrix::zeros(0, 0)
        } else if t.shared.is_some() {
            return Err(Error::InvalidData(format!(
                "the model's weight `{input}` -> `{output}` is shared; the network's is not"
            )));
        } else {
            Matrix::from_vec(t.rows, t.cols, t.data.clone())?
        };
        values.push((w, t.bias.clone()));
    }
    let bn: Vec<BatchNormValues> = model
        .batch_norm
        .iter()
        .filter(|t| {
            graph
                .layer_by_name(&t.layer)
                .is_some_and(|l| l.batch_normalization)
        })
        .map(|t| BatchNormValues {
            layer: t.layer.clone(),
            scale: t.scale.clone(),
            bias: t.bias.clone(),
            running_mean: t.running_mean.clone(),
            running_var: t.running_variance.clone(),
        })
        .collect();
    Ok((values, bn))
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

impl<B: Backend, C: Collective> Network<B, C> {
    /// The optimizer state, downloaded: per graph edge (in the order of
    /// [`Network::download_params`]), one [`SlotState`] per slot the optimizer keeps
    /// ([`crate::ops::optimizer::state_len`]: none for SGD, one for Momentum, Nesterov,
    /// AdaGrad and RMSProp, two for AdaDelta and Adam). An edge using a shared weight has
    /// empty `weights` (the weight's state is its owning edge's). Whole on rank 0, empty
    /// slots elsewhere.
    pub fn download_optimizer_state(&self) -> Result<Vec<Vec<SlotState>>> {
        let biases = self.download_bias_optimizer_state()?;
        self.graph
            .edges()
            .iter()
            .zip(biases)
            .map(|(edge, bias_slots)| {
                let shared = edge.is_shared(&self.graph);
                let i = edge.weight.0;
                bias_slots
                    .into_iter()
                    .enumerate()
                    .map(|(k, bias)| {
                        Ok(SlotState {
                            weights: if shared {
                                Vec::new()
                            } else {
                                self.gather_owned(i, &self.params[i].w_state[k])?
                            },
                            bias,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// The optimizer slots of every edge's bias (per edge, per slot), whole on rank 0 and
    /// empty elsewhere: [`Network::download_optimizer_state`] without the weight matrices'
    /// slots (a streamed checkpoint takes those from [`Network::save`]).
    pub fn download_bias_optimizer_state(&self) -> Result<Vec<Vec<Vec<f32>>>> {
        let slots = state_len(self.optimizer);
        self.graph
            .edges()
            .iter()
            .map(|edge| {
                let bias = &self.biases[edge.id.0];
                (0..slots)
                    .map(|k| self.gather_units(edge.target, &bias.state[k]))
                    .collect()
            })
            .collect()
    }

    /// Replaces the optimizer state (the shape [`Network::download_optimizer_state`] returns,
    /// whole, the same on every rank).
    ///
    /// Errors ([`Error::InvalidArgument`], nothing uploaded): a different number of edges
    /// or slots than this network's optimizer keeps, or a slot of the wrong length (naming
    /// the weight and both lengths).
    pub fn upload_optimizer_state(&mut self, state: &[Vec<SlotState>]) -> Result<()> {
        let slots = state_len(self.optimizer);
        let edges = self.graph.edges();
        if state.len() != edges.len() {
            return Err(Error::invalid_argument(
                "optimizer state",
                format!(
                    "{} weights given, the network has {}",
                    state.len(),
                    edges.len()
                ),
            ));
        }
        for (edge, s) in edges.iter().zip(state) {
            let name = format!(
                "`{}` -> `{}`",
                self.graph.layer(edge.source).name,
                self.graph.layer(edge.target).name
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
            let wp = &self.plan.weights()[edge.weight.0];
            let want_w = if edge.is_shared(&self.graph) {
                0
            } else {
                wp.input_units * wp.output_units
            };
            let want_b = self.graph.layer(edge.target).units;
            for (k, slot) in s.iter().enumerate() {
                if slot.weights.len() != want_w || slot.bias.len() != want_b {
                    return Err(Error::invalid_argument(
                        "optimizer state",
                        format!(
                            "weight {name}, slot s{k}: {} values and {} biases given; \
                             expected {want_w} and {want_b}",
                            slot.weights.len(),
                            slot.bias.len(),
                        ),
                    ));
                }
            }
        }
        for (edge, s) in self.graph.edges().iter().zip(state) {
            let shared = edge.is_shared(&self.graph);
            for (k, slot) in s.iter().enumerate() {
                if !shared {
                    let block = self.weight_block(edge.weight.0, &slot.weights);
                    self.backend
                        .upload(&mut self.params[edge.weight.0].w_state[k], &block)?;
                }
                let bias = self.local_part(edge.target, &slot.bias);
                self.backend
                    .upload(&mut self.biases[edge.id.0].state[k], bias)?;
            }
        }
        Ok(())
    }
}
