//! Per-layer steps of a [`Network`](super::Network), run on a rank's local units: a hidden
//! layer's delta, an output layer's delta, and batch normalisation and bias updates.

use super::{act_params, AlphaDropout, BatchNorm, EdgeBias};
use crate::backend::traits::{Backend, BatchNormState, DropoutMask, Mat, MatMut};
use crate::error::{Error, Result};
use crate::graph::Layer;
use crate::ops::loss::LossSpec;
use crate::ops::optimizer::Hyper;
use crate::ops::Optimizer;

/// A hidden layer's `∂L/∂a` in `delta` (`rows × cols`; zero when nothing was `written` to it)
/// to `∂L/∂z` before `DeltaNorm` and batch normalisation: the sparseness penalty (on the
/// activations after dropout, `a`), the gradient through dropout (`mask`), then `f'` taken
/// from the activations before dropout (`pre_dropout` when the layer has dropout). Without
/// `penalise` the caller has applied the sparseness penalty already.
#[allow(clippy::too_many_arguments)]
pub(crate) fn hidden_layer_delta<B: Backend>(
    backend: &B,
    layer: &Layer,
    delta: &mut B::Vector,
    a: &B::Vector,
    pre_dropout: Option<&B::Vector>,
    (rows, cols): (usize, usize),
    written: bool,
    penalise: bool,
    mask: DropoutMask,
) -> Result<()> {
    if !written {
        backend.upload(delta, &vec![0.0; rows * cols])?;
    }
    if let Some(penalty) = layer.sparseness_penalty.filter(|_| penalise) {
        backend.sparseness_penalty(
            MatMut::new(delta, rows, cols),
            Mat::new(a, rows, cols),
            penalty.p,
            penalty.beta,
        )?;
    }
    let mut a = a;
    if layer.p_dropout > 0.0 {
        backend.dropout_backward_at(MatMut::new(delta, rows, cols), layer.p_dropout, mask)?;
        if let Some(ad) = AlphaDropout::of(layer) {
            backend.scale_rows(MatMut::new(delta, rows, cols), &vec![ad.scale; rows])?;
        }
        // The unit buffer holds a/(1−p) or the dropped value; dropped units already have a
        // zero delta.
        a = pre_dropout.unwrap_or(a);
    }
    backend.activation_backward(
        MatMut::new(delta, rows, cols),
        Mat::new(a, rows, cols),
        layer.activation,
        &act_params(layer),
    )
}

/// The targets of an output layer's minibatch.
pub(crate) enum Targets<'a, B: Backend> {
    Sparse(&'a B::SparseBatch),
    Dense(&'a B::Vector),
    /// The delta is already in place: the training forward wrote it
    /// ([`Backend::sparse_output_forward`]).
    Written,
    /// None loaded: an error naming the layer.
    Missing,
}

/// An output layer's `δ = ∂L/∂z` in `delta` (`rows × cols`) from its activations `a` and
/// `targets`, then scaled per example by `example_weights`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn output_layer_delta<B: Backend>(
    backend: &B,
    layer: &Layer,
    delta: &mut B::Vector,
    a: &B::Vector,
    targets: Targets<'_, B>,
    (rows, cols): (usize, usize),
    spec: &LossSpec,
    ignore_zero: bool,
    example_weights: Option<&[f32]>,
) -> Result<()> {
    match targets {
        Targets::Sparse(t) => backend.sparse_output_delta(
            MatMut::new(delta, rows, cols),
            Mat::new(a, rows, cols),
            t,
            spec,
            ignore_zero,
        )?,
        Targets::Dense(t) => backend.dense_output_delta(
            MatMut::new(delta, rows, cols),
            Mat::new(a, rows, cols),
            Mat::new(t, rows, cols),
            spec,
        )?,
        Targets::Written => {}
        Targets::Missing => {
            return Err(Error::invalid_argument(
                "batch",
                format!("output layer `{}` has no targets loaded", layer.name),
            ))
        }
    }
    if let Some(w) = example_weights {
        backend.scale_rows(MatMut::new(delta, rows, cols), w)?;
    }
    Ok(())
}

impl<V> BatchNorm<V> {
    /// Batch normalisation of the pre-activations `z` in place: with `training`, from the
    /// batch statistics (the running ones updated by `1/(1 + calls)`, then `calls` counted),
    /// otherwise from the running statistics.
    pub(crate) fn forward<B: Backend<Vector = V>>(
        &mut self,
        backend: &B,
        z: MatMut<'_, V>,
        training: bool,
    ) -> Result<()> {
        let factor = training.then(|| {
            let f = 1.0 / (1.0 + self.calls as f64);
            self.calls += 1;
            f
        });
        backend.batch_norm_forward(
            z,
            &mut self.xhat,
            BatchNormState {
                scale: &self.scale,
                bias: &self.bias,
                running_mean: &mut self.running_mean,
                running_var: &mut self.running_var,
                inv_std: &mut self.inv_std,
            },
            factor,
        )
    }

    /// The gradient through a training [`BatchNorm::forward`]: `delta` becomes `∂L/∂z`, and
    /// the negative mean gradients of `γ`, `β` are kept for [`BatchNorm::update`].
    pub(crate) fn backward<B: Backend<Vector = V>>(
        &mut self,
        backend: &B,
        delta: MatMut<'_, V>,
    ) -> Result<()> {
        backend.batch_norm_backward(
            delta,
            &self.xhat,
            &self.scale,
            &self.inv_std,
            &mut self.dscale,
            &mut self.dbias,
        )
    }

    /// One optimizer update of `γ` and `β` (`h` without L1/L2: the caller's `bias_h`).
    pub(crate) fn update<B: Backend<Vector = V>>(
        &mut self,
        backend: &B,
        opt: Optimizer,
        h: &Hyper,
        t: u64,
    ) -> Result<()> {
        let [s0, s1] = &mut self.scale_state;
        let units = 0..self.units;
        backend.optimizer_step(
            &mut self.scale,
            &self.dscale,
            s0,
            s1,
            units.clone(),
            opt,
            h,
            t,
        )?;
        let [s0, s1] = &mut self.bias_state;
        backend.optimizer_step(&mut self.bias, &self.dbias, s0, s1, units, opt, h, t)
    }
}

impl<V> EdgeBias<V> {
    /// One optimizer update of the bias (`h` without L1/L2).
    pub(crate) fn update<B: Backend<Vector = V>>(
        &mut self,
        backend: &B,
        opt: Optimizer,
        h: &Hyper,
        t: u64,
    ) -> Result<()> {
        let [s0, s1] = &mut self.state;
        backend.optimizer_step(&mut self.b, &self.db, s0, s1, 0..self.cols, opt, h, t)
    }
}
