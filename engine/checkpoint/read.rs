//! Reading a [`Model`] from a file in DSSTNE's schema (ours or DSSTNE's).

use std::path::Path;

use netcdf::types::{FloatType, NcVariableType};
use netcdf::AttributeValue;

use crate::descriptor::{
    DeltaBoost, Descriptor, Kernel, LayerDescriptor, LayerKind, LayerType, Lrn, NetworkKind,
    PoolingFunction, SharedWeight, Size, Smce, SparsenessPenalty, Variational, WeightInit,
    MAX_DIMS,
};
use crate::error::{Error, Result};
use crate::ops::{Activation, ErrorFunction, WeightInitScheme};

use super::write::{ATTRIBUTE_BATCH_NORMALIZATION, ATTRIBUTE_DENOISING, ATTRIBUTE_SPARSE};
use super::{BatchNormTensors, Extras, Model, SharedRef, WeightTensor};

/// A numeric attribute value.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

/// Typed access to the attributes and variables of one open file; errors name the file.
struct Reader<'a> {
    file: &'a netcdf::File,
    path: &'a Path,
}

impl Reader<'_> {
    fn error(&self, item: &str, message: impl Into<String>) -> Error {
        Error::netcdf(self.path, Some(item), message)
    }

    fn value(&self, name: &str) -> Result<Option<AttributeValue>> {
        match self.file.attribute(name) {
            None => Ok(None),
            Some(a) => a
                .value()
                .map(Some)
                .map_err(|e| self.error(name, format!("unreadable attribute: {e}"))),
        }
    }

    fn missing(&self, name: &str, what: &str) -> Error {
        self.error(name, format!("missing attribute; expected {what}"))
    }

    /// A numeric attribute with one value, if present.
    fn num(&self, name: &str, what: &str) -> Result<Option<Num>> {
        use AttributeValue as V;
        let Some(value) = self.value(name)? else {
            return Ok(None);
        };
        let one =
            |v: Option<Num>| v.ok_or_else(|| self.error(name, format!("empty; expected {what}")));
        let n = match value {
            V::Uchar(x) => Num::Int(x.into()),
            V::Schar(x) => Num::Int(x.into()),
            V::Ushort(x) => Num::Int(x.into()),
            V::Short(x) => Num::Int(x.into()),
            V::Uint(x) => Num::Int(x.into()),
            V::Int(x) => Num::Int(x.into()),
            V::Ulonglong(x) => Num::Int(x.into()),
            V::Longlong(x) => Num::Int(x.into()),
            V::Float(x) => Num::Float(x.into()),
            V::Double(x) => Num::Float(x),
            V::Uchars(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Schars(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Ushorts(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Shorts(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Uints(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Ints(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Ulonglongs(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Longlongs(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Int(v.into())))?,
            V::Floats(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Float(v.into())))?,
            V::Doubles(x) if x.len() <= 1 => one(x.first().map(|&v| Num::Float(v)))?,
            V::Str(_) | V::Strs(_) => {
                return Err(self.error(name, format!("a string; expected {what}")));
            }
            _ => {
                return Err(self.error(name, format!("several values; expected {what}")));
            }
        };
        Ok(Some(n))
    }

    /// An integer attribute of type `T`, if present.
    fn opt_int<T: TryFrom<i128> + Copy>(&self, name: &str, what: &str) -> Result<Option<T>> {
        let n = match self.num(name, what)? {
            None => return Ok(None),
            Some(Num::Int(n)) => n,
            Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 1e30 => f as i128,
            Some(Num::Float(f)) => {
                return Err(self.error(name, format!("{f} is not an integer; expected {what}")));
            }
        };
        T::try_from(n)
            .map(Some)
            .map_err(|_| self.error(name, format!("{n} is out of range; expected {what}")))
    }

    fn int<T: TryFrom<i128> + Copy>(&self, name: &str, what: &str) -> Result<T> {
        self.opt_int(name, what)?
            .ok_or_else(|| self.missing(name, what))
    }

    fn u32(&self, name: &str) -> Result<u32> {
        self.int(name, "an unsigned 32-bit integer")
    }

    fn bool(&self, name: &str) -> Result<bool> {
        Ok(self.int::<u64>(name, "a flag (0 or 1)")? != 0)
    }

    /// A finite float attribute, if present.
    fn opt_f32(&self, name: &str) -> Result<Option<f32>> {
        let what = "a finite number";
        let v = match self.num(name, what)? {
            None => return Ok(None),
            Some(Num::Int(n)) => n as f32,
            Some(Num::Float(f)) => f as f32,
        };
        if v.is_finite() {
            Ok(Some(v))
        } else {
            Err(self.error(name, format!("{v}; expected {what}")))
        }
    }

    fn f32(&self, name: &str) -> Result<f32> {
        self.opt_f32(name)?
            .ok_or_else(|| self.missing(name, "a finite number"))
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>> {
        match self.value(name)? {
            None => Ok(None),
            Some(AttributeValue::Str(s)) => Ok(Some(s)),
            Some(AttributeValue::Strs(mut v)) if v.len() == 1 => Ok(v.pop()),
            Some(_) => Err(self.error(name, "not a string; expected a string")),
        }
    }

    fn string(&self, name: &str) -> Result<String> {
        self.opt_string(name)?
            .ok_or_else(|| self.missing(name, "a string"))
    }

    /// An enum stored as its DSSTNE number.
    fn enumerated<T>(&self, name: &str, what: &str, from: impl Fn(u32) -> Option<T>) -> Result<T> {
        let v = self.u32(name)?;
        from(v).ok_or_else(|| self.error(name, format!("{v} is not a known {what} number")))
    }

    /// The one-dimensional float variable `name`, which must have `expected` values if given.
    fn floats(&self, name: &str, expected: Option<(usize, &str)>) -> Result<Vec<f32>> {
        let var = self
            .file
            .variable(name)
            .ok_or_else(|| self.error(name, "missing variable"))?;
        if var.dimensions().len() != 1 {
            return Err(self.error(
                name,
                format!("has {} dimensions; expected one", var.dimensions().len()),
            ));
        }
        if !matches!(
            var.vartype(),
            NcVariableType::Float(FloatType::F32 | FloatType::F64)
        ) {
            return Err(self.error(name, "not a float variable; expected float"));
        }
        let len = var.len();
        if let Some((want, why)) = expected {
            if len != want {
                return Err(self.error(name, format!("has {len} values; expected {want} ({why})")));
            }
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        var.get_values::<f32, _>(..)
            .map_err(|e| self.error(name, format!("unreadable variable: {e}")))
    }
}

/// Reads and validates the model at `path` (not yet cross-checked by `check_model`).
pub(super) fn load(path: &Path) -> Result<Model> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory; expected a model file",
            ),
        ));
    }
    let file = netcdf::open(path).map_err(|e| {
        Error::netcdf(
            path,
            None,
            format!("not a readable NetCDF file (truncated or corrupted?): {e}"),
        )
    })?;
    let r = Reader { file: &file, path };
    let mut descriptor = globals(&r)?;
    let layers: u32 = r.u32("layers")?;
    for i in 0..layers {
        descriptor.layers.push(layer(&r, i, &descriptor)?);
    }
    let count: u32 = r.u32("weights")?;
    let mut weights = Vec::new();
    for i in 0..count {
        weights.push(weight(&r, i, &descriptor)?);
    }
    for w in &weights {
        if let Some(s) = &w.shared {
            if let Some(l) = descriptor
                .layers
                .iter_mut()
                .find(|l| l.name == w.output_layer)
            {
                l.shared_weights.push(SharedWeight {
                    input_layer: w.input_layer.clone(),
                    source_input_layer: s.source_input_layer.clone(),
                    source_output_layer: s.source_output_layer.clone(),
                    transposed: s.transposed,
                });
            }
        }
    }
    let mut batch_norm = Vec::new();
    for (i, l) in descriptor.layers.iter().enumerate() {
        let at = |s: &str| format!("layer{i}_{s}");
        if !l.batch_normalization || r.file.variable(&at("scaleBN")).is_none() {
            continue;
        }
        let units = units_of(&r, &at("scaleBN"), &l.name, &descriptor)?;
        let why = "the layer's units";
        batch_norm.push(BatchNormTensors {
            layer: l.name.clone(),
            scale: r.floats(&at("scaleBN"), Some((units, why)))?,
            bias: r.floats(&at("biasBN"), Some((units, why)))?,
            running_mean: r.floats(&at("runningMeanBN"), Some((units, why)))?,
            running_variance: r.floats(&at("runningVarianceBN"), Some((units, why)))?,
        });
    }
    let extras = extras(&r)?;
    let model = Model {
        descriptor,
        weights,
        batch_norm,
        extras,
    };
    if let Some(stored) = r.opt_int::<u64>("moira_checksum", "an unsigned 64-bit integer")? {
        let actual = super::checksum(&model);
        if stored != actual {
            return Err(r.error(
                "moira_checksum",
                format!(
                    "the weights, biases and extra tensors do not match the checksum saved with \
                     them ({stored:#018x} saved, {actual:#018x} read): the file is corrupted"
                ),
            ));
        }
    }
    Ok(model)
}

fn globals(r: &Reader<'_>) -> Result<Descriptor> {
    let version = r.f32("version")?;
    let sparseness_on = r.bool("bSparsenessPenalty")?;
    let denoising_on = r.bool("bDenoising")?;
    let defaults = Descriptor::default();
    let d = Descriptor {
        version: r.opt_f32("moira_descriptorVersion")?.unwrap_or(version),
        name: r.string("name")?,
        kind: r.enumerated("kind", "network kind", NetworkKind::from_u32)?,
        weights_data: r.opt_string("moira_weightsData")?,
        error_function: r.enumerated("errorFunction", "error function", ErrorFunction::from_u32)?,
        shuffle_indices: r.bool("ShuffleIndices")?,
        lrn: Lrn {
            k: r.f32("LRN_k")?,
            n: r.u32("LRN_n")?,
            alpha: r.f32("LRN_alpha")?,
            beta: r.f32("LRN_beta")?,
        },
        maxout_k: r.u32("maxout_k")?,
        sparseness_penalty: SparsenessPenalty {
            p: r.f32("sparsenessPenalty_p")?,
            beta: if sparseness_on {
                r.f32("sparsenessPenalty_beta")?
            } else {
                r.f32("sparsenessPenalty_beta")?;
                0.0
            },
        },
        denoising_p: if denoising_on {
            r.f32("denoising_p")?
        } else {
            r.f32("denoising_p")?;
            0.0
        },
        delta_boost: DeltaBoost {
            one: r.f32("deltaBoost_one")?,
            zero: r.f32("deltaBoost_zero")?,
        },
        smce: Smce {
            one_target: r.f32("SMCE_oneTarget")?,
            zero_target: r.f32("SMCE_zeroTarget")?,
            one_scale: r.f32("SMCE_oneScale")?,
            zero_scale: r.f32("SMCE_zeroScale")?,
        },
        relu_slope: r.opt_f32("moira_RELUSlope")?.unwrap_or(defaults.relu_slope),
        elu_alpha: r.opt_f32("moira_ELUAlpha")?.unwrap_or(defaults.elu_alpha),
        selu_lambda: r
            .opt_f32("moira_SELULambda")?
            .unwrap_or(defaults.selu_lambda),
        decay: r.opt_f32("decay")?.unwrap_or(0.0),
        layers: Vec::new(),
    };
    // Optional in DSSTNE too; read only to check their types.
    r.opt_string("checkpoint_name")?;
    r.opt_int::<i32>("checkpoint_interval", "an int")?;
    r.opt_int::<i32>("checkpoint_epochs", "an int")?;
    Ok(d)
}

fn layer(r: &Reader<'_>, i: u32, network: &Descriptor) -> Result<LayerDescriptor> {
    let p = format!("layer{i}_");
    let at = |s: &str| format!("{p}{s}");
    let name = r.string(&at("name"))?;
    if name.is_empty() || network.layers.iter().any(|l| l.name == name) {
        return Err(r.error(
            &at("name"),
            format!("`{name}`: layer names must be non-empty and unique"),
        ));
    }
    let mut dims = Vec::with_capacity(MAX_DIMS);
    for d in ["Nx", "Ny", "Nz", "Nw"] {
        let n = r.u32(&at(d))?;
        if n == 0 {
            return Err(r.error(&at(d), "0; expected a positive size"));
        }
        dims.push(n);
    }
    let dimensions = r.u32(&at("dimensions"))?;
    if !(1..=MAX_DIMS as u32).contains(&dimensions) {
        return Err(r.error(
            &at("dimensions"),
            format!("{dimensions}; expected 1 to {MAX_DIMS}"),
        ));
    }
    // Keep any size beyond `dimensions` that is not 1 (DSSTNE multiplies all four).
    let used = dims.iter().rposition(|&d| d != 1).map_or(1, |k| k + 1);
    dims.truncate(used.max(dimensions as usize));

    let attributes = r.u32(&at("attributes"))?;
    let known = ATTRIBUTE_SPARSE | ATTRIBUTE_DENOISING | ATTRIBUTE_BATCH_NORMALIZATION;
    if attributes & !known != 0 {
        return Err(r.error(
            &at("attributes"),
            format!("{attributes:#x} has unknown bits; expected Sparse 0x1, Denoising 0x2, BatchNormalization 0x4"),
        ));
    }
    let names = |count: &str, each: &str| -> Result<Vec<String>> {
        let n = r.u32(&at(count))?;
        (0..n)
            .map(|j| r.string(&at(&format!("{each}{j}"))))
            .collect()
    };
    let pooling = r.u32(&at("poolingfunction"))?;
    let pooling_function = match pooling {
        0 => None,
        v => Some(PoolingFunction::from_u32(v).ok_or_else(|| {
            r.error(
                &at("poolingfunction"),
                format!("{v} is not a known pooling function number"),
            )
        })?),
    };
    let dataset = r.string(&at("dataSet"))?;
    Ok(LayerDescriptor {
        kind: r.enumerated(&at("kind"), "layer kind", LayerKind::from_u32)?,
        layer_type: r.enumerated(&at("type"), "layer type", LayerType::from_u32)?,
        pooling_function,
        dataset: (!dataset.is_empty()).then_some(dataset),
        sources: names("sources", "source")?,
        skips: names("skips", "skip")?,
        size: Size::Fixed(dims),
        kernel: Kernel {
            size: [
                r.u32(&at("kernelX"))?,
                r.u32(&at("kernelY"))?,
                r.u32(&at("kernelZ"))?,
            ],
            stride: [
                r.u32(&at("kernelStrideX"))?,
                r.u32(&at("kernelStrideY"))?,
                r.u32(&at("kernelStrideZ"))?,
            ],
            dimensions: r.u32(&at("kernelDimensions"))?,
        },
        sparse: attributes & ATTRIBUTE_SPARSE != 0,
        batch_normalization: attributes & ATTRIBUTE_BATCH_NORMALIZATION != 0,
        p_dropout: r.f32(&at("pDropout"))?,
        activation: r.enumerated(&at("activation"), "activation", Activation::from_u32)?,
        // DSSTNE's reader takes the global values here (a bug); the per-layer ones are right.
        sparseness_penalty: SparsenessPenalty {
            p: r.opt_f32(&at("sparsenessPenalty_p"))?.unwrap_or(0.0),
            beta: r.opt_f32(&at("sparsenessPenalty_beta"))?.unwrap_or(0.0),
        },
        relu_slope: r.f32(&at("RELUSlope"))?,
        elu_alpha: r.f32(&at("ELUAlpha"))?,
        selu_lambda: r.f32(&at("SELULambda"))?,
        weight_norm: r.f32(&at("weightNorm"))?,
        delta_norm: r.f32(&at("deltaNorm"))?,
        weight_init: WeightInit {
            scheme: r.enumerated(
                &at("weightInit"),
                "weight initialisation scheme",
                WeightInitScheme::from_u32,
            )?,
            scale: r.f32(&at("weightInitScale"))?,
            bias: r.f32(&at("biasInit"))?,
        },
        shared_weights: Vec::new(),
        variational: match r.opt_string(&at("variationalLogVariance"))? {
            Some(log_variance) => Some(Variational {
                log_variance,
                beta: r.f32(&at("variationalBeta"))?,
                anneal_steps: r.u32(&at("variationalAnnealSteps"))?,
            }),
            None => None,
        },
        name,
    })
}

/// The unit count of the layer named by attribute `item`.
fn units_of(r: &Reader<'_>, item: &str, name: &str, d: &Descriptor) -> Result<usize> {
    let layer = d
        .layer(name)
        .ok_or_else(|| r.error(item, format!("`{name}` is not a layer of the network")))?;
    match &layer.size {
        // Each dimension is at most u32::MAX and there are at most 4.
        Size::Fixed(dims) => dims
            .iter()
            .try_fold(1usize, |acc, &x| acc.checked_mul(x as usize)),
        Size::Auto => None,
    }
    .ok_or_else(|| r.error(item, format!("layer `{name}` has too many units")))
}

fn weight(r: &Reader<'_>, i: u32, d: &Descriptor) -> Result<WeightTensor> {
    let p = format!("weight{i}_");
    let at = |s: &str| format!("{p}{s}");
    let input_layer = r.string(&at("inputLayer"))?;
    let output_layer = r.string(&at("outputLayer"))?;
    let rows = units_of(r, &at("inputLayer"), &input_layer, d)?;
    let cols = units_of(r, &at("outputLayer"), &output_layer, d)?;
    let width: u64 = r.int(&at("width"), "an unsigned integer")?;
    let height: u64 = r.int(&at("height"), "an unsigned integer")?;
    r.int::<u64>(&at("length"), "an unsigned integer")?;
    if (width, height) != (cols as u64, rows as u64) {
        // DSSTNE writes per-shard widths from multi-GPU runs; the layers are authoritative.
        tracing::warn!(
            file = %r.path.display(),
            "{p}width x height is {width} x {height}; the layers give {cols} x {rows}"
        );
    }
    let shared = if r.bool(&at("bShared"))? {
        Some(SharedRef {
            source_input_layer: r.string(&at("sourceInputLayer"))?,
            source_output_layer: r.string(&at("sourceOutputLayer"))?,
            transposed: r.bool(&at("bTransposed"))?,
        })
    } else {
        None
    };
    let why_bias = format!("the units of output layer `{output_layer}`");
    let bias = r.floats(&at("bias"), Some((cols, &why_bias)))?;
    let data = match shared {
        Some(_) => Vec::new(),
        None => {
            let n = rows.checked_mul(cols).ok_or_else(|| {
                r.error(
                    &at("weights"),
                    format!("{rows} x {cols} values are too many"),
                )
            })?;
            let why = format!("{rows} x {cols}: `{input_layer}` units x `{output_layer}` units");
            r.floats(&at("weights"), Some((n, &why)))?
        }
    };
    Ok(WeightTensor {
        norm: r.opt_f32(&at("norm"))?.unwrap_or(0.0),
        locked: r
            .opt_int::<u64>(&at("bLocked"), "a flag (0 or 1)")?
            .unwrap_or(0)
            != 0,
        input_layer,
        output_layer,
        rows,
        cols,
        data,
        bias,
        shared,
    })
}

/// Reads only the Moira extras of the model file at `path` (no weights).
pub(super) fn load_extras(path: &Path) -> Result<Extras> {
    let file = netcdf::open(path).map_err(|e| {
        Error::netcdf(
            path,
            None,
            format!("not a readable NetCDF file (truncated or corrupted?): {e}"),
        )
    })?;
    extras(&Reader { file: &file, path })
}

fn extras(r: &Reader<'_>) -> Result<Extras> {
    let count = |name: &str| -> Result<u32> {
        Ok(r.opt_int(name, "an unsigned 32-bit integer")?.unwrap_or(0))
    };
    let mut x = Extras::default();
    for k in 0..count("moira_tensors")? {
        let name = r.string(&format!("moira_tensor{k}_name"))?;
        x.tensors
            .push((name, r.floats(&format!("moira_tensor{k}"), None)?));
    }
    for k in 0..count("moira_scalars")? {
        let name = r.string(&format!("moira_scalar{k}_name"))?;
        let value = r.int(&format!("moira_scalar{k}"), "an unsigned 64-bit integer")?;
        x.scalars.push((name, value));
    }
    for k in 0..count("moira_strings")? {
        let name = r.string(&format!("moira_string{k}_name"))?;
        x.strings
            .push((name, r.string(&format!("moira_string{k}"))?));
    }
    Ok(x)
}
