//! `predictor`: top-K recommendations, layer activations and ranking metrics from a trained
//! network (DSSTNE's `predict`). The work is in `moira_tools::predict`.

use clap::Parser;
use moira_tools::predict::{run, Args};

fn main() {
    moira_tools::init_logging();
    moira_tools::exit_on_error(run(Args::parse()));
}
