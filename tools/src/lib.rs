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

/// Keeps the default panic message off stderr for the panics the `parquet` crate raises on
/// some corrupt files while the library reads them, where it catches them and returns the
/// file's error ([`moira::Error::Parquet`], which the tool prints); every other panic is
/// reported as before. Call once at start-up, before any file is read.
pub fn quiet_parquet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let caught = moira::dataset::io::parquet::catching_panics()
            && info
                .location()
                .is_some_and(|l| from_parquet_crate(l.file()));
        if !caught {
            default(info);
        }
    }));
}

/// Whether a panic's source `file` belongs to the `parquet` crate (a registry or vendored
/// path such as `…/parquet-57.1.0/src/file/footer.rs`).
fn from_parquet_crate(file: &str) -> bool {
    file.split(['/', '\\']).any(|part| {
        part.strip_prefix("parquet-")
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    })
}

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

#[cfg(test)]
mod tests {
    use super::from_parquet_crate;

    #[test]
    fn panics_from_the_parquet_crate_are_recognised_by_their_source_path() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        assert!(from_parquet_crate(&format!(
            "{registry}/parquet-57.1.0/src/file/footer.rs"
        )));
        assert!(from_parquet_crate(
            r"C:\cargo\registry\src\parquet-53.0.0\src\lib.rs"
        ));
        for other in [
            "engine/dataset/io/parquet.rs",
            &format!("{registry}/arrow-array-57.1.0/src/array/mod.rs"),
            &format!("{registry}/parquet_derive-57.1.0/src/lib.rs"),
            "tools/src/bin/converter.rs",
        ] {
            assert!(!from_parquet_crate(other), "{other}");
        }
    }
}
