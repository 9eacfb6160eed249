//! The `predictor` command: checks the arguments, loads the model, the input, the filter
//! and the held-out file, builds the network, and runs the library's prediction loop
//! ([`moira::predict::run()`]) with a callback that writes each batch's recommendations or
//! layer activations and advances the progress bar.

use std::time::Instant;

use crate::device::choose;
use crate::ranks::{self, ParallelArg};
use anyhow::{bail, Context, Result};
use moira::backend::Backend;
use moira::checkpoint::load_model;
use moira::collective::Collective;
use moira::dataset::index::Index;
use moira::dataset::io::parquet_out::RecsWriter;
use moira::descriptor::LayerKind;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::Optimizer;
use moira::parallel::Parallelism;
use moira::predict::recs::{format_user, names, RecsFormat};
use moira::predict::{self, input_items, PredictConfig, PredictedBatch, RankingMetrics, NO_ITEM};
use moira::train::DataBinding;

use super::args::Args;
use super::filter::{self, single_sparse};
use super::input::{self, check_index};
use super::output::{layer_format, AtomicFile, LayerWriter};

/// Where the recommendations or the layer go.
enum Sink {
    None,
    Recs(AtomicFile, RecsFormat),
    RecsParquet(Box<RecsWriter>),
    Layer(LayerWriter),
}

/// Runs the predictor (see `predictor --help`): alone, or as one rank of an `mpirun` job when
/// `comm` connects several ranks (data-parallel: every rank scores its share of each batch;
/// model-parallel: every rank computes its columns; either way every rank gets the whole
/// batch's results and rank 0 writes).
pub fn run<C: Collective>(args: Args, comm: Option<&C>) -> Result<()> {
    let comm = comm.filter(|c| c.size() > 1);
    let root = comm.is_none_or(|c| c.rank() == 0);
    if args.recs_out.is_none() && args.evaluate.is_none() {
        bail!("nothing to do: pass -s OUT and/or --evaluate HELDOUT.nc");
    }
    if args.layer.is_some() && args.recs_out.is_none() {
        bail!("--layer writes the layer to -s OUT: pass -s");
    }
    if args.layer.is_none() && args.layer_format.is_some() {
        bail!("--layer-format applies to --layer output only");
    }
    if let Some(out) = &args.recs_out {
        crate::paths::refuse_overwriting_inputs(
            "-s",
            out,
            &[
                ("-n", Some(&args.network)),
                ("-r", args.input.as_deref()),
                ("-i", args.input_index.as_deref()),
                ("-o", args.output_index.as_deref()),
                ("--samples", args.samples.as_deref()),
                ("-f", args.filter.as_deref()),
                ("--evaluate", args.evaluate.as_deref()),
            ],
        )?;
    }
    let loaded = (|| {
        let model = load_model(&args.network)
            .with_context(|| format!("cannot load network {}", args.network.display()))?;
        let input = input::load(&args, &model)?;
        anyhow::Ok((model, input))
    })();
    let (model, input) = ranks::agree(comm, loaded)?;
    let datasets = &input.datasets;
    let graph = Graph::compile(
        &model.descriptor,
        &moira::predict::model_shapes(&model, datasets),
    )
    .with_context(|| {
        format!(
            "{} does not fit {}",
            input.path.display(),
            args.network.display()
        )
    })?;
    let output = graph
        .outputs()
        .next()
        .context("the network has no output layer")?;
    let (output_id, width, output_name) = (output.id, output.units, output.name.clone());
    // With an output index, only its items are candidates: the units past it are the
    // padding of the rounded-up width.
    let (labels, items) = match &args.output_index {
        Some(p) => {
            let labels = Index::load(p)?.labels();
            check_index(p, labels.len(), width, &output_name)?;
            let items = labels.len();
            (names(Some(labels), width, &p.display().to_string())?, items)
        }
        None => (names(None, width, "")?, width),
    };
    let recs = args.recs_out.is_some() && args.layer.is_none();
    if recs && (args.k == 0 || args.k > items) {
        bail!(
            "-k {} is outside 1..={items}: output layer `{output_name}` has {width} units{}",
            args.k,
            if items < width {
                format!(", {items} of them in the output index")
            } else {
                String::new()
            }
        );
    }
    let held_out = match &args.evaluate {
        Some(p) => {
            let csr = single_sparse(p, "held-out")?;
            if csr.n_cols() as usize != width {
                bail!(
                    "{}: held-out data is {} wide but output layer `{output_name}` has {width} \
                     units",
                    p.display(),
                    csr.n_cols()
                );
            }
            Some(csr)
        }
        None => None,
    };
    let mut metrics = match &held_out {
        Some(_) => {
            let m = RankingMetrics::new(&args.evaluate_k)?;
            if m.max_k() > items {
                bail!(
                    "--evaluate-k {} exceeds the {items} candidate items of output layer \
                     `{output_name}`",
                    m.max_k()
                );
            }
            Some(m)
        }
        None => None,
    };
    let chosen = ranks::agree(comm, choose(args.device, args.threads, args.tf32))?;
    crate::device::host_threads(args.threads);
    let binding = DataBinding::new(&graph, datasets, true)?;
    let n = binding.examples();
    if u32::try_from(n).is_err() {
        bail!("{n} samples exceed 2^32");
    }
    let samples = match (&input.samples, &args.samples) {
        (Some(ix), _) => names(Some(ix.labels()), n, "the samples index")?,
        (None, Some(p)) => names(Some(Index::load(p)?.labels()), n, &p.display().to_string())?,
        (None, None) => names(None, n, "")?,
    };
    let filter = match &args.filter {
        Some(p) => Some(filter::load(
            p,
            &args,
            width,
            &output_name,
            input.samples.as_ref(),
            n,
        )?),
        None => None,
    };
    let exclude = (!args.no_exclude_input)
        .then(|| input_items(&graph, &binding, output_id))
        .flatten();
    let layer = match &args.layer {
        Some(name) => {
            let layer = graph.layer_by_name(name).with_context(|| {
                let all: Vec<&str> = graph.layers().iter().map(|l| l.name.as_str()).collect();
                format!("--layer {name}: the network has no such layer; its layers: {all:?}")
            })?;
            if layer.kind == LayerKind::Input && layer.sparse {
                bail!(
                    "--layer {name}: a sparse input layer has no activations (they are the input)"
                );
            }
            Some((layer.id, layer.units, layer.name.clone()))
        }
        None => None,
    };
    let batch = args.batch.max(1);
    let mut sink = match (&args.recs_out, &layer) {
        (None, _) => Sink::None,
        // One rank writes (every rank computes the same rows).
        (Some(_), _) if !root => Sink::None,
        (Some(p), None) => match args.format.text() {
            Some(format) => Sink::Recs(AtomicFile::create(p)?, format),
            None => Sink::RecsParquet(Box::new(RecsWriter::create(p)?)),
        },
        (Some(p), Some((_, units, name))) => {
            let format = layer_format(p, args.layer_format);
            let w = LayerWriter::create(p, format, name, *units, n, args.precision)?;
            Sink::Layer(w)
        }
    };
    let precision = args.precision.unwrap_or(3);
    let bar = super::bar(
        n as u64,
        "predict [{bar:30}] {pos}/{len} samples {per_sec} eta {eta}",
        args.quiet || !root,
    );
    let started = Instant::now();
    let config = PredictConfig {
        output: output_id,
        items,
        k: if recs { args.k } else { 0 },
        layer: layer.as_ref().map(|l| l.0),
        batch,
        exclude,
        filter: filter.as_ref().map(|f| (f, args.filter_mode.into())),
    };
    let evaluate = held_out.as_ref().zip(metrics.as_mut());
    let mut text = String::new();
    // Writes one batch's recommendations or layer rows (the sink is `None` off rank 0).
    let mut on_batch = |b: &PredictedBatch<'_>| -> Result<()> {
        match &mut sink {
            Sink::None => {}
            Sink::Layer(w) => {
                if let Some(values) = b.layer {
                    let names: Vec<&str> = b
                        .examples
                        .iter()
                        .map(|&e| samples[e as usize].as_str())
                        .collect();
                    w.write(&names, values.data())?;
                }
            }
            Sink::Recs(out, format) => {
                text.clear();
                for (i, &e) in b.examples.iter().enumerate() {
                    let (ranked, scores) = b.recommendations(i);
                    let items = ranked
                        .iter()
                        .zip(scores)
                        .filter(|(&item, _)| item != NO_ITEM)
                        .map(|(&item, &s)| (labels[item as usize].as_str(), s));
                    format_user(&mut text, *format, &samples[e as usize], items, precision);
                }
                out.write(&text)?;
            }
            Sink::RecsParquet(out) => {
                for (i, &e) in b.examples.iter().enumerate() {
                    let (ranked, scores) = b.recommendations(i);
                    let items = ranked
                        .iter()
                        .zip(scores)
                        .filter(|(&item, _)| item != NO_ITEM)
                        .map(|(&item, &s)| (labels[item as usize].as_str(), s));
                    out.write_user(&samples[e as usize], items)?;
                }
            }
        }
        bar.inc(b.len() as u64);
        Ok(())
    };
    crate::with_backend!(chosen, |backend| {
        tracing::info!("predicting on {}", backend.description());
        match comm {
            Some(comm) => {
                let parallelism = match args.parallel {
                    ParallelArg::Model => Parallelism::Model,
                    ParallelArg::Data
                    | ParallelArg::Hybrid
                    | ParallelArg::Auto
                    | ParallelArg::Tune => Parallelism::Data,
                };
                if root {
                    tracing::info!("{parallelism} parallelism on {} ranks", comm.size());
                }
                let built = (|| {
                    let mut network = Network::build_parallel(
                        backend,
                        comm,
                        graph,
                        batch,
                        Optimizer::Sgd,
                        0,
                        parallelism,
                    )?;
                    network.load_weights(&model)?;
                    anyhow::Ok(network)
                })();
                let mut network = ranks::agree(Some(comm), built)?;
                predict::run(&mut network, &binding, &config, evaluate, &mut on_batch)
            }
            None => {
                let mut network = Network::build(backend, graph, batch, Optimizer::Sgd, 0)?;
                network.load_weights(&model)?;
                predict::run(&mut network, &binding, &config, evaluate, &mut on_batch)
            }
        }
    })?;
    drop(model);
    bar.finish_and_clear();
    match sink {
        Sink::None => {}
        Sink::Recs(out, _) => out.finish()?,
        Sink::RecsParquet(out) => out.finish()?,
        Sink::Layer(w) => w.finish()?,
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "{n} samples in {seconds:.2} s ({:.0} samples/s){}",
        n as f64 / seconds.max(1e-9),
        args.recs_out.as_ref().map_or(String::new(), |p| format!(
            "; {} in {}",
            if layer.is_some() {
                "layer"
            } else {
                "recommendations"
            },
            p.display()
        ))
    );
    if let Some(m) = metrics.as_ref().filter(|_| root) {
        println!("{m}");
        println!("{}", m.to_json());
    }
    Ok(())
}
