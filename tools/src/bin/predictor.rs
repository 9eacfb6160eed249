//! `predictor`: top-K recommendations and ranking metrics from a trained network (DSSTNE's
//! `predict`).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use moira::backend::Cpu;
use moira::checkpoint::load_model;
use moira::dataset::index::Index;
use moira::dataset::{io::netcdf, Dataset};
use moira::descriptor::{LayerKind, Size};
use moira::graph::{DataShape, Graph};
use moira::network::Network;
use moira::ops::Optimizer;
use moira::predict::recs::{format_user, names, RecsFormat};
use moira::predict::{top_k_batch, RankingMetrics, NO_ITEM};
use moira::sparse::Csr;
use moira::train::{self, DataBinding};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    /// DSSTNE's `sample<TAB>label,score:label,score:…:`, one line per sample.
    Recs,
    /// `sample<TAB>rank<TAB>label<TAB>score`, one line per item.
    Tsv,
    /// `{"sample":…,"items":[{"label":…,"score":…},…]}`, one line per sample.
    Jsonl,
}

impl From<FormatArg> for RecsFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Recs => RecsFormat::Recs,
            FormatArg::Tsv => RecsFormat::Tsv,
            FormatArg::Jsonl => RecsFormat::Jsonl,
        }
    }
}

/// Scores every sample of a dataset with a trained network and writes its top-K items
/// (DSSTNE's `predict`), and/or measures P@K, Recall@K and NDCG@K against held-out items.
///
/// The input file is a NetCDF dataset converted with the training features index (one row
/// per sample). Its dataset is bound to the network's input layer by the layer's `DataSet`
/// name; when the file holds exactly one dataset and the network one input layer, that
/// dataset is bound whatever its name. Each sample's own input items are excluded from its
/// recommendations (when the input layer is as wide as the output), unless
/// --no-exclude-input; --filter excludes the items of the sample's row in another dataset.
/// Ties rank the lower item index first.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The trained network (NetCDF, as written by `trainer`).
    #[arg(short = 'n', long)]
    network: PathBuf,
    /// Input dataset (NetCDF), rows = samples.
    #[arg(short = 'i', long)]
    input: PathBuf,
    /// Output features index (`label<TAB>index`) naming the output units; default: the
    /// numeric unit index.
    #[arg(
        short = 'o',
        long = "output-index",
        value_name = "OUTPUT_FEATURES_INDEX"
    )]
    output_index: Option<PathBuf>,
    /// Samples index (`name<TAB>row`) naming the input rows; default: the row number.
    #[arg(long, value_name = "SAMPLES_INDEX")]
    samples: Option<PathBuf>,
    /// Recommendations per sample (at most the output layer's width).
    #[arg(short = 'k', long, default_value_t = 100)]
    k: usize,
    /// Where to write the recommendations (written to a temporary file, then renamed).
    #[arg(short = 's', long = "recs-out", value_name = "RECS_OUT")]
    recs_out: Option<PathBuf>,
    /// Samples per forward pass.
    #[arg(short = 'b', long, default_value_t = 1024)]
    batch: usize,
    /// Decimals of the printed scores (DSSTNE's `%.3f`).
    #[arg(short = 'p', long, default_value_t = 3)]
    precision: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "recs")]
    format: FormatArg,
    /// Exclude, for each sample, the items of its row in this dataset (NetCDF, sparse, as
    /// wide as the output, row-aligned with the input).
    #[arg(long, value_name = "FILTER.nc")]
    filter: Option<PathBuf>,
    /// Do not exclude each sample's own input items.
    #[arg(long)]
    no_exclude_input: bool,
    /// Held-out items per sample (NetCDF, row-aligned with the input): print P/Recall/NDCG.
    #[arg(long, value_name = "HELDOUT.nc")]
    evaluate: Option<PathBuf>,
    /// Cutoffs K for --evaluate.
    #[arg(long, value_delimiter = ',', default_value = "10,20")]
    evaluate_k: Vec<usize>,
    /// CPU threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() {
    moira_tools::init_logging();
    moira_tools::exit_on_error(run(Args::parse()));
}

/// One sparse dataset of a file that must hold exactly one.
fn single_sparse(path: &Path, what: &str) -> Result<Csr> {
    let mut sets = netcdf::read(path)?;
    if sets.len() != 1 {
        bail!(
            "{}: a {what} file must hold one dataset, it holds {}",
            path.display(),
            sets.len()
        );
    }
    sets.remove(0)
        .sparse_data()
        .cloned()
        .with_context(|| format!("{}: the {what} dataset must be sparse", path.display()))
}

/// The input datasets, renamed to the input layer's `DataSet` when the file holds a single
/// dataset of another name.
fn load_input(args: &Args, model: &moira::checkpoint::Model) -> Result<Vec<Dataset>> {
    let mut sets = netcdf::read(&args.input)?;
    let inputs: Vec<_> = model
        .descriptor
        .layers
        .iter()
        .filter(|l| l.kind == LayerKind::Input)
        .collect();
    if inputs.len() == 1 && sets.len() == 1 {
        if let Some(name) = &inputs[0].dataset {
            if sets[0].name() != name {
                tracing::info!(
                    "binding dataset `{}` of {} to input layer `{}` (DataSet `{name}`)",
                    sets[0].name(),
                    args.input.display(),
                    inputs[0].name
                );
                sets[0].set_name(name.clone());
            }
        }
    }
    for layer in &inputs {
        let Some(name) = &layer.dataset else { continue };
        let Some(set) = sets.iter().find(|s| s.name() == name) else {
            let names: Vec<&str> = sets.iter().map(|s| s.name()).collect();
            bail!(
                "{}: no dataset `{name}` for input layer `{}`; the file holds {names:?}",
                args.input.display(),
                layer.name
            );
        };
        if let Size::Fixed(dims) = &layer.size {
            let units: u64 = dims.iter().map(|&d| u64::from(d)).product();
            if set.stride() != units {
                bail!(
                    "{}: dataset `{name}` is {} wide but the network's input layer `{}` has \
                     {units} units: convert the input with the training features index",
                    args.input.display(),
                    set.stride(),
                    layer.name
                );
            }
        }
    }
    Ok(sets)
}

/// The shapes to compile against: the input datasets, and for every other data-bound layer
/// its saved size.
fn shapes(model: &moira::checkpoint::Model, datasets: &[Dataset]) -> Vec<DataShape> {
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

fn load_index(path: &Path) -> Result<Vec<String>> {
    Ok(Index::load(path)?.labels())
}

/// Writes to `<dir>/.<name>.<pid>.tmp`, renamed onto the target by `finish`; removed if
/// dropped before.
struct AtomicFile {
    tmp: PathBuf,
    target: PathBuf,
    out: Option<BufWriter<std::fs::File>>,
}

impl AtomicFile {
    fn create(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .with_context(|| format!("{}: not a file name", target.display()))?;
        let tmp = target.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(AtomicFile {
            tmp,
            target: target.to_owned(),
            out: Some(BufWriter::new(file)),
        })
    }

    fn write(&mut self, text: &str) -> Result<()> {
        let out = self.out.as_mut().expect("open until finished");
        out.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.tmp.display()))
    }

    fn finish(mut self) -> Result<()> {
        let out = self.out.take().expect("open until finished");
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.target)
            .with_context(|| format!("cannot rename onto {}", self.target.display()))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn run(args: Args) -> Result<()> {
    if args.recs_out.is_none() && args.evaluate.is_none() {
        bail!("nothing to do: pass -s RECS_OUT and/or --evaluate HELDOUT.nc");
    }
    let model = load_model(&args.network)
        .with_context(|| format!("cannot load network {}", args.network.display()))?;
    let datasets = load_input(&args, &model)?;
    let graph = Graph::compile(&model.descriptor, &shapes(&model, &datasets))?;
    let output = graph
        .outputs()
        .next()
        .context("the network has no output layer")?;
    let (output_id, width, output_name) = (output.id, output.units, output.name.clone());
    // With an output index, only its items are candidates: the units past it are the
    // padding of the rounded-up width.
    let (labels, items) = match &args.output_index {
        Some(p) => {
            let labels = load_index(p)?;
            let items = labels.len();
            (names(Some(labels), width, &p.display().to_string())?, items)
        }
        None => (names(None, width, "")?, width),
    };
    if args.k == 0 || args.k > items {
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
    let filter = match &args.filter {
        Some(p) => {
            let csr = single_sparse(p, "filter")?;
            if csr.n_cols() as usize != width {
                bail!(
                    "{}: the filter is {} wide but output layer `{output_name}` has {width} \
                     units",
                    p.display(),
                    csr.n_cols()
                );
            }
            Some(csr)
        }
        None => None,
    };
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
    let backend = Cpu::new(args.threads)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(backend.threads())
        .build_global()
        .ok();
    let binding = DataBinding::new(&graph, &datasets, true)?;
    let n = binding.examples();
    let samples = match &args.samples {
        Some(p) => names(Some(load_index(p)?), n, &p.display().to_string())?,
        None => names(None, n, "")?,
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
    let batch = args.batch.max(1);
    let mut network = Network::build(backend, graph, batch, Optimizer::Sgd, 0)?;
    network.load_weights(&model)?;
    let kk = args
        .k
        .max(metrics.as_ref().map_or(0, RankingMetrics::max_k));
    let format: RecsFormat = args.format.into();
    let mut out = args
        .recs_out
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let started = Instant::now();
    let (mut ranked, mut scores, mut text) = (Vec::new(), Vec::new(), String::new());
    let mut compact: Vec<f32> = Vec::new();
    let all: Vec<u32> = (0..n as u32).collect();
    for chunk in all.chunks(batch) {
        let mut mb = binding.batch(network.graph(), chunk, None)?;
        mb.example_weights.clear();
        network.load_batch(mb)?;
        network.forward(false, 0)?;
        let scores_in = network.layer_output(output_id)?;
        let row_scores = if items < width {
            compact.clear();
            for row in scores_in.data().chunks(width) {
                compact.extend_from_slice(&row[..items]);
            }
            &compact[..]
        } else {
            scores_in.data()
        };
        let seen = exclusions(chunk, exclude, filter.as_ref(), items);
        ranked.resize(chunk.len() * kk, 0);
        scores.resize(chunk.len() * kk, 0.0);
        top_k_batch(
            row_scores,
            items,
            kk,
            seen.as_ref().map(Csr::view),
            0,
            &mut ranked,
            &mut scores,
        )?;
        if let (Some(m), Some(held)) = (metrics.as_mut(), held_out.as_ref()) {
            for (i, &e) in chunk.iter().enumerate() {
                let e = e as usize;
                if e < held.n_rows() && !held.row(e).0.is_empty() {
                    m.add_user(&ranked[i * kk..(i + 1) * kk], held.row(e).0)?;
                }
            }
        }
        if let Some(out) = out.as_mut() {
            text.clear();
            for (i, &e) in chunk.iter().enumerate() {
                let row = i * kk..i * kk + args.k;
                let items = ranked[row.clone()]
                    .iter()
                    .zip(&scores[row])
                    .filter(|(&item, _)| item != NO_ITEM)
                    .map(|(&item, &s)| (labels[item as usize].as_str(), s));
                format_user(
                    &mut text,
                    format,
                    &samples[e as usize],
                    items,
                    args.precision,
                );
            }
            out.write(&text)?;
        }
    }
    if let Some(out) = out {
        out.finish()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "{n} samples in {seconds:.2} s ({:.0} samples/s){}",
        n as f64 / seconds.max(1e-9),
        args.recs_out.as_ref().map_or(String::new(), |p| format!(
            "; recommendations in {}",
            p.display()
        ))
    );
    if let Some(m) = &metrics {
        println!("{m}");
        println!("{}", m.to_json());
    }
    Ok(())
}

/// The excluded items of each example of `chunk`: its input row (if `input`) and its
/// `filter` row (if any), sorted, those below `width`; `None` when nothing is excluded.
fn exclusions(
    chunk: &[u32],
    input: Option<(&Dataset, &Csr)>,
    filter: Option<&Csr>,
    width: usize,
) -> Option<Csr> {
    if input.is_none() && filter.is_none() {
        return None;
    }
    let mut offsets = vec![0u64];
    let mut cols: Vec<u32> = Vec::new();
    for &e in chunk {
        let start = cols.len();
        if let Some((d, csr)) = input {
            cols.extend_from_slice(csr.row(d.row_of(e as usize)).0);
        }
        if let Some(f) = filter.filter(|f| (e as usize) < f.n_rows()) {
            cols.extend_from_slice(f.row(e as usize).0);
        }
        cols[start..].sort_unstable();
        let mut w = start;
        for r in start..cols.len() {
            if (cols[r] as usize) < width && (w == start || cols[r] != cols[w - 1]) {
                cols[w] = cols[r];
                w += 1;
            }
        }
        cols.truncate(w);
        offsets.push(cols.len() as u64);
    }
    Some(Csr::new_checked(width as u32, offsets, cols, None))
}
