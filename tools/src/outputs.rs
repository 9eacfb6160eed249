//! What `trainer` does around training to keep a run's results safe: compiling a descriptor
//! without data (`--check`), preparing the outputs (stale temporaries removed, room checked),
//! and rescuing the trained network when a file cannot be written.

use std::path::{Path, PathBuf};

use anyhow::Result;
use moira::backend::Backend;
use moira::checkpoint::Extras;
use moira::collective::Collective;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::Optimizer;
use moira::train::{CheckpointPlan, TrainConfig};

use crate::paths::{free_bytes, require_room};

/// A shape for every dataset the descriptor's layers name, for compiling it without data:
/// the layer's size when fixed, one unit when "auto".
pub fn placeholder_shapes(d: &Descriptor) -> Vec<moira::graph::DataShape> {
    let mut shapes: Vec<moira::graph::DataShape> = Vec::new();
    for layer in &d.layers {
        let Some(name) = &layer.dataset else { continue };
        if shapes.iter().any(|s| &s.name == name) {
            continue;
        }
        let dims = match &layer.size {
            moira::descriptor::Size::Fixed(dims) => dims.clone(),
            moira::descriptor::Size::Auto => vec![1],
        };
        shapes.push(moira::graph::DataShape {
            name: name.clone(),
            dims,
            examples: 1,
            sparse: layer.sparse,
        });
    }
    shapes
}

/// What rank 0 does before training: removes the temporary files that interrupted saves of
/// `out` and of the planned checkpoints left (a log line each), and checks that their file
/// system has room for the network file and every planned checkpoint.
pub fn prepare_outputs(
    graph: &Graph,
    out: &Path,
    plan: Option<&CheckpointPlan>,
    config: &TrainConfig,
) -> Result<()> {
    let planned = plan.map(|p| p.planned(config)).unwrap_or_default();
    for path in std::iter::once(out).chain(planned.iter().map(PathBuf::as_path)) {
        for stale in moira::checkpoint::remove_stale_temporaries(path)? {
            tracing::info!(
                "removed {}, left by an interrupted save of {}",
                stale.display(),
                path.display()
            );
        }
    }
    let (model, checkpoint) = file_bytes(graph, config.optimizer);
    let checkpoints = planned.len() as u64;
    let what = format!(
        "the network file{}",
        if checkpoints > 0 {
            format!(" and {checkpoints} checkpoint(s)")
        } else {
            String::new()
        }
    );
    require_room(out, model + checkpoints * checkpoint, &what)
}

/// After a file of the run could not be written (the final network to `out`, or a
/// checkpoint beside it; `headline` says which and why): saves the trained network to the
/// system's temporary directory instead (collective, as `Network::save`), and returns the
/// error to report: `headline`, the free space when the disk is full, where the trained
/// weights went, and the last checkpoint to resume from, if any.
pub fn rescue<B: Backend, C: Collective>(
    network: &Network<B, C>,
    out: &Path,
    headline: String,
    plan: Option<&CheckpointPlan>,
    config: &TrainConfig,
) -> anyhow::Error {
    let (needed, _) = file_bytes(network.graph(), config.optimizer);
    let full = free_bytes(out)
        .filter(|&free| free < needed && !headline.contains("No space left"))
        .map(|free| {
            format!(
                " (No space left on device: {:.1} MiB free, {:.1} MiB needed)",
                free as f64 / 1048576.0,
                needed as f64 / 1048576.0
            )
        })
        .unwrap_or_default();
    let name = out
        .file_name()
        .map_or("network.nc".into(), |n| n.to_string_lossy());
    let spare = std::env::temp_dir().join(format!("{name}.rescued.nc"));
    let rescued = network
        .agree(network.save(&spare, Extras::default(), &[], true))
        .map_or_else(
            |e| format!("it could not be saved to {} either ({e})", spare.display()),
            |()| {
                format!(
                    "the trained network was saved to {} instead",
                    spare.display()
                )
            },
        );
    let checkpoint = plan
        .and_then(|p| p.planned(config).into_iter().rev().find(|c| c.exists()))
        .map(|c| {
            format!(
                "; the last checkpoint is {} (resume with --resume)",
                c.display()
            )
        })
        .unwrap_or_default();
    anyhow::anyhow!("{headline}{full}; {rescued}{checkpoint}")
}

/// The bytes of the files a run writes, about: the network file (every weight matrix, bias
/// and batch-normalisation vector) and a checkpoint (the same with the optimizer's slots of
/// each), with 64 KiB for the attributes.
pub fn file_bytes(graph: &Graph, optimizer: Optimizer) -> (u64, u64) {
    let weights: u64 = graph
        .weights()
        .iter()
        .map(|w| (w.input_units * w.output_units) as u64)
        .sum();
    let biases: u64 = graph
        .edges()
        .iter()
        .map(|e| graph.layer(e.target).units as u64)
        .sum();
    let norms: u64 = graph
        .layers()
        .iter()
        .filter(|l| l.batch_normalization)
        .map(|l| 4 * l.units as u64)
        .sum();
    let slots = moira::ops::optimizer::state_len(optimizer) as u64;
    let model = 4 * (weights + biases + norms) + (64 << 10);
    (model, model + 4 * slots * (weights + biases + norms / 2))
}
