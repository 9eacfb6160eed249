//! [`Graph::compile`]: validation, size resolution, ordering, edges and weights.

use std::collections::HashMap;

use crate::descriptor::json::suggest;
use crate::descriptor::{
    Descriptor, LayerDescriptor, LayerKind, LayerType, Size, SparsenessPenalty, MAX_DIMS,
    MAX_SOURCES,
};
use crate::error::{Error, Result};

use super::order::topological_order;
use super::variational;
use super::{DataShape, Edge, EdgeId, Graph, Layer, LayerId, Weight, WeightId};

/// Builds [`Error::Graph`]s for one network.
pub(super) struct Errors<'a> {
    network: &'a str,
}

impl Errors<'_> {
    pub(super) fn at(&self, layer: &str, message: impl Into<String>) -> Error {
        Error::Graph {
            network: self.network.to_owned(),
            layer: layer.to_owned(),
            message: message.into(),
        }
    }
}

pub(super) fn compile(d: &Descriptor, shapes: &[DataShape]) -> Result<Graph> {
    let network = if d.name.is_empty() {
        "(unnamed)"
    } else {
        d.name.as_str()
    };
    let err = Errors { network };
    for l in &d.layers {
        if l.layer_type != LayerType::FullyConnected {
            return Err(Error::Unsupported(format!(
                "layer `{}` of network `{network}`: {} layers are not supported yet",
                l.name, l.layer_type
            )));
        }
    }
    let shapes = index_shapes(shapes)?;
    let by_name = check_layers(d, &err)?;
    let sizes = d
        .layers
        .iter()
        .map(|l| resolve_size(l, &shapes, &err))
        .collect::<Result<Vec<_>>>()?;

    // Sources and skips by descriptor index.
    let resolve = |l: &LayerDescriptor, names: &[String], what: &str| -> Result<Vec<usize>> {
        names
            .iter()
            .map(|n| {
                by_name.get(n.as_str()).copied().ok_or_else(|| {
                    let hint = suggest(n, d.layers.iter().map(|l| l.name.as_str()))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    err.at(
                        &l.name,
                        format!("{what} `{n}` is not a layer of the network{hint}"),
                    )
                })
            })
            .collect()
    };
    let mut sources = Vec::with_capacity(d.layers.len());
    let mut skips = Vec::with_capacity(d.layers.len());
    for l in &d.layers {
        sources.push(resolve(l, &l.sources, "source")?);
        skips.push(resolve(l, &l.skips, "skip")?);
    }

    // A variational layer samples from its log-variance layer: computed after it.
    let log_variance = variational::resolve(d, &by_name, &err)?;
    let deps: Vec<Vec<usize>> = (0..d.layers.len())
        .map(|i| {
            let lv = log_variance[i].iter();
            sources[i]
                .iter()
                .chain(&skips[i])
                .chain(lv)
                .copied()
                .collect()
        })
        .collect();
    let order = topological_order(&deps).map_err(|cycle| {
        let mut names: Vec<&str> = cycle.iter().map(|&i| d.layers[i].name.as_str()).collect();
        let first = names.first().copied().unwrap_or_default().to_owned();
        names.push(&first);
        err.at(
            &first,
            format!("the layers form a cycle: {}", names.join(" -> ")),
        )
    })?;
    let mut id_of = vec![LayerId(0); d.layers.len()];
    for (position, &i) in order.iter().enumerate() {
        id_of[i] = LayerId(position);
    }

    for (i, l) in d.layers.iter().enumerate() {
        for &s in &skips[i] {
            if sizes[s].1 != sizes[i].1 {
                return Err(err.at(
                    &l.name,
                    format!(
                        "skip `{}` has {} units but this layer has {}; a skip must match its layer",
                        d.layers[s].name, sizes[s].1, sizes[i].1
                    ),
                ));
            }
        }
    }

    let mut layers: Vec<Layer> = order
        .iter()
        .map(|&i| {
            let l = &d.layers[i];
            let (dims, units, dataset_sparse) = sizes[i].clone();
            let sparse = match (l.kind, dataset_sparse) {
                (LayerKind::Input, Some(s)) => s,
                _ => l.sparse,
            };
            Layer {
                id: id_of[i],
                descriptor_index: i,
                name: l.name.clone(),
                kind: l.kind,
                dims,
                units,
                sparse,
                denoising: l.kind == LayerKind::Input && sparse && d.denoising_p > 0.0,
                dataset: l.dataset.clone(),
                activation: l.activation,
                relu_slope: l.relu_slope,
                elu_alpha: l.elu_alpha,
                selu_lambda: l.selu_lambda,
                p_dropout: l.p_dropout,
                weight_norm: l.weight_norm,
                delta_norm: l.delta_norm,
                batch_normalization: l.batch_normalization,
                sparseness_penalty: sparseness_penalty(d, l),
                sources: sources[i].iter().map(|&s| id_of[s]).collect(),
                skips: skips[i].iter().map(|&s| id_of[s]).collect(),
                incoming: Vec::new(),
                outgoing: Vec::new(),
                skip_targets: Vec::new(),
                variational: None,
                log_variance_of: None,
            }
        })
        .collect();
    variational::attach(d, &mut layers, &log_variance, &id_of, &err)?;
    for t in 0..layers.len() {
        for s in layers[t].skips.clone() {
            layers[s.0].skip_targets.push(LayerId(t));
        }
    }

    let (edges, weights) = connect(d, &mut layers, &err)?;
    Ok(Graph {
        descriptor: d.clone(),
        layers,
        edges,
        weights,
    })
}

/// Shapes by name; rejects duplicate names and malformed dimensions.
fn index_shapes(shapes: &[DataShape]) -> Result<HashMap<&str, &DataShape>> {
    let mut map = HashMap::new();
    for s in shapes {
        if s.dims.is_empty() || s.dims.len() > 3 || s.dims.contains(&0) {
            return Err(Error::invalid_argument(
                "shapes",
                format!(
                    "dataset `{}` has dimensions {:?}; expected 1 to 3 positive dimensions",
                    s.name, s.dims
                ),
            ));
        }
        if map.insert(s.name.as_str(), s).is_some() {
            return Err(Error::invalid_argument(
                "shapes",
                format!("two datasets are named `{}`", s.name),
            ));
        }
    }
    Ok(map)
}

/// Per-layer checks that do not need the other layers; returns the descriptor index of each
/// layer name.
fn check_layers<'d>(d: &'d Descriptor, err: &Errors<'_>) -> Result<HashMap<&'d str, usize>> {
    if d.layers.is_empty() {
        return Err(err.at("(none)", "the network has no layers"));
    }
    let mut by_name = HashMap::new();
    for (i, l) in d.layers.iter().enumerate() {
        if l.name.trim().is_empty() {
            return Err(err.at(&format!("#{i}"), "a layer has an empty name"));
        }
        if by_name.insert(l.name.as_str(), i).is_some() {
            return Err(err.at(&l.name, "two layers have this name"));
        }
        match &l.size {
            Size::Auto if !matches!(l.kind, LayerKind::Input | LayerKind::Output) => {
                return Err(err.at(&l.name, "only Input and Output layers may have size auto"));
            }
            Size::Fixed(dims) if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) => {
                return Err(err.at(
                    &l.name,
                    format!("size {dims:?} must have 1 to {MAX_DIMS} positive dimensions"),
                ));
            }
            _ => {}
        }
        if l.sources.len() > MAX_SOURCES {
            return Err(err.at(
                &l.name,
                format!(
                    "{} sources; a layer may have at most {MAX_SOURCES}",
                    l.sources.len()
                ),
            ));
        }
        for (j, s) in l.sources.iter().enumerate() {
            if l.sources[..j].contains(s) {
                return Err(err.at(&l.name, format!("source `{s}` is listed twice")));
            }
        }
        if l.kind == LayerKind::Input {
            if !l.sources.is_empty() || !l.skips.is_empty() {
                return Err(err.at(&l.name, "an Input layer has no sources or skips"));
            }
        } else if l.sources.is_empty() {
            return Err(err.at(
                &l.name,
                format!("a {} layer needs at least one source", l.kind),
            ));
        }
    }
    for kind in [LayerKind::Input, LayerKind::Output] {
        if !d.layers.iter().any(|l| l.kind == kind) {
            let last = d.layers.last().map(|l| l.name.as_str()).unwrap_or_default();
            return Err(err.at(last, format!("the network has no {kind} layer")));
        }
    }
    Ok(by_name)
}

/// The resolved `(dims, units, dataset sparse flag)` of a layer.
fn resolve_size(
    l: &LayerDescriptor,
    shapes: &HashMap<&str, &DataShape>,
    err: &Errors<'_>,
) -> Result<(Vec<u32>, usize, Option<bool>)> {
    let shape = match &l.dataset {
        Some(name) => Some(*shapes.get(name.as_str()).ok_or_else(|| {
            let mut available: Vec<&str> = shapes.keys().copied().collect();
            available.sort_unstable();
            let available = if available.is_empty() {
                "none were given".to_owned()
            } else {
                format!("available: {}", available.join(", "))
            };
            err.at(&l.name, format!("dataset `{name}` not found ({available})"))
        })?),
        None => None,
    };
    let dims = match (&l.size, shape) {
        (Size::Auto, Some(s)) => s.dims.clone(),
        (Size::Auto, None) => {
            return Err(err.at(&l.name, "size is auto but the layer has no dataset"));
        }
        (Size::Fixed(dims), _) => dims.clone(),
    };
    let units = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .filter(|&u| u <= u64::from(u32::MAX))
        .ok_or_else(|| {
            err.at(
                &l.name,
                format!("size {dims:?} has more than {} units", u32::MAX),
            )
        })?;
    if let Some(s) = shape {
        if s.units() != units {
            return Err(err.at(
                &l.name,
                format!(
                    "the layer has {units} units but its dataset `{}` has {} ({:?})",
                    s.name,
                    s.units(),
                    s.dims
                ),
            ));
        }
    }
    Ok((dims, units as usize, shape.map(|s| s.sparse)))
}

/// The penalty in force on layer `l` (see [`super::Layer::sparseness_penalty`]).
fn sparseness_penalty(d: &Descriptor, l: &LayerDescriptor) -> Option<SparsenessPenalty> {
    let net = d.sparseness_penalty;
    if l.kind != LayerKind::Hidden || !l.sparse || net.beta <= 0.0 {
        return None;
    }
    let own = l.sparseness_penalty;
    Some(SparsenessPenalty {
        p: if own.p > 0.0 { own.p } else { net.p },
        beta: if own.beta > 0.0 { own.beta } else { net.beta },
    })
}

/// Creates one edge per (source → layer), a weight per unshared edge, and resolves shared
/// weights.
fn connect(
    d: &Descriptor,
    layers: &mut [Layer],
    err: &Errors<'_>,
) -> Result<(Vec<Edge>, Vec<Weight>)> {
    let mut edges: Vec<Edge> = Vec::new();
    let mut weights: Vec<Weight> = Vec::new();
    let mut shared: Vec<(EdgeId, usize)> = Vec::new(); // (edge, index into shared_weights)
    for t in 0..layers.len() {
        let desc = &d.layers[layers[t].descriptor_index];
        for entry in &desc.shared_weights {
            if !desc.sources.contains(&entry.input_layer) {
                return Err(err.at(
                    &desc.name,
                    format!(
                        "shared weight InputLayer `{}` is not a source of this layer (sources: {})",
                        entry.input_layer,
                        desc.sources.join(", ")
                    ),
                ));
            }
        }
        for (k, &s) in layers[t].sources.clone().iter().enumerate() {
            let id = EdgeId(edges.len());
            let source_name = &desc.sources[k];
            let mut matching = desc
                .shared_weights
                .iter()
                .enumerate()
                .filter(|(_, e)| &e.input_layer == source_name);
            let share = matching.next().map(|(j, _)| j);
            if matching.next().is_some() {
                return Err(err.at(
                    &desc.name,
                    format!("two shared weights are given for InputLayer `{source_name}`"),
                ));
            }
            let weight = match share {
                Some(j) => {
                    shared.push((id, j));
                    WeightId(usize::MAX) // resolved below
                }
                None => {
                    let w = WeightId(weights.len());
                    weights.push(Weight {
                        id: w,
                        edge: id,
                        input: s,
                        output: LayerId(t),
                        input_units: layers[s.0].units,
                        output_units: layers[t].units,
                        init: desc.weight_init,
                        norm: desc.weight_norm,
                        sharing_count: 1,
                    });
                    w
                }
            };
            edges.push(Edge {
                id,
                source: s,
                target: LayerId(t),
                weight,
                transposed: false,
            });
            layers[s.0].outgoing.push(id);
            layers[t].incoming.push(id);
        }
    }

    let is_shared: Vec<bool> = {
        let mut v = vec![false; edges.len()];
        for &(id, _) in &shared {
            v[id.0] = true;
        }
        v
    };
    for (id, j) in shared {
        let (source, target) = (edges[id.0].source, edges[id.0].target);
        let desc = &d.layers[layers[target.0].descriptor_index];
        let entry = &desc.shared_weights[j];
        let find = |name: &str| {
            layers.iter().find(|l| l.name == name).ok_or_else(|| {
                err.at(
                    &desc.name,
                    format!(
                        "shared weight names layer `{name}`, which is not a layer of the network"
                    ),
                )
            })
        };
        let si = find(&entry.source_input_layer)?;
        let so = find(&entry.source_output_layer)?;
        let owner = edges
            .iter()
            .find(|e| e.source == si.id && e.target == so.id)
            .ok_or_else(|| {
                err.at(
                    &desc.name,
                    format!(
                        "shared weight `{}` -> `{}` does not exist: `{}` is not a source of `{}`",
                        si.name, so.name, si.name, so.name
                    ),
                )
            })?;
        if is_shared[owner.id.0] {
            return Err(err.at(
                &desc.name,
                format!(
                    "shared weight `{}` -> `{}` is itself shared; share its owner's weight instead",
                    si.name, so.name
                ),
            ));
        }
        let (want_in, want_out) = if entry.transposed {
            (so.units, si.units)
        } else {
            (si.units, so.units)
        };
        let (have_in, have_out) = (layers[source.0].units, layers[target.0].units);
        if (have_in, have_out) != (want_in, want_out) {
            let t = if entry.transposed { "transposed " } else { "" };
            return Err(err.at(
                &desc.name,
                format!(
                    "the edge `{}` -> `{}` is {have_in} x {have_out} but the {t}shared weight `{}` -> `{}` is {want_in} x {want_out}",
                    layers[source.0].name, desc.name, si.name, so.name
                ),
            ));
        }
        let w = owner.weight;
        weights[w.0].sharing_count += 1;
        edges[id.0].weight = w;
        edges[id.0].transposed = entry.transposed;
    }
    Ok((edges, weights))
}
