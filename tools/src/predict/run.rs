//! The prediction loop: forward pass batch by batch, then top-K (with exclusions and the
//! filter), metrics, recommendations or layer activations, each written as the batch ends.

use std::time::Instant;

use crate::device::choose;
use crate::ranks;
use anyhow::{bail, Context, Result};
use moira::backend::Backend;
use moira::checkpoint::{load_model, Model};
use moira::collective::Collective;
use moira::dataset::index::Index;
use moira::dataset::Dataset;
use moira::descriptor::{LayerKind, Size};
use moira::graph::{DataShape, Graph};
use moira::network::Network;
use moira::ops::Optimizer;
use moira::parallel::ShardedNetwork;
use moira::predict::recs::{format_user, names, RecsFormat};
use moira::predict::{top_k_batch, RankingMetrics, NO_ITEM};
use moira::sparse::Csr;
use moira::train::{self, DataBinding, Trainable};

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
    Layer(LayerWriter),
}

/// Runs the predictor (see `predictor --help`): alone, or as one rank of a model-parallel
/// job when `comm` connects several ranks (every rank computes its columns; the top-K lists
/// are merged on every rank and rank 0 writes).
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
    let loaded = (|| {
        let model = load_model(&args.network)
            .with_context(|| format!("cannot load network {}", args.network.display()))?;
        let input = input::load(&args, &model)?;
        anyhow::Ok((model, input))
    })();
    let (model, input) = ranks::agree(comm, loaded)?;
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
        // One rank writes (every rank computes the same rows).
        (Some(_), _) if !root => Sink::None,
        (Some(p), None) => Sink::Recs(AtomicFile::create(p)?, args.format.into()),
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
    let ctx = Loop {
        args: &args,
        binding: &binding,
        samples: &samples,
        labels: &labels,
        filter: filter.as_ref(),
        exclude,
        held_out: held_out.as_ref(),
        layer: layer.as_ref().map(|l| l.0),
        output_id,
        width,
        items,
        kk,
        rank,
        precision,
        n,
        batch,
    };
    crate::with_backend!(chosen, |backend| {
        tracing::info!("predicting on {}", backend.description());
        match comm {
            Some(comm) => {
                let built = (|| {
                    let mut network =
                        ShardedNetwork::build(backend, comm, graph, batch, Optimizer::Sgd, 0)?;
                    network.load_weights(&model)?;
                    anyhow::Ok(network)
                })();
                let mut network = ranks::agree(Some(comm), built)?;
                predict_all(&mut network, &ctx, &mut sink, &mut metrics, &bar)
            }
            None => {
                let mut network = Network::build(backend, graph, batch, Optimizer::Sgd, 0)?;
                network.load_weights(&model)?;
                predict_all(&mut network, &ctx, &mut sink, &mut metrics, &bar)
            }
        }
    })?;
    drop(model);
    bar.finish_and_clear();
    match sink {
        Sink::None => {}
        Sink::Recs(out, _) => out.finish()?,
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

/// What the prediction loop reads.
struct Loop<'a> {
    args: &'a Args,
    binding: &'a DataBinding<'a>,
    samples: &'a [String],
    labels: &'a [String],
    filter: Option<&'a Csr>,
    exclude: Option<(&'a Dataset, &'a Csr)>,
    held_out: Option<&'a Csr>,
    /// `--layer`'s layer.
    layer: Option<moira::graph::LayerId>,
    output_id: moira::graph::LayerId,
    width: usize,
    items: usize,
    /// The longest list needed (recommendations, metrics).
    kk: usize,
    /// Whether to rank at all.
    rank: bool,
    precision: usize,
    n: usize,
    batch: usize,
}

/// Forward pass batch by batch, then top-K (with exclusions and the filter), metrics,
/// recommendations or layer activations, each written as the batch ends. Collective on a
/// sharded network (every rank runs every step; `sink` is `Sink::None` on other ranks).
fn predict_all<N: Trainable>(
    network: &mut N,
    c: &Loop<'_>,
    sink: &mut Sink,
    metrics: &mut Option<RankingMetrics>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let (args, kk, items, width) = (c.args, c.kk, c.items, c.width);
    let (mut ranked, mut scores, mut text) = (Vec::new(), Vec::new(), String::new());
    let mut work: Vec<f32> = Vec::new();
    let mut chunk: Vec<u32> = Vec::with_capacity(c.batch);
    for start in (0..c.n).step_by(c.batch) {
        chunk.clear();
        chunk.extend((start..c.n.min(start + c.batch)).map(|e| e as u32));
        let mut mb = c.binding.batch(network.graph(), &chunk, None)?;
        mb.example_weights.clear();
        network.load_batch(mb)?;
        network.forward(false, 0)?;
        if let Some(id) = c.layer {
            let values = network.layer_output(id)?;
            if let Sink::Layer(w) = sink {
                let names: Vec<&str> = chunk
                    .iter()
                    .map(|&e| c.samples[e as usize].as_str())
                    .collect();
                w.write(&names, values.data())?;
            }
        }
        if c.rank {
            let mode = args.filter_mode;
            let seen = filter::exclusions(&chunk, c.exclude, c.filter.map(|f| (f, mode)), items);
            ranked.resize(chunk.len() * kk, 0);
            scores.resize(chunk.len() * kk, 0.0);
            if let (Some(f), FilterMode::Multiply) = (c.filter, mode) {
                // Scores change on the host first: select there.
                let out = network.layer_output(c.output_id)?;
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
                    c.output_id,
                    items,
                    kk,
                    seen.as_ref().map(Csr::view),
                    &mut ranked,
                    &mut scores,
                )?;
            }
        }
        if let (Some(m), Some(held)) = (metrics.as_mut(), c.held_out) {
            for (i, &e) in chunk.iter().enumerate() {
                let e = e as usize;
                if e < held.n_rows() && !held.row(e).0.is_empty() {
                    m.add_user(&ranked[i * kk..(i + 1) * kk], held.row(e).0)?;
                }
            }
        }
        if let Sink::Recs(out, format) = sink {
            text.clear();
            for (i, &e) in chunk.iter().enumerate() {
                let row = i * kk..i * kk + args.k;
                let items = ranked[row.clone()]
                    .iter()
                    .zip(&scores[row])
                    .filter(|(&item, _)| item != NO_ITEM)
                    .map(|(&item, &s)| (c.labels[item as usize].as_str(), s));
                format_user(
                    &mut text,
                    *format,
                    &c.samples[e as usize],
                    items,
                    c.precision,
                );
            }
            out.write(&text)?;
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(())
}
