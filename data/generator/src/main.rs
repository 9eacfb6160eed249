//! `generate-data`: writes a synthetic power-law user × item data set. See data/README.md.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use moira_datagen::{generate, Config, Format};

#[derive(Parser, Debug)]
#[command(
    name = "generate-data",
    version,
    about = "Synthetic user × item implicit feedback: power-law item popularity, \
             log-normal history lengths, deterministic from --seed",
    after_help = "Examples:\n  generate-data --preset ml20m -o ml20m.txt\n  \
                  generate-data --preset ml1m --format lists --holdout 0.2 \
                  --holdout-output test.txt -o train.txt\n  \
                  generate-data --users 1000 --items 5000 --entries 50000 --format csv -o r.csv"
)]
struct Args {
    /// A named shape; --users/--items/--entries/--min-per-user override its values.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Number of users (rows).
    #[arg(long)]
    users: Option<u32>,
    /// Number of items (columns).
    #[arg(long)]
    items: Option<u32>,
    /// Total number of entries, held-out ones included (exact).
    #[arg(long)]
    entries: Option<u64>,
    /// Shortest history [default: 20 for the MovieLens presets, else 1].
    #[arg(long)]
    min_per_user: Option<u32>,
    /// Longest history [default: the MovieLens maximum for those presets, else --items].
    #[arg(long)]
    max_per_user: Option<u32>,
    /// Exponent s of the popularity law p(rank) ∝ (rank + 1 + offset)^-s.
    #[arg(long, default_value_t = 1.2)]
    zipf_exponent: f64,
    /// Offset of the popularity law (flattens the head: with the defaults the most popular
    /// item is in about half of the histories, as in MovieLens).
    #[arg(long, default_value_t = 40.0)]
    zipf_offset: f64,
    /// Sigma of the log-normal history lengths.
    #[arg(long, default_value_t = 1.2)]
    length_sigma: f64,
    /// Random seed; the same arguments and seed give the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output format: text = DSSTNE `user<TAB>item,ts:item,ts…` (1-based ids),
    /// lists = `user item item…` (0-based ids), csv = `userId,movieId,rating,timestamp`.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Text format without the value field: `user<TAB>item:item…`.
    #[arg(long)]
    no_values: bool,
    /// Fraction of each user's history (its latest entries, a random subset of its items)
    /// written to --holdout-output instead of --output.
    #[arg(long, default_value_t = 0.0)]
    holdout: f64,
    /// Where the held-out entries go (same format).
    #[arg(long)]
    holdout_output: Option<PathBuf>,
    /// Output file (written to a temporary file in the same folder, then renamed).
    #[arg(short, long)]
    output: PathBuf,
    /// Worker threads [default: all cores]; the output does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Print nothing on success.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// MovieLens-20M shape: 138,493 users × 26,744 items, 20,000,263 entries.
    Ml20m,
    /// MovieLens-1M shape: 6,040 users × 3,706 items, 1,000,209 entries.
    Ml1m,
    /// 200 users × 300 items, 6,000 entries: for tests.
    Tiny,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Text,
    Lists,
    Csv,
}

impl Preset {
    /// (users, items, entries, min_per_user, max_per_user)
    fn shape(self) -> (u32, u32, u64, u32, Option<u32>) {
        match self {
            Preset::Ml20m => (138_493, 26_744, 20_000_263, 20, Some(9_254)),
            Preset::Ml1m => (6_040, 3_706, 1_000_209, 20, Some(2_314)),
            Preset::Tiny => (200, 300, 6_000, 1, None),
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("generate-data: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let shape = args.preset.map(Preset::shape);
    let pick = |given: Option<u64>, preset: Option<u64>, flag: &str| -> Result<u64> {
        match (given, preset) {
            (Some(v), _) | (None, Some(v)) => Ok(v),
            (None, None) => bail!("{flag} is required without --preset"),
        }
    };
    let users = pick(
        args.users.map(u64::from),
        shape.map(|s| s.0 as u64),
        "--users",
    )? as u32;
    let items = pick(
        args.items.map(u64::from),
        shape.map(|s| s.1 as u64),
        "--items",
    )? as u32;
    let entries = pick(args.entries, shape.map(|s| s.2), "--entries")?;
    let min_per_user = args.min_per_user.or(shape.map(|s| s.3)).unwrap_or(1);
    // A preset's cap is dropped when --items makes it meaningless.
    let max_per_user = args
        .max_per_user
        .or(shape.and_then(|s| s.4).filter(|&m| m <= items));
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let cfg = Config {
        users,
        items,
        entries,
        zipf_exponent: args.zipf_exponent,
        zipf_offset: args.zipf_offset,
        length_sigma: args.length_sigma,
        min_per_user,
        max_per_user,
        seed: args.seed,
        format: match args.format {
            FormatArg::Text => Format::Text,
            FormatArg::Lists => Format::Lists,
            FormatArg::Csv => Format::Csv,
        },
        values: !args.no_values,
        holdout: args.holdout,
        threads,
    };
    cfg.validate()?;
    match (&args.holdout_output, args.holdout > 0.0) {
        (None, true) => bail!("--holdout needs --holdout-output"),
        (Some(_), false) => bail!("--holdout-output needs --holdout with a fraction > 0"),
        (Some(h), true) if h == &args.output => {
            bail!("--holdout-output must differ from --output")
        }
        _ => {}
    }

    let start = Instant::now();
    let mut out = AtomicFile::create(&args.output)?;
    let mut held = args
        .holdout_output
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let summary = generate(
        &cfg,
        &mut out.writer,
        held.as_mut()
            .map(|h| &mut h.writer as &mut dyn std::io::Write),
    )
    .with_context(|| format!("writing {}", args.output.display()))?;
    out.commit()?;
    if let Some(h) = held {
        h.commit()?;
    }
    let secs = start.elapsed().as_secs_f64();
    if !args.quiet {
        let total = summary.entries + summary.holdout_entries;
        eprintln!(
            "generate-data: {} users × {} items, {} entries ({} held out) in {:.2} s \
             ({:.1} M entries/s) -> {}",
            summary.users,
            items,
            total,
            summary.holdout_entries,
            secs,
            total as f64 / secs / 1e6,
            args.output.display()
        );
        eprintln!(
            "generate-data: items used {}, top 1% of items hold {:.1}% of entries, \
             top item in {:.1}% of users, history median {} max {}",
            summary.items_used,
            100.0 * summary.top1pct_share,
            100.0 * summary.top_item_user_share,
            summary.median_history,
            summary.max_history
        );
    }
    Ok(())
}

/// A file written under a temporary name in the target's folder and renamed on commit;
/// dropped without commit, the temporary file is removed.
struct AtomicFile {
    writer: BufWriter<File>,
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    fn create(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file path", target.display()))?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = target.with_file_name(tmp_name);
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self {
            writer: BufWriter::with_capacity(8 << 20, file),
            tmp,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    fn commit(mut self) -> Result<()> {
        use std::io::Write;
        self.writer
            .flush()
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        self.writer
            .get_ref()
            .sync_all()
            .with_context(|| format!("syncing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.target).with_context(|| {
            format!(
                "renaming {} to {}",
                self.tmp.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
