//! Running as one rank of an MPI job (`mpirun -np N trainer|predictor …`): the launcher's
//! environment, agreeing on failures, and how a failed rank ends the job.
//!
//! A binary started by an MPI launcher with more than one rank initialises MPI and runs
//! model-, data- or hybrid-parallel (`--parallel`); otherwise (no launcher, `-np 1`, or a build without the `mpi` feature) it
//! runs alone and never initialises MPI.

use moira::collective::Collective;
use moira::parallel::Parallelism;

/// `--parallel`: how the ranks of an `mpirun` job split the work ([`Parallelism`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ParallelArg {
    /// Shard every layer's units across the ranks (DSSTNE's model parallelism).
    Model,
    /// Every rank holds the whole network and takes its share of the examples.
    Data,
    /// Per weight: replicate it where that moves fewer bytes than sharding it, and split the
    /// examples of the layers it leads into (training; prediction runs as `data`).
    Hybrid,
    /// Whichever of the three moves the fewest bytes per minibatch (training).
    Auto,
    /// Whichever of the three trains fastest, timed on the first minibatches (training; the
    /// choice can change from run to run: pass the mode it logs for a repeatable run).
    Tune,
}

impl std::fmt::Display for ParallelArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let value = self.to_possible_value().expect("every value is named");
        f.write_str(value.get_name())
    }
}

impl From<ParallelArg> for Parallelism {
    fn from(p: ParallelArg) -> Self {
        match p {
            ParallelArg::Model => Parallelism::Model,
            ParallelArg::Data => Parallelism::Data,
            ParallelArg::Hybrid => Parallelism::Hybrid,
            // `tune` is settled by timing before a network is built (the trainer's `tune`).
            ParallelArg::Auto | ParallelArg::Tune => Parallelism::Auto,
        }
    }
}

/// The first of `vars` set to a number.
fn env_number(vars: &[&str]) -> Option<usize> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
}

/// The number of ranks of the MPI job this process was launched in (Open MPI, MPICH/PMI,
/// PMIx or Slurm environment), 1 when it was not launched by one.
pub fn launched_size() -> usize {
    env_number(&[
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "SLURM_NTASKS",
    ])
    .unwrap_or(1)
}

/// This process's rank in the MPI job it was launched in, 0 when not launched by one.
pub fn launched_rank() -> usize {
    env_number(&[
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
    ])
    .unwrap_or(0)
}

/// Every rank's `local` outcome made common ([`Collective::check`]): the failing rank gets its
/// own error, the others one naming the failing rank and its message. Without `comm`, `local`.
pub fn agree<T, C: Collective>(comm: Option<&C>, local: anyhow::Result<T>) -> anyhow::Result<T> {
    match comm {
        None => local,
        Some(comm) => {
            let (mine, status) = match local {
                Ok(v) => (Some(v), Ok(())),
                Err(e) => (None, Err(e)),
            };
            let shared = status
                .as_ref()
                .map(|_| ())
                .map_err(|e| moira::Error::InvalidData(format!("{e:#}")));
            match comm.check(shared) {
                Ok(()) => Ok(mine.expect("this rank succeeded")),
                Err(e) => Err(status.err().unwrap_or_else(|| e.into())),
            }
        }
    }
}

/// Ends rank `comm` after `run`. On error: prints `error: rank R of N: <message>` in one
/// write, waits a moment for the other ranks to print theirs, then aborts the whole job
/// (`MPI_Abort`: every rank exits non-zero, none is left waiting in a collective).
#[cfg(feature = "mpi")]
pub fn finish(comm: moira::collective::Mpi, result: anyhow::Result<()>) {
    if let Err(e) = result {
        let line = format!("error: rank {} of {}: {e:#}\n", comm.rank(), comm.size());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(500));
        comm.abort(1);
    }
}
