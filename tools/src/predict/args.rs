//! The predictor's command line (DSSTNE's `predict` flags plus Moira's).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use moira::predict::RecsFormat;

const AFTER_HELP: &str = "\
Input (-r INPUT, or the earlier form -i INPUT.nc without -r):
  A NetCDF dataset (rows = samples, converted with the training features index), or text
  mapped through the network's features index -i FEATURES_INDEX: DSSTNE's text format
  `sample<TAB>feature[,value]:...`, a ratings CSV `userId,movieId,rating[,timestamp]`, or
  `user item item ...` lists, or Parquet rows (--user-column, --item-column, optional
  --value-column; a directory of part files skips `.`/`_` names such as _SUCCESS).
  --input-format auto (default) picks nc or parquet from the file's magic bytes, csv from
  a .csv name, lists when the first line has no TAB, text otherwise; a
  directory is read file by file in sorted order. Text is converted as the converter does
  (-t, --l2-normalize, --min-rating have its meaning: use the training conversion's
  options). Features missing from the index are dropped and reported with their count and
  examples. Rows follow --samples when given (new samples after its entries; the file is not
  changed), otherwise the order of first appearance.

Input layer (-d NAME):
  The input binds to the Input layer whose DataSet is NAME, or NAME_input (DSSTNE appends
  `_input`); from a NetCDF file holding several datasets, the one named NAME (or
  NAME_input) is taken. Without -d: a network with one Input layer takes a single-dataset
  file or text input; otherwise each Input layer takes the dataset named by its DataSet.

Filter (-f / --filter FILTER, --filter-mode):
  FILTER is a NetCDF dataset row-aligned with the input (as wide as the output layer), or
  text or Parquet in any input format (detected as by --input-format auto; Parquet with
  the input's column flags), its features looked up in
  the output index -o and its samples in the input's samples (text input, or --samples);
  filter samples absent from the input are warned about and ignored.
  exclude (default): every item of the sample's filter row is excluded, whatever its value.
  multiply (DSSTNE's semantics): each item's score is multiplied by its filter value before
  ranking; an entry without a value (a text entry without `,value`, any entry of a boolean
  dataset) has value 0, and an item whose value is 0 is excluded (DSSTNE ranked it with
  score 0). Scores written and ranked are the multiplied ones. The sample's own input items
  are excluded in both modes unless --no-exclude-input.

Ranking: exact top-K for any K up to the number of candidate items (the output width, or
the -o index's length), higher score first, equal scores by lower item index, NaN scores
never selected. Memory does not grow with the number of samples beyond the input itself:
results are written batch by batch to a temporary file renamed at the end.

Layer output (-l / --layer NAME, -s OUT):
  Writes layer NAME's activations instead of recommendations. nc: one dense dataset named
  NAME (DSSTNE schema, width = the layer's units, row r = input row r), readable by Moira's
  dataset reader; tsv: `sample<TAB>v1 v2 ... vN` per row (space-separated; -p decimals if
  given, else the shortest exact representation); parquet: columns `sample` (string) and
  `values` (list of float32). --layer-format, or the -s extension (.nc → nc, .parquet →
  parquet, else tsv).

Parquet recommendations (--format parquet): one row per (sample, item) with columns
`sample` (string), `rank` (int32, from 1), `item` (string), `score` (float32, not rounded:
-p does not apply), snappy-compressed, readable by pandas.read_parquet and Spark.

Consistency checks (fatal, naming the files): the input's width and the input layer's
units; a features index whose length does not give the layer's width (its length, or that
rounded up to 128): an index of another network; filter and held-out widths.";

/// The recommendations file format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// DSSTNE's `sample<TAB>label,score:label,score:…:`, one line per sample.
    Recs,
    /// `sample<TAB>rank<TAB>label<TAB>score`, one line per item.
    Tsv,
    /// `{"sample":…,"items":[{"label":…,"score":…},…]}`, one line per sample.
    Jsonl,
    /// Parquet: columns sample, rank, item, score (float32, unrounded), one row per item.
    Parquet,
}

impl FormatArg {
    /// The text format, or `None` for Parquet.
    pub fn text(self) -> Option<RecsFormat> {
        match self {
            FormatArg::Recs => Some(RecsFormat::Recs),
            FormatArg::Tsv => Some(RecsFormat::Tsv),
            FormatArg::Jsonl => Some(RecsFormat::Jsonl),
            FormatArg::Parquet => None,
        }
    }
}

/// How an input or filter file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormatArg {
    /// NetCDF by magic bytes, csv by a `.csv` name, lists when the first line has no TAB,
    /// text otherwise.
    Auto,
    /// A DSSTNE NetCDF dataset file.
    Nc,
    /// DSSTNE's text format.
    Text,
    /// A ratings CSV.
    Csv,
    /// `user item item …` lists.
    Lists,
    /// Parquet rows (--user-column, --item-column, --value-column).
    Parquet,
}

/// DSSTNE's `-t` of the converter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    Indicator,
    Analog,
}

/// What a filter does to the scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FilterMode {
    /// Exclude every filtered item.
    Exclude,
    /// Multiply each filtered item's score by its value; value 0 (or none) excludes it.
    Multiply,
}

impl From<FilterMode> for moira::predict::FilterMode {
    fn from(mode: FilterMode) -> Self {
        match mode {
            FilterMode::Exclude => moira::predict::FilterMode::Exclude,
            FilterMode::Multiply => moira::predict::FilterMode::Multiply,
        }
    }
}

/// The layer output's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayerFormat {
    /// A dense dataset in DSSTNE's NetCDF schema.
    Nc,
    /// `sample<TAB>v1 v2 … vN`.
    Tsv,
    /// Parquet: columns sample (string) and values (list of float32).
    Parquet,
}

/// Scores every sample of a dataset with a trained network and writes its top-K items
/// (DSSTNE's `predict`), or a layer's activations, and/or measures P@K, Recall@K and NDCG@K
/// against held-out items.
///
/// Each sample's own input items are excluded from its recommendations (when the input layer
/// is as wide as the output), unless --no-exclude-input. See below for the input, the
/// filter, the ranking and the layer output.
#[derive(Parser, Debug)]
#[command(name = "predictor", version, after_long_help = AFTER_HELP)]
pub struct Args {
    /// The trained network (NetCDF, as written by `trainer`).
    #[arg(short = 'n', long)]
    pub network: PathBuf,
    /// Input: NetCDF dataset, DSSTNE text, CSV ratings or lists (file or directory).
    #[arg(short = 'r', long = "input", value_name = "INPUT")]
    pub input: Option<PathBuf>,
    /// The network's input features index (`label<TAB>index`) for text input; without -r,
    /// the input NetCDF file (the earlier form).
    #[arg(short = 'i', long = "input-index", value_name = "FEATURES_INDEX")]
    pub input_index: Option<PathBuf>,
    /// Dataset name of the input layer (DSSTNE's -d: `NAME` or `NAME_input`).
    #[arg(short = 'd', long = "dataset", value_name = "NAME")]
    pub dataset: Option<String>,
    /// How to read -r (a filter's format is always detected as by `auto`).
    #[arg(long, value_enum, default_value = "auto")]
    pub input_format: InputFormatArg,
    /// Text input: indicator (boolean) or analog values, as the training data was converted.
    #[arg(short = 't', long = "type", value_enum, default_value = "indicator")]
    pub kind: TypeArg,
    /// Text input: scale each row to unit L2 norm (as `converter --l2-normalize`).
    #[arg(long)]
    pub l2_normalize: bool,
    /// CSV input: drop ratings below this value (Parquet: values of --value-column).
    #[arg(long, value_name = "X")]
    pub min_rating: Option<f32>,
    /// Parquet input: the column of the user (sample) ids.
    #[arg(long, value_name = "COLUMN")]
    pub user_column: Option<String>,
    /// Parquet input: the column of the item (feature) ids.
    #[arg(long, value_name = "COLUMN")]
    pub item_column: Option<String>,
    /// Parquet input: the column of the values (kept with -t analog) [default: none].
    #[arg(long, value_name = "COLUMN")]
    pub value_column: Option<String>,
    /// Output features index (`label<TAB>index`) naming the output units; default: the
    /// numeric unit index.
    #[arg(
        short = 'o',
        long = "output-index",
        value_name = "OUTPUT_FEATURES_INDEX"
    )]
    pub output_index: Option<PathBuf>,
    /// Samples index (`name<TAB>row`) naming the input rows; default: the row number (NetCDF)
    /// or the names in the text input.
    #[arg(long, value_name = "SAMPLES_INDEX")]
    pub samples: Option<PathBuf>,
    /// Recommendations per sample (at most the number of candidate items).
    #[arg(short = 'k', long, default_value_t = 100)]
    pub k: usize,
    /// Where to write the recommendations, or the layer with --layer (temporary file, then
    /// renamed).
    #[arg(short = 's', long = "recs-out", value_name = "OUT")]
    pub recs_out: Option<PathBuf>,
    /// Samples per forward pass.
    #[arg(short = 'b', long, default_value_t = 1024)]
    pub batch: usize,
    /// Decimals of the printed scores [default: 3 (DSSTNE's `%.3f`); layer TSV: exact].
    #[arg(short = 'p', long)]
    pub precision: Option<usize>,
    /// Recommendations format.
    #[arg(long, value_enum, default_value = "recs")]
    pub format: FormatArg,
    /// Filter each sample's recommendations with its row in FILTER (see --filter-mode).
    #[arg(short = 'f', long, value_name = "FILTER")]
    pub filter: Option<PathBuf>,
    /// exclude: drop the filtered items; multiply: DSSTNE's score × filter value.
    #[arg(long, value_enum, default_value = "exclude")]
    pub filter_mode: FilterMode,
    /// Do not exclude each sample's own input items.
    #[arg(long)]
    pub no_exclude_input: bool,
    /// Held-out items per sample (NetCDF, row-aligned with the input): print P/Recall/NDCG.
    #[arg(long, value_name = "HELDOUT.nc")]
    pub evaluate: Option<PathBuf>,
    /// Cutoffs K for --evaluate.
    #[arg(long, value_delimiter = ',', default_value = "10,20")]
    pub evaluate_k: Vec<usize>,
    /// Write this layer's activations to -s instead of recommendations.
    #[arg(short = 'l', long, value_name = "NAME")]
    pub layer: Option<String>,
    /// Format of --layer output [default: from the -s extension: .nc → nc, .parquet →
    /// parquet, else tsv].
    #[arg(long, value_enum)]
    pub layer_format: Option<LayerFormat>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    /// CPU threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Compute device: cpu, cuda, or auto (CUDA when a GPU is present, else the CPU).
    #[arg(long, value_enum, default_value = "auto")]
    pub device: crate::device::DeviceArg,
    /// Allow TF32 tensor-core products in dense layers on CUDA (FP32 by default).
    #[arg(long)]
    pub tf32: bool,
    /// How the ranks of an `mpirun` job split the work: `data` (every rank loads the whole
    /// network and scores its share of each batch; the results are gathered in order, so
    /// prediction for all users scales with the ranks) or `model` (every layer's units
    /// sharded, for a network too large for one device). `auto` is `data`.
    #[arg(long, value_enum, default_value = "data")]
    pub parallel: crate::ranks::ParallelArg,
}
