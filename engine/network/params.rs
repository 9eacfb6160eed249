//! Reading and replacing a [`Network`]'s parameters and gradients, one entry per graph edge.
//!
//! Every edge has its own bias; an edge that owns its weight also reports the weight, an edge
//! that shares another edge's weight (DSSTNE's `SharedWeights`) reports an empty `0 × 0`
//! matrix in its place. Without shared weights the edges are the graph weights, in order.

use super::Network;
use crate::backend::traits::Backend;
use crate::dense::Matrix;
use crate::error::{Error, Result};

impl<B: Backend> Network<B> {
    /// Per graph edge, in edge order: `(W [rows][cols], bias)`, `W` empty (`0 × 0`) for an
    /// edge using a shared weight (see the [module documentation](self)).
    pub fn download_params(&self) -> Result<Vec<(Matrix, Vec<f32>)>> {
        self.per_edge(|p| &p.w, |b| &b.b)
    }

    /// The gradients of the last [`Network::backward`], in the order and shapes of
    /// [`Network::download_params`]: the *negative mean* gradient of the loss over the
    /// minibatch (`−(1/B)·∂L/∂W`, DSSTNE's convention). A shared weight's gradient (reported
    /// with its owning edge) is the sum of its edges' contributions divided by the sharing
    /// count (DSSTNE's `_sharingCount`). A fused SGD step ([`Network::backward_update`],
    /// [`Network::train_step`]) writes no gradient of the weights it fuses nor of the biases.
    pub fn download_gradients(&self) -> Result<Vec<(Matrix, Vec<f32>)>> {
        self.per_edge(|p| &p.dw, |b| &b.db)
    }

    fn per_edge(
        &self,
        w: impl Fn(&super::Param<B::Vector>) -> &B::Vector,
        b: impl Fn(&super::EdgeBias<B::Vector>) -> &B::Vector,
    ) -> Result<Vec<(Matrix, Vec<f32>)>> {
        self.graph
            .edges()
            .iter()
            .map(|edge| {
                let bias = &self.biases[edge.id.0];
                let mut bh = vec![0.0; bias.cols];
                self.backend.download(b(bias), &mut bh)?;
                let m = if edge.is_shared(&self.graph) {
                    Matrix::zeros(0, 0)
                } else {
                    let p = &self.params[edge.weight.0];
                    let mut wh = vec![0.0; p.rows * p.cols];
                    self.backend.download(w(p), &mut wh)?;
                    Matrix::from_vec(p.rows, p.cols, wh)?
                };
                Ok((m, bh))
            })
            .collect()
    }

    /// Replaces the weights and biases (the order and shapes of [`Network::download_params`];
    /// the matrix of a shared edge must be empty).
    pub fn upload_params(&mut self, values: &[(Matrix, Vec<f32>)]) -> Result<()> {
        let edges = self.graph.edges().len();
        if values.len() != edges {
            return Err(Error::invalid_argument(
                "weights",
                format!("{} given, the network has {edges} edges", values.len()),
            ));
        }
        for (edge, (w, b)) in self.graph.edges().iter().zip(values) {
            let shared = edge.is_shared(&self.graph);
            let (rows, cols) = if shared {
                (0, 0)
            } else {
                let p = &self.params[edge.weight.0];
                (p.rows, p.cols)
            };
            let bias_len = self.biases[edge.id.0].cols;
            if w.rows() * w.cols() != rows * cols
                || (!shared && (w.rows(), w.cols()) != (rows, cols))
                || b.len() != bias_len
            {
                return Err(Error::invalid_argument(
                    "weights",
                    format!(
                        "edge `{}` → `{}` takes {rows}x{cols} weights{} and {bias_len} biases; \
                         {}x{} and {} were given",
                        self.graph.layer(edge.source).name,
                        self.graph.layer(edge.target).name,
                        if shared {
                            " (its weight is shared)"
                        } else {
                            ""
                        },
                        w.rows(),
                        w.cols(),
                        b.len()
                    ),
                ));
            }
        }
        for (edge, (w, b)) in self.graph.edges().iter().zip(values) {
            if !edge.is_shared(&self.graph) {
                self.backend
                    .upload(&mut self.params[edge.weight.0].w, w.data())?;
            }
            self.backend.upload(&mut self.biases[edge.id.0].b, b)?;
        }
        Ok(())
    }
}
