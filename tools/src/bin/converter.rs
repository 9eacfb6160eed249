//! `converter`: DSSTNE's `generateNetCDF`. Converts text input (DSSTNE text format, a ratings
//! CSV, or interaction lists) or Parquet interaction logs into a sparse dataset in DSSTNE's
//! NetCDF schema, maintaining the features and samples index files. The work is `moira::dataset::convert::convert`;
//! this binary parses flags, shows progress on a terminal, and prints warnings (capped) and
//! errors (`error: <message>`, exit code 1) on stderr.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use moira::dataset::convert::{
    convert, ConvertOptions, ConvertReport, FeatureIndexMode, InputFormat, ValueType,
};
use moira::dataset::io::csv::{CsvOptions, ValueColumn};
use moira::dataset::io::parquet::ParquetOptions;
use moira_tools::paths::refuse_overwriting_inputs;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const AFTER_HELP: &str = "\
Input formats (--format):
  text   DSSTNE's format, one sample per line: sample<TAB>feature[,value]:feature[,value]...
  csv    ratings CSV `userId,movieId,rating[,timestamp]` (header line optional)
  lists  `user item item ...` lines, separated by spaces or TABs (boolean data)
  parquet  one interaction per row (Spark, Hive, pandas): --user-column and --item-column
         name the id columns (integers or strings), --value-column the optional value
         (integers or floats; kept with -t analog, filtered by --min-rating). -i may be a
         directory of part files (names starting with `.` or `_`, like _SUCCESS, are
         skipped). Rows with a null user, item or value are skipped and counted.

Rows follow the samples index: row r is the sample with index r. Converting an input and
an output dataset with the same -s file keeps their rows aligned; samples of the index
missing from this input get an empty row (warned).

Width: the number of features rounded up to a multiple of 128, as DSSTNE does, unless
--exact-width is given.

Fatal errors (exit code 1, `error: <message>`, no output file and no index changed):
  unreadable input or index file; invalid UTF-8 (file:line); malformed index file: a line
  without exactly 2 TAB-separated fields, a non-numeric index, a repeated label or index,
  gaps in the indices (file:line); in analog mode, a value that is empty, not a number or
  not finite (file:line); a sample or feature name with a TAB or CR inside (file:line);
  CSV: a line with fewer than 3 fields, an empty id, or a rating/timestamp that is used
  and not a number (file:line); Parquet: a file that is not Parquet, truncated or corrupt,
  a missing column or one of another type, a value that is not finite (file, column); a
  missing features index without -c; no entries left to write; an output (-o, or an index it rewrites) that is the same file as the input or an
  index, or a directory.

Usage errors (exit code 2, before anything is read): an unknown flag, a missing required
flag, -c together with -m.

Skipped with a warning (file:line; the first 10 of each kind are shown, then a count):
  text lines without a TAB or with an empty sample name; a feature with more than one
  `,value` (the first is kept); a repeated sample (its last line wins); entries whose
  feature is not in the features index when neither -c nor -m is given (counted and
  reported: DSSTNE dropped them silently). Empty lines and empty `:` entries are skipped
  silently. In indicator mode values are not parsed.";

/// Converts text data into a DSSTNE NetCDF dataset (DSSTNE's generateNetCDF).
#[derive(Parser, Debug)]
#[command(name = "converter", version, after_long_help = AFTER_HELP)]
struct Args {
    /// Dataset name stored in the file (matched against a layer's DataSet)
    #[arg(short = 'd', long = "dataset", value_name = "NAME")]
    dataset: String,
    /// Input file, or directory whose files are read in sorted order
    #[arg(short = 'i', long = "input", value_name = "INPUT")]
    input: PathBuf,
    /// Output NetCDF file
    #[arg(short = 'o', long = "output", value_name = "OUT.nc")]
    output: PathBuf,
    /// Features index file (`label<TAB>index`), read and/or written
    #[arg(short = 'f', long = "features", value_name = "FEATURES_INDEX")]
    features: PathBuf,
    /// Samples index file, loaded if it exists, extended, rewritten if changed
    #[arg(short = 's', long = "samples", value_name = "SAMPLES_INDEX")]
    samples: PathBuf,
    /// Create a new features index from this input (overwrites the file)
    #[arg(
        short = 'c',
        long = "create-features",
        conflicts_with = "merge_features"
    )]
    create_features: bool,
    /// Merge this input's new features into the existing features index
    #[arg(short = 'm', long = "merge-features")]
    merge_features: bool,
    /// Dataset type: indicator (boolean) or analog (values kept)
    #[arg(short = 't', long = "type", value_enum, default_value_t = TypeArg::Indicator)]
    kind: TypeArg,
    /// Input format
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// CSV and Parquet: drop ratings (Parquet: values of --value-column) below this value
    #[arg(long, value_name = "X")]
    min_rating: Option<f32>,
    /// The value kept in analog mode: CSV: rating, timestamp or none [default: rating];
    /// Parquet: the name of the value column [default: none, boolean data]
    #[arg(long, value_name = "COLUMN")]
    value_column: Option<String>,
    /// Parquet: the column of the user (sample) ids
    #[arg(long, value_name = "COLUMN")]
    user_column: Option<String>,
    /// Parquet: the column of the item (feature) ids
    #[arg(long, value_name = "COLUMN")]
    item_column: Option<String>,
    /// Width = number of features (default: rounded up to a multiple of 128, like DSSTNE)
    #[arg(long)]
    exact_width: bool,
    /// Scale each row to unit L2 norm (values become analog; indicator rows get 1/sqrt(nnz)):
    /// the input normalisation of Mult-DAE-style recommenders
    #[arg(long)]
    l2_normalize: bool,
    /// Print a summary even when stderr is not a terminal
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TypeArg {
    Indicator,
    Analog,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Text,
    Csv,
    Lists,
    Parquet,
}

fn options(args: &Args) -> Result<ConvertOptions> {
    let tabular = matches!(args.format, FormatArg::Csv | FormatArg::Parquet);
    if !tabular && (args.min_rating.is_some() || args.value_column.is_some()) {
        bail!("--min-rating and --value-column apply to --format csv and parquet only");
    }
    if args.format != FormatArg::Parquet
        && (args.user_column.is_some() || args.item_column.is_some())
    {
        bail!("--user-column and --item-column apply to --format parquet only");
    }
    let format = match args.format {
        FormatArg::Text => InputFormat::Text,
        FormatArg::Lists => InputFormat::Lists,
        FormatArg::Csv => InputFormat::Csv(CsvOptions {
            value_column: match args.value_column.as_deref().unwrap_or("rating") {
                "rating" => ValueColumn::Rating,
                "timestamp" => ValueColumn::Timestamp,
                "none" => ValueColumn::None,
                other => bail!(
                    "--value-column `{other}`: a CSV value column is rating, timestamp or none"
                ),
            },
            min_rating: args.min_rating,
        }),
        FormatArg::Parquet => {
            let (Some(user), Some(item)) = (&args.user_column, &args.item_column) else {
                bail!("--format parquet needs --user-column and --item-column");
            };
            if args.min_rating.is_some() && args.value_column.is_none() {
                bail!("--min-rating needs --value-column (the column of the ratings)");
            }
            InputFormat::Parquet(ParquetOptions {
                user_column: user.clone(),
                item_column: item.clone(),
                value_column: args.value_column.clone(),
                min_rating: args.min_rating,
            })
        }
    };
    Ok(ConvertOptions {
        dataset_name: args.dataset.clone(),
        input: args.input.clone(),
        output: args.output.clone(),
        features_index: args.features.clone(),
        samples_index: args.samples.clone(),
        feature_mode: match (args.create_features, args.merge_features) {
            (true, _) => FeatureIndexMode::Create,
            (_, true) => FeatureIndexMode::Merge,
            _ => FeatureIndexMode::Existing,
        },
        value_type: match args.kind {
            TypeArg::Indicator => ValueType::Indicator,
            TypeArg::Analog => ValueType::Analog,
        },
        format,
        exact_width: args.exact_width,
        l2_normalize: args.l2_normalize,
    })
}

/// Prints warnings and errors to stderr (around the progress bar), showing the first
/// `CAP` events of each call site and counting the rest.
struct CappedStderr {
    bar: ProgressBar,
    seen: Seen,
}

/// Per call site: how many events, and the first message.
type Seen = Arc<Mutex<HashMap<tracing::callsite::Identifier, (u64, String)>>>;

const CAP: u64 = 10;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for CappedStderr {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::WARN {
            return;
        }
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let entry = seen
            .entry(meta.callsite())
            .or_insert_with(|| (0, msg.0.clone()));
        entry.0 += 1;
        if entry.0 <= CAP {
            let level = if *meta.level() == Level::ERROR {
                "error"
            } else {
                "warning"
            };
            self.bar.suspend(|| eprintln!("{level}: {}", msg.0));
        }
    }
}

/// Prints how many events of each call site were not shown.
fn print_suppressed(seen: &Seen) {
    let Ok(seen) = seen.lock() else { return };
    for (count, first) in seen.values() {
        if *count > CAP {
            eprintln!(
                "warning: {} more warning(s) like this one were not shown: {first}",
                count - CAP
            );
        }
    }
}

/// The one-line report of a conversion; `records`: what the input is made of ("lines" of a
/// text file, "rows" of a Parquet table).
fn summary(r: &ConvertReport, secs: f64, records: &str) -> String {
    format!(
        "{} examples x width {} ({} features, {} new; {} new samples), {} entries from {} \
         {records} in {:.2} s ({:.0} entries/s); skipped: {} {records}, {} unknown-feature entries, {} null rows",
        r.examples,
        r.width,
        r.features,
        r.new_features,
        r.new_samples,
        r.nnz,
        r.stats.lines,
        secs,
        r.nnz as f64 / secs.max(1e-9),
        r.stats.skipped_lines,
        r.stats.unknown_features,
        r.stats.null_rows
    )
}

fn run(args: &Args, bar: &ProgressBar) -> Result<ConvertReport> {
    let opts = options(args)?;
    let input = [("-i", Some(args.input.as_path()))];
    refuse_overwriting_inputs(
        "-o",
        &args.output,
        &[
            input[0],
            ("-f", Some(&args.features)),
            ("-s", Some(&args.samples)),
        ],
    )?;
    // The index files are rewritten too (the samples index when it changes, the features
    // index with -c or -m): neither may be the input.
    refuse_overwriting_inputs("-s", &args.samples, &input)?;
    if args.create_features || args.merge_features {
        refuse_overwriting_inputs("-f", &args.features, &input)?;
    }
    if let Ok(total) = moira::dataset::io::input_size(&opts.input) {
        bar.set_length(total);
    }
    let report = convert(&opts, &mut |n| bar.inc(n))?;
    Ok(report)
}

fn main() -> ExitCode {
    moira_tools::quiet_parquet_panics();
    let args = Args::parse();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let seen = Seen::default();
    let layer = CappedStderr {
        bar: bar.clone(),
        seen: seen.clone(),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    let _ = tracing::subscriber::set_global_default(subscriber);
    let start = Instant::now();
    let result = run(&args, &bar);
    bar.finish_and_clear();
    print_suppressed(&seen);
    match result {
        Ok(report) => {
            if tty || args.verbose {
                let records = match args.format {
                    FormatArg::Parquet => "rows",
                    _ => "lines",
                };
                eprintln!(
                    "{}",
                    summary(&report, start.elapsed().as_secs_f64(), records)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
