//! `predictor`: top-K recommendations, layer activations and ranking metrics from a trained
//! network (DSSTNE's `predict`); under `mpirun -np N` each rank scores its share of the
//! output units and the per-rank top-K lists are merged. The work is in `moira_tools::predict`.

use clap::Parser;
use moira_tools::predict::{run, Args};

fn main() {
    moira_tools::quiet_parquet_panics();
    moira_tools::init_logging();
    let args = Args::parse();
    #[cfg(feature = "mpi")]
    if moira_tools::ranks::launched_size() > 1 {
        let comm = match moira::collective::Mpi::init() {
            Ok(c) => c,
            Err(e) => {
                moira_tools::exit_on_error(Err(e.into()));
                return;
            }
        };
        comm.abort_on_panic();
        let result = run(args, Some(&comm));
        moira_tools::ranks::finish(comm, result);
        return;
    }
    moira_tools::exit_on_error(run::<moira::collective::Local>(args, None));
}
