//! `moira-plot`: draws a finished (or running) training's curves from its metrics log, the
//! picture `trainer --plot` draws: loss per epoch and every validation metric per epoch.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use moira_tools::plot::Curves;

/// Draws the training loss and the validation metrics per epoch of a trainer metrics log
/// (`NETWORK_OUT.metrics.jsonl` or `--metrics-log`) into an SVG or PNG file.
#[derive(Parser, Debug)]
#[command(name = "moira-plot", version)]
struct Args {
    /// The trainer's metrics log (JSON lines, one per epoch).
    metrics: PathBuf,
    /// The picture: FILE.svg or FILE.png (written to a temporary file, then renamed).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

fn run(args: &Args) -> Result<()> {
    moira_tools::paths::refuse_overwriting_inputs(
        "-o",
        &args.output,
        &[("METRICS", Some(&args.metrics))],
    )?;
    let curves = Curves::from_jsonl(&args.metrics)?;
    curves.draw(&args.output)
}

fn main() {
    let args = Args::parse();
    moira_tools::exit_on_error(run(&args));
}
