//! The JSON network descriptor of DSSTNE, as a typed model.
//!
//! [`Descriptor::from_file`] reads the dialect of DSSTNE's `LoadNeuralNetworkJSON`:
//!
//! - keys are case-insensitive, and so are enum values (`"relu"`, `"RELU"`);
//! - every key DSSTNE accepts is accepted, with both spellings where DSSTNE has two
//!   (`RELUSlope`|`Slope`, `LRN`|`LocalResponseNormalization`,
//!   `ScaledMarginalCrossEntropy`|`DataScaledMarginalCrossEntropy`, `"Cross Entropy"`, the
//!   activation aliases), and every key DSSTNE rejects is rejected (`L1Penalty`, `Recurrent`,
//!   a per-layer `ErrorFunction`, `Transpose`, `Dimensions`, `WeightData`, `"Kind": "Pooling"`);
//! - a key is accepted only on the layer kinds DSSTNE accepts it on (`DataSet` on Input and
//!   Output layers, `Activation` on Hidden and Output layers, ...);
//! - defaults are DSSTNE's (see [`Descriptor::default`] and [`LayerDescriptor::new`]);
//! - a layer's `RELUSlope`, `ELUAlpha` and `SELULambda` inherit the network's values when
//!   absent; this is resolved while parsing, so every field holds a real value.
//!
//! Nothing is left as a string but names (of layers and datasets): kinds, types, functions
//! and sizes are enums. `"N": "auto"` becomes [`Size::Auto`]; it is resolved against the
//! dataset shapes by [`crate::graph::Graph::compile`], which also checks everything that
//! concerns more than one layer (sources exist, no cycles, shared weights fit).
//!
//! Stricter than DSSTNE: a key written twice (`"Name"` and `"name"`, or `Slope` and
//! `RELUSlope`) is an error rather than last-wins; numbers must be of the right kind
//! (`"N": 1.5` and `"Sparse": 1` are errors) and in range (a probability in [0, 1), ...);
//! names must be non-empty and unique, including the default names.
//!
//! A descriptor can also be built in code: every field is public, [`Descriptor::default`]
//! and [`LayerDescriptor::new`] give DSSTNE's defaults.

pub(crate) mod json;
mod layer;
mod network;
mod parse_layer;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ops::ErrorFunction;

pub use layer::{
    Kernel, LayerDescriptor, LayerKind, LayerType, PoolingFunction, SharedWeight, Size,
    Variational, WeightInit, ACTIVATION_NAMES,
};

/// The engine version DSSTNE writes (`NN_VERSION`).
pub const VERSION: f32 = 0.9;

/// The oldest descriptor version DSSTNE reads.
pub const MIN_VERSION: f32 = 0.7;

/// The most sources (incoming layers) one layer may have.
pub const MAX_SOURCES: usize = 4;

/// The most dimensions `N` may have.
pub const MAX_DIMS: usize = 4;

/// What a network is (DSSTNE `NNNetwork::Kind`). A label only: it changes no behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum NetworkKind {
    #[default]
    FeedForward = 0,
    AutoEncoder = 1,
}

crate::ops::named_enum!(NetworkKind {
    FeedForward = ["FeedForward"],
    AutoEncoder = ["AutoEncoder"],
});

/// Local response normalisation parameters, used by `Pooling` layers with `Function: LRN`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    pub k: f32,
    pub n: u32,
    pub alpha: f32,
    pub beta: f32,
}

impl Default for Lrn {
    /// DSSTNE's defaults: k = 2, n = 5, alpha = 1e-4, beta = 0.75.
    fn default() -> Self {
        Lrn {
            k: 2.0,
            n: 5,
            alpha: 1e-4,
            beta: 0.75,
        }
    }
}

/// The sparseness penalty pulling a sparse hidden layer's mean activation towards `p`.
/// Active when `beta > 0`. Defaults to 0/0 (off).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SparsenessPenalty {
    /// Target mean activation, in [0, 1].
    pub p: f32,
    /// Weight of the penalty, ≥ 0.
    pub beta: f32,
}

/// DeltaBoost and the (data-)scaled marginal cross-entropy parameters are the loss's own
/// types: the descriptor holds exactly what [`crate::ops::loss::LossSpec`] uses.
pub use crate::ops::loss::{DeltaBoost, SmceParams as Smce};

/// A whole network descriptor: network-level settings and the layers in the order written.
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    /// `Version`: at least [`MIN_VERSION`]; [`VERSION`] when absent.
    pub version: f32,
    /// `Name`; empty when absent.
    pub name: String,
    /// `Kind`.
    pub kind: NetworkKind,
    /// `WeightsData`: a file name DSSTNE parses and never uses.
    pub weights_data: Option<String>,
    /// `ErrorFunction` of the output layers; CrossEntropy when absent.
    pub error_function: ErrorFunction,
    /// `ShuffleIndices`: shuffle the examples each epoch; true when absent.
    pub shuffle_indices: bool,
    /// `LRN` | `LocalResponseNormalization`.
    pub lrn: Lrn,
    /// `Maxout.k`, ≥ 1; 2 when absent.
    pub maxout_k: u32,
    /// `SparsenessPenalty`: the default for sparse hidden layers; on when `beta > 0`.
    pub sparseness_penalty: SparsenessPenalty,
    /// `Denoising.p` in [0, 1): the probability of dropping each input non-zero of every
    /// sparse Input layer; 0 (off) when absent.
    pub denoising_p: f32,
    /// `DeltaBoost`.
    pub delta_boost: DeltaBoost,
    /// `ScaledMarginalCrossEntropy` | `DataScaledMarginalCrossEntropy`.
    pub smce: Smce,
    /// `RELUSlope` | `Slope`: the default leaky-ReLU slope; 1.0 when absent.
    pub relu_slope: f32,
    /// `ELUAlpha`: the default ELU (and SELU) alpha; 1.0 when absent.
    pub elu_alpha: f32,
    /// `SELULambda`: the default SELU lambda; 1.050701 when absent.
    pub selu_lambda: f32,
    /// `Decay` ≥ 0: learning-rate decay, `alpha / (1 + decay * batches)`; 0 when absent.
    pub decay: f32,
    /// `Layers`, in the order written.
    pub layers: Vec<LayerDescriptor>,
}

impl Default for Descriptor {
    /// DSSTNE's defaults (the `NNNetworkDescriptor` constructor), with no layers.
    fn default() -> Self {
        Descriptor {
            version: VERSION,
            name: String::new(),
            kind: NetworkKind::FeedForward,
            weights_data: None,
            error_function: ErrorFunction::CrossEntropy,
            shuffle_indices: true,
            lrn: Lrn::default(),
            maxout_k: 2,
            sparseness_penalty: SparsenessPenalty::default(),
            denoising_p: 0.0,
            delta_boost: DeltaBoost::default(),
            smce: Smce::default(),
            relu_slope: 1.0,
            elu_alpha: 1.0,
            selu_lambda: 1.050701,
            decay: 0.0,
            layers: Vec::new(),
        }
    }
}

impl Descriptor {
    /// Reads and parses the descriptor file at `path`.
    ///
    /// Errors: [`Error::Io`] if it cannot be read, [`Error::Json`] (with line and column) if it
    /// is not JSON, [`Error::Descriptor`] (with the JSON path) if it is not a valid descriptor.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Descriptor> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_str(&text, path)
    }

    /// Parses descriptor `text`; `file` names it in errors. Same errors as [`Self::from_file`]
    /// except `Io`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, file: impl Into<PathBuf>) -> Result<Descriptor> {
        let file = file.into();
        let value = serde_json::from_str(text)
            .map(|json::Distinct(v)| v)
            .map_err(|e| {
                // serde_json's message ends with " at line L column C", which Error::Json prints.
                let mut message = e.to_string();
                if let Some(at) = message.rfind(" at line ") {
                    message.truncate(at);
                }
                Error::Json {
                    file: file.clone(),
                    line: e.line(),
                    column: e.column(),
                    message,
                }
            })?;
        network::parse(&value, &file)
    }

    /// The layer named `name`, if any (names are case-sensitive, as in DSSTNE).
    pub fn layer(&self, name: &str) -> Option<&LayerDescriptor> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Appends `layer` with its `RELUSlope`, `ELUAlpha` and `SELULambda` set to the
    /// network's values (the inheritance the JSON parser applies to absent keys).
    pub fn push_layer_inheriting(&mut self, mut layer: LayerDescriptor) -> &mut Self {
        layer.relu_slope = self.relu_slope;
        layer.elu_alpha = self.elu_alpha;
        layer.selu_lambda = self.selu_lambda;
        self.layers.push(layer);
        self
    }
}
