//! Synthetic user × item implicit-feedback data for Moira's tests and benches.
//!
//! Item popularity follows a Zipf-Mandelbrot law, `p(rank) ∝ (rank + 1 + offset)^-exponent`;
//! user history lengths are log-normal, clamped to `[min_per_user, items]` and scaled so that
//! they add up to exactly the requested number of entries. Each user's items are distinct.
//! Every user draws from its own random stream derived from the seed, so the output bytes
//! depend only on the [`Config`], never on the number of threads.
//!
//! Output formats (see [`Format`]): DSSTNE's text format, LightGCN-style lists, and a
//! MovieLens-style CSV. Ids are 1-based in `text` and `csv` (as in MovieLens) and 0-based in
//! `lists` (as in the LightGCN splits under `shared/data`).

mod alias;
mod plan;
pub mod rng;
mod sample;

use std::io::Write;

use anyhow::{bail, ensure, Result};

use crate::rng::Rng;
use crate::sample::{Popularity, Scratch};

/// Output format of the generated rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// DSSTNE `generateNetCDF` text: `user<TAB>item,timestamp:item,timestamp…`, or
    /// `user<TAB>item:item…` without values.
    Text,
    /// One line per user: `user item item …` (0-based ids).
    Lists,
    /// `userId,movieId,rating,timestamp`, with a header line.
    Csv,
}

/// Everything that determines a generated data set.
#[derive(Clone, Debug)]
pub struct Config {
    pub users: u32,
    pub items: u32,
    /// Total number of (user, item) entries, train and held-out together; exact.
    pub entries: u64,
    /// Exponent of the popularity law (1.0 is classic Zipf).
    pub zipf_exponent: f64,
    /// Offset of the popularity law; flattens the head so that the most popular item is not
    /// in every history.
    pub zipf_offset: f64,
    /// Sigma of the log-normal history lengths (0 = every user gets about the mean).
    pub length_sigma: f64,
    /// Shortest history (MovieLens keeps users with at least 20 ratings).
    pub min_per_user: u32,
    /// Longest history; `None` = `items`.
    pub max_per_user: Option<u32>,
    pub seed: u64,
    pub format: Format,
    /// Write the value field (a fake timestamp) in `text` format.
    pub values: bool,
    /// Fraction of each user's history written to the held-out output instead (0 = none).
    pub holdout: f64,
    /// Worker threads; does not change the output.
    pub threads: usize,
}

impl Config {
    /// A configuration with the generator's default shape parameters.
    pub fn new(users: u32, items: u32, entries: u64) -> Self {
        Self {
            users,
            items,
            entries,
            zipf_exponent: 1.2,
            zipf_offset: 40.0,
            length_sigma: 1.2,
            min_per_user: 1,
            max_per_user: None,
            seed: 42,
            format: Format::Text,
            values: true,
            holdout: 0.0,
            threads: 1,
        }
    }

    /// Checks the parameters and explains what is wrong, in terms of the command-line flags.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.users > 0, "--users must be at least 1");
        ensure!(self.items > 0, "--items must be at least 1");
        ensure!(self.entries > 0, "--entries must be at least 1");
        ensure!(self.min_per_user > 0, "--min-per-user must be at least 1");
        let max = self.max_per_user();
        ensure!(
            max >= 1 && max <= self.items,
            "--max-per-user {max} must be between 1 and --items {}",
            self.items
        );
        ensure!(
            self.min_per_user <= max,
            "--min-per-user {} is more than the longest history {max} (--max-per-user or --items)",
            self.min_per_user
        );
        let (u, e) = (self.users as u128, self.entries as u128);
        if e > u * max as u128 {
            bail!(
                "--entries {} is more than --users × {} = {} × {max} = {}: \
                 a user cannot have the same item twice",
                self.entries,
                if max == self.items {
                    "--items"
                } else {
                    "--max-per-user"
                },
                self.users,
                u * max as u128
            );
        }
        let min_total = u * self.min_per_user as u128;
        if e < min_total {
            bail!(
                "--entries {} is less than --users × --min-per-user = {} × {} = {}: \
                 every user gets at least --min-per-user items",
                self.entries,
                self.users,
                self.min_per_user,
                min_total
            );
        }
        ensure!(
            self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0,
            "--zipf-exponent must be a finite number >= 0, got {}",
            self.zipf_exponent
        );
        ensure!(
            self.zipf_offset.is_finite() && self.zipf_offset >= 0.0,
            "--zipf-offset must be a finite number >= 0, got {}",
            self.zipf_offset
        );
        ensure!(
            self.length_sigma.is_finite() && (0.0..=5.0).contains(&self.length_sigma),
            "--length-sigma must be between 0 and 5, got {}",
            self.length_sigma
        );
        ensure!(
            (0.0..1.0).contains(&self.holdout),
            "--holdout must be a fraction in [0, 1), got {}",
            self.holdout
        );
        ensure!(
            self.format == Format::Text || self.values,
            "--no-values applies to --format text only"
        );
        ensure!(self.threads > 0, "--threads must be at least 1");
        Ok(())
    }

    /// The longest history a user may get.
    pub fn max_per_user(&self) -> u32 {
        self.max_per_user.unwrap_or(self.items)
    }
}

/// What was generated.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub users: u32,
    /// Entries written to the main output.
    pub entries: u64,
    /// Entries written to the held-out output.
    pub holdout_entries: u64,
    /// Items that occur at least once.
    pub items_used: u32,
    /// Share of all entries held by the most popular 1% of items.
    pub top1pct_share: f64,
    /// Fraction of users whose history holds the most popular item.
    pub top_item_user_share: f64,
    pub median_history: u32,
    pub max_history: u32,
}

/// Random stream numbers: one for the plan, one for the item permutation, then one per user.
const STREAM_LENGTHS: u64 = 0;
const STREAM_ITEMS: u64 = 1;
const STREAM_USER0: u64 = 16;

/// Users per unit of work handed to a thread.
const CHUNK_USERS: usize = 2048;

/// Generates the data set described by `cfg`, writing the rows to `out` and, when
/// `cfg.holdout > 0`, the held-out part of each history to `holdout` (same format).
pub fn generate(
    cfg: &Config,
    out: &mut dyn Write,
    mut holdout: Option<&mut dyn Write>,
) -> Result<Summary> {
    cfg.validate()?;
    ensure!(
        cfg.holdout == 0.0 || holdout.is_some(),
        "--holdout needs --holdout-output"
    );
    let lengths = plan::history_lengths(
        cfg.users,
        cfg.entries,
        cfg.min_per_user,
        cfg.max_per_user(),
        cfg.length_sigma,
        &mut Rng::stream(cfg.seed, STREAM_LENGTHS),
    );
    let pop = Popularity::new(
        cfg.items,
        cfg.zipf_exponent,
        cfg.zipf_offset,
        &mut Rng::stream(cfg.seed, STREAM_ITEMS),
    );

    if cfg.format == Format::Csv {
        out.write_all(CSV_HEADER)?;
        if let Some(h) = holdout.as_deref_mut() {
            h.write_all(CSV_HEADER)?;
        }
    }

    let mut workers: Vec<Worker> = (0..cfg.threads).map(|_| Worker::new(cfg.items)).collect();
    let chunks: Vec<&[u32]> = lengths.chunks(CHUNK_USERS).collect();
    for (batch_no, batch) in chunks.chunks(cfg.threads).enumerate() {
        let first_chunk = batch_no * cfg.threads;
        if batch.len() == 1 {
            workers[0].run(cfg, &pop, first_chunk * CHUNK_USERS, batch[0]);
        } else {
            std::thread::scope(|s| {
                for (k, (w, lens)) in workers.iter_mut().zip(batch.iter()).enumerate() {
                    let pop = &pop;
                    s.spawn(move || w.run(cfg, pop, (first_chunk + k) * CHUNK_USERS, lens));
                }
            });
        }
        for w in workers.iter_mut().take(batch.len()) {
            out.write_all(&w.out)?;
            if let Some(h) = holdout.as_deref_mut() {
                h.write_all(&w.held)?;
            }
        }
    }
    out.flush()?;
    if let Some(h) = holdout {
        h.flush()?;
    }

    let mut counts = vec![0u64; cfg.items as usize];
    let (mut entries, mut holdout_entries) = (0, 0);
    for w in &workers {
        for (c, wc) in counts.iter_mut().zip(&w.counts) {
            *c += *wc as u64;
        }
        entries += w.entries;
        holdout_entries += w.holdout_entries;
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = counts.iter().sum();
    let top = (counts.len() / 100).max(1);
    let mut sorted_lengths = lengths;
    sorted_lengths.sort_unstable();
    Ok(Summary {
        users: cfg.users,
        entries,
        holdout_entries,
        items_used: counts.iter().filter(|&&c| c > 0).count() as u32,
        top1pct_share: counts[..top].iter().sum::<u64>() as f64 / total as f64,
        top_item_user_share: counts[0] as f64 / cfg.users as f64,
        median_history: sorted_lengths[sorted_lengths.len() / 2],
        max_history: sorted_lengths[sorted_lengths.len() - 1],
    })
}

const CSV_HEADER: &[u8] = b"userId,movieId,rating,timestamp\n";

/// MovieLens-like half-star ratings and their frequencies (per mille) for `csv`.
const RATINGS: [(&[u8], u32); 10] = [
    (b"0.5", 11),
    (b"1.0", 34),
    (b"1.5", 14),
    (b"2.0", 72),
    (b"2.5", 44),
    (b"3.0", 213),
    (b"3.5", 110),
    (b"4.0", 277),
    (b"4.5", 77),
    (b"5.0", 148),
];

/// One thread's buffers: its scratch space, its output for one chunk, and running counts.
struct Worker {
    scratch: Scratch,
    out: Vec<u8>,
    held: Vec<u8>,
    items: Vec<u32>,
    stamps: Vec<u64>,
    counts: Vec<u32>,
    entries: u64,
    holdout_entries: u64,
}

impl Worker {
    fn new(items: u32) -> Self {
        Self {
            scratch: Scratch::new(items as usize),
            out: Vec::new(),
            held: Vec::new(),
            items: Vec::new(),
            stamps: Vec::new(),
            counts: vec![0; items as usize],
            entries: 0,
            holdout_entries: 0,
        }
    }

    /// Generates users `first..first + lengths.len()` into `self.out` / `self.held`.
    fn run(&mut self, cfg: &Config, pop: &Popularity, first: usize, lengths: &[u32]) {
        self.out.clear();
        self.held.clear();
        let base = if cfg.format == Format::Lists { 0 } else { 1 };
        for (k, &len) in lengths.iter().enumerate() {
            let user = (first + k) as u64;
            let mut rng = Rng::stream(cfg.seed, STREAM_USER0 + user);
            sample::pick_items(pop, len as usize, &mut rng, &mut self.scratch);
            self.items.clear();
            self.items
                .extend(self.scratch.picked.iter().map(|&r| pop.item_of_rank(r)));
            for &i in &self.items {
                self.counts[i as usize] += 1;
            }
            // Fake timestamps, increasing along the history, from 2000 to about 2015.
            self.stamps.clear();
            let mut t = 946_684_800 + rng.below(473_040_000);
            for _ in 0..len {
                t += 1 + rng.below(600);
                self.stamps.push(t);
            }
            let held = ((cfg.holdout * len as f64).round() as usize).min(len as usize - 1);
            let kept = len as usize - held;
            let name = user + base;
            self.entries += kept as u64;
            write_row(
                &mut self.out,
                cfg,
                name,
                &self.items[..kept],
                &self.stamps[..kept],
                &mut rng,
            );
            if held > 0 {
                self.holdout_entries += held as u64;
                write_row(
                    &mut self.held,
                    cfg,
                    name,
                    &self.items[kept..],
                    &self.stamps[kept..],
                    &mut rng,
                );
            }
        }
    }
}

/// Appends one user's row(s) in the configured format.
fn write_row(
    buf: &mut Vec<u8>,
    cfg: &Config,
    user: u64,
    items: &[u32],
    stamps: &[u64],
    rng: &mut Rng,
) {
    let base = if cfg.format == Format::Lists { 0 } else { 1 };
    match cfg.format {
        Format::Text => {
            push_u64(buf, user);
            buf.push(b'\t');
            for (n, (&i, &t)) in items.iter().zip(stamps).enumerate() {
                if n > 0 {
                    buf.push(b':');
                }
                push_u64(buf, i as u64 + base);
                if cfg.values {
                    buf.push(b',');
                    push_u64(buf, t);
                }
            }
            buf.push(b'\n');
        }
        Format::Lists => {
            push_u64(buf, user);
            for &i in items {
                buf.push(b' ');
                push_u64(buf, i as u64 + base);
            }
            buf.push(b'\n');
        }
        Format::Csv => {
            for (&i, &t) in items.iter().zip(stamps) {
                push_u64(buf, user);
                buf.push(b',');
                push_u64(buf, i as u64 + base);
                buf.push(b',');
                let mut x = rng.below(1000) as u32;
                let mut rating = RATINGS[RATINGS.len() - 1].0;
                for (r, p) in RATINGS {
                    if x < p {
                        rating = r;
                        break;
                    }
                    x -= p;
                }
                buf.extend_from_slice(rating);
                buf.push(b',');
                push_u64(buf, t);
                buf.push(b'\n');
            }
        }
    }
}

/// Appends the decimal digits of `v`.
#[inline]
fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests;
