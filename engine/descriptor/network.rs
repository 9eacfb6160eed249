//! The top level of a descriptor: network settings and the `Layers` list.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::Result;
use crate::ops::ErrorFunction;

use super::json::{join, FloatRange, KeyNames, Reader};
use super::parse_layer::{parse_layer, ParsedLayer};
use super::{Descriptor, NetworkKind, SparsenessPenalty, MIN_VERSION};

/// The top-level keys, canonical spelling first.
const KEYS: &[KeyNames] = &[
    &["Version"],
    &["Name"],
    &["Kind"],
    &["WeightsData"],
    &["LRN", "LocalResponseNormalization"],
    &["Maxout"],
    &["SparsenessPenalty"],
    &["Denoising"],
    &["DeltaBoost"],
    &[
        "ScaledMarginalCrossEntropy",
        "DataScaledMarginalCrossEntropy",
    ],
    &["ShuffleIndices"],
    &["RELUSlope", "Slope"],
    &["ELUAlpha"],
    &["SELULambda"],
    &["Decay"],
    &["ErrorFunction"],
    &["Layers"],
];

/// Parses a whole descriptor from its JSON value.
pub(super) fn parse(value: &Value, file: &Path) -> Result<Descriptor> {
    let r = Reader { file };
    let top = r.object(value, "")?;
    let mut d = Descriptor::default();
    let mut layers = None;
    for (k, key, v) in r.keys(top, "", KEYS, "network")? {
        let path = key;
        match k {
            0 => {
                d.version = r.f32(v, path, FloatRange::Any)?;
                // DSSTNE compares with 0.6999 to forgive float rounding.
                if d.version < MIN_VERSION - 1e-4 {
                    return Err(r.error(
                        path,
                        format!("version {} is too old (at least {MIN_VERSION})", d.version),
                    ));
                }
            }
            1 => d.name = r.str(v, path)?.to_owned(),
            2 => {
                d.kind = r.enum_value(
                    v,
                    path,
                    "network kind",
                    NetworkKind::from_name,
                    &["FeedForward", "AutoEncoder"],
                )?
            }
            3 => d.weights_data = Some(r.name(v, path)?),
            4 => parse_lrn(r, v, path, &mut d)?,
            5 => {
                let o = r.object(v, path)?;
                for (_, pkey, pv) in r.keys(o, path, &[&["k"]], "Maxout")? {
                    d.maxout_k = r.positive_u32(pv, &join(path, pkey))?;
                }
            }
            6 => d.sparseness_penalty = parse_sparseness_penalty(r, v, path)?,
            7 => {
                let o = r.object(v, path)?;
                for (_, pkey, pv) in r.keys(o, path, &[&["p"]], "Denoising")? {
                    d.denoising_p = r.f32(pv, &join(path, pkey), FloatRange::Probability)?;
                }
            }
            8 => {
                let o = r.object(v, path)?;
                for (pk, pkey, pv) in r.keys(o, path, &[&["one"], &["zero"]], "DeltaBoost")? {
                    let x = r.f32(pv, &join(path, pkey), FloatRange::NonNegative)?;
                    match pk {
                        0 => d.delta_boost.one = x,
                        _ => d.delta_boost.zero = x,
                    }
                }
            }
            9 => parse_smce(r, v, path, &mut d)?,
            10 => d.shuffle_indices = r.bool(v, path)?,
            11 => d.relu_slope = r.f32(v, path, FloatRange::Any)?,
            12 => d.elu_alpha = r.f32(v, path, FloatRange::Any)?,
            13 => d.selu_lambda = r.f32(v, path, FloatRange::Any)?,
            14 => d.decay = r.f32(v, path, FloatRange::NonNegative)?,
            15 => {
                d.error_function = r.enum_value(
                    v,
                    path,
                    "error function",
                    ErrorFunction::from_name,
                    ErrorFunction::accepted_names(),
                )?
            }
            _ => layers = Some((key, v)),
        }
    }
    let Some((key, layers)) = layers else {
        return Err(r.error("Layers", "missing key `Layers`: a network needs layers"));
    };
    d.layers = parse_layers(r, layers, key, &d)?;
    Ok(d)
}

fn parse_lrn(r: Reader<'_>, v: &Value, path: &str, d: &mut Descriptor) -> Result<()> {
    let o = r.object(v, path)?;
    let keys: &[KeyNames] = &[&["k"], &["n"], &["alpha"], &["beta"]];
    for (pk, pkey, pv) in r.keys(o, path, keys, "LRN")? {
        let p = join(path, pkey);
        match pk {
            0 => d.lrn.k = r.f32(pv, &p, FloatRange::Any)?,
            1 => d.lrn.n = r.positive_u32(pv, &p)?,
            2 => d.lrn.alpha = r.f32(pv, &p, FloatRange::Any)?,
            _ => d.lrn.beta = r.f32(pv, &p, FloatRange::Any)?,
        }
    }
    Ok(())
}

/// `{p, beta}`, with 0 for an absent member.
pub(super) fn parse_sparseness_penalty(
    r: Reader<'_>,
    v: &Value,
    path: &str,
) -> Result<SparsenessPenalty> {
    let o = r.object(v, path)?;
    let mut sp = SparsenessPenalty::default();
    for (pk, pkey, pv) in r.keys(o, path, &[&["p"], &["beta"]], "SparsenessPenalty")? {
        let p = join(path, pkey);
        match pk {
            0 => sp.p = r.f32(pv, &p, FloatRange::Unit)?,
            _ => sp.beta = r.f32(pv, &p, FloatRange::NonNegative)?,
        }
    }
    Ok(sp)
}

fn parse_smce(r: Reader<'_>, v: &Value, path: &str, d: &mut Descriptor) -> Result<()> {
    let o = r.object(v, path)?;
    let keys: &[KeyNames] = &[
        &["oneTarget"],
        &["zeroTarget"],
        &["oneScale"],
        &["zeroScale"],
    ];
    for (pk, pkey, pv) in r.keys(o, path, keys, "ScaledMarginalCrossEntropy")? {
        let p = join(path, pkey);
        match pk {
            0 => d.smce.one_target = r.f32(pv, &p, FloatRange::Unit)?,
            1 => d.smce.zero_target = r.f32(pv, &p, FloatRange::Unit)?,
            2 => d.smce.one_scale = r.f32(pv, &p, FloatRange::NonNegative)?,
            _ => d.smce.zero_scale = r.f32(pv, &p, FloatRange::NonNegative)?,
        }
    }
    Ok(())
}

/// The `Layers` value: an array of layer objects, or a single layer object.
fn parse_layers(
    r: Reader<'_>,
    value: &Value,
    key: &str,
    network: &Descriptor,
) -> Result<Vec<super::LayerDescriptor>> {
    let objects: Vec<(String, &Map<String, Value>)> = r.one_or_many(value, key)?;
    if objects.is_empty() {
        return Err(r.error(key, "`Layers` is empty: a network needs layers"));
    }
    let count = objects.len();
    let mut layers: Vec<super::LayerDescriptor> = Vec::with_capacity(count);
    for (i, (path, object)) in objects.iter().enumerate() {
        let ParsedLayer {
            mut layer,
            name_given,
            source_given,
        } = parse_layer(r, object, path, i, count, network)?;
        if let Some(j) = layers.iter().position(|l| l.name == layer.name) {
            let at = if name_given {
                join(path, "Name")
            } else {
                path.clone()
            };
            let what = if name_given { "" } else { "default " };
            return Err(r.error(
                &at,
                format!(
                    "duplicate layer name `{}`: the {what}name of this layer is also the name of {}",
                    layer.name, objects[j].0
                ),
            ));
        }
        // DSSTNE: a non-Input layer without `Source` is fed by the previous layer of the list.
        if !source_given && layer.kind != super::LayerKind::Input {
            if let Some(previous) = layers.last() {
                layer.sources = vec![previous.name.clone()];
            }
        }
        layers.push(layer);
    }
    Ok(layers)
}
