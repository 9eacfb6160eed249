//! `Recommender.fit`: the trainer's library calls (`Network::build`, `train::resume`,
//! `train::train_with`, `train::save_checkpoint`) with the GIL released, and an observer
//! that briefly takes the GIL back after each minibatch to honour Ctrl-C and to drive the
//! Python progress callback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moira::backend::device::{choose, host_threads};
use moira::checkpoint::{load_model, save_model, Extras, Model};
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::sparse::Csr;
use moira::train::{
    self, Best, DataBinding, EpochReport, Observer, SelectBy, Selection, TrainState, Validation,
};
use moira::Error;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::settings::Settings;

/// How often the progress callback hears of minibatches (it always hears of the last one).
const CALLBACK_EVERY: Duration = Duration::from_millis(100);

/// A checkpoint file of the Recommender's own, in a private temporary directory (removed
/// when dropped): the whole training state after a `fit`, which the next `fit` resumes.
pub struct StateFile {
    _dir: tempfile::TempDir,
    /// The file.
    pub path: PathBuf,
}

impl StateFile {
    pub fn new() -> moira::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("moira-state-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let path = dir.path().join("checkpoint.nc");
        Ok(StateFile { _dir: dir, path })
    }
}

/// What a finished `fit` leaves.
pub struct Fitted {
    /// The trained weights (no training state), to predict with and to save: the selected
    /// epoch's with model selection.
    pub model: Model,
    /// The whole training state, to continue from; `None` when model selection kept an
    /// earlier epoch than the last (a later `fit` starts from its weights).
    pub state: Option<StateFile>,
    /// Epochs trained in all, this call's included (up to the selected epoch's end).
    pub epochs_done: u32,
    /// With model selection: the epoch kept and its metric.
    pub selected: Option<Best>,
    /// One report per epoch.
    pub reports: Vec<EpochReport>,
    /// Settings that differ from those of the checkpoint training continued from (a loaded
    /// checkpoint), as readable lines.
    pub differences: Vec<String>,
}

/// Where a `fit` starts.
pub enum Start<'a> {
    /// The seed's initialisation, as the trainer's fresh run.
    Fresh,
    /// The training state of a previous `fit`, continued exactly as `trainer --resume`
    /// continues a checkpoint.
    Resume(&'a Path),
    /// A loaded checkpoint (a model with training state), continued the same way (through a
    /// temporary file: the library resumes from files).
    Checkpoint(&'a Model),
    /// A model's weights with a fresh optimizer state (a final network, a DSSTNE file, the
    /// epoch model selection kept), and the epochs they were trained (0 when unknown), from
    /// which the epoch count goes on.
    Weights(&'a Model, u32),
}

/// What a `fit` call trains on and how.
pub struct Job<'a> {
    /// The descriptor to compile: the model's when continuing, else the Recommender's.
    pub descriptor: &'a Descriptor,
    pub start: Start<'a>,
    pub settings: &'a Settings,
    /// Epochs to train in this call.
    pub epochs: u32,
    pub datasets: &'a [Dataset],
    /// Held-out items, cutoffs and frequency of the per-epoch validation.
    pub validation: Option<(Csr, Vec<usize>, u32)>,
    /// Model selection on the validation (`trainer --select-by … --patience …`): the metric,
    /// and the epochs without improvement after which training stops.
    pub select: Option<(SelectBy, Option<u32>)>,
}

/// Observes training for Python: after each minibatch it checks for signals (Ctrl-C raises
/// `KeyboardInterrupt` there) and calls `callback("batch", epoch, done, total, loss)` at most
/// every [`CALLBACK_EVERY`] and at the end of each epoch; after each epoch it calls
/// `callback("epoch", report)`. The first Python error stops training after that minibatch
/// and is kept in `error` for `fit` to raise.
pub struct PyObserver {
    callback: Option<Py<PyAny>>,
    last: Option<Instant>,
    /// The Python exception that stopped training.
    pub error: Option<PyErr>,
}

impl PyObserver {
    pub fn new(callback: Option<Py<PyAny>>) -> Self {
        PyObserver {
            callback,
            last: None,
            error: None,
        }
    }

    /// Runs `f` with the GIL; a Python error is kept and stops training.
    fn with_python(
        &mut self,
        f: impl FnOnce(Python<'_>, &mut Self) -> PyResult<()>,
    ) -> moira::Result<()> {
        match Python::attach(|py| py.check_signals().and_then(|()| f(py, self))) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.error = Some(e);
                Err(Error::invalid_argument(
                    "fit",
                    "stopped by a Python exception (a callback's or Ctrl-C)",
                ))
            }
        }
    }
}

impl Observer for PyObserver {
    fn on_batch(&mut self, epoch: u32, done: usize, total: usize, loss: f64) -> moira::Result<()> {
        self.with_python(|py, me| {
            let due = done == total || me.last.is_none_or(|t| t.elapsed() >= CALLBACK_EVERY);
            if let (true, Some(cb)) = (due, &me.callback) {
                cb.call1(py, ("batch", epoch, done, total, loss))?;
                me.last = Some(Instant::now());
            }
            Ok(())
        })
    }

    fn on_epoch(&mut self, report: &EpochReport) -> moira::Result<()> {
        self.with_python(|py, me| {
            if let Some(cb) = &me.callback {
                cb.call1(py, ("epoch", report_dict(py, report)?))?;
            }
            Ok(())
        })
    }
}

/// One epoch as a dict: `epoch`, `loss`, `time` (seconds), `examples_per_second`,
/// `learning_rate`, and after a validation `val_precision@K`, `val_recall@K`, `val_ndcg@K`.
pub fn report_dict<'py>(py: Python<'py>, r: &EpochReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", r.epoch)?;
    d.set_item("loss", r.loss)?;
    d.set_item("time", r.seconds)?;
    d.set_item("examples_per_second", r.examples_per_second)?;
    d.set_item("learning_rate", r.learning_rate)?;
    if let Some(m) = &r.validation {
        for at in m.means() {
            d.set_item(format!("val_precision@{}", at.k), at.precision)?;
            d.set_item(format!("val_recall@{}", at.k), at.recall)?;
            d.set_item(format!("val_ndcg@{}", at.k), at.ndcg)?;
        }
    }
    Ok(d)
}

/// Trains as `job` says (call it without the GIL), then writes the training state to a new
/// [`StateFile`] and takes the weights (refusing NaN or infinite ones: [`Error::Diverged`]).
pub fn run(job: Job<'_>, observer: &mut PyObserver) -> moira::Result<Fitted> {
    let s = job.settings;
    let graph = Graph::compile(job.descriptor, &train::shapes(job.datasets))?;
    let binding = DataBinding::new(&graph, job.datasets, false)?;
    // The best epoch so far is kept in a file of its own (as the trainer's NAME.best.nc).
    let best_file = job.select.map(|_| StateFile::new()).transpose()?;
    let selection = job
        .select
        .zip(best_file.as_ref())
        .map(|((by, patience), file)| Selection {
            by,
            patience,
            best_model: file.path.clone(),
        });
    let validation = job
        .validation
        .clone()
        .map(|(held_out, ks, every)| Validation {
            held_out,
            ks,
            every,
            batch: s.batch,
            select: selection,
        });
    let chosen = choose(s.device, s.threads, s.tf32)?;
    host_threads(s.threads);
    moira::with_backend!(chosen, |backend| {
        let mut network = Network::build(backend, graph, s.batch, s.optimizer, s.seed)?;
        network.set_exact_chunk(s.exact_chunk)?;
        let mut config = s.train_config(job.descriptor, job.epochs, 0);
        let mut state = TrainState::default();
        let mut differences = Vec::new();
        let written;
        let resume_from = match job.start {
            Start::Fresh => None,
            Start::Weights(model, epochs_done) => {
                network.load_weights(model)?;
                config.first_epoch = epochs_done;
                None
            }
            Start::Resume(path) => Some(path),
            Start::Checkpoint(model) => {
                written = StateFile::new()?;
                save_model(&written.path, model)?;
                Some(written.path.as_path())
            }
        };
        if let Some(path) = resume_from {
            let resumed = train::resume(path, &mut network, &config)?;
            config.first_epoch = resumed.epochs_done;
            state = resumed.state;
            differences = resumed.differences;
        }
        // Selection chooses among this call's epochs.
        state.best = None;
        let reports = train::train_with(
            &mut network,
            &binding,
            &config,
            validation.as_ref(),
            observer,
            &mut state,
            None,
        )?;
        // Patience may stop before the last epoch asked for.
        let epochs_done = reports.last().map_or(config.first_epoch, |r| r.epoch + 1);
        let file = StateFile::new()?;
        match train::save_checkpoint(&network, &config, &state, epochs_done, &file.path) {
            Err(Error::NonFiniteWeight { weight }) => Err(Error::Diverged {
                epoch: epochs_done.saturating_sub(1),
                batch: None,
                message: format!(
                    "weight {weight} has NaN or infinite values after the last epoch; the \
                     Recommender keeps its previous state"
                ),
            }),
            other => other,
        }?;
        let selected = state.best;
        Ok(match (selected, &best_file) {
            (Some(best), Some(best_file)) if best.epoch + 1 < epochs_done => Fitted {
                model: load_model(&best_file.path)?,
                state: None,
                epochs_done: best.epoch + 1,
                selected,
                reports,
                differences,
            },
            _ => Fitted {
                model: network.to_model(Extras::default())?,
                state: Some(file),
                epochs_done,
                selected,
                reports,
                differences,
            },
        })
    })
}
