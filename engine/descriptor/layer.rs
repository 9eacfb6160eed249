//! The description of one layer, as written in the `Layers` list.

use crate::ops::{named_enum, Activation, WeightInitScheme};

use super::SparsenessPenalty;

/// The role of a layer (DSSTNE `NNLayer::Kind`; numeric values are DSSTNE's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum LayerKind {
    /// Fed from a dataset; has no sources.
    Input = 0,
    /// Computed from its sources.
    Hidden = 1,
    /// Computed from its sources and compared with a dataset by the error function.
    Output = 2,
    /// Accepted by DSSTNE's parser, with no engine semantics.
    Target = 3,
}

named_enum!(LayerKind {
    Input = ["Input"],
    Hidden = ["Hidden"],
    Output = ["Output"],
    Target = ["Target"],
});

impl LayerKind {
    /// The kind DSSTNE gives a layer whose `Kind` is omitted: the first layer of the list is
    /// Input, the last is Output, the others are Hidden.
    pub fn by_position(index: usize, count: usize) -> Self {
        if index == 0 {
            LayerKind::Input
        } else if index + 1 == count {
            LayerKind::Output
        } else {
            LayerKind::Hidden
        }
    }
}

/// How a layer computes its units from its sources (DSSTNE `NNLayer::Type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum LayerType {
    #[default]
    FullyConnected = 0,
    Convolutional = 1,
    Pooling = 2,
}

named_enum!(LayerType {
    FullyConnected = ["FullyConnected"],
    Convolutional = ["Convolutional"],
    Pooling = ["Pooling"],
});

/// The function of a `Pooling` layer (DSSTNE `PoolingFunction`; numeric values are DSSTNE's,
/// whose `None` is `Option::None` here and whose never-parsed Stochastic, LCN and
/// GlobalTemporal are left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PoolingFunction {
    Max = 1,
    Average = 2,
    /// Local response normalisation, with the network's [`super::Lrn`] parameters.
    Lrn = 3,
    /// Maxout over the network's `Maxout.k` units.
    Maxout = 4,
    /// Dot products of the first source with each other source (≥ 2 sources).
    DotProduct = 5,
    /// Cosines of the first source with each other source (≥ 2 sources).
    Cosine = 6,
}

named_enum!(PoolingFunction {
    Max = ["Max"],
    Average = ["Average"],
    Lrn = ["LRN", "LocalResponseNormalization"],
    Maxout = ["Maxout"],
    DotProduct = ["DotProduct"],
    Cosine = ["Cosine"],
});

/// The activation names DSSTNE's parser accepts (`ParametricRectifiedLinear` is in the enum
/// but has no parser string, so it is not accepted from JSON).
pub const ACTIVATION_NAMES: &[&str] = &[
    "Sigmoid",
    "Tanh",
    "Linear",
    "RectifiedLinear",
    "Relu",
    "LeakyRectifiedLinear",
    "LRelu",
    "ExponentialLinear",
    "Elu",
    "ScaledExponentialLinear",
    "Selu",
    "SoftPlus",
    "SoftSign",
    "SoftMax",
    "ReluMax",
    "LinearMax",
];

/// Parses an activation name as DSSTNE's JSON parser does.
pub(crate) fn activation_from_name(name: &str) -> Option<Activation> {
    Activation::from_name(name).filter(|a| *a != Activation::ParametricRectifiedLinear)
}

/// The size of a layer: `N`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// `"auto"`: the dimensions of the layer's dataset (Input and Output layers only).
    Auto,
    /// 1 to 4 dimensions (Nx, Ny, Nz, Nw), each ≥ 1; the unit count is their product.
    Fixed(Vec<u32>),
}

impl Size {
    /// A one-dimensional size of `n` units.
    pub fn units(n: u32) -> Self {
        Size::Fixed(vec![n])
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Auto => f.write_str("auto"),
            Size::Fixed(dims) => {
                let dims: Vec<String> = dims.iter().map(u32::to_string).collect();
                f.write_str(&dims.join("x"))
            }
        }
    }
}

/// The kernel of a convolutional or pooling layer: `Kernel` and `KernelStride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// Kernel size (X, Y, Z); 1 where not given.
    pub size: [u32; 3],
    /// Stride (X, Y, Z); 1 where not given.
    pub stride: [u32; 3],
    /// How many components `Kernel` had (1 to 3; 1 when absent).
    pub dimensions: u32,
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel {
            size: [1; 3],
            stride: [1; 3],
            dimensions: 1,
        }
    }
}

/// How a layer's incoming weights and biases are initialised: `WeightInit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightInit {
    /// `Scheme`; Xavier when absent.
    pub scheme: WeightInitScheme,
    /// `Scale`; 1.0 when absent.
    pub scale: f32,
    /// `Bias`: the constant every bias starts at; 0.0 when absent.
    pub bias: f32,
}

impl Default for WeightInit {
    fn default() -> Self {
        WeightInit {
            scheme: WeightInitScheme::Xavier,
            scale: 1.0,
            bias: 0.0,
        }
    }
}

/// One `SharedWeights` entry: the edge from `input_layer` (one of the layer's sources) into
/// this layer uses the weight of the edge `source_input_layer → source_output_layer`,
/// transposed if `transposed`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SharedWeight {
    /// `InputLayer`: the source of this layer whose edge is shared.
    pub input_layer: String,
    /// `SourceInputLayer`: the input layer of the weight reused.
    pub source_input_layer: String,
    /// `SourceOutputLayer`: the output layer of the weight reused.
    pub source_output_layer: String,
    /// `Transposed`; false when absent.
    pub transposed: bool,
}

/// `Variational` (a Moira extension; Hidden layers only): the layer is the mean `μ` of a
/// variational bottleneck (Kingma & Welling 2014, Mult-VAE of Liang et al. 2018) whose log
/// variance `ℓ` is the layer `log_variance`. While training, the layer's units are the
/// reparameterised sample `z = μ + exp(½ℓ)·ε`, `ε ~ N(0, 1)` drawn per (example, unit) from
/// the counter-based generator, and every example adds `β_t·KL` to the loss, with
/// `KL = ½·Σ_j (μ_j² + exp(ℓ_j) − ℓ_j − 1)` and `β_t = min(beta, t / anneal_steps)` after `t`
/// updates (`beta` from the start when `anneal_steps` is 0); when predicting, `z = μ`.
#[derive(Clone, Debug, PartialEq)]
pub struct Variational {
    /// `LogVariance`: the Hidden layer holding `ℓ` (same units, read by nothing else).
    pub log_variance: String,
    /// `Beta` ≥ 0: the weight of the KL term once annealed; 0.01 when absent (Liang et al.'s
    /// 0.2 assumes a reconstruction term summed over the user's items, Moira's SoftMax
    /// cross-entropy averages it: docs/descriptor.md).
    pub beta: f32,
    /// `AnnealSteps`: updates over which `β` rises linearly from 0 (it reaches `beta` after
    /// `beta·anneal_steps` of them); 0 (no annealing) when absent.
    pub anneal_steps: u32,
}

impl Variational {
    /// `β_t`: the weight of the KL term in the update after `t` updates.
    pub fn beta_at(&self, t: u64) -> f32 {
        if self.anneal_steps == 0 {
            self.beta
        } else {
            self.beta
                .min((t as f64 / f64::from(self.anneal_steps)) as f32)
        }
    }
}

/// One layer of a [`super::Descriptor`].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerDescriptor {
    /// `Name`: unique; `Input<i>`, `Hidden<i>`, `Output<i>` or `Target<i>` when absent, where
    /// `i` is the layer's index in the list.
    pub name: String,
    /// `Kind`; by position when absent (see [`LayerKind::by_position`]).
    pub kind: LayerKind,
    /// `Type`; FullyConnected when absent.
    pub layer_type: LayerType,
    /// `Function` (Pooling layers only).
    pub pooling_function: Option<PoolingFunction>,
    /// `DataSet` (Input and Output layers only): the dataset the layer is bound to.
    pub dataset: Option<String>,
    /// `Source`: the layers feeding this one, at most [`super::MAX_SOURCES`]; the previous
    /// layer of the list when absent (none for Input layers, and none for a non-Input first
    /// layer, which the graph then rejects).
    pub sources: Vec<String>,
    /// `Skip`: layers whose units are added to this layer's pre-activation.
    pub skips: Vec<String>,
    /// `N`; one unit when absent (DSSTNE's default Nx = 1).
    pub size: Size,
    /// `Kernel` and `KernelStride`.
    pub kernel: Kernel,
    /// `Sparse`; false when absent.
    pub sparse: bool,
    /// `BatchNormalization` (Hidden layers only); false when absent.
    pub batch_normalization: bool,
    /// `pDropout` in [0, 1); 0 when absent.
    pub p_dropout: f32,
    /// `Activation`; Sigmoid when absent.
    pub activation: Activation,
    /// `SparsenessPenalty` (Hidden layers only): each of `p` and `beta` overrides the
    /// network's value when > 0; 0/0 when absent.
    pub sparseness_penalty: SparsenessPenalty,
    /// `RELUSlope` | `Slope`; the network's value when absent.
    pub relu_slope: f32,
    /// `ELUAlpha`; the network's value when absent.
    pub elu_alpha: f32,
    /// `SELULambda`; the network's value when absent.
    pub selu_lambda: f32,
    /// `WeightNorm` ≥ 0: maximum L2 norm of each incoming weight vector; 0 (off) when absent.
    pub weight_norm: f32,
    /// `DeltaNorm` ≥ 0: maximum L2 norm of each per-example delta vector; 0 (off) when absent.
    pub delta_norm: f32,
    /// `WeightInit`.
    pub weight_init: WeightInit,
    /// `SharedWeights`.
    pub shared_weights: Vec<SharedWeight>,
    /// `Variational` (Moira extension): this layer is the mean of a variational bottleneck.
    pub variational: Option<Variational>,
}

impl LayerDescriptor {
    /// A layer with DSSTNE's defaults (the `NNLayerDescriptor` constructor) and the network
    /// defaults of `RELUSlope` (1.0), `ELUAlpha` (1.0) and `SELULambda` (1.050701): one unit,
    /// FullyConnected, Sigmoid, Xavier 1.0 / bias 0.0, no sources.
    pub fn new(name: impl Into<String>, kind: LayerKind) -> Self {
        LayerDescriptor {
            name: name.into(),
            kind,
            layer_type: LayerType::FullyConnected,
            pooling_function: None,
            dataset: None,
            sources: Vec::new(),
            skips: Vec::new(),
            size: Size::units(1),
            kernel: Kernel::default(),
            sparse: false,
            batch_normalization: false,
            p_dropout: 0.0,
            activation: Activation::Sigmoid,
            sparseness_penalty: SparsenessPenalty::default(),
            relu_slope: 1.0,
            elu_alpha: 1.0,
            selu_lambda: 1.050701,
            weight_norm: 0.0,
            delta_norm: 0.0,
            weight_init: WeightInit::default(),
            shared_weights: Vec::new(),
            variational: None,
        }
    }

    /// DSSTNE's default name for a layer of `kind` at `index` in the list.
    pub fn default_name(kind: LayerKind, index: usize) -> String {
        format!("{}{index}", kind.name())
    }

    /// Sets `size` (builder style).
    pub fn with_size(mut self, size: Size) -> Self {
        self.size = size;
        self
    }

    /// Sets `sources` (builder style).
    pub fn with_sources<S: Into<String>>(mut self, sources: impl IntoIterator<Item = S>) -> Self {
        self.sources = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `dataset` (builder style).
    pub fn with_dataset(mut self, dataset: impl Into<String>) -> Self {
        self.dataset = Some(dataset.into());
        self
    }

    /// Sets `activation` (builder style).
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets `sparse` (builder style).
    pub fn with_sparse(mut self, sparse: bool) -> Self {
        self.sparse = sparse;
        self
    }
}
