//! `trainer`: trains a DSSTNE network descriptor on NetCDF datasets (DSSTNE's `train`).

use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "trainer/args.rs"]
mod args;

use anyhow::{bail, Context, Result};
use clap::Parser;
use moira::backend::Backend;
use moira::checkpoint::Extras;
use moira::collective::{Collective, Local};
use moira::dataset::{io::netcdf, Dataset};
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::parallel::{retain_rank_columns, Choice, Parallelism, ShardPlan};
use moira::train::{
    self, CheckpointPlan, DataBinding, Observer, TrainConfig, TrainState, Validation,
};
use moira_tools::device::choose;
use moira_tools::outputs::{placeholder_shapes, prepare_outputs, rescue};
use moira_tools::paths::refuse_overwriting_inputs;
use moira_tools::progress::Progress;
use moira_tools::ranks::{self, ParallelArg};

use args::{check_numbers, data_files, dsstne_args, metrics_log, Args};

fn main() {
    moira_tools::init_logging();
    let args = Args::parse_from(dsstne_args());
    #[cfg(feature = "mpi")]
    if moira_tools::ranks::launched_size() > 1 {
        let comm = match moira::collective::Mpi::init() {
            Ok(c) => c,
            Err(e) => {
                moira_tools::exit_on_error(Err(e.into()));
                return;
            }
        };
        comm.abort_on_panic();
        let result = run(args, Some(&comm));
        moira_tools::ranks::finish(comm, result);
        return;
    }
    moira_tools::exit_on_error(run::<Local>(args, None));
}

/// Everything `run` settles before building the network.
struct Setup {
    datasets: Vec<Dataset>,
    graph: Graph,
    config: TrainConfig,
    out: PathBuf,
    /// Every file the run reads, with the flag that names it: no output may replace one.
    inputs: Vec<(&'static str, PathBuf)>,
}

impl Setup {
    /// Errors when `output` (written under `flag`) is one of the run's inputs.
    fn refuse_overwriting_inputs(&self, flag: &str, output: &Path) -> Result<()> {
        let inputs: Vec<(&str, Option<&Path>)> = self
            .inputs
            .iter()
            .map(|(f, p)| (*f, Some(p.as_path())))
            .collect();
        refuse_overwriting_inputs(flag, output, &inputs)
    }
}

/// Trains alone, or as one rank of a model-parallel job when `comm` connects several (every
/// rank runs this; failures before training are agreed so that every rank reports them).
fn run<C: Collective>(args: Args, comm: Option<&C>) -> Result<()> {
    let comm = comm.filter(|c| c.size() > 1);
    let root = comm.is_none_or(|c| c.rank() == 0);
    let Some(setup) = ranks::agree(comm, prepare(&args, root))? else {
        return Ok(());
    };
    let chosen = ranks::agree(comm, choose(args.device, args.threads, args.tf32))?;
    moira_tools::with_backend!(chosen, |backend| match comm {
        Some(comm) => train_sharded(backend, comm, &args, setup),
        None => {
            let threads = moira_tools::device::host_threads(args.threads);
            let description = format!("{} ({threads} host threads)", backend.description());
            let (graph, config) = (setup.graph.clone(), &setup.config);
            let mut network =
                Network::build(backend, graph, config.batch, config.optimizer, args.seed)?;
            let bytes = network.buffer_bytes();
            train_net(&mut network, &args, &setup, description, bytes)
        }
    })
}

/// Reads the descriptor and data and settles the configuration; `None` when `--check` only
/// had to print (which the `root` rank does).
fn prepare(args: &Args, root: bool) -> Result<Option<Setup>> {
    let net_path = match (&args.network, &args.config) {
        (Some(p), None) | (None, Some(p)) => p.clone(),
        (Some(_), Some(_)) => bail!("give the descriptor once: as NET.json or with -c"),
        (None, None) => bail!("no network descriptor: trainer NET.json … (or -c NET.json)"),
    };
    let descriptor = Descriptor::from_file(&net_path)?;
    let files = data_files(args, &descriptor, &net_path);
    let mut datasets = Vec::new();
    for f in &files {
        datasets.extend(netcdf::read(f)?);
    }
    if args.check && datasets.is_empty() {
        // The graph's checks (sources, cycles, outputs, shared weights) without data: each
        // data-bound layer of size "auto" stands at one unit.
        Graph::compile(&descriptor, &placeholder_shapes(&descriptor))
            .with_context(|| net_path.display().to_string())?;
        if root {
            println!(
                "{}: a valid descriptor with {} layers (the data's sizes not checked: give \
                 -i/-o for the layer table)",
                net_path.display(),
                descriptor.layers.len()
            );
        }
        return Ok(None);
    }
    let graph = Graph::compile(&descriptor, &train::shapes(&datasets))
        .with_context(|| net_path.display().to_string())?;
    if args.check {
        if root {
            print!("{}", graph.layer_table());
        }
        return Ok(None);
    }
    let out = args
        .network_out
        .clone()
        .context("no output network file: pass -n NETWORK_OUT.nc")?;
    if out.exists() && !args.force {
        bail!("{} exists; pass --force to overwrite it", out.display());
    }
    let out_dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    if !out_dir.unwrap_or(Path::new(".")).is_dir() {
        bail!(
            "-n {}: the directory {} does not exist",
            out.display(),
            out_dir.unwrap_or(Path::new(".")).display()
        );
    }
    if args.resume.as_deref() == Some(out.as_path()) {
        bail!(
            "--resume and -n name the same file {}; write the result to another file",
            out.display()
        );
    }
    check_numbers(args)?;
    let optimizer: Optimizer = args.optimizer.into();
    let hyper = Hyper::for_optimizer(
        optimizer,
        args.alpha,
        args.lambda,
        args.lambda1,
        args.mu,
        args.mu1,
    );
    let schedule =
        LrSchedule::from_settings(descriptor.decay, args.alpha_interval, args.alpha_multiplier);
    // A minibatch larger than the data is one minibatch of all of it: buffers for the
    // examples there are (the same training, a memory estimate that fits the data).
    let examples = datasets.first().map_or(0, Dataset::examples);
    let batch = args.batch.min(examples.max(1));
    if batch < args.batch && root {
        tracing::info!(
            "-b {} exceeds the {examples} examples: minibatches of {batch}",
            args.batch
        );
    }
    let config = TrainConfig {
        epochs: args.epochs,
        batch,
        optimizer,
        hyper,
        schedule,
        seed: args.seed,
        shuffle: descriptor.shuffle_indices,
        first_epoch: 0,
        brake: !args.no_brake,
    };
    let mut inputs = vec![("the descriptor", net_path.clone())];
    inputs.extend(files.into_iter().map(|f| ("-i/-o", f)));
    inputs.extend(args.resume.iter().map(|p| ("--resume", p.clone())));
    inputs.extend(args.validation.iter().map(|p| ("--validation", p.clone())));
    let setup = Setup {
        datasets,
        graph,
        config,
        out,
        inputs,
    };
    setup.refuse_overwriting_inputs("-n", &setup.out)?;
    setup.refuse_overwriting_inputs("--metrics-log", &metrics_log(args, &setup.out))?;
    if let Some(plot) = &args.plot {
        moira_tools::watch::check_plot_path(plot)?;
        setup.refuse_overwriting_inputs("--plot", plot)?;
    }
    Ok(Some(setup))
}

/// Timed steps per candidate under `--parallel tune` (after one untimed).
const TUNE_STEPS: usize = 3;

/// `--parallel tune`: times [`TUNE_STEPS`] training steps of each way of splitting the work
/// (model, data, and the per-weight hybrid where it differs from both) on the first
/// minibatches of the data, each on a fresh network, and returns the fastest with the backend
/// back; rank 0 logs the times.
fn tune<B: Backend, C: Collective>(
    mut backend: B,
    comm: &C,
    setup: &Setup,
    seed: u64,
    choice: &Choice,
) -> Result<(Parallelism, B)> {
    let graph = &setup.graph;
    let mut candidates = vec![Parallelism::Model, Parallelism::Data];
    let data_layouts = moira::parallel::choice::data_layouts(graph);
    if choice.hybrid.contains(&moira::parallel::Layout::Rows) && choice.hybrid != data_layouts {
        candidates.push(Parallelism::Hybrid);
    }
    let data = DataBinding::new(graph, &setup.datasets, false)?;
    let config = &setup.config;
    let mut times = Vec::with_capacity(candidates.len());
    for mode in candidates {
        let (batch, optimizer) = (config.batch, config.optimizer);
        let mut network =
            Network::build_parallel(backend, comm, graph.clone(), batch, optimizer, seed, mode)?;
        let h = &config.hyper;
        let seconds = train::seconds_per_step(&mut network, &data, batch, TUNE_STEPS, h, seed)?;
        backend = network.into_backend();
        times.push((mode, seconds));
    }
    let best = times
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(Parallelism::Model, |t| t.0);
    if comm.rank() == 0 {
        let each: Vec<String> = times.iter().map(|(m, s)| format!("{m} {s:.4}")).collect();
        tracing::info!(
            "--parallel tune: seconds per step of {} examples (the mean of {TUNE_STEPS} after one \
             untimed, the slowest rank): {} -> {best}",
            config.batch,
            each.join(", ")
        );
    }
    Ok((best, backend))
}

/// One rank of an `mpirun` job: settles the parallelism (rank 0 logs the traffic of each
/// mode under `auto` and `hybrid`), and under model parallelism and a hybrid logs the plan
/// and keeps only this rank's columns of column-split data; builds this rank's network and
/// trains it.
fn train_sharded<B: Backend, C: Collective>(
    backend: B,
    comm: &C,
    args: &Args,
    mut setup: Setup,
) -> Result<()> {
    let threads = moira_tools::device::host_threads(args.threads);
    let (rank, size) = (comm.rank(), comm.size());
    let built = (|| -> Result<(Network<B, &C>, String)> {
        let batch = setup.config.batch;
        let choice = Choice::new(&setup.graph, size, batch)?;
        let asked: Parallelism = args.parallel.into();
        let tuned = args.parallel == ParallelArg::Tune;
        if rank == 0 && (tuned || matches!(asked, Parallelism::Auto | Parallelism::Hybrid)) {
            tracing::info!(
                "--parallel {}: {}",
                args.parallel,
                choice.to_string().trim_end()
            );
        }
        let (mode, backend) = match asked {
            // Exact sums sum whole weights' gradients: `auto` and `tune` take data parallelism.
            Parallelism::Auto if args.exact_chunk.is_some() => (Parallelism::Data, backend),
            _ if tuned => tune(backend, comm, &setup, args.seed, &choice)?,
            Parallelism::Auto => (choice.mode, backend),
            mode => (mode, backend),
        };
        let layouts = choice.layouts(&setup.graph, mode);
        if mode != Parallelism::Data {
            let plan = ShardPlan::with_layouts(&setup.graph, size, &layouts)?;
            if rank == 0 {
                tracing::info!("{}", plan.table(Some(batch)).trim_end());
            }
            retain_rank_columns(&setup.graph, &plan, rank, &mut setup.datasets)?;
        } else if rank == 0 {
            tracing::info!(
                "data parallelism: {size} ranks, each with the whole network, train on \
                 their shares of each minibatch of {batch}"
            );
        }
        let description = format!(
            "rank {rank} of {size} ({mode} parallelism): {} ({threads} host threads)",
            backend.description()
        );
        let config = &setup.config;
        let network = Network::build_parallel(
            backend,
            comm,
            setup.graph.clone(),
            config.batch,
            config.optimizer,
            args.seed,
            mode,
        )?;
        Ok((network, description))
    })();
    let (mut network, description) = ranks::agree(Some(comm), built)?;
    let bytes = network.buffer_bytes();
    train_net(&mut network, args, &setup, description, bytes)
}

/// Trains `network` (alone or one rank's part) and saves it to `setup.out` (rank 0 writes).
fn train_net<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    args: &Args,
    setup: &Setup,
    description: String,
    buffer_bytes: u64,
) -> Result<()> {
    let Setup {
        datasets,
        config,
        out,
        ..
    } = setup;
    let root = network.is_root();
    // The same answer on every rank (the same descriptor and mode), agreed all the same.
    let exact = network.set_exact_chunk(args.exact_chunk);
    network.agree(exact)?;
    if let (Some(chunk), true) = (args.exact_chunk, root) {
        tracing::info!(
            "exact sums: each minibatch in chunks of {chunk} examples, gradients summed in \
             64-bit fixed point (the same bits on any number of ranks)"
        );
    }
    let binding = DataBinding::new(network.graph(), datasets, false)?;
    let mut config = config.clone();
    let mut state = TrainState::default();
    if let Some(path) = &args.resume {
        let resumed = train::resume(path, network, &config)?;
        if resumed.epochs_done > args.epochs {
            bail!(
                "{} has already done {} epochs and -e asks for {} in all (-e is the total \
                 epoch count, counting those already done)",
                path.display(),
                resumed.epochs_done,
                args.epochs
            );
        }
        if resumed.epochs_done == args.epochs {
            // A run stopped after its last checkpoint: nothing left to train, only the final
            // network to write.
            tracing::info!(
                "{} has done all {} epochs: writing the final network",
                path.display(),
                args.epochs
            );
        }
        for d in &resumed.differences {
            tracing::warn!(
                "{}: {d}; the result will differ from that of an uninterrupted run",
                path.display()
            );
        }
        config.first_epoch = resumed.epochs_done;
        config.epochs = args.epochs - resumed.epochs_done;
        state = resumed.state;
        tracing::info!(
            "resuming from {} after {} epochs ({} updates)",
            path.display(),
            resumed.epochs_done,
            network.step_count()
        );
    }
    let plan =
        (args.checkpoint_every > 0).then(|| CheckpointPlan::beside(out, args.checkpoint_every));
    if let Some(plan) = &plan {
        for path in plan.planned(&config) {
            setup.refuse_overwriting_inputs("--checkpoint-every", &path)?;
        }
        if !args.force {
            if let Some(existing) = plan.planned(&config).into_iter().find(|p| p.exists()) {
                bail!(
                    "checkpoint {} exists; pass --force to overwrite it",
                    existing.display()
                );
            }
        }
    }
    // Rank 0 writes the files: it clears what interrupted saves left, and checks the room
    // for every file the run writes before it trains; the outcome is every rank's.
    let room = if root {
        prepare_outputs(network.graph(), out, plan.as_ref(), &config)
    } else {
        Ok(())
    };
    let shared = room
        .as_ref()
        .map(|_| ())
        .map_err(|e| moira::Error::InvalidData(format!("{e:#}")));
    if let Err(e) = network.agree(shared) {
        return Err(room.err().unwrap_or_else(|| e.into()));
    }
    let data_bytes: u64 = datasets.iter().map(dataset_bytes).sum();
    tracing::info!(
        "{} examples; {description}; memory estimate {:.1} MiB (data {:.1}, network {:.1})",
        binding.examples(),
        (data_bytes + buffer_bytes) as f64 / 1048576.0,
        data_bytes as f64 / 1048576.0,
        buffer_bytes as f64 / 1048576.0
    );
    let mut validation = args
        .validation
        .as_ref()
        .map(|p| load_validation(p, args, config.batch))
        .transpose()?;
    if let Some(s) = moira_tools::select::selection(args.select_by.as_deref(), args.patience, out)?
    {
        setup.refuse_overwriting_inputs("--select-by", &s.best_model)?;
        let v = validation
            .as_mut()
            .context("--select-by needs --validation HELDOUT.nc")?;
        let (resume, done) = (args.resume.as_deref(), config.first_epoch);
        moira_tools::select::prepare(network, v, s, resume, &state, done, args.force)?;
    }
    let log_path = metrics_log(args, out);
    let keep_epochs = args.resume.is_some().then_some(config.first_epoch);
    let mut progress = if root {
        let (tb, plot) = (args.tensorboard.as_deref(), args.plot.as_deref());
        let outputs = moira_tools::watch::Outputs::create(tb, plot, &log_path)?;
        let p = Progress::new(&log_path, binding.examples(), keep_epochs)?;
        Some(outputs.around(p))
    } else {
        None
    };
    let started = Instant::now();
    let observer: &mut dyn Observer = match progress.as_mut() {
        Some(p) => p,
        None => &mut train::Quiet,
    };
    let trained = train::train_with(
        network,
        &binding,
        &config,
        validation.as_ref(),
        observer,
        &mut state,
        plan.as_ref(),
    );
    if let Err(e) = trained {
        // A checkpoint that could not be written (a full disk, say) must not lose the
        // trained weights: every rank learns whether rank 0's error was a write error, and
        // then they save the network elsewhere together.
        let mut write_failed = [u64::from(
            network.is_root() && matches!(e, moira::Error::NetCdf { .. } | moira::Error::Io { .. }),
        )];
        network
            .comm()
            .all_reduce(&mut write_failed, moira::collective::ReduceOp::Max)?;
        if write_failed[0] == 1 {
            let headline = format!("training stopped: {e}");
            return Err(rescue(network, out, headline, plan.as_ref(), &config));
        }
        return Err(e.into());
    }
    if let Some(p) = progress.as_mut() {
        p.inner.finish();
    }
    // Collective: the ranks' blocks stream to rank 0, which writes (with --select-by, rank 0
    // renames the best epoch's model instead).
    let selected = validation.as_ref().and_then(|v| v.select.as_ref());
    let saved = match moira_tools::select::finish(network, selected, state.best, out) {
        Some(kept) => kept,
        None => network.save(out, Extras::default(), &[], true),
    };
    let saved = match saved {
        Err(moira::Error::NonFiniteWeight { weight }) => Err(moira::Error::Diverged {
            epoch: config.first_epoch + config.epochs,
            batch: None,
            message: format!(
                "weight {weight} has NaN or infinite values after the last epoch; {} was not \
                 written",
                out.display()
            ),
        }),
        other => other,
    };
    // A write error on rank 0 (not a refusal of non-finite weights) sends every rank to the
    // rescue, which is collective.
    let mut write_failed = [u64::from(matches!(
        saved,
        Err(moira::Error::NetCdf { .. } | moira::Error::Io { .. })
    ))];
    network
        .comm()
        .all_reduce(&mut write_failed, moira::collective::ReduceOp::Max)?;
    match network.agree(saved) {
        Ok(()) => {}
        Err(e) if write_failed[0] == 1 => {
            let headline = format!("{} could not be written: {e}", out.display());
            return Err(rescue(network, out, headline, plan.as_ref(), &config));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        "trained {} epochs in {:.1} s; saved {}; metrics in {}",
        trained.as_ref().map_or(config.epochs as usize, Vec::len),
        started.elapsed().as_secs_f64(),
        out.display(),
        log_path.display()
    );
    Ok(())
}

fn load_validation(path: &Path, args: &Args, batch: usize) -> Result<Validation> {
    let mut sets = netcdf::read(path)?;
    if sets.len() != 1 {
        bail!(
            "{}: a held-out file must hold one dataset, it holds {}",
            path.display(),
            sets.len()
        );
    }
    let set = sets.remove(0);
    let held_out = set
        .sparse_data()
        .cloned()
        .with_context(|| format!("{}: the held-out dataset must be sparse", path.display()))?;
    Ok(Validation {
        held_out,
        ks: args.validation_k.clone(),
        every: args.validate_every,
        batch,
        select: None,
    })
}

fn dataset_bytes(d: &Dataset) -> u64 {
    match d.sparse_data() {
        Some(csr) => {
            8 * (csr.n_rows() as u64 + 1)
                + 4 * csr.nnz() as u64
                + csr.values().map_or(0, |v| 4 * v.len() as u64)
        }
        None => 4 * d.dense_data().map_or(0, |v| v.len() as u64),
    }
}
