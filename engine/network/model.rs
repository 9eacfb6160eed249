//! Conversion between a [`Network`]'s parameters and a saved [`Model`].

use super::Network;
use crate::backend::traits::Backend;
use crate::checkpoint::{resolved_descriptor, Extras, Model, WeightTensor};
use crate::dense::Matrix;
use crate::error::{Error, Result};

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
