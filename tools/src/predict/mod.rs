//! The `predictor` binary's work: DSSTNE's `predict` (top-K recommendations from a trained
//! network) plus layer output and ranking metrics.
//!
//! - [`args`]: the command line and its help text (the user-facing contract);
//! - [`input`]: the input (NetCDF, or text through the features index) bound to the input layer;
//! - [`filter`]: the per-sample filter (exclude or DSSTNE's multiply) and the exclusions;
//! - [`output`]: recommendations and layer files, written atomically batch by batch;
//! - [`run`]: the prediction loop.

pub mod args;
pub mod filter;
pub mod input;
pub mod output;
pub mod run;

pub use args::Args;
pub use run::run;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar of length `len` drawn with `template` on a terminal; hidden when stderr is
/// not a terminal or `quiet`.
pub fn bar(len: u64, template: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
