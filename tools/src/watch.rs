//! The trainer's optional per-epoch outputs around its progress observer: TensorBoard
//! events (`--tensorboard DIR`, [`crate::tensorboard`]) and a plot redrawn from the metrics
//! log after every epoch (`--plot FILE`, [`crate::plot`]). Only the process that writes the
//! metrics log (rank 0) has one.
//!
//! Failing to create either output stops the trainer before it trains; failing to write one
//! during training warns once and stops that output (the training and its metrics log go on).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use moira::train::{EpochReport, Observer};

use crate::plot::Curves;
use crate::tensorboard::EventWriter;

/// The optional outputs, before they wrap an observer.
pub struct Outputs {
    tensorboard: Option<EventWriter>,
    /// The plot and the metrics log it is drawn from.
    plot: Option<(PathBuf, PathBuf)>,
}

/// `inner` plus the optional outputs.
pub struct Watch<O> {
    /// The wrapped observer (the trainer's progress and metrics log).
    pub inner: O,
    outputs: Outputs,
}

/// Refuses a `--plot` path that is not `.svg` or `.png`.
pub fn check_plot_path(plot: &Path) -> Result<()> {
    if !matches!(
        plot.extension().and_then(|e| e.to_str()),
        Some("svg" | "png")
    ) {
        bail!("--plot {}: expected an .svg or a .png file", plot.display());
    }
    Ok(())
}

impl Outputs {
    /// Checks that `plot` is an `.svg` or `.png` path (drawn from `metrics_log` after each
    /// epoch) and creates the event file in `tensorboard`: call it before the metrics log is
    /// created, so that a refused output leaves an existing log alone.
    pub fn create(
        tensorboard: Option<&Path>,
        plot: Option<&Path>,
        metrics_log: &Path,
    ) -> Result<Self> {
        plot.map(check_plot_path).transpose()?;
        let tensorboard = tensorboard.map(EventWriter::create).transpose()?;
        if let Some(tb) = &tensorboard {
            tracing::info!("TensorBoard events in {}", tb.path().display());
        }
        Ok(Outputs {
            tensorboard,
            plot: plot.map(|p| (p.to_owned(), metrics_log.to_owned())),
        })
    }

    /// The observer `inner` followed by these outputs after each epoch.
    pub fn around<O: Observer>(self, inner: O) -> Watch<O> {
        Watch {
            inner,
            outputs: self,
        }
    }
}

impl<O: Observer> Observer for Watch<O> {
    fn on_batch(&mut self, epoch: u32, done: usize, total: usize, loss: f64) -> moira::Result<()> {
        self.inner.on_batch(epoch, done, total, loss)
    }

    fn on_epoch(&mut self, report: &EpochReport) -> moira::Result<()> {
        self.inner.on_epoch(report)?;
        let out = &mut self.outputs;
        if let Some(tb) = &mut out.tensorboard {
            if let Err(e) = tb.epoch(report) {
                tracing::warn!("{e:#}; no more TensorBoard events are written");
                out.tensorboard = None;
            }
        }
        if let Some((plot, log)) = &out.plot {
            if let Err(e) = Curves::from_jsonl(log).and_then(|c| c.draw(plot)) {
                tracing::warn!("--plot: {e:#}; the plot is not drawn again");
                out.plot = None;
            }
        }
        Ok(())
    }
}
