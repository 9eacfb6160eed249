//! The layer graph of a network: a [`Descriptor`] compiled against the shapes of its data.
//!
//! [`Graph::compile`] resolves what the descriptor leaves open and checks what concerns more
//! than one layer:
//!
//! - `"N": "auto"` takes the dimensions of the dataset named by the layer's `DataSet`; an
//!   Input or Output layer with a fixed size and a `DataSet` must match its dataset's unit
//!   count; an Input layer's `sparse` flag is taken from its dataset (as DSSTNE does);
//! - every `Source` and `Skip` names an existing layer, every non-Input layer has a source,
//!   Input layers have none, and the sources and skips form no cycle;
//! - a skip's units equal the layer's;
//! - each `SharedWeights` entry names one of the layer's sources, and reuses the weight of an
//!   existing, unshared edge whose shape fits (transposed or not).
//!
//! - a `Variational` layer names a Hidden log-variance layer that matches it and that only
//!   its sampling reads (`variational.rs`); the log-variance layer is ordered before it.
//!
//! The result lists the layers in a topological order (a layer after all its sources and
//! skips; among ready layers, the one written first), each with its resolved sizes and
//! parameters, and the edges (one per source → layer) with the weights they use: one weight
//! per edge, unless the edge shares the weight of another.
//!
//! The graph is pure: no device, no data, no randomness. Convolutional and Pooling layers
//! parse but do not compile yet ([`crate::Error::Unsupported`]).

mod compile;
mod order;
mod table;
mod variational;

use crate::descriptor::{Descriptor, LayerKind, SparsenessPenalty, Variational, WeightInit};
use crate::error::Result;
use crate::ops::Activation;

/// What the graph needs to know of one dataset (produced by the dataset module).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataShape {
    /// The dataset's name, matched to the layers' `DataSet`.
    pub name: String,
    /// `[width]`, `[width, height]` or `[width, height, length]`, each ≥ 1.
    pub dims: Vec<u32>,
    /// Number of examples.
    pub examples: usize,
    /// Whether the data is stored sparse.
    pub sparse: bool,
}

impl DataShape {
    /// The number of units of one example: the product of `dims`.
    pub fn units(&self) -> u64 {
        self.dims.iter().map(|&d| u64::from(d)).product()
    }
}

/// A layer's index in [`Graph::layers`] (topological order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(pub usize);

/// An edge's index in [`Graph::edges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeId(pub usize);

/// A weight's index in [`Graph::weights`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(pub usize);

/// One layer, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Its index in [`Graph::layers`].
    pub id: LayerId,
    /// Its index in the descriptor's `Layers` list.
    pub descriptor_index: usize,
    pub name: String,
    pub kind: LayerKind,
    /// Resolved dimensions (1 to 4, each ≥ 1).
    pub dims: Vec<u32>,
    /// Unit count: the product of `dims` (at most `u32::MAX`).
    pub units: usize,
    /// Sparse: for an Input layer bound to a dataset, the dataset's storage; otherwise the
    /// descriptor's `Sparse`.
    pub sparse: bool,
    /// Denoising applies: a sparse Input layer of a network with `Denoising.p > 0`.
    pub denoising: bool,
    pub dataset: Option<String>,
    pub activation: Activation,
    pub relu_slope: f32,
    pub elu_alpha: f32,
    pub selu_lambda: f32,
    pub p_dropout: f32,
    pub weight_norm: f32,
    pub delta_norm: f32,
    pub batch_normalization: bool,
    /// The sparseness penalty in force: on sparse Hidden layers when the network's penalty
    /// is on (`beta > 0`), with the layer's `p`/`beta` where > 0, else the network's.
    pub sparseness_penalty: Option<SparsenessPenalty>,
    /// Source layers, in the order written.
    pub sources: Vec<LayerId>,
    /// Skip layers, in the order written.
    pub skips: Vec<LayerId>,
    /// Incoming edges, parallel to `sources`.
    pub incoming: Vec<EdgeId>,
    /// Outgoing edges, in edge order.
    pub outgoing: Vec<EdgeId>,
    /// Layers this one is a skip of.
    pub skip_targets: Vec<LayerId>,
    /// On the mean layer of a variational bottleneck (descriptor `Variational`): its
    /// log-variance layer and `β` schedule.
    pub variational: Option<VariationalLayer>,
    /// On a log-variance layer: the mean layer whose sample it scales.
    pub log_variance_of: Option<LayerId>,
}

/// A variational bottleneck, resolved (see [`crate::descriptor::Variational`] for the math):
/// the mean layer holding it comes after `log_variance` in topological order, both have the
/// same units, Linear activations, no dropout, batch normalisation or sparseness penalty, and
/// nothing but the sampling reads the log-variance layer.
#[derive(Clone, Debug, PartialEq)]
pub struct VariationalLayer {
    /// The layer holding `ℓ`.
    pub log_variance: LayerId,
    /// `Beta` and `AnnealSteps`.
    pub schedule: Variational,
}

/// A connection `source → target`, computed with `weight` (transposed if `transposed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub id: EdgeId,
    pub source: LayerId,
    pub target: LayerId,
    pub weight: WeightId,
    /// True when the weight is another edge's, used transposed.
    pub transposed: bool,
}

impl Edge {
    /// Whether this edge uses another edge's weight.
    pub fn is_shared(&self, graph: &Graph) -> bool {
        graph.weight(self.weight).edge != self.id
    }
}

/// A weight matrix (and its bias vector), owned by one edge and possibly shared by others.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    pub id: WeightId,
    /// The edge that owns it.
    pub edge: EdgeId,
    /// The owning edge's source layer.
    pub input: LayerId,
    /// The owning edge's target layer.
    pub output: LayerId,
    /// Rows: the input layer's units.
    pub input_units: usize,
    /// Columns (and bias length): the output layer's units.
    pub output_units: usize,
    /// From the output layer's `WeightInit`.
    pub init: WeightInit,
    /// From the output layer's `WeightNorm`.
    pub norm: f32,
    /// Edges using it: 1 + the number of edges sharing it (DSSTNE's `_sharingCount`, which
    /// divides its gradient).
    pub sharing_count: u32,
}

/// A compiled network graph; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    descriptor: Descriptor,
    layers: Vec<Layer>,
    edges: Vec<Edge>,
    weights: Vec<Weight>,
}

impl Graph {
    /// Compiles `descriptor` against the shapes of the datasets it will be used with.
    ///
    /// Errors: [`crate::Error::Unsupported`] for a Convolutional or Pooling layer;
    /// [`crate::Error::Graph`] (naming the network and the layer) for everything else;
    /// [`crate::Error::InvalidArgument`] for two shapes with one name or an invalid shape.
    pub fn compile(descriptor: &Descriptor, shapes: &[DataShape]) -> Result<Graph> {
        compile::compile(descriptor, shapes)
    }

    /// The network's name (possibly empty).
    pub fn name(&self) -> &str {
        &self.descriptor.name
    }

    /// The descriptor compiled (network-level settings live there).
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The layers in topological (forward-propagation) order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The layers in backward-propagation order (reverse topological).
    pub fn backward_order(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().rev()
    }

    /// The layer with id `id`. Panics if `id` is not from this graph.
    pub fn layer(&self, id: LayerId) -> &Layer {
        &self.layers[id.0]
    }

    /// The layer named `name`, if any.
    pub fn layer_by_name(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The Input layers, in topological order.
    pub fn inputs(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| l.kind == LayerKind::Input)
    }

    /// The Output layers, in topological order.
    pub fn outputs(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| l.kind == LayerKind::Output)
    }

    /// All edges, grouped by target layer in topological order, sources in the order written.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// The edge with id `id`. Panics if `id` is not from this graph.
    pub fn edge(&self, id: EdgeId) -> &Edge {
        &self.edges[id.0]
    }

    /// The edge `source → target`, if any.
    pub fn edge_between(&self, source: LayerId, target: LayerId) -> Option<&Edge> {
        self.edges
            .iter()
            .find(|e| e.source == source && e.target == target)
    }

    /// All weights, in the order of their owning edges.
    pub fn weights(&self) -> &[Weight] {
        &self.weights
    }

    /// The weight with id `id`. Panics if `id` is not from this graph.
    pub fn weight(&self, id: WeightId) -> &Weight {
        &self.weights[id.0]
    }

    /// A human-readable table of the layers, one line each, in topological order.
    pub fn layer_table(&self) -> String {
        table::layer_table(self)
    }
}

impl std::fmt::Display for Graph {
    /// The [layer table](Graph::layer_table).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.layer_table())
    }
}
