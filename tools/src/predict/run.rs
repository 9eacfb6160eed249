//! The prediction loop: forward pass batch by batch, then top-K (with exclusions and the
//! filter), metrics, recommendations or layer activations, each written as the batch ends.

use std::time::Instant;

use crate::device::choose;
use anyhow::{bail, Context, Result};
use moira::backend::Backend;
use moira::checkpoint::{load_model, Model};
use moira::dataset::index::Index;
use moira::dataset::Dataset;
use moira::descriptor::{LayerKind, Size};
use moira::graph::{DataShape, Graph};
use moira::network::Network;
use moira::ops::Optimizer;
use moira::predict::recs::{format_user, names, RecsFormat};
use moira::predict::{top_k_batch, RankingMetrics, NO_ITEM};
use moira::sparse::Csr;
use moira::train::{self, DataBinding};

use super::args::{Args, FilterMode};
use super::filter::{self, single_sparse};
use super::input::{self, check_index};
use super::output::{layer_format, AtomicFile, LayerWriter};

/// The shapes to compile against: the input datasets, and for every other data-bound layer
/// its saved size.
fn shapes(model: &Model, datasets: &[Dataset]) -> Vec<DataShape> {
    let mut shapes = train::shapes(datasets);
    let examples = datasets.first().map_or(0, Dataset::examples);
    for layer in &model.descriptor.layers {
        let (Some(name), Size::Fixed(dims)) = (&layer.dataset, &layer.size) else {
            continue;
        };
        if !shapes.iter().any(|s| &s.name == name) {
            shapes.push(DataShape {
                name: name.clone(),
                dims: dims.clone(),
                examples,
                sparse: layer.sparse,
            });
        }
    }
    shapes
}

/// Where the recommendations or the layer go.
enum Sink {
    None,
    Recs(AtomicFile, RecsFormat),
    Layer(LayerWriter, moira::graph::LayerId),
}

/// Runs the predictor (see `predictor --help`).
pub fn run(args: Args) -> Result<()> {
    if args.recs_out.is_none() && args.evaluate.is_none() {
        bail!("nothing to do: pass -s OUT and/or --evaluate HELDOUT.nc");
    }
    if args.layer.is_some() && args.recs_out.is_none() {
        bail!("--layer writes the layer to -s OUT: pass -s");
    }
    if args.layer.is_none() && args.layer_format.is_some() {
        bail!("--layer-format applies to --layer output only");
    }
    let model = load_model(&args.network)
        .with_context(|| format!("cannot load network {}", args.network.display()))?;
    let input = input::load(&args, &model)?;
    let datasets = &input.datasets;
    let graph =
        Graph::compile(&model.descriptor, &shapes(&model, datasets)).with_context(|| {
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
    let chosen = choose(args.device, args.threads, args.tf32)?;
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
        .then(|| {
            graph
                .inputs()
                .filter_map(|l| binding.dataset(l.id))
                .find(|d| d.stride() as usize == width)
                .and_then(|d| d.sparse_data().map(|csr| (d, csr)))
        })
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
    let rank = recs || metrics.is_some();
    let kk = if recs { args.k } else { 0 }.max(metrics.as_ref().map_or(0, RankingMetrics::max_k));
    let mut sink = match (&args.recs_out, &layer) {
        (None, _) => Sink::None,
        (Some(p), None) => Sink::Recs(AtomicFile::create(p)?, args.format.into()),
        (Some(p), Some((id, units, name))) => {
            let format = layer_format(p, args.layer_format);
            let w = LayerWriter::create(p, format, name, *units, n, args.precision)?;
            Sink::Layer(w, *id)
        }
    };
    let precision = args.precision.unwrap_or(3);
    let bar = super::bar(
        n as u64,
        "predict [{bar:30}] {pos}/{len} samples {per_sec} eta {eta}",
        args.quiet,
    );
    let started = Instant::now();
    let (mut ranked, mut scores, mut text) = (Vec::new(), Vec::new(), String::new());
    let mut work: Vec<f32> = Vec::new();
    let mut chunk: Vec<u32> = Vec::with_capacity(batch);
    crate::with_backend!(chosen, |backend| {
        tracing::info!("predicting on {}", backend.description());
        let mut network = Network::build(backend, graph, batch, Optimizer::Sgd, 0)?;
        network.load_weights(&model)?;
        for start in (0..n).step_by(batch) {
            chunk.clear();
            chunk.extend((start..n.min(start + batch)).map(|e| e as u32));
            let mut mb = binding.batch(network.graph(), &chunk, None)?;
            mb.example_weights.clear();
            network.load_batch(mb)?;
            network.forward(false, 0)?;
            if let Sink::Layer(w, id) = &mut sink {
                let values = network.layer_output(*id)?;
                let names: Vec<&str> = chunk
                    .iter()
                    .map(|&e| samples[e as usize].as_str())
                    .collect();
                w.write(&names, values.data())?;
            }
            if rank {
                let mode = args.filter_mode;
                let seen =
                    filter::exclusions(&chunk, exclude, filter.as_ref().map(|f| (f, mode)), items);
                ranked.resize(chunk.len() * kk, 0);
                scores.resize(chunk.len() * kk, 0.0);
                if let (Some(f), FilterMode::Multiply) = (&filter, mode) {
                    // Scores change on the host first: select there.
                    let out = network.layer_output(output_id)?;
                    work.clear();
                    for row in out.data().chunks(width) {
                        work.extend_from_slice(&row[..items]);
                    }
                    filter::multiply(&mut work, items, &chunk, f);
                    top_k_batch(
                        &work,
                        items,
                        kk,
                        seen.as_ref().map(Csr::view),
                        0,
                        &mut ranked,
                        &mut scores,
                    )?;
                } else {
                    // On the device where the scores are (the CPU backend selects in place).
                    network.top_k(
                        output_id,
                        items,
                        kk,
                        seen.as_ref().map(Csr::view),
                        &mut ranked,
                        &mut scores,
                    )?;
                }
            }
            if let (Some(m), Some(held)) = (metrics.as_mut(), held_out.as_ref()) {
                for (i, &e) in chunk.iter().enumerate() {
                    let e = e as usize;
                    if e < held.n_rows() && !held.row(e).0.is_empty() {
                        m.add_user(&ranked[i * kk..(i + 1) * kk], held.row(e).0)?;
                    }
                }
            }
            if let Sink::Recs(out, format) = &mut sink {
                text.clear();
                for (i, &e) in chunk.iter().enumerate() {
                    let row = i * kk..i * kk + args.k;
                    let items = ranked[row.clone()]
                        .iter()
                        .zip(&scores[row])
                        .filter(|(&item, _)| item != NO_ITEM)
                        .map(|(&item, &s)| (labels[item as usize].as_str(), s));
                    format_user(&mut text, *format, &samples[e as usize], items, precision);
                }
                out.write(&text)?;
            }
            bar.inc(chunk.len() as u64);
        }
        anyhow::Ok(())
    })?;
    drop(model);
    bar.finish_and_clear();
    match sink {
        Sink::None => {}
        Sink::Recs(out, _) => out.finish()?,
        Sink::Layer(w, _) => w.finish()?,
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
    if let Some(m) = &metrics {
        println!("{m}");
        println!("{}", m.to_json());
    }
    Ok(())
}
