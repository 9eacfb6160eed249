//! `moira._moira.Core`: the native half of `moira.Recommender` (the Python layer turns its
//! arguments into canonical CSR parts and holds the defaults and docstrings).

use std::path::PathBuf;

use moira::checkpoint::{load_model, save_model, Extras, Model};
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::predict::{FilterMode, RankingMetrics, NO_ITEM};
use moira::train::SelectBy;
use numpy::{IntoPyArray, PyArray2};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{matrix, Parts};
use crate::data::{self, Matrices};
use crate::errors::{invalid, IntoPy};
use crate::fit::{self, Job, PyObserver, Start, StateFile};
use crate::predict::{self, Ask};
use crate::settings::{RawSettings, Settings};

/// A network descriptor, its settings, and once fitted or loaded the model (and after a `fit`
/// its whole training state, to continue from).
#[pyclass(module = "moira._moira")]
pub struct Core {
    descriptor: Descriptor,
    settings: Settings,
    /// The weights: the last `fit`'s, or a loaded file's whole content (a loaded checkpoint
    /// keeps its training state in the extras).
    model: Option<Model>,
    /// The last `fit`'s training state.
    state: Option<StateFile>,
    /// Epochs trained in all (0 when unknown: a final network, a DSSTNE file).
    epochs_done: u64,
}

impl Core {
    fn model(&self) -> PyResult<&Model> {
        self.model.as_ref().ok_or_else(|| {
            PyRuntimeError::new_err("the Recommender is not fitted: call fit() or moira.load()")
        })
    }
}

/// `(items int32[n, k], scores float32[n, k])`.
type Recommendations<'py> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray2<f32>>);

/// `ks` checked as metric cutoffs (`ValueError`: none, or 0).
fn metrics(ks: &[usize]) -> PyResult<RankingMetrics> {
    RankingMetrics::new(ks).py()
}

#[pymethods]
impl Core {
    /// `descriptor`: a JSON text, or with `is_path` a file; `settings`: a dict of every
    /// [`RawSettings`] field.
    #[new]
    fn new(
        py: Python<'_>,
        descriptor: &str,
        is_path: bool,
        settings: RawSettings,
    ) -> PyResult<Self> {
        let settings = Settings::new(&settings)?;
        let descriptor = py
            .detach(|| {
                if is_path {
                    Descriptor::from_file(descriptor)
                } else {
                    Descriptor::from_str(descriptor, "<descriptor>")
                }
            })
            .py()?;
        Ok(Core {
            descriptor,
            settings,
            model: None,
            state: None,
            epochs_done: 0,
        })
    }

    /// Loads a model file (`trainer`'s, a checkpoint, DSSTNE's, or one `save` wrote).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf, settings: RawSettings) -> PyResult<Self> {
        let settings = Settings::new(&settings)?;
        let model = py.detach(|| load_model(&path)).py()?;
        Ok(Core {
            descriptor: model.descriptor.clone(),
            settings,
            epochs_done: model.extras.scalar("epoch").unwrap_or(0),
            model: Some(model),
            state: None,
        })
    }

    /// Whether a model is there (fitted or loaded).
    #[getter]
    fn fitted(&self) -> bool {
        self.model.is_some()
    }

    /// Epochs the model has been trained (0 when unknown: a final network, a DSSTNE file).
    #[getter]
    fn epochs_trained(&self) -> u64 {
        self.epochs_done
    }

    /// The layer table of the fitted or loaded network.
    fn summary(&self) -> PyResult<String> {
        let model = self.model()?;
        let graph =
            Graph::compile(&model.descriptor, &moira::predict::model_shapes(model, &[])).py()?;
        Ok(graph.layer_table())
    }

    /// Trains; returns the epochs' reports, the settings that differ from those of a loaded
    /// checkpoint, and with `select_by` the epoch kept. On any error or exception (Ctrl-C
    /// included) the model stays as it was.
    // The Python method's parameters, one for one.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (x, y, validation, validation_k, validate_every, epochs, callback, select_by, patience))]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        x: Matrices<'py>,
        y: Option<Matrices<'py>>,
        validation: Option<Parts<'py>>,
        validation_k: Vec<usize>,
        validate_every: u32,
        epochs: Option<u32>,
        callback: Option<Py<PyAny>>,
        select_by: Option<&str>,
        patience: Option<u32>,
    ) -> PyResult<(Bound<'py, PyList>, Vec<String>, Option<u32>)> {
        let select = match (select_by, &validation) {
            (Some(by), Some(_)) => Some((by.parse::<SelectBy>().py()?, patience)),
            (Some(_), None) => {
                return Err(invalid(
                    "select_by",
                    "given without validation data; pass validation=HELD_OUT",
                ))
            }
            (None, _) if patience.is_some() => {
                return Err(invalid("patience", "given without select_by"))
            }
            (None, _) => None,
        };
        let descriptor = self
            .model
            .as_ref()
            .map_or(&self.descriptor, |m| &m.descriptor);
        let datasets = data::training(descriptor, &x, y.as_ref())?;
        drop((x, y)); // the read borrows of the NumPy arrays end here: the engine has copies
        let validation = match validation {
            Some(v) => {
                metrics(&validation_k)?; // checked now rather than after the first epoch
                Some((v.to_csr("validation", true)?, validation_k, validate_every))
            }
            None => None,
        };
        let start = match (&self.state, &self.model) {
            (Some(f), _) => Start::Resume(&f.path),
            (None, Some(m)) if m.extras.scalar("checkpoint_format").is_some() => {
                Start::Checkpoint(m)
            }
            (None, Some(m)) => Start::Weights(m, u32::try_from(self.epochs_done).unwrap_or(0)),
            (None, None) => Start::Fresh,
        };
        let job = Job {
            descriptor,
            start,
            settings: &self.settings,
            epochs: epochs.unwrap_or(self.settings.epochs),
            datasets: &datasets,
            validation,
            select,
        };
        let mut observer = PyObserver::new(callback);
        let fitted = py.detach(|| fit::run(job, &mut observer));
        let fitted = match (fitted, observer.error.take()) {
            (Ok(f), _) => f,
            (Err(_), Some(python)) => return Err(python),
            (Err(e), None) => return Err(crate::errors::to_py(e)),
        };
        let history = PyList::empty(py);
        for r in &fitted.reports {
            history.append(fit::report_dict(py, r)?)?;
        }
        self.model = Some(fitted.model);
        self.state = fitted.state;
        self.epochs_done = u64::from(fitted.epochs_done);
        let selected = fitted.selected.map(|b| b.epoch);
        Ok((history, fitted.differences, selected))
    }

    /// The top-`k` items of each row: `(items int32[n, k], scores float32[n, k])`, `-1` and
    /// `-inf` past the eligible items.
    // The Python method's parameters, one for one.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (x, k, exclude_seen, filter, filter_mode, n_items, batch))]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        x: Matrices<'py>,
        k: usize,
        exclude_seen: bool,
        filter: Option<Parts<'py>>,
        filter_mode: &str,
        n_items: Option<usize>,
        batch: usize,
    ) -> PyResult<Recommendations<'py>> {
        let model = self.model()?;
        if k == 0 {
            return Err(invalid("k", "0; ask for at least one recommendation"));
        }
        let mode = match filter_mode {
            "exclude" => FilterMode::Exclude,
            "multiply" => FilterMode::Multiply,
            other => {
                return Err(invalid(
                    "filter_mode",
                    format!("`{other}`; use \"exclude\" or \"multiply\""),
                ))
            }
        };
        let datasets = data::inputs(&model.descriptor, &x)?;
        let n = datasets.first().map_or(0, |d| d.examples());
        let filter = filter
            .map(|f| f.to_csr("filter", mode == FilterMode::Exclude))
            .transpose()?;
        let (mut items, mut scores) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
        let ask = Ask {
            k,
            n_items,
            exclude_seen,
            filter: filter.as_ref().map(|f| (f, mode)),
            layer: None,
            evaluate: None,
            batch,
        };
        py.detach(|| {
            predict::run(model, &datasets, &self.settings, ask, |b| {
                for i in 0..b.len() {
                    let (ranked, s) = b.recommendations(i);
                    items.extend(
                        ranked
                            .iter()
                            .map(|&r| if r == NO_ITEM { -1 } else { r as i32 }),
                    );
                    scores.extend_from_slice(s);
                }
                Ok(())
            })
        })?;
        Ok((matrix(py, items, n, k)?, matrix(py, scores, n, k)?))
    }

    /// The activations of `layer` for each row: `float32[n, units]`.
    fn embed<'py>(
        &self,
        py: Python<'py>,
        x: Matrices<'py>,
        layer: &str,
        batch: usize,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let model = self.model()?;
        let datasets = data::inputs(&model.descriptor, &x)?;
        let n = datasets.first().map_or(0, |d| d.examples());
        let mut values = Vec::new();
        let ask = Ask {
            k: 0,
            n_items: None,
            exclude_seen: false,
            filter: None,
            layer: Some(layer),
            evaluate: None,
            batch,
        };
        let units = py.detach(|| {
            predict::run(model, &datasets, &self.settings, ask, |b| {
                if let Some(m) = b.layer {
                    if values.is_empty() {
                        values.reserve_exact(n * m.cols());
                    }
                    values.extend_from_slice(m.data());
                }
                Ok(())
            })
        })?;
        matrix(py, values, n, units)
    }

    /// P@K, Recall@K and NDCG@K against `held_out`: `{"precision@K": …, "recall@K": …,
    /// "ndcg@K": …, "users": evaluated rows}` (NaN means when no row has held-out items).
    // The Python method's parameters, one for one.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (x, held_out, ks, exclude_seen, n_items, batch))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        x: Matrices<'py>,
        held_out: Parts<'py>,
        ks: Vec<usize>,
        exclude_seen: bool,
        n_items: Option<usize>,
        batch: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let model = self.model()?;
        let datasets = data::inputs(&model.descriptor, &x)?;
        let held_out = held_out.to_csr("heldout", true)?;
        let mut acc = metrics(&ks)?;
        let ask = Ask {
            k: 0,
            n_items,
            exclude_seen,
            filter: None,
            layer: None,
            evaluate: Some((&held_out, &mut acc)),
            batch,
        };
        py.detach(|| predict::run(model, &datasets, &self.settings, ask, |_| Ok(())))?;
        let d = PyDict::new(py);
        for &k in acc.ks() {
            let at = acc.mean_at(k);
            let (p, r, g) = at.map_or((f64::NAN, f64::NAN, f64::NAN), |m| {
                (m.precision, m.recall, m.ndcg)
            });
            d.set_item(format!("precision@{k}"), p)?;
            d.set_item(format!("recall@{k}"), r)?;
            d.set_item(format!("ndcg@{k}"), g)?;
        }
        d.set_item("users", acc.users())?;
        Ok(d)
    }

    /// Saves the model in DSSTNE's schema: the weights alone (as `trainer -n` writes them),
    /// or with `include_optimizer` and a training state (after `fit`, or of a loaded
    /// checkpoint) a Moira checkpoint that `trainer --resume` and `load(...).fit()` continue.
    fn save(&self, py: Python<'_>, path: PathBuf, include_optimizer: bool) -> PyResult<()> {
        let model = self.model()?;
        py.detach(|| match (&self.state, include_optimizer) {
            (Some(state), true) => save_model(&path, &load_model(&state.path)?),
            (None, true) => save_model(&path, model),
            (_, false) => {
                let weights = Model {
                    descriptor: model.descriptor.clone(),
                    weights: model.weights.clone(),
                    batch_norm: model.batch_norm.clone(),
                    extras: Extras::default(),
                };
                save_model(&path, &weights)
            }
        })
        .py()
    }

    /// `{"<input layer>-><output layer>": (weights float32[in, out] or None when shared,
    /// bias float32[out])}`, copies of the model's.
    fn get_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let model = self.model()?;
        let d = PyDict::new(py);
        for w in &model.weights {
            let key = format!("{}->{}", w.input_layer, w.output_layer);
            let weights = match w.shared {
                Some(_) => None,
                None => Some(matrix(py, w.data.clone(), w.rows, w.cols)?),
            };
            d.set_item(key, (weights, w.bias.clone().into_pyarray(py)))?;
        }
        Ok(d)
    }
}
