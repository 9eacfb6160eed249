//! Training checkpoints: a model file in DSSTNE's schema plus, in Moira's extras (see
//! [`crate::checkpoint`]), everything training needs to continue bit for bit.
//!
//! The randomness of training is counter-based (shuffle from `(seed, epoch)`, denoising from
//! `(seed, epoch, non-zero)`, dropout from `(seed, update count, layer)`), so the seed, the
//! epoch and the update count *are* the RNG state; the learning-rate schedule is a function
//! of the epoch and the update count. A checkpoint therefore holds:
//!
//! | extras name | kind | meaning |
//! |---|---|---|
//! | `checkpoint_format` | scalar | [`FORMAT`] |
//! | `epoch` | scalar | epochs completed (the next epoch to run, 0-based) |
//! | `batch_position` | scalar | examples of that next epoch already trained (always 0: checkpoints are written between epochs) |
//! | `update_count` | scalar | optimizer updates applied (Adam's `t`, the `Decay` schedule's batch count, the dropout stream) |
//! | `seed`, `batch_size`, `shuffle`, `brake` | scalars | the run's settings |
//! | `alpha`, `lambda`, `lambda1`, `mu`, `mu1` | scalars | `f32::to_bits` of the hyperparameters |
//! | `exact_chunk` | scalar | the chunk of exact sums ([`Network::exact_chunk`]), 0 when off (absent before them: off) |
//! | `brake_moving_average` | scalar | `f64::to_bits` of [`Brake::moving_average`] |
//! | `brake_warmup_left`, `brake_braking_left` | scalars | the rest of [`Brake`] |
//! | `selected_epoch`, `selected_value` | scalars | [`TrainState::best`] when model selection has kept an epoch (the value as `f64::to_bits`) |
//! | `optimizer`, `lr_schedule` | strings | the update rule's DSSTNE name; the schedule |
//! | `optimizer_s<k>:<in>-><out>:weights`, `…:bias` | tensors | optimizer slot `k` of each edge's weight and bias ([`crate::network::SlotState`]; an edge using a shared weight has an empty `weights` tensor) |
//! | `optimizer_s<k>:<layer>:bn_scale`, `…:bn_bias` | tensors | optimizer slot `k` of a batch-normalised layer's `γ` and `β` |
//! | `bn_calls:<layer>` | scalar | training passes of a batch-normalised layer (its running-average factor) |

use std::path::{Path, PathBuf};

use super::{Best, Brake, TrainConfig, TrainState};
use crate::backend::traits::Backend;
use crate::checkpoint::{check_against_graph, load_model, Extras, Model};
use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::network::{BatchNormTrainState, Network, SlotState, SlotTensor};
use crate::ops::optimizer::{state_len, LrSchedule};
use crate::ops::Optimizer;

/// Version of the checkpoint extras this code writes and reads.
pub const FORMAT: u64 = 1;

/// Where and how often training writes checkpoints: after every `every` epochs (counted from
/// the start of training, so a resumed run writes the files an uninterrupted one would), to
/// `<stem>.epoch<E>.nc`, `E` the number of epochs completed.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointPlan {
    /// Epochs between checkpoints (at least 1).
    pub every: u32,
    /// The path without `.epoch<E>.nc`.
    pub stem: PathBuf,
}

impl CheckpointPlan {
    /// Checkpoints beside the network file `out`: `model.nc` gives `model.epoch<E>.nc`.
    pub fn beside(out: &Path, every: u32) -> Self {
        let stem = if out.extension().is_some_and(|e| e == "nc") {
            out.with_extension("")
        } else {
            out.to_path_buf()
        };
        CheckpointPlan { every, stem }
    }

    /// The checkpoint written after `epochs_done` epochs.
    pub fn path(&self, epochs_done: u32) -> PathBuf {
        let mut name = self.stem.as_os_str().to_owned();
        name.push(format!(".epoch{epochs_done}.nc"));
        PathBuf::from(name)
    }

    /// Whether a checkpoint is written after `epochs_done` epochs.
    pub fn due(&self, epochs_done: u32) -> bool {
        self.every > 0 && epochs_done > 0 && epochs_done.is_multiple_of(self.every)
    }

    /// The checkpoints a run of `config` writes (epochs `config.first_epoch + 1 ..=
    /// config.first_epoch + config.epochs` completed), in order.
    pub fn planned(&self, config: &TrainConfig) -> Vec<PathBuf> {
        let first = config.first_epoch.saturating_add(1);
        let last = config.first_epoch.saturating_add(config.epochs);
        (first..=last)
            .filter(|&e| self.due(e))
            .map(|e| self.path(e))
            .collect()
    }
}

/// The extras name of optimizer slot `k` of weight `input -> output` (`part`: `weights` or
/// `bias`).
fn slot_name(k: usize, input: &str, output: &str, part: &str) -> String {
    format!("optimizer_s{k}:{input}->{output}:{part}")
}

/// `(input, output)` layer names of every graph edge, in edge order (the order of
/// [`Network::download_optimizer_state`]).
fn weight_names(graph: &Graph) -> Vec<(String, String)> {
    graph
        .edges()
        .iter()
        .map(|e| {
            (
                graph.layer(e.source).name.clone(),
                graph.layer(e.target).name.clone(),
            )
        })
        .collect()
}

fn schedule_text(s: LrSchedule) -> String {
    match s {
        LrSchedule::Constant => "constant".into(),
        LrSchedule::Decay { decay } => format!("decay {decay}"),
        LrSchedule::Step {
            interval,
            multiplier,
        } => format!("step every {interval} epochs x {multiplier}"),
    }
}

/// The checkpoint scalar of [`Network::exact_chunk`] (0: off).
const EXACT_CHUNK: &str = "exact_chunk";

/// The settings of `config` as `(name, value, shown)`: what a resumed run should repeat.
fn settings(config: &TrainConfig) -> Vec<(&'static str, u64, String)> {
    let h = &config.hyper;
    let f = |name, x: f32| (name, u64::from(x.to_bits()), x.to_string());
    vec![
        ("seed", config.seed, config.seed.to_string()),
        ("batch_size", config.batch as u64, config.batch.to_string()),
        (
            "shuffle",
            u64::from(config.shuffle),
            config.shuffle.to_string(),
        ),
        ("brake", u64::from(config.brake), config.brake.to_string()),
        f("alpha", h.alpha),
        f("lambda", h.lambda),
        f("lambda1", h.lambda1),
        f("mu", h.mu),
        f("mu1", h.mu1),
    ]
}

/// The extras of a checkpoint of `network` after `epochs_done` epochs of training with
/// `config` (`state` the state of the training loop; see the [module documentation](self)),
/// the optimizer slots of the weight matrices left empty, and where those come from.
fn checkpoint_extras<B: Backend, C: Collective>(
    network: &Network<B, C>,
    config: &TrainConfig,
    state: &TrainState,
    epochs_done: u32,
) -> Result<(Extras, Vec<SlotTensor>)> {
    let mut extras = Extras::default();
    let mut scalars = vec![
        ("checkpoint_format", FORMAT),
        ("epoch", u64::from(epochs_done)),
        ("batch_position", 0),
        ("update_count", network.step_count()),
        ("brake_moving_average", state.brake.moving_average.to_bits()),
        ("brake_warmup_left", u64::from(state.brake.warmup_left)),
        ("brake_braking_left", u64::from(state.brake.braking_left)),
    ];
    scalars.extend(settings(config).into_iter().map(|(n, v, _)| (n, v)));
    // Exact sums change the rounding of every step (0: off).
    scalars.push((EXACT_CHUNK, network.exact_chunk().unwrap_or(0) as u64));
    extras.scalars = scalars
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    extras
        .scalars
        .extend(state.best.iter().flat_map(|b| b.scalars()));
    extras.strings = vec![
        ("optimizer".into(), network.optimizer().name().to_owned()),
        ("lr_schedule".into(), schedule_text(config.schedule)),
    ];
    let graph = network.graph();
    let names = weight_names(graph);
    let mut slot_tensors = Vec::new();
    let bias_slots = network.download_bias_optimizer_state()?;
    for ((edge, (input, output)), slots) in graph.edges().iter().zip(&names).zip(bias_slots) {
        for (k, bias) in slots.into_iter().enumerate() {
            if !edge.is_shared(graph) {
                slot_tensors.push(SlotTensor {
                    extra: extras.tensors.len(),
                    edge: edge.id,
                    slot: k,
                });
            }
            extras
                .tensors
                .push((slot_name(k, input, output, "weights"), Vec::new()));
            extras
                .tensors
                .push((slot_name(k, input, output, "bias"), bias));
        }
    }
    for bn in network.download_batch_norm_state()? {
        extras
            .scalars
            .push((format!("bn_calls:{}", bn.layer), bn.calls));
        for (k, slot) in bn.slots.into_iter().enumerate() {
            extras
                .tensors
                .push((bn_slot_name(k, &bn.layer, "scale"), slot.weights));
            extras
                .tensors
                .push((bn_slot_name(k, &bn.layer, "bias"), slot.bias));
        }
    }
    Ok((extras, slot_tensors))
}

/// Writes the checkpoint of `network` after `epochs_done` epochs of training with `config`
/// to `path` (`state` the state of the training loop; see [`crate::train`]'s checkpoints):
/// the model with the optimizer state, the update count and the loop's state in its extras,
/// streamed by [`Network::save`] (rank 0 writes; no rank holds the whole model). A weight or
/// bias with NaN or infinite values stops the save ([`Error::NonFiniteWeight`]).
///
/// Collective: every rank calls it; the outcome is this rank's (make it common with
/// [`Network::agree`]).
pub fn save_checkpoint<B: Backend, C: Collective>(
    network: &Network<B, C>,
    config: &TrainConfig,
    state: &TrainState,
    epochs_done: u32,
    path: &Path,
) -> Result<()> {
    let (extras, slot_tensors) = checkpoint_extras(network, config, state, epochs_done)?;
    network.save(path, extras, &slot_tensors, true)
}

/// The content of the checkpoint [`save_checkpoint`] writes, assembled in memory (whole on
/// rank 0; collective).
pub fn checkpoint_model<B: Backend, C: Collective>(
    network: &Network<B, C>,
    config: &TrainConfig,
    state: &TrainState,
    epochs_done: u32,
) -> Result<Model> {
    let (mut extras, slot_tensors) = checkpoint_extras(network, config, state, epochs_done)?;
    let mut slots = network.download_optimizer_state()?;
    for t in slot_tensors {
        extras.tensors[t.extra].1 = std::mem::take(&mut slots[t.edge.0][t.slot].weights);
    }
    network.to_model(extras)
}

/// The first weight of `model` (as `` `in` -> `out` ``) with a NaN or infinite value in its
/// matrix or bias, if any.
pub fn non_finite_weight(model: &Model) -> Option<String> {
    model
        .weights
        .iter()
        .find(|w| !w.data.iter().chain(&w.bias).all(|x| x.is_finite()))
        .map(|w| format!("`{}` -> `{}`", w.input_layer, w.output_layer))
}

/// The extras name of optimizer slot `k` of a batch-normalised layer's `part` (`scale` or
/// `bias`).
fn bn_slot_name(k: usize, layer: &str, part: &str) -> String {
    format!("optimizer_s{k}:{layer}:bn_{part}")
}

/// What [`resume`] restored besides the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed {
    /// Epochs the checkpoint had completed: the first epoch (0-based) to run now.
    pub epochs_done: u32,
    /// The training loop's state to continue with.
    pub state: TrainState,
    /// Settings of `config` that differ from the checkpoint's, as readable lines
    /// (`alpha: 0.1 in the checkpoint, 0.2 now`): training continues with the new values,
    /// and the result will differ from that of an uninterrupted run.
    pub differences: Vec<String>,
}

/// Restores the training checkpoint at `path` into `network` (built for the same descriptor
/// and data, with `config.optimizer`): weights, biases, optimizer state, update count.
///
/// Errors, each naming `path`: the file cannot be read or is not a model file
/// ([`load_model`]'s errors); it has no training state (a DSSTNE file or a final network:
/// [`Error::NetCdf`] about `checkpoint_format`); a newer format; layers, sizes or activations
/// that differ from `network`'s (naming the layer or weight and both values); another
/// optimizer; a missing or wrong-length optimizer tensor or scalar (naming it); a
/// checkpoint taken inside an epoch.
pub fn resume<B: Backend, C: Collective>(
    path: &Path,
    network: &mut Network<B, C>,
    config: &TrainConfig,
) -> Result<Resumed> {
    let model = load_model(path)?;
    let bad = |item: &str, message: String| Error::netcdf(path, Some(item), message);
    let extras = &model.extras;
    let scalar = |name: &str| {
        extras.scalar(name).ok_or_else(|| {
            bad(
                name,
                "missing from the training state (a moira_scalar of that name)".into(),
            )
        })
    };
    let format = extras.scalar("checkpoint_format").ok_or_else(|| {
        bad(
            "checkpoint_format",
            "this model file has no training state, so training cannot resume from it \
             (it is a DSSTNE model or a final network; resume from a checkpoint \
             `NAME.epochE.nc` instead)"
                .into(),
        )
    })?;
    if format != FORMAT {
        return Err(bad(
            "checkpoint_format",
            format!("format {format}; this Moira reads format {FORMAT}"),
        ));
    }
    check_layers(&model, network.graph()).map_err(|m| {
        Error::netcdf(
            path,
            None,
            format!("the checkpoint does not fit the network and data given: {m}"),
        )
    })?;
    let optimizer = extras.string("optimizer").unwrap_or("");
    if Optimizer::from_name(optimizer) != Some(network.optimizer()) {
        return Err(bad(
            "optimizer",
            format!(
                "the checkpoint was trained with optimizer `{optimizer}`, this run uses `{}`; \
                 resume with the same optimizer",
                network.optimizer().name()
            ),
        ));
    }
    let position = scalar("batch_position")?;
    if position != 0 {
        return Err(bad(
            "batch_position",
            format!("{position}: resuming inside an epoch is not supported"),
        ));
    }
    let epochs_done = u32::try_from(scalar("epoch")?)
        .map_err(|_| bad("epoch", "does not fit in 32 bits".into()))?;
    let small = |name: &str| {
        scalar(name).and_then(|v| {
            u32::try_from(v).map_err(|_| bad(name, format!("{v} does not fit in 32 bits")))
        })
    };
    let brake = Brake {
        moving_average: f64::from_bits(scalar("brake_moving_average")?),
        warmup_left: small("brake_warmup_left")?,
        braking_left: small("brake_braking_left")?,
    };
    let step = scalar("update_count")?;
    let slots = state_len(network.optimizer());
    let names = weight_names(network.graph());
    let mut state = Vec::with_capacity(names.len());
    for (input, output) in &names {
        let mut weight = Vec::with_capacity(slots);
        for k in 0..slots {
            let tensor = |part: &str| {
                let name = slot_name(k, input, output, part);
                extras
                    .tensor(&name)
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| bad(&name, "missing optimizer state (a moira_tensor)".into()))
            };
            weight.push(SlotState {
                weights: tensor("weights")?,
                bias: tensor("bias")?,
            });
        }
        state.push(weight);
    }
    let mut bn_state = Vec::new();
    for bn in network.download_batch_norm_state()? {
        let calls = scalar(&format!("bn_calls:{}", bn.layer))?;
        let mut slots = Vec::with_capacity(bn.slots.len());
        for k in 0..bn.slots.len() {
            let tensor = |part: &str| {
                let name = bn_slot_name(k, &bn.layer, part);
                extras
                    .tensor(&name)
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| bad(&name, "missing optimizer state (a moira_tensor)".into()))
            };
            slots.push(SlotState {
                weights: tensor("scale")?,
                bias: tensor("bias")?,
            });
        }
        bn_state.push(BatchNormTrainState {
            layer: bn.layer,
            calls,
            slots,
        });
    }
    network.load_weights(&model)?;
    network
        .upload_optimizer_state(&state)
        .map_err(|e| bad("optimizer state", e.to_string()))?;
    network
        .upload_batch_norm_state(&bn_state)
        .map_err(|e| bad("batch normalization state", e.to_string()))?;
    network.set_step_count(step);

    let mut differences = Vec::new();
    for (name, value, shown) in settings(config) {
        match extras.scalar(name) {
            Some(old) if old == value => {}
            Some(old) => {
                let old_shown = match name {
                    "alpha" | "lambda" | "lambda1" | "mu" | "mu1" => {
                        f32::from_bits(old as u32).to_string()
                    }
                    "shuffle" | "brake" => (old != 0).to_string(),
                    _ => old.to_string(),
                };
                differences.push(format!(
                    "{name}: {old_shown} in the checkpoint, {shown} now"
                ));
            }
            None => differences.push(format!("{name}: not in the checkpoint, {shown} now")),
        }
    }
    // Absent from checkpoints written before exact sums: off.
    let exact = |chunk: u64| match chunk {
        0 => "off".to_owned(),
        c => format!("chunks of {c}"),
    };
    let (old, now) = (
        extras.scalar(EXACT_CHUNK).unwrap_or(0),
        network.exact_chunk().unwrap_or(0) as u64,
    );
    if old != now {
        differences.push(format!(
            "exact sums: {} in the checkpoint, {} now",
            exact(old),
            exact(now)
        ));
    }
    let schedule = schedule_text(config.schedule);
    match extras.string("lr_schedule") {
        Some(old) if old == schedule => {}
        old => differences.push(format!(
            "learning-rate schedule: {} in the checkpoint, {schedule} now",
            old.unwrap_or("none")
        )),
    }
    let best = Best::from_extras(extras, path)?;
    Ok(Resumed {
        epochs_done,
        state: TrainState { brake, best },
        differences,
    })
}

/// Checks that `model` was saved from a network of `graph`'s shape: the same layers (names,
/// kinds, activations, in order) and weights of the same shapes. The message names the layer
/// or weight and both values.
fn check_layers(model: &Model, graph: &Graph) -> std::result::Result<(), String> {
    let saved = &model.descriptor.layers;
    let names = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(", ");
    if saved.len() != graph.layers().len()
        || saved
            .iter()
            .zip(graph.layers())
            .any(|(s, l)| s.name != l.name)
    {
        return Err(format!(
            "its layers are [{}], the network's are [{}]",
            names(&mut saved.iter().map(|l| l.name.as_str())),
            names(&mut graph.layers().iter().map(|l| l.name.as_str()))
        ));
    }
    for (s, l) in saved.iter().zip(graph.layers()) {
        if s.kind != l.kind {
            return Err(format!(
                "layer `{}` is {:?} in the checkpoint but {:?} in the network",
                l.name, s.kind, l.kind
            ));
        }
        if s.batch_normalization != l.batch_normalization {
            return Err(format!(
                "layer `{}` is {}batch-normalised in the checkpoint but {}in the network",
                l.name,
                if s.batch_normalization { "" } else { "not " },
                if l.batch_normalization { "" } else { "not " },
            ));
        }
        if s.activation != l.activation {
            return Err(format!(
                "layer `{}` has activation {} in the checkpoint but {} in the network",
                l.name,
                s.activation.name(),
                l.activation.name()
            ));
        }
    }
    if model.descriptor.error_function != graph.descriptor().error_function {
        return Err(format!(
            "the error function is {} in the checkpoint but {} in the network",
            model.descriptor.error_function.name(),
            graph.descriptor().error_function.name()
        ));
    }
    check_against_graph(model, graph).map_err(|e| match e {
        Error::InvalidData(m) => m,
        other => other.to_string(),
    })
}
