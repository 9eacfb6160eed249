//! Model selection on a validation split: keep the weights of the epoch whose validation
//! metric is best, and stop after `patience` epochs without improvement (RecBole's
//! `stopping_step`, Keras' `EarlyStopping(restore_best_weights=True)`).
//!
//! Contract, for a [`Selection`] attached to a [`Validation`](super::Validation):
//!
//! - after every epoch whose validation ran, `v` = the chosen metric ([`SelectBy`]) of that
//!   epoch; the epoch *improves* when no epoch was selected yet or `v` is strictly greater
//!   than the best value so far (a tie keeps the earlier epoch);
//! - on improvement, the network is saved to [`Selection::best_model`] (a streamed save:
//!   rank 0 writes, no rank holds the whole model; the file's extras carry
//!   `selected_epoch` and `selected_value` = `f64::to_bits(v)`), and [`TrainState::best`]
//!   becomes `(epoch, v)`;
//! - training stops after an epoch `e` with `e − best.epoch ≥ patience` (epochs, not
//!   validations).
//!
//! The cost: one model save per improving epoch (disk bandwidth, no extra memory); the
//! best-so-far model lives on disk beside the output, not in memory, so huge models are not
//! doubled. The caller renames `best_model` over its output at the end.
//!
//! Ranks: the metrics are computed from the same ranked lists on every rank, so they agree;
//! the value is nevertheless made common (the maximum of its bits over the ranks, which for
//! the non-negative metrics is the maximum value) so that every rank takes the same
//! decision whatever happens. The best epoch and value are in the checkpoints
//! ([`super::resume`]), so a resumed run selects the epoch an uninterrupted one would.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{EpochReport, TrainState};
use crate::backend::traits::Backend;
use crate::checkpoint::Extras;
use crate::collective::{Collective, ReduceOp};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::predict::metrics::{AtK, RankingMetrics};

/// The metric a [`Selection`] maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// P@K.
    Precision,
    /// Recall@K = hits / min(K, |H|).
    Recall,
    /// hits / |H| (LightGCN's recall).
    RecallFull,
    /// NDCG@K.
    Ndcg,
}

/// A metric at a cutoff, written `ndcg@20`, `recall@20`, `recall_full@20` or
/// `precision@10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectBy {
    pub metric: Metric,
    pub k: usize,
}

impl SelectBy {
    /// The metric's value in `means` at this cutoff, if measured.
    pub fn value(&self, metrics: &RankingMetrics) -> Option<f64> {
        let m: AtK = metrics.mean_at(self.k)?;
        Some(match self.metric {
            Metric::Precision => m.precision,
            Metric::Recall => m.recall,
            Metric::RecallFull => m.recall_full,
            Metric::Ndcg => m.ndcg,
        })
    }
}

impl fmt::Display for SelectBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.metric {
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::RecallFull => "recall_full",
            Metric::Ndcg => "ndcg",
        };
        write!(f, "{name}@{}", self.k)
    }
}

impl FromStr for SelectBy {
    type Err = Error;

    /// Parses `METRIC@K` (case-insensitive): `precision`, `recall`, `recall_full` or `ndcg`,
    /// and a cutoff K ≥ 1.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid_argument(
                "select-by",
                format!(
                    "`{s}`: {why}; expected METRIC@K with METRIC one of precision, recall, \
                     recall_full, ndcg (e.g. ndcg@20)"
                ),
            )
        };
        let (name, k) = s.split_once('@').ok_or_else(|| bad("no `@K`"))?;
        let metric = match name.trim().to_ascii_lowercase().as_str() {
            "precision" | "p" => Metric::Precision,
            "recall" => Metric::Recall,
            "recall_full" => Metric::RecallFull,
            "ndcg" => Metric::Ndcg,
            _ => return Err(bad("unknown metric")),
        };
        let k: usize = k.trim().parse().map_err(|_| bad("K is not a number"))?;
        if k == 0 {
            return Err(bad("K must be at least 1"));
        }
        Ok(SelectBy { metric, k })
    }
}

/// Model selection: what to maximise, when to stop, where the best model so far is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// The metric (its cutoff must be one of the validation's).
    pub by: SelectBy,
    /// Stop after this many epochs without improvement; `None`: run every epoch.
    pub patience: Option<u32>,
    /// Where the best model so far is saved (replaced on each improvement).
    pub best_model: PathBuf,
}

impl Selection {
    /// The conventional place of the best model beside the output `out`:
    /// `model.nc` → `model.best.nc`.
    pub fn beside(out: &Path) -> PathBuf {
        let stem = if out.extension().is_some_and(|e| e == "nc") {
            out.with_extension("")
        } else {
            out.to_path_buf()
        };
        let mut name = stem.into_os_string();
        name.push(".best.nc");
        PathBuf::from(name)
    }

    /// Errors when the metric's cutoff is not among the validation cutoffs `ks`.
    pub(crate) fn check(&self, ks: &[usize]) -> Result<()> {
        if ks.contains(&self.by.k) {
            Ok(())
        } else {
            Err(Error::invalid_argument(
                "select-by",
                format!(
                    "{} needs K = {} among the validation cutoffs {ks:?}",
                    self.by, self.by.k
                ),
            ))
        }
    }
}

/// The selected epoch: the best validated so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Best {
    /// Epoch number (0-based).
    pub epoch: u32,
    /// Its value of the selection metric.
    pub value: f64,
}

/// Extras names of the selected epoch and its value in a best model and in checkpoints.
pub(crate) const EPOCH: &str = "selected_epoch";
pub(crate) const VALUE: &str = "selected_value";

impl Best {
    /// As extras scalars (`selected_epoch`, `selected_value` as `f64::to_bits`).
    pub(crate) fn scalars(&self) -> [(String, u64); 2] {
        [
            (EPOCH.to_owned(), u64::from(self.epoch)),
            (VALUE.to_owned(), self.value.to_bits()),
        ]
    }

    /// From extras scalars; `None` when absent. Errors name `path` for an epoch past 32 bits.
    pub(crate) fn from_extras(extras: &Extras, path: &Path) -> Result<Option<Best>> {
        match (extras.scalar(EPOCH), extras.scalar(VALUE)) {
            (Some(epoch), Some(value)) => Ok(Some(Best {
                epoch: u32::try_from(epoch).map_err(|_| {
                    Error::netcdf(
                        path,
                        Some(EPOCH),
                        format!("{epoch} does not fit in 32 bits"),
                    )
                })?,
                value: f64::from_bits(value),
            })),
            _ => Ok(None),
        }
    }
}

/// After the epoch of `report` (whose validation, if it ran, is measured): updates
/// `state.best`, saves the network to `selection.best_model` when the epoch improves, and
/// returns whether training stops here (patience run out). Collective; every rank returns
/// the same. See the [module documentation](self).
pub(crate) fn after_epoch<B: Backend, C: Collective>(
    network: &Network<B, C>,
    selection: &Selection,
    state: &mut TrainState,
    report: &EpochReport,
) -> Result<bool> {
    let Some(metrics) = &report.validation else {
        return Ok(false);
    };
    let local = selection.by.value(metrics).ok_or_else(|| {
        Error::InvalidData(format!(
            "no user has held-out items, so {} cannot be measured",
            selection.by
        ))
    });
    let local = network.agree(local)?;
    let mut bits = [local.to_bits()];
    network.comm().all_reduce(&mut bits, ReduceOp::Max)?;
    let value = f64::from_bits(bits[0]);
    let epoch = report.epoch;
    if state.best.is_none_or(|b| value > b.value) {
        let best = Best { epoch, value };
        let extras = Extras {
            scalars: best.scalars().to_vec(),
            ..Extras::default()
        };
        let saved = network.save(&selection.best_model, extras, &[], true);
        network.agree(saved)?;
        state.best = Some(best);
        if network.is_root() {
            tracing::info!(
                "epoch {epoch}: {} {value:.4}, the best so far: saved to {}",
                selection.by,
                selection.best_model.display()
            );
        }
    }
    let best = state.best.expect("set above or before");
    let stop = selection
        .patience
        .is_some_and(|p| epoch.saturating_sub(best.epoch) >= p);
    if stop && network.is_root() {
        tracing::info!(
            "epoch {epoch}: no improvement of {} for {} epochs (best {:.4} at epoch {}): \
             stopping",
            selection.by,
            epoch - best.epoch,
            best.value,
            best.epoch
        );
    }
    Ok(stop)
}

/// Checks, at resume, that the best model kept by the interrupted run is the one `state`
/// selected (`best` read from the checkpoint at `checkpoint`, `epochs_done` epochs done):
/// the file must exist and hold that epoch, or a later epoch than the checkpoint (saved by
/// the interrupted run after it: a run resumed with the same settings passes that epoch
/// again and saves it again). Errors name the files.
pub fn check_best_model(
    selection: &Selection,
    best: Option<Best>,
    epochs_done: u32,
    checkpoint: &Path,
) -> Result<()> {
    let Some(best) = best else {
        return Ok(());
    };
    let path = &selection.best_model;
    if !path.exists() {
        return Err(Error::InvalidData(format!(
            "{} selected epoch {} ({} {:.4}), but its model {} is missing: the run cannot \
             keep that epoch; start again, or resume from a checkpoint taken before it",
            checkpoint.display(),
            best.epoch,
            selection.by,
            best.value,
            path.display()
        )));
    }
    let kept = Best::from_extras(&crate::checkpoint::load_extras(path)?, path)?;
    match kept {
        Some(k) if k.epoch == best.epoch || k.epoch >= epochs_done => Ok(()),
        other => Err(Error::InvalidData(format!(
            "{} holds {}, but {} selected epoch {}: the best model does not belong to this \
             checkpoint; start again, or resume from the run's own checkpoints",
            path.display(),
            other.map_or("no selected epoch".to_owned(), |k| format!(
                "epoch {}",
                k.epoch
            )),
            checkpoint.display(),
            best.epoch
        ))),
    }
}

/// At the end of training: renames the best model (the epoch `best` names, checked in the
/// file's extras) over `out`, and returns `best`. Call it on the rank that writes (rank 0).
/// Errors name the files: the best model is missing or holds another epoch (a resumed run
/// that ended before the epoch the interrupted run had saved), or the rename fails.
pub fn keep_best(selection: &Selection, best: Best, out: &Path) -> Result<Best> {
    let path = &selection.best_model;
    let kept = Best::from_extras(&crate::checkpoint::load_extras(path)?, path)?;
    if kept.map(|k| k.epoch) != Some(best.epoch) {
        return Err(Error::InvalidData(format!(
            "{} holds {}, but the run selected epoch {}; {} was not written",
            path.display(),
            kept.map_or("no selected epoch".to_owned(), |k| format!(
                "epoch {}",
                k.epoch
            )),
            best.epoch,
            out.display()
        )));
    }
    std::fs::rename(path, out).map_err(|e| Error::io(out, e))?;
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_by_parses_and_prints() {
        let s: SelectBy = "NDCG@20".parse().unwrap();
        assert_eq!(
            s,
            SelectBy {
                metric: Metric::Ndcg,
                k: 20
            }
        );
        assert_eq!(s.to_string(), "ndcg@20");
        assert_eq!(
            "recall_full@50".parse::<SelectBy>().unwrap().metric,
            Metric::RecallFull
        );
        for bad in ["ndcg", "ndcg@0", "ndcg@x", "map@10", "@5"] {
            let e = bad.parse::<SelectBy>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn best_model_sits_beside_the_output() {
        assert_eq!(
            Selection::beside(Path::new("out/model.nc")),
            PathBuf::from("out/model.best.nc")
        );
        assert_eq!(
            Selection::beside(Path::new("model")),
            PathBuf::from("model.best.nc")
        );
    }
}
