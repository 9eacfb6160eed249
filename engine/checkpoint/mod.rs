//! Saving and loading trained networks in DSSTNE's NetCDF model schema.
//!
//! A [`Model`] is what a model file holds: the network [`Descriptor`] (with every size
//! resolved), one [`WeightTensor`] per edge (source layer → layer) and the [`Extras`] Moira
//! needs to resume training. [`save_model`] writes it as `NNNetwork::SaveNetCDF` does, so
//! DSSTNE can load our files, and [`load_model`] reads ours and DSSTNE's.
//!
//! # Schema (DSSTNE's names and types; NetCDF-4 format)
//!
//! - Global attributes, in DSSTNE's order: `version` (float, always [`VERSION`]), `name`,
//!   `kind` (uint), `errorFunction` (uint), `maxout_k` (int), `decay` (float), `LRN_k`,
//!   `LRN_n` (int), `LRN_alpha`, `LRN_beta`, `bSparsenessPenalty` (uint), `sparsenessPenalty_p`,
//!   `sparsenessPenalty_beta`, `bDenoising` (uint), `denoising_p`, `deltaBoost_one`,
//!   `deltaBoost_zero`, `SMCE_oneScale`, `SMCE_zeroScale`, `SMCE_oneTarget`, `SMCE_zeroTarget`,
//!   `ShuffleIndices` (uint), `checkpoint_name`, `checkpoint_interval` (int),
//!   `checkpoint_epochs` (int), `layers` (uint), `weights` (uint). Unmarked numbers are floats.
//! - Per layer `i`, attributes `layer<i>_*`: `name`, `kind`, `type`, `poolingfunction` (0 =
//!   none), `dataSet` ("" = none), `Nx`, `Ny`, `Nz`, `Nw`, `dimensions`, `kernelX/Y/Z`,
//!   `kernelDimensions`, `kernelStrideX/Y/Z`, `kernelPaddingX/Y/Z` (all uint), `pDropout`,
//!   `weightInit` (uint), `weightInitScale`, `biasInit`, `weightNorm`, `deltaNorm`,
//!   `activation` (uint), `sparsenessPenalty_p`, `sparsenessPenalty_beta`, `RELUSlope`,
//!   `ELUAlpha`, `SELULambda`, `attributes` (uint: Sparse 0x1, Denoising 0x2,
//!   BatchNormalization 0x4), `sources` (uint), `source<j>`, `skips` (uint), `skip<j>`; a
//!   BatchNormalization layer also has dimension `layer<i>_bnDim` (its units) and float
//!   variables `layer<i>_scaleBN`, `layer<i>_biasBN`, `layer<i>_runningMeanBN`,
//!   `layer<i>_runningVarianceBN` (optional on load: absent means fresh values).
//! - Per weight `i`, attributes `weight<i>_*`: `inputLayer`, `outputLayer`, `width` (output
//!   units), `height` (input units), `length`, `depth`, `breadth` (uint64, 1 for fully
//!   connected), `bShared`, `bLocked` (uint), `norm` (float); dimension `weight<i>_biasDim`
//!   and float variable `weight<i>_bias`; for a shared weight `bTransposed` (uint),
//!   `sourceInputLayer`, `sourceOutputLayer` and no weight data; otherwise dimension
//!   `weight<i>_weightDim` and float variable `weight<i>_weights`, `W[in][out]` row-major.
//! - Moira's own state, ignored by DSSTNE, under the prefix `moira_`: the network-level
//!   `moira_RELUSlope`, `moira_ELUAlpha`, `moira_SELULambda`, `moira_descriptorVersion` and
//!   `moira_weightsData` (DSSTNE stores only the per-layer values), and the [`Extras`]:
//!   `moira_tensors`/`moira_scalars`/`moira_strings` (uint counts), `moira_tensor<k>_name` with
//!   dimension `moira_tensor<k>Dim` and float variable `moira_tensor<k>`, `moira_scalar<k>_name`
//!   with uint64 `moira_scalar<k>`, `moira_string<k>_name` with `moira_string<k>`.
//! - `moira_checksum` (uint64): [`checksum`] of the weights and extras, checked on load when
//!   present, so that corrupted bytes inside the data (NetCDF-4 keeps no checksums of its
//!   own) are an error rather than a silently different model.
//!
//! `checkpoint_name` is written as DSSTNE's default `"checkpoint"`, `checkpoint_interval` as 0
//! and `checkpoint_epochs` as the extras scalar `epoch` when there is one (else 0); the loader
//! checks their types and otherwise ignores them. Kernel paddings are written as 0 (Moira
//! derives nothing for convolutions yet) and ignored on load.
//!
//! # Reading DSSTNE's files
//!
//! The loader accepts any numeric attribute type where the value fits (DSSTNE's C++ reader
//! converts types too), text or string attributes, and float or double variables. It reads
//! the per-layer `sparsenessPenalty_p`/`_beta` (DSSTNE's own reader wrongly reads the global
//! ones; absent per-layer values mean 0). A weight's size is taken from its layers, not from
//! `width`/`height`, which a multi-GPU DSSTNE run writes per shard. Attributes DSSTNE treats as
//! optional (`decay`, `checkpoint_*`, `norm`, `bLocked`) default as DSSTNE does; all others
//! are required. When `bSparsenessPenalty` (or `bDenoising`) is 0, the penalty's beta (or the
//! denoising p) is loaded as 0, which is what DSSTNE does with them.

mod checksum;
mod read;
mod stream;
mod write;

pub use checksum::checksum;
pub(crate) use stream::Held;
pub use stream::{drain_model, remove_stale_temporaries, save_model_streamed, TensorSource};

use std::path::Path;

use crate::descriptor::{Descriptor, LayerDescriptor, LayerType, Size};
use crate::error::{Error, Result};
use crate::graph::Graph;

#[cfg(doc)]
use crate::descriptor::VERSION;

/// One weight matrix and its bias as stored in a model file.
///
/// `data` is `W[in][out]` row-major (output index fastest): `rows` = input units, `cols` =
/// output units, `data.len() == rows * cols`; `bias.len() == cols`. A shared weight (one
/// edge using another edge's matrix) has `shared: Some(..)` and empty `data`, but its own bias.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    /// The edge's source layer.
    pub input_layer: String,
    /// The edge's target layer.
    pub output_layer: String,
    /// Input units.
    pub rows: usize,
    /// Output units.
    pub cols: usize,
    /// `rows * cols` values, `W[in * cols + out]`; empty for a shared weight.
    pub data: Vec<f32>,
    /// `cols` values.
    pub bias: Vec<f32>,
    /// The weight this edge reuses, if any.
    pub shared: Option<SharedRef>,
    /// Maximum L2 norm of each incoming weight vector (0 = off): the output layer's
    /// `WeightNorm`.
    pub norm: f32,
    /// A locked weight is not updated by training.
    pub locked: bool,
}

/// The weight a shared edge reuses: that of `source_input_layer → source_output_layer`,
/// transposed if `transposed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRef {
    pub source_input_layer: String,
    pub source_output_layer: String,
    pub transposed: bool,
}

/// Extra Moira state, saved in `moira_*` variables and attributes that DSSTNE ignores.
/// Names are free text; order is kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extras {
    /// Named f32 tensors (optimizer moments and the like).
    pub tensors: Vec<(String, Vec<f32>)>,
    /// Named u64 scalars (epoch, batch position, RNG seed and counter, ...).
    pub scalars: Vec<(String, u64)>,
    /// Named strings.
    pub strings: Vec<(String, String)>,
}

impl Extras {
    /// The scalar named `name`, if any.
    pub fn scalar(&self, name: &str) -> Option<u64> {
        self.scalars.iter().find(|(n, _)| n == name).map(|s| s.1)
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|t| t.1.as_slice())
    }

    /// The string named `name`, if any.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.strings
            .iter()
            .find(|(n, _)| n == name)
            .map(|s| s.1.as_str())
    }
}

/// Everything a model file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The network, every layer size `Size::Fixed` (see [`resolved_descriptor`]); its layers'
    /// `shared_weights` agree with the shared [`WeightTensor`]s.
    pub descriptor: Descriptor,
    /// One tensor per edge, in the order written to the file (DSSTNE's weight order).
    pub weights: Vec<WeightTensor>,
    /// The values of the `BatchNormalization` layers (in layer order; may be empty, e.g. for
    /// a DSSTNE file without them).
    pub batch_norm: Vec<BatchNormTensors>,
    pub extras: Extras,
}

/// The batch-normalisation values of one layer as stored in a model file
/// (`layer<i>_scaleBN`, `layer<i>_biasBN`, `layer<i>_runningMeanBN`,
/// `layer<i>_runningVarianceBN` over the dimension `layer<i>_bnDim`), each as long as the
/// layer has units.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormTensors {
    /// The layer's name.
    pub layer: String,
    /// `γ`.
    pub scale: Vec<f32>,
    /// `β`.
    pub bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_variance: Vec<f32>,
}

/// Writes `model` to `path` in DSSTNE's schema (see the [module documentation](self)).
///
/// The model is first checked for consistency ([`Error::InvalidData`] naming the layer or
/// weight): every layer size fixed, one tensor per edge of the descriptor, shapes equal to the
/// layers' unit counts, data and bias lengths right, shared tensors matching the layers'
/// `SharedWeights`. The file is written to a temporary file in the same directory, flushed
/// and renamed over `path`, so `path` holds either its old content or the whole new model;
/// on failure no file is left behind ([`Error::Io`] or [`Error::NetCdf`]).
pub fn save_model(path: &Path, model: &Model) -> Result<()> {
    check_model(model, false).map_err(|p| Error::InvalidData(p.describe(model)))?;
    let _lock = crate::netcdf_lock::hold();
    write::save_atomically(
        path,
        model,
        &mut write::Streams::new(model, &mut Held),
        false,
    )
}

/// Reads the model at `path`, written by [`save_model`] or by DSSTNE.
///
/// Errors: [`Error::Io`] if the file cannot be found or read; [`Error::NetCdf`] naming the
/// file, and the attribute or variable concerned, for a file that is not NetCDF (truncated,
/// corrupted), a missing attribute or variable, a value of the wrong type or out of range, an
/// unknown enum number, a weight or bias of the wrong length, or weights that do not fit the
/// layers. The descriptor is not compiled: [`Graph::compile`] it with the shapes of the data
/// at hand, then [`check_against_graph`].
pub fn load_model(path: &Path) -> Result<Model> {
    let model = {
        let _lock = crate::netcdf_lock::hold();
        read::load(path)?
    };
    check_model(&model, false).map_err(|p| {
        let item = match p.weight {
            Some(i) => format!("weight{i}_{}", p.item),
            None => p.item.to_owned(),
        };
        Error::netcdf(path, Some(&item), p.message)
    })?;
    Ok(model)
}

/// Reads only the [`Extras`] of the model file at `path` (no weights): the cheap way to read
/// a checkpoint's or best model's scalars. Errors as [`load_model`]'s.
pub fn load_extras(path: &Path) -> Result<Extras> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file"),
        ));
    }
    let _lock = crate::netcdf_lock::hold();
    read::load_extras(path)
}

/// The descriptor `graph` was compiled from, with every `Size::Auto` replaced by the compiled
/// dimensions and each Input layer's `sparse` by the compiled value (taken from its dataset),
/// as DSSTNE stores them. Per-layer parameters inherited from the network (`RELUSlope`,
/// `ELUAlpha`, `SELULambda`) are already resolved in every descriptor.
pub fn resolved_descriptor(graph: &Graph) -> Descriptor {
    let mut d = graph.descriptor().clone();
    for layer in graph.layers() {
        if let Some(l) = d.layers.get_mut(layer.descriptor_index) {
            l.size = Size::Fixed(layer.dims.clone());
            l.sparse = layer.sparse;
        }
    }
    d
}

/// Checks that `model`'s weights fit `graph`: every graph weight (and every shared edge) has
/// a tensor with the same layer names and shape (and, for a shared edge, the same shared
/// source and transposition). Use it after compiling a loaded descriptor against data of
/// possibly another width.
///
/// Errors: [`Error::InvalidData`] naming the weight and both shapes, or the missing tensor.
pub fn check_against_graph(model: &Model, graph: &Graph) -> Result<()> {
    for edge in graph.edges() {
        let input = &graph.layer(edge.source).name;
        let output = &graph.layer(edge.target).name;
        let (rows, cols) = (
            graph.layer(edge.source).units,
            graph.layer(edge.target).units,
        );
        let tensor = model
            .weights
            .iter()
            .find(|t| &t.input_layer == input && &t.output_layer == output)
            .ok_or_else(|| {
                Error::InvalidData(format!(
                    "the model has no weight `{input}` -> `{output}`, which the network needs"
                ))
            })?;
        if (tensor.rows, tensor.cols) != (rows, cols) {
            return Err(Error::InvalidData(format!(
                "weight `{input}` -> `{output}` is {} x {} in the model but {rows} x {cols} in the network",
                tensor.rows, tensor.cols
            )));
        }
        let expected = edge.is_shared(graph).then(|| {
            let w = graph.weight(edge.weight);
            SharedRef {
                source_input_layer: graph.layer(w.input).name.clone(),
                source_output_layer: graph.layer(w.output).name.clone(),
                transposed: edge.transposed,
            }
        });
        if tensor.shared != expected {
            let show = |s: &Option<SharedRef>| match s {
                None => "unshared".to_owned(),
                Some(s) => format!(
                    "shared with `{}` -> `{}`{}",
                    s.source_input_layer,
                    s.source_output_layer,
                    if s.transposed { " (transposed)" } else { "" }
                ),
            };
            return Err(Error::InvalidData(format!(
                "weight `{input}` -> `{output}` is {} in the model but {} in the network",
                show(&tensor.shared),
                show(&expected)
            )));
        }
    }
    Ok(())
}

/// A consistency problem of a model: `item` is the schema name of the field at fault
/// (without the `weight<i>_` prefix when `weight` is set).
#[derive(Debug)]
struct Problem {
    weight: Option<usize>,
    item: &'static str,
    message: String,
}

impl Problem {
    fn weight(i: usize, item: &'static str, message: String) -> Self {
        Problem {
            weight: Some(i),
            item,
            message,
        }
    }

    /// A message for [`Error::InvalidData`] (a model in memory).
    fn describe(&self, model: &Model) -> String {
        match self
            .weight
            .and_then(|i| model.weights.get(i).map(|w| (i, w)))
        {
            Some((i, w)) => format!(
                "model weight {i} (`{}` -> `{}`): {}",
                w.input_layer, w.output_layer, self.message
            ),
            None => format!("model: {}", self.message),
        }
    }
}

/// The unit count of a layer with a fixed size.
fn layer_units(l: &LayerDescriptor) -> std::result::Result<usize, Problem> {
    let dims = match &l.size {
        Size::Fixed(dims) if !dims.is_empty() && dims.len() <= 4 && !dims.contains(&0) => dims,
        other => {
            return Err(Problem {
                weight: None,
                item: "layers",
                message: format!(
                    "layer `{}` has size {other}; a saved model needs 1 to 4 positive dimensions (see resolved_descriptor)",
                    l.name
                ),
            })
        }
    };
    let units = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&u| u <= u64::from(u32::MAX));
    units.map(|u| u as usize).ok_or_else(|| Problem {
        weight: None,
        item: "layers",
        message: format!("layer `{}` has more than {} units", l.name, u32::MAX),
    })
}

/// Checks that the weights of `model` are exactly the edges of its descriptor, with the right
/// shapes, lengths and sharing.
///
/// With `streamed`, an unshared weight with no values stands for `rows × cols` values that
/// a [`TensorSource`] provides.
fn check_model(model: &Model, streamed: bool) -> std::result::Result<(), Problem> {
    let d = &model.descriptor;
    let units = d
        .layers
        .iter()
        .map(layer_units)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let find = |name: &str| d.layers.iter().position(|l| l.name == name);
    for (i, w) in model.weights.iter().enumerate() {
        let err = |item, message: String| Err(Problem::weight(i, item, message));
        let Some(input) = find(&w.input_layer) else {
            return err(
                "inputLayer",
                format!("no layer is named `{}`", w.input_layer),
            );
        };
        let Some(output) = find(&w.output_layer) else {
            return err(
                "outputLayer",
                format!("no layer is named `{}`", w.output_layer),
            );
        };
        let out_layer = &d.layers[output];
        if !out_layer.sources.contains(&w.input_layer) {
            return err(
                "inputLayer",
                format!(
                    "`{}` is not a source of `{}` (its sources: {})",
                    w.input_layer,
                    w.output_layer,
                    out_layer.sources.join(", ")
                ),
            );
        }
        if model.weights[..i]
            .iter()
            .any(|v| v.input_layer == w.input_layer && v.output_layer == w.output_layer)
        {
            return err(
                "outputLayer",
                "a second weight for the same edge".to_owned(),
            );
        }
        if (w.rows, w.cols) != (units[input], units[output]) {
            return err(
                "weights",
                format!(
                    "shape {} x {} but the layers have {} and {} units",
                    w.rows, w.cols, units[input], units[output]
                ),
            );
        }
        if w.bias.len() != w.cols {
            return err(
                "bias",
                format!(
                    "{} biases; expected {} (output units)",
                    w.bias.len(),
                    w.cols
                ),
            );
        }
        let declared = out_layer
            .shared_weights
            .iter()
            .find(|s| s.input_layer == w.input_layer);
        match (&w.shared, declared) {
            (None, None) => {
                let expected = w.rows.checked_mul(w.cols);
                let given = if streamed && w.data.is_empty() {
                    expected
                } else {
                    Some(w.data.len())
                };
                if expected != given {
                    return err(
                        "weights",
                        format!(
                            "{} values; expected {} x {} = {}",
                            w.data.len(),
                            w.rows,
                            w.cols,
                            w.rows.saturating_mul(w.cols)
                        ),
                    );
                }
            }
            (Some(s), Some(decl))
                if s.source_input_layer == decl.source_input_layer
                    && s.source_output_layer == decl.source_output_layer
                    && s.transposed == decl.transposed =>
            {
                if !w.data.is_empty() {
                    return err(
                        "weights",
                        format!(
                            "a shared weight has no data of its own, but {} values were given",
                            w.data.len()
                        ),
                    );
                }
            }
            (shared, _) => {
                return err(
                    "bShared",
                    format!(
                        "sharing {:?} disagrees with the SharedWeights of layer `{}` ({:?})",
                        shared, w.output_layer, declared
                    ),
                );
            }
        }
    }
    for (k, b) in model.batch_norm.iter().enumerate() {
        let problem = |message: String| Problem {
            weight: None,
            item: "batch normalization",
            message,
        };
        let Some(i) = find(&b.layer) else {
            return Err(problem(format!(
                "batch normalization values for `{}`, which is not a layer",
                b.layer
            )));
        };
        if !d.layers[i].batch_normalization
            || model.batch_norm[..k].iter().any(|o| o.layer == b.layer)
        {
            return Err(problem(format!(
                "batch normalization values for layer `{}`, which has no BatchNormalization \
                 or has them twice",
                b.layer
            )));
        }
        for v in [&b.scale, &b.bias, &b.running_mean, &b.running_variance] {
            if v.len() != units[i] {
                return Err(problem(format!(
                    "layer `{}`: {} batch normalization values; the layer has {} units",
                    b.layer,
                    v.len(),
                    units[i]
                )));
            }
        }
    }
    // Pooling layers have no weights (DSSTNE creates none for them).
    for l in d
        .layers
        .iter()
        .filter(|l| l.layer_type != LayerType::Pooling)
    {
        for s in &l.sources {
            if !model
                .weights
                .iter()
                .any(|w| &w.input_layer == s && w.output_layer == l.name)
            {
                return Err(Problem {
                    weight: None,
                    item: "weights",
                    message: format!("no weight is given for the edge `{s}` -> `{}`", l.name),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
