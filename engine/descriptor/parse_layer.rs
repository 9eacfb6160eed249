//! Parsing of one layer object, with DSSTNE's rules on which keys each layer kind accepts.

use serde_json::{Map, Value};

use crate::error::Result;
use crate::ops::WeightInitScheme;

use super::json::{index, join, list, FloatRange, KeyNames, Reader};
use super::layer::activation_from_name;
use super::network::parse_sparseness_penalty;
use super::{
    Descriptor, LayerDescriptor, LayerKind, LayerType, PoolingFunction, SharedWeight, Size,
    Variational, WeightInit, ACTIVATION_NAMES, MAX_DIMS, MAX_SOURCES,
};

const INPUT: u8 = 1;
const HIDDEN: u8 = 2;
const OUTPUT: u8 = 4;
const TARGET: u8 = 8;
const ALL: u8 = INPUT | HIDDEN | OUTPUT | TARGET;

fn bit(kind: LayerKind) -> u8 {
    match kind {
        LayerKind::Input => INPUT,
        LayerKind::Hidden => HIDDEN,
        LayerKind::Output => OUTPUT,
        LayerKind::Target => TARGET,
    }
}

/// The layer keys, canonical spelling first, as DSSTNE's parser checks them.
const NAMES: &[KeyNames] = &[
    &["Kind"],
    &["Type"],
    &["Name"],
    &["Sparse"],
    &["N"],
    &["pDropout"],
    &["Source"],
    &["Kernel"],
    &["KernelStride"],
    &["BatchNormalization"],
    &["SparsenessPenalty"],
    &["Function"],
    &["Skip"],
    &["Activation"],
    &["RELUSlope", "Slope"],
    &["ELUAlpha"],
    &["SELULambda"],
    &["WeightNorm"],
    &["DeltaNorm"],
    &["WeightInit"],
    &["SharedWeights"],
    &["DataSet"],
    &["Variational"],
];

/// The kinds each key of [`NAMES`] is allowed on.
const KINDS: &[u8] = &[
    ALL,                      // Kind
    ALL,                      // Type
    ALL,                      // Name
    ALL,                      // Sparse
    ALL,                      // N
    ALL,                      // pDropout
    HIDDEN | OUTPUT | TARGET, // Source
    HIDDEN | OUTPUT | TARGET, // Kernel
    HIDDEN | OUTPUT | TARGET, // KernelStride
    HIDDEN,                   // BatchNormalization
    HIDDEN,                   // SparsenessPenalty
    HIDDEN | OUTPUT,          // Function (Pooling layers only)
    HIDDEN | OUTPUT,          // Skip
    HIDDEN | OUTPUT,          // Activation
    HIDDEN | OUTPUT,          // RELUSlope
    HIDDEN | OUTPUT,          // ELUAlpha
    HIDDEN | OUTPUT,          // SELULambda
    HIDDEN | OUTPUT,          // WeightNorm
    HIDDEN | OUTPUT,          // DeltaNorm
    HIDDEN | OUTPUT,          // WeightInit
    HIDDEN | OUTPUT,          // SharedWeights
    INPUT | OUTPUT,           // DataSet
    HIDDEN,                   // Variational (Moira extension)
];

const _: () = assert!(NAMES.len() == KINDS.len());

/// Keys DSSTNE's documents use and its parser rejects, with what to write instead.
const HINTS: &[(&str, &str)] = &[
    (
        "ErrorFunction",
        "the error function is a network-level key, not a layer key",
    ),
    (
        "L1Penalty",
        "DSSTNE's parser has no L1 penalty key (L1 regularisation is a training parameter)",
    ),
    ("Recurrent", "recurrent layers are not supported"),
    (
        "Transpose",
        "a transposed shared weight is written `\"SharedWeights\": {..., \"Transposed\": true}`",
    ),
    (
        "Dimensions",
        "dimensions are given as an array in `N`, e.g. `\"N\": [32, 32, 3]`",
    ),
    ("Target", "a Target layer is written `\"Kind\": \"Target\"`"),
];

/// A parsed layer, and which defaults the caller must still apply.
pub(super) struct ParsedLayer {
    pub layer: LayerDescriptor,
    /// `Name` was written (otherwise the default name is used).
    pub name_given: bool,
    /// `Source` was written (otherwise the previous layer is the source).
    pub source_given: bool,
}

fn kinds_text(kinds: u8) -> String {
    let names: Vec<&str> = LayerKind::ALL
        .iter()
        .filter(|k| kinds & bit(**k) != 0)
        .map(|k| k.name())
        .collect();
    format!("{} layers", list(&names))
}

fn article(kind: LayerKind) -> &'static str {
    match kind {
        LayerKind::Input | LayerKind::Output => "an",
        LayerKind::Hidden | LayerKind::Target => "a",
    }
}

/// Parses the layer `object` at `path`, the `index`-th of `count`, in `network` (whose
/// activation parameters absent keys inherit).
pub(super) fn parse_layer(
    r: Reader<'_>,
    object: &Map<String, Value>,
    path: &str,
    i: usize,
    count: usize,
    network: &Descriptor,
) -> Result<ParsedLayer> {
    for key in object.keys() {
        if let Some((name, hint)) = HINTS.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)) {
            return Err(r.error(
                &join(path, key),
                format!("unknown layer key `{key}`: {hint} (DSSTNE rejects `{name}` too)"),
            ));
        }
    }
    let entries = r.keys(object, path, NAMES, "layer")?;

    // Kind and Type first: they decide which other keys are allowed.
    let mut kind = LayerKind::by_position(i, count);
    let mut layer_type = LayerType::FullyConnected;
    for &(k, key, v) in &entries {
        let p = join(path, key);
        if k == 0 {
            let s = r.str(v, &p)?;
            kind = LayerKind::from_name(s).ok_or_else(|| {
                let hint = if s.eq_ignore_ascii_case("pooling") {
                    " (a pooling layer is written `\"Type\": \"Pooling\"`)"
                } else {
                    ""
                };
                r.error(
                    &p,
                    format!("unknown layer kind `{s}`; expected one of Input, Hidden, Output, Target{hint}"),
                )
            })?;
        } else if k == 1 {
            layer_type = r.enum_value(
                v,
                &p,
                "layer type",
                LayerType::from_name,
                &["FullyConnected", "Convolutional", "Pooling"],
            )?;
        }
    }

    let mut layer = LayerDescriptor::new(LayerDescriptor::default_name(kind, i), kind);
    layer.layer_type = layer_type;
    let (mut relu_slope, mut elu_alpha, mut selu_lambda) = (None, None, None);
    let mut name_given = false;
    let mut source_given = false;

    for &(k, key, v) in &entries {
        let p = join(path, key);
        if KINDS[k] & bit(kind) == 0 {
            return Err(r.error(
                &p,
                format!(
                    "key `{}` is not allowed on {} {kind} layer (only on {})",
                    NAMES[k][0],
                    article(kind),
                    kinds_text(KINDS[k])
                ),
            ));
        }
        match k {
            0 | 1 => {}
            2 => {
                layer.name = r.name(v, &p)?;
                name_given = true;
            }
            3 => layer.sparse = r.bool(v, &p)?,
            4 => layer.size = parse_size(r, v, &p, kind)?,
            5 => layer.p_dropout = r.f32(v, &p, FloatRange::Probability)?,
            6 => {
                layer.sources = parse_layer_names(r, v, &p, "Source")?;
                if layer.sources.is_empty() {
                    return Err(r.error(&p, "`Source` must name at least one layer"));
                }
                if layer.sources.len() > MAX_SOURCES {
                    return Err(r.error(
                        &p,
                        format!(
                            "{} sources given; a layer may have at most {MAX_SOURCES}",
                            layer.sources.len()
                        ),
                    ));
                }
                source_given = true;
            }
            7 => {
                let (size, dimensions) = parse_kernel(r, v, &p)?;
                layer.kernel.size = size;
                layer.kernel.dimensions = dimensions;
            }
            8 => layer.kernel.stride = parse_kernel(r, v, &p)?.0,
            9 => layer.batch_normalization = r.bool(v, &p)?,
            10 => layer.sparseness_penalty = parse_sparseness_penalty(r, v, &p)?,
            11 => {
                if layer_type != LayerType::Pooling {
                    return Err(r.error(
                        &p,
                        format!("key `Function` is only allowed on Pooling layers (this layer's Type is {layer_type})"),
                    ));
                }
                layer.pooling_function = Some(r.enum_value(
                    v,
                    &p,
                    "pooling function",
                    PoolingFunction::from_name,
                    PoolingFunction::accepted_names(),
                )?);
            }
            12 => layer.skips = parse_layer_names(r, v, &p, "Skip")?,
            13 => {
                layer.activation =
                    r.enum_value(v, &p, "activation", activation_from_name, ACTIVATION_NAMES)?
            }
            14 => relu_slope = Some(r.f32(v, &p, FloatRange::Any)?),
            15 => elu_alpha = Some(r.f32(v, &p, FloatRange::Any)?),
            16 => selu_lambda = Some(r.f32(v, &p, FloatRange::Any)?),
            17 => layer.weight_norm = r.f32(v, &p, FloatRange::NonNegative)?,
            18 => layer.delta_norm = r.f32(v, &p, FloatRange::NonNegative)?,
            19 => layer.weight_init = parse_weight_init(r, v, &p)?,
            20 => layer.shared_weights = parse_shared_weights(r, v, &p)?,
            21 => layer.dataset = Some(r.name(v, &p)?),
            _ => layer.variational = Some(parse_variational(r, v, &p)?),
        }
    }

    // Inherit the network's activation parameters (DSSTNE: NaN means inherit).
    layer.relu_slope = relu_slope.unwrap_or(network.relu_slope);
    layer.elu_alpha = elu_alpha.unwrap_or(network.elu_alpha);
    layer.selu_lambda = selu_lambda.unwrap_or(network.selu_lambda);

    if layer.size == Size::Auto && layer.dataset.is_none() {
        return Err(r.error(
            &join(path, "N"),
            "`N` is \"auto\" but the layer has no `DataSet` to take its size from",
        ));
    }
    if layer_type == LayerType::Pooling
        && matches!(
            layer.pooling_function,
            Some(PoolingFunction::DotProduct | PoolingFunction::Cosine)
        )
        && layer.sources.len() < 2
    {
        return Err(r.error(
            &join(path, "Source"),
            "a DotProduct or Cosine pooling layer needs at least 2 sources",
        ));
    }
    Ok(ParsedLayer {
        layer,
        name_given,
        source_given,
    })
}

/// `N`: a positive integer, an array of 1 to 4 positive integers, or `"auto"`.
fn parse_size(r: Reader<'_>, v: &Value, path: &str, kind: LayerKind) -> Result<Size> {
    match v {
        Value::Number(_) => Ok(Size::units(r.positive_u32(v, path)?)),
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_DIMS {
                return Err(r.error(
                    path,
                    format!(
                        "`N` has {} dimensions; it must have 1 to {MAX_DIMS}",
                        items.len()
                    ),
                ));
            }
            let dims = items
                .iter()
                .enumerate()
                .map(|(j, d)| r.positive_u32(d, &index(path, j)))
                .collect::<Result<Vec<u32>>>()?;
            Ok(Size::Fixed(dims))
        }
        Value::String(s) if s.eq_ignore_ascii_case("auto") => match kind {
            LayerKind::Input | LayerKind::Output => Ok(Size::Auto),
            _ => Err(r.error(
                path,
                format!("`N` may be \"auto\" only on Input and Output layers, and this is {} {kind} layer", article(kind)),
            )),
        },
        Value::String(s) => Err(r.error(
            path,
            format!("expected a positive integer, an array of up to {MAX_DIMS} positive integers or \"auto\", found the string \"{s}\""),
        )),
        other => Err(r.error(
            path,
            format!(
                "expected a positive integer, an array of up to {MAX_DIMS} positive integers or \"auto\", found {}",
                super::json::type_name(other)
            ),
        )),
    }
}

/// `Kernel` / `KernelStride`: a positive integer or an array of 1 to 3; returns (X, Y, Z)
/// with 1 for missing components, and the number of components given.
fn parse_kernel(r: Reader<'_>, v: &Value, path: &str) -> Result<([u32; 3], u32)> {
    let mut xyz = [1; 3];
    match v {
        Value::Array(items) => {
            if items.is_empty() || items.len() > 3 {
                return Err(r.error(
                    path,
                    format!("{} components given; a kernel has 1 to 3", items.len()),
                ));
            }
            for (j, item) in items.iter().enumerate() {
                xyz[j] = r.positive_u32(item, &index(path, j))?;
            }
            Ok((xyz, items.len() as u32))
        }
        _ => {
            xyz[0] = r.positive_u32(v, path)?;
            Ok((xyz, 1))
        }
    }
}

/// A layer name or a list of distinct layer names.
fn parse_layer_names(r: Reader<'_>, v: &Value, path: &str, what: &str) -> Result<Vec<String>> {
    let names = r.names(v, path)?;
    for (j, name) in names.iter().enumerate() {
        if names[..j].contains(name) {
            return Err(r.error(
                &index(path, j),
                format!("layer `{name}` is listed twice in `{what}`"),
            ));
        }
    }
    Ok(names)
}

fn parse_weight_init(r: Reader<'_>, v: &Value, path: &str) -> Result<WeightInit> {
    let o = r.object(v, path)?;
    let mut init = WeightInit::default();
    let keys: &[KeyNames] = &[&["Scheme"], &["Scale"], &["Bias"]];
    for (k, key, wv) in r.keys(o, path, keys, "WeightInit")? {
        let p = join(path, key);
        match k {
            0 => {
                init.scheme = r.enum_value(
                    wv,
                    &p,
                    "weight initialisation scheme",
                    WeightInitScheme::from_name,
                    WeightInitScheme::accepted_names(),
                )?
            }
            1 => init.scale = r.f32(wv, &p, FloatRange::Any)?,
            _ => init.bias = r.f32(wv, &p, FloatRange::Any)?,
        }
    }
    Ok(init)
}

/// `Variational`: `{ "LogVariance": NAME, "Beta": ≥ 0, "AnnealSteps": integer ≥ 0 }`.
fn parse_variational(r: Reader<'_>, v: &Value, path: &str) -> Result<Variational> {
    let o = r.object(v, path)?;
    let keys: &[KeyNames] = &[&["LogVariance"], &["Beta"], &["AnnealSteps"]];
    let (mut log_variance, mut beta, mut anneal_steps) = (None, 0.01, 0);
    for (k, key, kv) in r.keys(o, path, keys, "Variational")? {
        let kp = join(path, key);
        match k {
            0 => log_variance = Some(r.name(kv, &kp)?),
            1 => beta = r.f32(kv, &kp, FloatRange::NonNegative)?,
            _ if kv.as_u64() == Some(0) => anneal_steps = 0,
            _ => anneal_steps = r.positive_u32(kv, &kp)?,
        }
    }
    let log_variance = log_variance.ok_or_else(|| {
        r.error(
            path,
            "missing key `LogVariance`: the Hidden layer holding the log variance",
        )
    })?;
    Ok(Variational {
        log_variance,
        beta,
        anneal_steps,
    })
}

fn parse_shared_weights(r: Reader<'_>, v: &Value, path: &str) -> Result<Vec<SharedWeight>> {
    let keys: &[KeyNames] = &[
        &["InputLayer"],
        &["SourceInputLayer"],
        &["SourceOutputLayer"],
        &["Transposed"],
    ];
    let mut out = Vec::new();
    for (p, o) in r.one_or_many(v, path)? {
        let mut names: [Option<String>; 3] = [None, None, None];
        let mut transposed = false;
        for (k, key, sv) in r.keys(o, &p, keys, "SharedWeights")? {
            let kp = join(&p, key);
            match k {
                3 => transposed = r.bool(sv, &kp)?,
                _ => names[k] = Some(r.name(sv, &kp)?),
            }
        }
        let [Some(input_layer), Some(source_input_layer), Some(source_output_layer)] = names else {
            let missing: Vec<&str> = (0..3)
                .filter(|&k| names[k].is_none())
                .map(|k| keys[k][0])
                .collect();
            return Err(r.error(
                &p,
                format!("missing key `{}` in a shared weight", missing.join("`, `")),
            ));
        };
        out.push(SharedWeight {
            input_layer,
            source_input_layer,
            source_output_layer,
            transposed,
        });
    }
    Ok(out)
}
