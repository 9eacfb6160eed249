//! [`Rows`]: collects parsed `(sample, feature, value)` data into CSR form, keyed by the
//! sample and feature indices, without per-entry allocation.
//!
//! Rows are staged in input order. [`Rows::finish`] emits one row per sample of the samples
//! index, in index order (row `r` is the sample with index `r`; samples with no data get an
//! empty row). When the staged rows already are in that order, which is the case for a fresh
//! samples index, the staged arrays become the CSR without a copy.

use crate::dataset::index::Index;
use crate::error::{Error, Result};
use crate::sparse::Csr;

const NONE: u32 = u32::MAX;

/// How many distinct unknown features [`Stats::unknown_feature_examples`] keeps.
pub const UNKNOWN_EXAMPLES: usize = 5;

/// What a sample that appears again does to its earlier data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// The new row replaces the earlier one (DSSTNE's text format; warned).
    Replace,
    /// The new entries are appended to the sample's row (CSV and lists formats).
    Append,
}

/// Counts of what the parsers skipped or noticed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines (Parquet: rows) read (including empty and skipped ones).
    pub lines: u64,
    /// Entries kept.
    pub entries: u64,
    /// Lines skipped as malformed (text format: no TAB, empty sample name).
    pub skipped_lines: u64,
    /// Rows that replaced an earlier row of the same sample.
    pub duplicate_samples: u64,
    /// Entries with more than one `,value` (the first value was kept).
    pub extra_values: u64,
    /// Entries dropped because their feature is not in a fixed features index.
    pub unknown_features: u64,
    /// The first few distinct unknown features (at most [`UNKNOWN_EXAMPLES`]), for messages.
    pub unknown_feature_examples: Vec<String>,
    /// Entries dropped by a minimum-rating filter.
    pub below_min_rating: u64,
    /// Parquet rows skipped because their user, item or value is null.
    pub null_rows: u64,
}

/// Staged rows bound to a samples and a features index (see the module documentation).
#[derive(Debug)]
pub struct Rows<'ix> {
    samples: &'ix mut Index,
    features: &'ix mut Index,
    extend_features: bool,
    analog: bool,
    repeat: Repeat,
    row_sample: Vec<u32>,
    offsets: Vec<u64>,
    cols: Vec<u32>,
    vals: Vec<f32>,
    /// Per sample: its first and last staged rows; per staged row: the next row of the same
    /// sample (Append only).
    first: Vec<u32>,
    last: Vec<u32>,
    next: Vec<u32>,
    in_order: bool,
    open: bool,
    /// The counts of skipped and noticed input.
    pub stats: Stats,
}

impl<'ix> Rows<'ix> {
    /// Staged rows over `samples` (always extended with new samples) and `features`
    /// (extended with new features when `extend_features`, otherwise unknown features are
    /// dropped and counted). `analog` keeps values; otherwise the data is boolean.
    pub fn new(
        samples: &'ix mut Index,
        features: &'ix mut Index,
        extend_features: bool,
        analog: bool,
        repeat: Repeat,
    ) -> Self {
        Rows {
            samples,
            features,
            extend_features,
            analog,
            repeat,
            row_sample: Vec::new(),
            offsets: vec![0],
            cols: Vec::new(),
            vals: Vec::new(),
            first: Vec::new(),
            last: Vec::new(),
            next: Vec::new(),
            in_order: true,
            open: false,
            stats: Stats::default(),
        }
    }

    /// Number of features in the features index so far.
    pub fn features_len(&self) -> usize {
        self.features.len()
    }

    /// Whether values are kept.
    pub fn analog(&self) -> bool {
        self.analog
    }

    /// Starts a new row for `sample` (closing the open one). Returns `true` when the sample
    /// already had a row (for `Repeat::Replace`, the earlier row is discarded).
    pub fn begin_row(&mut self, sample: &[u8]) -> Result<bool> {
        self.end_row();
        let (s, _) = self.samples.get_or_insert(sample)?;
        let s = s as usize;
        if s >= self.first.len() {
            self.first.resize(s + 1, NONE);
            self.last.resize(s + 1, NONE);
        }
        let r = u32::try_from(self.row_sample.len())
            .ok()
            .filter(|&r| r != NONE)
            .ok_or_else(|| Error::InvalidData("more than 2^32 - 1 rows".into()))?;
        self.in_order &= s == r as usize;
        self.row_sample.push(s as u32);
        self.next.push(NONE);
        self.open = true;
        let repeated = self.first[s] != NONE;
        if !repeated {
            self.first[s] = r;
        } else if self.repeat == Repeat::Replace {
            self.stats.duplicate_samples += 1;
            self.first[s] = r;
        } else {
            let prev = self.last[s] as usize;
            self.next[prev] = r;
        }
        self.last[s] = r;
        Ok(repeated)
    }

    /// The index of the sample whose row is open, if any.
    pub fn open_sample(&self) -> Option<u32> {
        self.open.then(|| self.row_sample.last().copied()).flatten()
    }

    /// Adds an entry to the open row. Returns `false` (and counts it) when the feature is
    /// unknown and the features index is fixed. Must follow [`Rows::begin_row`].
    #[inline]
    pub fn push(&mut self, feature: &[u8], value: f32) -> Result<bool> {
        debug_assert!(self.open, "push without an open row");
        let col = match self.features.get(feature) {
            Some(c) => c,
            None if self.extend_features => self.features.get_or_insert(feature)?.0,
            None => {
                self.stats.unknown_features += 1;
                let examples = &mut self.stats.unknown_feature_examples;
                if examples.len() < UNKNOWN_EXAMPLES {
                    let label = String::from_utf8_lossy(feature);
                    if !examples.iter().any(|e| *e == label) {
                        examples.push(label.into_owned());
                    }
                }
                return Ok(false);
            }
        };
        self.cols.push(col);
        if self.analog {
            self.vals.push(value);
        }
        self.stats.entries += 1;
        Ok(true)
    }

    /// Closes the open row, if any.
    pub fn end_row(&mut self) {
        if self.open {
            self.offsets.push(self.cols.len() as u64);
            self.open = false;
        }
    }

    /// Emits the CSR: one row per sample index `0..samples.len()`, in index order, with
    /// `n_cols` columns (at least the features index length; checked).
    pub fn finish(mut self, n_cols: u32) -> Result<(Csr, Stats)> {
        self.end_row();
        if (n_cols as usize) < self.features.len() {
            return Err(Error::InvalidData(format!(
                "width {n_cols} is smaller than the {} indexed features",
                self.features.len()
            )));
        }
        let n_rows = self.samples.len();
        let single = self.repeat == Repeat::Replace || self.next.iter().all(|&n| n == NONE);
        let vals = self.analog.then(|| std::mem::take(&mut self.vals));
        if self.in_order && self.row_sample.len() == n_rows && single {
            let offsets = std::mem::take(&mut self.offsets);
            let cols = std::mem::take(&mut self.cols);
            let csr = Csr::new_checked(n_cols, offsets, cols, vals);
            return Ok((csr, self.stats));
        }
        // Gather the rows of every sample, in sample order.
        let mut offsets = Vec::with_capacity(n_rows + 1);
        offsets.push(0u64);
        let kept: usize = (0..n_rows)
            .map(|s| self.rows_of(s).map(|r| self.len_of(r)).sum::<usize>())
            .sum();
        let mut cols = Vec::with_capacity(kept);
        let mut out_vals = vals.as_ref().map(|_| Vec::with_capacity(kept));
        for s in 0..n_rows {
            for r in self.rows_of(s) {
                let (a, b) = (self.offsets[r] as usize, self.offsets[r + 1] as usize);
                cols.extend_from_slice(&self.cols[a..b]);
                if let (Some(out), Some(v)) = (out_vals.as_mut(), vals.as_ref()) {
                    out.extend_from_slice(&v[a..b]);
                }
            }
            offsets.push(cols.len() as u64);
        }
        drop(vals);
        let csr = Csr::new_checked(n_cols, offsets, cols, out_vals);
        Ok((csr, self.stats))
    }

    fn len_of(&self, r: usize) -> usize {
        (self.offsets[r + 1] - self.offsets[r]) as usize
    }

    /// The staged rows of sample `s`, in order (only the last one for `Replace`).
    fn rows_of(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        let start = match self.repeat {
            _ if s >= self.first.len() => NONE,
            Repeat::Replace => self.last[s],
            Repeat::Append => self.first[s],
        };
        let replace = self.repeat == Repeat::Replace;
        std::iter::successors((start != NONE).then_some(start as usize), move |&r| {
            let n = self.next[r];
            (!replace && n != NONE).then_some(n as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(csr: &Csr) -> Vec<Vec<(u32, f32)>> {
        (0..csr.n_rows())
            .map(|r| {
                let (c, v) = csr.row(r);
                c.iter()
                    .enumerate()
                    .map(|(i, &c)| (c, v.map_or(1.0, |v| v[i])))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn fresh_index_in_order_is_taken_as_is() {
        let (mut s, mut f) = (Index::new(), Index::new());
        let mut rows = Rows::new(&mut s, &mut f, true, true, Repeat::Replace);
        rows.begin_row(b"u1").unwrap();
        rows.push(b"a", 1.0).unwrap();
        rows.push(b"b", 2.0).unwrap();
        rows.begin_row(b"u2").unwrap();
        rows.push(b"b", 3.0).unwrap();
        let (csr, stats) = rows.finish(128).unwrap();
        assert_eq!(
            rows_of(&csr),
            vec![vec![(0, 1.0), (1, 2.0)], vec![(1, 3.0)]]
        );
        assert_eq!((stats.entries, csr.n_cols()), (3, 128));
    }

    #[test]
    fn replace_keeps_the_last_row_and_emits_index_order() {
        let mut s = Index::new();
        for l in ["x", "y", "z"] {
            s.get_or_insert(l.as_bytes()).unwrap();
        }
        let mut f = Index::new();
        let mut rows = Rows::new(&mut s, &mut f, true, false, Repeat::Replace);
        rows.begin_row(b"y").unwrap();
        rows.push(b"a", 0.0).unwrap();
        assert!(!rows.begin_row(b"w").unwrap());
        rows.push(b"b", 0.0).unwrap();
        assert!(rows.begin_row(b"y").unwrap());
        rows.push(b"c", 0.0).unwrap();
        let (csr, stats) = rows.finish(3).unwrap();
        assert_eq!(stats.duplicate_samples, 1);
        assert!(csr.values().is_none());
        assert_eq!(
            rows_of(&csr),
            vec![vec![], vec![(2, 1.0)], vec![], vec![(1, 1.0)]]
        );
    }

    #[test]
    fn append_concatenates_and_fixed_features_drop_unknowns() {
        let (mut s, mut f) = (Index::new(), Index::new());
        f.get_or_insert(b"a").unwrap();
        let mut rows = Rows::new(&mut s, &mut f, false, true, Repeat::Append);
        rows.begin_row(b"u").unwrap();
        rows.push(b"a", 1.0).unwrap();
        rows.begin_row(b"v").unwrap();
        assert!(!rows.push(b"zz", 1.0).unwrap());
        rows.begin_row(b"u").unwrap();
        rows.push(b"a", 2.0).unwrap();
        let (csr, stats) = rows.finish(1).unwrap();
        assert_eq!(rows_of(&csr), vec![vec![(0, 1.0), (0, 2.0)], vec![]]);
        assert_eq!((stats.unknown_features, stats.entries), (1, 2));
        assert_eq!(stats.unknown_feature_examples, ["zz"]);
    }

    #[test]
    fn width_below_the_features_index_is_refused() {
        let (mut s, mut f) = (Index::new(), Index::new());
        let mut rows = Rows::new(&mut s, &mut f, true, false, Repeat::Append);
        rows.begin_row(b"u").unwrap();
        rows.push(b"a", 1.0).unwrap();
        rows.push(b"b", 1.0).unwrap();
        assert!(rows.finish(1).is_err());
    }
}
