//! Writing a [`Model`] in DSSTNE's schema, atomically, its large arrays either held by the
//! model or pulled a piece at a time from a [`TensorSource`] (a model gathered from several
//! ranks), with the checksum and the finite check computed as the values pass.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use netcdf::AttributeValue;

use crate::descriptor::{LayerDescriptor, Size, VERSION};
use crate::error::{Error, Result};

use super::checksum::Checksum;
use super::{Model, TensorSource, WeightTensor};

/// Layer attribute bits (DSSTNE `NNLayer::Attributes`).
pub(super) const ATTRIBUTE_SPARSE: u32 = 0x1;
pub(super) const ATTRIBUTE_DENOISING: u32 = 0x2;
pub(super) const ATTRIBUTE_BATCH_NORMALIZATION: u32 = 0x4;

/// Distinguishes the temporary files of concurrent saves within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An array a streamed save takes from its [`TensorSource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Streamed {
    /// The matrix of weight tensor `i`.
    Weight(usize),
    /// Extra tensor `k`.
    Extra(usize),
}

/// The arrays of `model` that `source` provides, in file order, pulled one by one; what is
/// left is pulled without writing after a failure ([`Streams::drain`]), so that ranks
/// producing them collectively stay in step.
pub(super) struct Streams<'s> {
    source: &'s mut dyn TensorSource,
    order: Vec<Streamed>,
    next: usize,
}

impl<'s> Streams<'s> {
    /// The arrays `model` leaves empty that `source` provides: the matrix of every unshared
    /// weight with no values but `rows × cols > 0`, then every extra tensor with no values
    /// and a positive [`TensorSource::extra_len`].
    pub(super) fn new(model: &Model, source: &'s mut dyn TensorSource) -> Self {
        let weights = model.weights.iter().enumerate().filter_map(|(i, w)| {
            (w.shared.is_none() && w.data.is_empty() && w.rows * w.cols > 0)
                .then_some(Streamed::Weight(i))
        });
        let extras = model
            .extras
            .tensors
            .iter()
            .enumerate()
            .filter_map(|(k, t)| {
                (t.1.is_empty() && source.extra_len(k) > 0).then_some(Streamed::Extra(k))
            });
        let order = weights.chain(extras).collect();
        Streams {
            source,
            order,
            next: 0,
        }
    }

    /// Whether `which` is streamed.
    fn has(&self, which: Streamed) -> bool {
        self.order.contains(&which)
    }

    /// Feeds `which` (the next array in order) to `put`, a piece at a time.
    fn pull(&mut self, which: Streamed, put: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        debug_assert_eq!(self.order.get(self.next), Some(&which));
        self.next += 1;
        match which {
            Streamed::Weight(i) => self.source.weight(i, put),
            Streamed::Extra(k) => self.source.extra(k, put),
        }
    }

    /// Pulls every array not pulled yet, writing nothing.
    pub(super) fn drain(&mut self) -> Result<()> {
        while let Some(&which) = self.order.get(self.next) {
            self.pull(which, &mut |_| Ok(()))?;
        }
        Ok(())
    }
}

/// Writes `model` (its empty arrays from `streams`) to a temporary file next to `path`,
/// syncs it and renames it over `path`. With `refuse_non_finite`, a weight matrix or bias
/// with a NaN or infinite value stops the save ([`Error::NonFiniteWeight`]). The temporary
/// file is removed on any failure, and the arrays not pulled yet are pulled (and dropped).
pub(super) fn save_atomically(
    path: &Path,
    model: &Model,
    streams: &mut Streams<'_>,
    refuse_non_finite: bool,
) -> Result<()> {
    let invalid =
        |message: &str| Error::io(path, io::Error::new(io::ErrorKind::InvalidInput, message));
    let name = path
        .file_name()
        .ok_or_else(|| invalid("not a file path (it has no file name)"))?;
    if path.is_dir() {
        return Err(invalid("is a directory; expected a file path"));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = dir.join(temp_name);

    let result = write_file(&temp, path, model, streams, refuse_non_finite)
        .and_then(|()| {
            fs::File::open(&temp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&temp, e))
        })
        .and_then(|()| fs::rename(&temp, path).map_err(|e| Error::io(path, e)));
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        streams.drain()?;
        return Err(crate::storage::name_full_disk(path, e));
    }
    // Make the rename durable; not all platforms can open a directory, so this is best-effort.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Attribute and variable writes into one file; errors name `target` (the final path).
struct Writer<'a> {
    file: netcdf::FileMut,
    target: &'a Path,
    /// The checksum of the data written so far, in [`super::checksum`]'s order.
    hash: Checksum,
    /// Refuse NaN and infinite values in weight matrices and biases.
    refuse_non_finite: bool,
}

impl Writer<'_> {
    fn fail(&self, item: &str, e: impl std::fmt::Display) -> Error {
        Error::netcdf(self.target, Some(item), format!("cannot write: {e}"))
    }

    fn att(&mut self, name: &str, value: impl Into<AttributeValue>) -> Result<()> {
        match self.file.add_attribute(name, value) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(name, e)),
        }
    }

    /// A one-dimensional float variable `var` over a new dimension `dim`.
    fn floats(&mut self, dim: &str, var: &str, data: &[f32]) -> Result<()> {
        // A NetCDF dimension of length 0 is unlimited, which still reads back as 0 values.
        if let Err(e) = self.file.add_dimension(dim, data.len()) {
            return Err(self.fail(dim, e));
        }
        let written = self
            .file
            .add_variable::<f32>(var, &[dim])
            .and_then(|mut v| {
                if data.is_empty() {
                    Ok(())
                } else {
                    v.put_values(data, ..)
                }
            });
        written.map_err(|e| self.fail(var, e))
    }
}

impl Writer<'_> {
    /// A one-dimensional float variable `var` over a new dimension `dim` of `len` values,
    /// filled by `fill` a piece at a time (the pieces in order, `len` values in all), each
    /// piece also fed to the checksum; `weight` names the weight whose values these are when
    /// non-finite values must be refused.
    fn streamed_floats(
        &mut self,
        (dim, var, len): (&str, &str, usize),
        weight: Option<&str>,
        fill: impl FnOnce(&mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        if let Err(e) = self.file.add_dimension(dim, len) {
            return Err(self.fail(dim, e));
        }
        let mut v = match self.file.add_variable::<f32>(var, &[dim]) {
            Ok(v) => v,
            Err(e) => {
                return Err(Error::netcdf(
                    self.target,
                    Some(var),
                    format!("cannot write: {e}"),
                ))
            }
        };
        let (target, hash, refuse) = (self.target, &mut self.hash, self.refuse_non_finite);
        hash.floats_begin(len);
        let mut at = 0usize;
        fill(&mut |piece: &[f32]| {
            if at + piece.len() > len {
                return Err(Error::InvalidData(format!(
                    "`{var}`: more than its {len} values were given"
                )));
            }
            if let Some(weight) = weight.filter(|_| refuse) {
                if piece.iter().any(|x| !x.is_finite()) {
                    return Err(Error::NonFiniteWeight {
                        weight: weight.to_owned(),
                    });
                }
            }
            hash.floats_piece(piece);
            if !piece.is_empty() {
                v.put_values(piece, at..at + piece.len())
                    .map_err(|e| Error::netcdf(target, Some(var), format!("cannot write: {e}")))?;
            }
            at += piece.len();
            Ok(())
        })?;
        hash.floats_end();
        if at != len {
            return Err(Error::InvalidData(format!(
                "`{var}`: {at} of its {len} values were given"
            )));
        }
        Ok(())
    }

    /// Float variables `<prefix of dim>NAME` sharing one new dimension `dim` of `len` values
    /// (`dim` is `layer<i>_bnDim`; each variable is `layer<i>_NAME`).
    fn floats_on(&mut self, dim: &str, len: usize, vars: &[(&str, &Vec<f32>)]) -> Result<()> {
        if let Err(e) = self.file.add_dimension(dim, len) {
            return Err(self.fail(dim, e));
        }
        let prefix = dim.trim_end_matches("bnDim");
        for (name, data) in vars {
            let var = format!("{prefix}{name}");
            let written = self
                .file
                .add_variable::<f32>(&var, &[dim])
                .and_then(|mut v| {
                    if data.is_empty() {
                        Ok(())
                    } else {
                        v.put_values(data, ..)
                    }
                });
            written.map_err(|e| self.fail(&var, e))?;
        }
        Ok(())
    }
}

fn write_file(
    temp: &Path,
    target: &Path,
    model: &Model,
    streams: &mut Streams<'_>,
    refuse_non_finite: bool,
) -> Result<()> {
    let file = netcdf::create(temp).map_err(|e| {
        Error::netcdf(
            target,
            None,
            format!("cannot create the temporary file {}: {e}", temp.display()),
        )
    })?;
    let mut w = Writer {
        file,
        target,
        hash: Checksum::new(),
        refuse_non_finite,
    };
    write_globals(&mut w, model)?;
    for (i, layer) in model.descriptor.layers.iter().enumerate() {
        write_layer(&mut w, i, layer, model)?;
    }
    w.att("weights", count(model.weights.len(), "weights")?)?;
    for (i, weight) in model.weights.iter().enumerate() {
        write_weight(&mut w, i, weight, streams)?;
    }
    write_moira(&mut w, model, streams)?;
    let Writer { file, target, .. } = w;
    file.close()
        .map_err(|e| Error::netcdf(target, None, format!("cannot finish writing: {e}")))
}

/// `n` as a DSSTNE `uint` count.
fn count(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidData(format!("too many {what} to save: {n}")))
}

/// `v` as a DSSTNE `int`.
fn int(v: u32, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::InvalidData(format!("{what} = {v} does not fit an int")))
}

fn write_globals(w: &mut Writer<'_>, model: &Model) -> Result<()> {
    let d = &model.descriptor;
    w.att("version", VERSION)?;
    w.att("name", d.name.as_str())?;
    w.att("kind", d.kind as u32)?;
    w.att("errorFunction", d.error_function as u32)?;
    w.att("maxout_k", int(d.maxout_k, "Maxout.k")?)?;
    w.att("decay", d.decay)?;
    w.att("LRN_k", d.lrn.k)?;
    w.att("LRN_n", int(d.lrn.n, "LRN.n")?)?;
    w.att("LRN_alpha", d.lrn.alpha)?;
    w.att("LRN_beta", d.lrn.beta)?;
    w.att(
        "bSparsenessPenalty",
        u32::from(d.sparseness_penalty.beta > 0.0),
    )?;
    w.att("sparsenessPenalty_p", d.sparseness_penalty.p)?;
    w.att("sparsenessPenalty_beta", d.sparseness_penalty.beta)?;
    w.att("bDenoising", u32::from(d.denoising_p > 0.0))?;
    w.att("denoising_p", d.denoising_p)?;
    w.att("deltaBoost_one", d.delta_boost.one)?;
    w.att("deltaBoost_zero", d.delta_boost.zero)?;
    w.att("SMCE_oneScale", d.smce.one_scale)?;
    w.att("SMCE_zeroScale", d.smce.zero_scale)?;
    w.att("SMCE_oneTarget", d.smce.one_target)?;
    w.att("SMCE_zeroTarget", d.smce.zero_target)?;
    w.att("ShuffleIndices", u32::from(d.shuffle_indices))?;
    w.att("checkpoint_name", "checkpoint")?;
    w.att("checkpoint_interval", 0i32)?;
    let epochs = model.extras.scalar("epoch").unwrap_or(0);
    w.att(
        "checkpoint_epochs",
        i32::try_from(epochs).unwrap_or(i32::MAX),
    )?;
    w.att("layers", count(d.layers.len(), "layers")?)
}

fn write_layer(w: &mut Writer<'_>, i: usize, l: &LayerDescriptor, model: &Model) -> Result<()> {
    let p = format!("layer{i}_");
    let dims: &[u32] = match &l.size {
        Size::Fixed(dims) => dims,
        // Rejected by `check_model` before writing.
        Size::Auto => &[],
    };
    let dim = |k: usize| dims.get(k).copied().unwrap_or(1);
    let mut attributes = 0;
    if l.sparse {
        attributes |= ATTRIBUTE_SPARSE;
    }
    // DSSTNE sets Denoising on the sparse Input layers of a network with denoising on.
    if l.sparse
        && l.kind == crate::descriptor::LayerKind::Input
        && model.descriptor.denoising_p > 0.0
    {
        attributes |= ATTRIBUTE_DENOISING;
    }
    if l.batch_normalization {
        attributes |= ATTRIBUTE_BATCH_NORMALIZATION;
    }
    w.att(&format!("{p}name"), l.name.as_str())?;
    w.att(&format!("{p}kind"), l.kind as u32)?;
    w.att(&format!("{p}type"), l.layer_type as u32)?;
    w.att(
        &format!("{p}poolingfunction"),
        l.pooling_function.map_or(0, |f| f as u32),
    )?;
    w.att(&format!("{p}dataSet"), l.dataset.as_deref().unwrap_or(""))?;
    w.att(&format!("{p}Nx"), dim(0))?;
    w.att(&format!("{p}Ny"), dim(1))?;
    w.att(&format!("{p}Nz"), dim(2))?;
    w.att(&format!("{p}Nw"), dim(3))?;
    w.att(&format!("{p}dimensions"), count(dims.len(), "dimensions")?)?;
    w.att(&format!("{p}kernelX"), l.kernel.size[0])?;
    w.att(&format!("{p}kernelY"), l.kernel.size[1])?;
    w.att(&format!("{p}kernelZ"), l.kernel.size[2])?;
    w.att(&format!("{p}kernelDimensions"), l.kernel.dimensions)?;
    w.att(&format!("{p}kernelStrideX"), l.kernel.stride[0])?;
    w.att(&format!("{p}kernelStrideY"), l.kernel.stride[1])?;
    w.att(&format!("{p}kernelStrideZ"), l.kernel.stride[2])?;
    w.att(&format!("{p}kernelPaddingX"), 0u32)?;
    w.att(&format!("{p}kernelPaddingY"), 0u32)?;
    w.att(&format!("{p}kernelPaddingZ"), 0u32)?;
    w.att(&format!("{p}pDropout"), l.p_dropout)?;
    w.att(&format!("{p}weightInit"), l.weight_init.scheme as u32)?;
    w.att(&format!("{p}weightInitScale"), l.weight_init.scale)?;
    w.att(&format!("{p}biasInit"), l.weight_init.bias)?;
    w.att(&format!("{p}weightNorm"), l.weight_norm)?;
    w.att(&format!("{p}deltaNorm"), l.delta_norm)?;
    w.att(&format!("{p}activation"), l.activation as u32)?;
    w.att(&format!("{p}sparsenessPenalty_p"), l.sparseness_penalty.p)?;
    w.att(
        &format!("{p}sparsenessPenalty_beta"),
        l.sparseness_penalty.beta,
    )?;
    w.att(&format!("{p}RELUSlope"), l.relu_slope)?;
    w.att(&format!("{p}ELUAlpha"), l.elu_alpha)?;
    w.att(&format!("{p}SELULambda"), l.selu_lambda)?;
    w.att(&format!("{p}attributes"), attributes)?;
    w.att(&format!("{p}sources"), count(l.sources.len(), "sources")?)?;
    for (j, s) in l.sources.iter().enumerate() {
        w.att(&format!("{p}source{j}"), s.as_str())?;
    }
    if let Some(bn) = model.batch_norm.iter().find(|b| b.layer == l.name) {
        let dim = format!("{p}bnDim");
        let first = [
            ("scaleBN", &bn.scale),
            ("biasBN", &bn.bias),
            ("runningMeanBN", &bn.running_mean),
            ("runningVarianceBN", &bn.running_variance),
        ];
        w.floats_on(&dim, bn.scale.len(), &first)?;
    }
    if let Some(v) = &l.variational {
        // Moira's extension: DSSTNE's reader ignores these attributes.
        w.att(
            &format!("{p}variationalLogVariance"),
            v.log_variance.as_str(),
        )?;
        w.att(&format!("{p}variationalBeta"), v.beta)?;
        w.att(&format!("{p}variationalAnnealSteps"), v.anneal_steps)?;
    }
    w.att(&format!("{p}skips"), count(l.skips.len(), "skips")?)?;
    for (j, s) in l.skips.iter().enumerate() {
        w.att(&format!("{p}skip{j}"), s.as_str())?;
    }
    Ok(())
}

fn write_weight(
    w: &mut Writer<'_>,
    i: usize,
    t: &WeightTensor,
    streams: &mut Streams<'_>,
) -> Result<()> {
    let p = format!("weight{i}_");
    let name = format!("`{}` -> `{}`", t.input_layer, t.output_layer);
    w.att(&format!("{p}inputLayer"), t.input_layer.as_str())?;
    w.att(&format!("{p}outputLayer"), t.output_layer.as_str())?;
    w.att(&format!("{p}width"), t.cols as u64)?;
    w.att(&format!("{p}height"), t.rows as u64)?;
    w.att(&format!("{p}length"), 1u64)?;
    w.att(&format!("{p}depth"), 1u64)?;
    w.att(&format!("{p}breadth"), 1u64)?;
    w.att(&format!("{p}bShared"), u32::from(t.shared.is_some()))?;
    w.att(&format!("{p}bLocked"), u32::from(t.locked))?;
    w.att(&format!("{p}norm"), t.norm)?;
    if w.refuse_non_finite && t.bias.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFiniteWeight { weight: name });
    }
    w.floats(&format!("{p}biasDim"), &format!("{p}bias"), &t.bias)?;
    // The checksum takes the names, the matrix, then the bias.
    w.hash.text(&t.input_layer);
    w.hash.text(&t.output_layer);
    match &t.shared {
        Some(s) => {
            w.att(&format!("{p}bTransposed"), u32::from(s.transposed))?;
            w.att(
                &format!("{p}sourceInputLayer"),
                s.source_input_layer.as_str(),
            )?;
            w.att(
                &format!("{p}sourceOutputLayer"),
                s.source_output_layer.as_str(),
            )?;
            w.hash.floats(&t.data);
        }
        None => {
            let which = Streamed::Weight(i);
            let (dim, var) = (format!("{p}weightDim"), format!("{p}weights"));
            if streams.has(which) {
                let len = t.rows * t.cols;
                w.streamed_floats((&dim, &var, len), Some(&name), |put| {
                    streams.pull(which, put)
                })?;
            } else {
                w.streamed_floats((&dim, &var, t.data.len()), Some(&name), |put| put(&t.data))?;
            }
        }
    }
    w.hash.floats(&t.bias);
    Ok(())
}

fn write_moira(w: &mut Writer<'_>, model: &Model, streams: &mut Streams<'_>) -> Result<()> {
    let d = &model.descriptor;
    w.att("moira_descriptorVersion", d.version)?;
    w.att("moira_RELUSlope", d.relu_slope)?;
    w.att("moira_ELUAlpha", d.elu_alpha)?;
    w.att("moira_SELULambda", d.selu_lambda)?;
    if let Some(weights_data) = &d.weights_data {
        w.att("moira_weightsData", weights_data.as_str())?;
    }
    w.hash.batch_norm(model);
    let x = &model.extras;
    w.att("moira_tensors", count(x.tensors.len(), "extra tensors")?)?;
    for (k, (name, data)) in x.tensors.iter().enumerate() {
        w.att(&format!("moira_tensor{k}_name"), name.as_str())?;
        w.hash.text(name);
        let (dim, var) = (format!("moira_tensor{k}Dim"), format!("moira_tensor{k}"));
        let which = Streamed::Extra(k);
        if streams.has(which) {
            let len = streams.source.extra_len(k);
            w.streamed_floats((&dim, &var, len), None, |put| streams.pull(which, put))?;
        } else {
            w.streamed_floats((&dim, &var, data.len()), None, |put| put(data))?;
        }
    }
    w.att("moira_scalars", count(x.scalars.len(), "extra scalars")?)?;
    for (k, (name, value)) in x.scalars.iter().enumerate() {
        w.att(&format!("moira_scalar{k}_name"), name.as_str())?;
        w.att(&format!("moira_scalar{k}"), *value)?;
    }
    w.att("moira_strings", count(x.strings.len(), "extra strings")?)?;
    for (k, (name, value)) in x.strings.iter().enumerate() {
        w.att(&format!("moira_string{k}_name"), name.as_str())?;
        w.att(&format!("moira_string{k}"), value.as_str())?;
    }
    w.hash.extras_rest(model);
    let sum = w.hash.value();
    w.att("moira_checksum", sum)?;
    Ok(())
}
