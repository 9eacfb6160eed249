//! What the binaries share: logging set-up, the exit convention, the choice of device
//! ([`device`]) and the predictor's work ([`predict`]).

pub mod device;
pub mod outputs;
pub mod paths;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod ranks;
pub mod select;
pub mod tensorboard;
pub mod watch;

/// Calls `$body` with `$backend` bound to the chosen backend ([`device::choose`]), whichever
/// it is (the body is compiled once per backend type).
pub use moira::with_backend;

use std::io::IsTerminal;

/// Logs to stderr through `tracing` (level from `RUST_LOG`, `info` by default; `warn` on the
/// ranks other than 0 of an MPI job, so that one rank speaks), coloured only on a terminal.
pub fn init_logging() {
    let default = if ranks::launched_rank() > 0 {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

/// Ends the process after `run`: on error prints `error: <message with causes>` and exits 1.
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
