//! `recommend`, `embed` and `evaluate`: the predictor's library calls (`Graph::compile`,
//! `Network::build` + `load_weights`, `predict::run`) with the GIL released; Ctrl-C is
//! honoured between batches.

use moira::backend::device::{choose, host_threads};
use moira::checkpoint::Model;
use moira::dataset::Dataset;
use moira::descriptor::LayerKind;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::Optimizer;
use moira::predict::{
    self, input_items, FilterMode, PredictConfig, PredictedBatch, RankingMetrics,
};
use moira::sparse::Csr;
use moira::train;
use moira::Error;
use pyo3::prelude::*;

use crate::settings::Settings;

/// Why a prediction stopped: an engine error, or a Python exception (Ctrl-C).
pub enum Stop {
    Engine(Error),
    Python(PyErr),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Engine(e)
    }
}

impl From<Stop> for PyErr {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Engine(e) => crate::errors::to_py(e),
            Stop::Python(e) => e,
        }
    }
}

/// What to compute for every row of the input.
pub struct Ask<'a> {
    /// Recommendations per row (0: none).
    pub k: usize,
    /// Candidates: the first `n_items` units of the output layer (all of them when `None`).
    pub n_items: Option<usize>,
    /// Never recommend a row's own input items.
    pub exclude_seen: bool,
    /// The per-row filter and its mode.
    pub filter: Option<(&'a Csr, FilterMode)>,
    /// The layer whose activations each batch hands over.
    pub layer: Option<&'a str>,
    /// Held-out items and the metrics to accumulate against them.
    pub evaluate: Option<(&'a Csr, &'a mut RankingMetrics)>,
    /// Rows per forward pass.
    pub batch: usize,
}

/// Runs `model` over `datasets` (its input rows) as `ask` says, handing each batch to
/// `on_batch`; returns the units of `ask.layer` (0 without one). Call it without the GIL.
///
/// Errors (`ValueError`s from the engine): inputs that do not fit the model (naming both
/// widths), `n_items` above the output's units, `k` or a metric cutoff above the candidates,
/// an unknown layer (listing the layers) or a sparse input layer as `layer`, a filter or
/// held-out matrix not as wide as the output.
pub fn run(
    model: &Model,
    datasets: &[Dataset],
    settings: &Settings,
    ask: Ask<'_>,
    mut on_batch: impl FnMut(&PredictedBatch<'_>) -> Result<(), Stop>,
) -> Result<usize, Stop> {
    let graph = Graph::compile(&model.descriptor, &predict::model_shapes(model, datasets))?;
    let output = graph
        .outputs()
        .next()
        .ok_or_else(|| Error::InvalidData("the network has no output layer".into()))?;
    let (output_id, width, output_name) = (output.id, output.units, output.name.clone());
    let items = ask.n_items.unwrap_or(width);
    if items == 0 || items > width {
        return Err(Error::invalid_argument(
            "n_items",
            format!("{items}; output layer `{output_name}` has {width} units"),
        )
        .into());
    }
    let layer = match ask.layer {
        Some(name) => {
            let layer = graph.layer_by_name(name).ok_or_else(|| {
                let all: Vec<&str> = graph.layers().iter().map(|l| l.name.as_str()).collect();
                Error::invalid_argument(
                    "layer",
                    format!("the network has no layer `{name}`; its layers: {all:?}"),
                )
            })?;
            if layer.kind == LayerKind::Input && layer.sparse {
                return Err(Error::invalid_argument(
                    "layer",
                    format!("`{name}` is a sparse input layer: it has no activations (they are the input)"),
                )
                .into());
            }
            Some((layer.id, layer.units))
        }
        None => None,
    };
    let binding = train::DataBinding::new(&graph, datasets, true)?;
    let exclude = ask
        .exclude_seen
        .then(|| input_items(&graph, &binding, output_id))
        .flatten();
    let config = PredictConfig {
        output: output_id,
        items,
        k: ask.k,
        layer: layer.map(|l| l.0),
        batch: ask.batch.max(1),
        exclude,
        filter: ask.filter,
    };
    let units = layer.map_or(0, |l| l.1);
    let chosen = choose(settings.device, settings.threads, settings.tf32)?;
    host_threads(settings.threads);
    let mut each = |b: &PredictedBatch<'_>| -> Result<(), Stop> {
        Python::attach(|py| py.check_signals()).map_err(Stop::Python)?;
        on_batch(b)
    };
    moira::with_backend!(chosen, |backend| {
        let mut network = Network::build(backend, graph, config.batch, Optimizer::Sgd, 0)?;
        network.load_weights(model)?;
        predict::run(&mut network, &binding, &config, ask.evaluate, &mut each)
    })?;
    Ok(units)
}
