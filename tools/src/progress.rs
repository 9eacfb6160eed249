//! The trainer's progress: a progress bar on a terminal, log lines, and the JSON-lines
//! metrics log.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moira::train::{EpochReport, Observer};

/// Progress bar on a terminal, log lines, and the JSON-lines metrics log.
pub struct Progress {
    bar: Option<ProgressBar>,
    log: std::fs::File,
}

impl Progress {
    /// Creates the metrics log, or with `keep_epochs = Some(e)` (a resumed run) keeps the
    /// lines of epochs before `e` of an existing one and appends to it.
    pub fn new(log_path: &Path, examples: usize, keep_epochs: Option<u32>) -> Result<Self> {
        let kept = match keep_epochs {
            Some(e) if log_path.exists() => std::fs::read_to_string(log_path)
                .with_context(|| format!("cannot read {}", log_path.display()))?
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["epoch"].as_u64())
                        .is_some_and(|x| x < u64::from(e))
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            _ => String::new(),
        };
        let mut log = std::fs::File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        log.write_all(kept.as_bytes())
            .with_context(|| format!("cannot write {}", log_path.display()))?;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(examples as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} loss {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Ok(Progress { bar, log })
    }

    /// Clears the progress bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn on_batch(
        &mut self,
        epoch: u32,
        done: usize,
        _total: usize,
        mean_loss: f64,
    ) -> moira::Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_prefix(epoch.to_string());
            bar.set_position(done as u64);
            bar.set_message(format!("{mean_loss:.5}"));
        }
        Ok(())
    }

    fn on_epoch(&mut self, r: &EpochReport) -> moira::Result<()> {
        if let Some(bar) = &self.bar {
            bar.reset();
        }
        let mut line = format!(
            "epoch {} loss {:.6} time {:.2}s {:.0} examples/s",
            r.epoch, r.loss, r.seconds, r.examples_per_second
        );
        let mut json = serde_json::json!({
            "epoch": r.epoch, "loss": r.loss, "seconds": r.seconds,
            "examples_per_s": r.examples_per_second, "learning_rate": r.learning_rate,
        });
        if let Some(v) = &r.validation {
            for m in v.means() {
                line.push_str(&format!(
                    " recall@{k} {:.4} ndcg@{k} {:.4}",
                    m.recall,
                    m.ndcg,
                    k = m.k
                ));
            }
            json["validation"] = v.to_json();
        }
        if let Some(b) = &r.best {
            line.push_str(&format!(" (kept: epoch {} {:.4})", b.epoch, b.value));
            json["selected"] = serde_json::json!({"epoch": b.epoch, "value": b.value});
        }
        match &self.bar {
            Some(bar) => bar.println(&line),
            None => tracing::info!("{line}"),
        }
        writeln!(self.log, "{json}").map_err(|e| moira::Error::io("metrics log", e))?;
        Ok(())
    }
}
