//! The `predictor` binary's work: DSSTNE's `predict` (top-K recommendations from a trained
//! network) plus layer output and ranking metrics.
//!
//! - [`args`]: the command line and its help text (the user-facing contract);
//! - [`input`]: the input (NetCDF, or text through the features index) bound to the input layer;
//! - [`filter`]: loading the per-sample filter and the held-out file (the library applies them);
//! - [`output`]: recommendations and layer files, written atomically batch by batch;
//! - [`run`](mod@run): the command: checks, files and writers around the library's
//!   prediction loop ([`moira::predict::run()`]).

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
