//! Ranking metrics P@K, Recall@K and NDCG@K (the definitions of the evaluation protocol).
//!
//! For one user, with `ranked` the top-K item list (best first, distinct items, possibly
//! padded with [`NO_ITEM`](super::NO_ITEM)) and `H` the set of held-out items:
//!
//! - `hit_i = 1` if `ranked[i] ∈ H`, else 0; `hits = Σ_{i<K} hit_i`;
//! - P@K = hits / K;
//! - Recall@K = hits / min(K, |H|)  (Liang et al. 2018);
//! - RecallFull@K = hits / |H|  (LightGCN's recall, whose published Gowalla numbers use it);
//! - NDCG@K = DCG / IDCG, DCG = Σ_{i<K} hit_i / log2(i + 2), IDCG = Σ_{i<min(K,|H|)} 1 / log2(i + 2).
//!
//! `H` is a CSR row, sorted or not; duplicate entries count once. Users with an empty held-out
//! set are skipped (counted apart). [`RankingMetrics`] reports the mean over evaluated users.
//!
//! Determinism: each user's values are computed alone, then added to 128-bit fixed-point sums
//! (2⁻⁵² resolution). Integer addition is associative, so the means are bit-identical whatever
//! the thread count, the batch split or the order in which partial accumulators are merged
//! (e.g. across ranks).

use std::fmt;

use crate::collective::{Collective, ReduceOp};

use rayon::prelude::*;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::sparse::CsrView;

/// Fixed-point scale of the sums: a per-user value `v` is stored as `round(v · 2⁵²)`.
const SCALE: f64 = (1u64 << 52) as f64;

/// Users per rayon task in [`RankingMetrics::add_batch`].
const USERS_PER_TASK: usize = 256;

/// The three metrics at one cutoff `k` (for one user, or a mean over users).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AtK {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    /// hits / |H| (LightGCN's definition of recall).
    pub recall_full: f64,
    pub ndcg: f64,
}

/// P@K, Recall@K and NDCG@K of one user, or `None` if `held_out` is empty.
///
/// Only the first `k` entries of `ranked` are read. Errors if `k == 0` or `ranked` has fewer
/// than `k` entries. For many users use [`RankingMetrics`], which reuses its buffers.
pub fn user_metrics(ranked: &[u32], held_out: &[u32], k: usize) -> Result<Option<AtK>> {
    let mut acc = RankingMetrics::new(&[k])?;
    if !acc.add_user(ranked, held_out)? {
        return Ok(None);
    }
    Ok(acc.means().first().copied())
}

/// Accumulates P@K, Recall@K and NDCG@K over users, for several K at once (all computed from
/// one ranked list of length ≥ max K per user). See the module documentation for the
/// definitions and the determinism guarantee.
#[derive(Clone, Debug)]
pub struct RankingMetrics {
    /// The cutoffs, sorted ascending, distinct.
    ks: Vec<usize>,
    /// `discount[i] = 1 / log2(i + 2)` for `i < max K` (built with the first user, once a
    /// ranked list of max K entries shows that K is not absurd).
    discount: Vec<f64>,
    /// `ideal[n] = Σ_{i<n} discount[i]` for `n ≤ max K` (built with `discount`).
    ideal: Vec<f64>,
    users: u64,
    skipped: u64,
    /// Per cutoff: fixed-point sums of precision, recall, NDCG, recall over |H|.
    sums: Vec<[u128; 4]>,
    /// Scratch: the current user's held-out set, sorted and deduplicated.
    held: Vec<u32>,
}

impl RankingMetrics {
    /// An empty accumulator for the cutoffs `ks` (any order; duplicates are merged).
    /// Errors if `ks` is empty or holds 0.
    pub fn new(ks: &[usize]) -> Result<Self> {
        if ks.is_empty() {
            return Err(Error::invalid_argument("ks", "no cutoff K given"));
        }
        if ks.contains(&0) {
            return Err(Error::invalid_argument("ks", "a cutoff K must be >= 1"));
        }
        let mut ks = ks.to_vec();
        ks.sort_unstable();
        ks.dedup();
        Ok(RankingMetrics {
            sums: vec![[0; 4]; ks.len()],
            ks,
            discount: Vec::new(),
            ideal: Vec::new(),
            users: 0,
            skipped: 0,
            held: Vec::new(),
        })
    }

    /// The cutoffs, ascending.
    pub fn ks(&self) -> &[usize] {
        &self.ks
    }

    /// The largest cutoff: the length of ranked list each user needs.
    pub fn max_k(&self) -> usize {
        self.ks[self.ks.len() - 1]
    }

    /// Number of users evaluated (non-empty held-out set).
    pub fn users(&self) -> u64 {
        self.users
    }

    /// Number of users skipped because their held-out set was empty.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Adds one user: `ranked` (at least [`max_k`](Self::max_k) entries; only those are read)
    /// against `held_out`. Returns `false` if the user was skipped (empty held-out set).
    /// Errors if `ranked` is too short.
    pub fn add_user(&mut self, ranked: &[u32], held_out: &[u32]) -> Result<bool> {
        if ranked.len() < self.max_k() {
            return Err(Error::invalid_argument(
                "ranked",
                format!(
                    "{} items ranked, the largest cutoff is {}",
                    ranked.len(),
                    self.max_k()
                ),
            ));
        }
        self.ensure_tables();
        Ok(self.add_unchecked(ranked, held_out))
    }

    /// Adds a batch of users: row `u` of the row-major `[n × stride]` matrix `ranked` (its
    /// first [`max_k`](Self::max_k) entries) against row `u` of `held_out`. Parallel over
    /// users; the result equals adding them one by one.
    ///
    /// Errors if `stride < max_k`, `ranked.len()` is not `held_out.n_rows() × stride`.
    pub fn add_batch(
        &mut self,
        ranked: &[u32],
        stride: usize,
        held_out: CsrView<'_>,
    ) -> Result<()> {
        if stride < self.max_k() {
            return Err(Error::invalid_argument(
                "stride",
                format!(
                    "rows of {stride} items, the largest cutoff is {}",
                    self.max_k()
                ),
            ));
        }
        let n = held_out.n_rows();
        if n.checked_mul(stride) != Some(ranked.len()) {
            return Err(Error::invalid_argument(
                "ranked",
                format!("{} items for {n} users × {stride}", ranked.len()),
            ));
        }
        if n == 0 {
            return Ok(());
        }
        self.ensure_tables();
        let empty = self.empty_like();
        let total = ranked
            .par_chunks(USERS_PER_TASK * stride)
            .enumerate()
            .map(|(task, chunk)| {
                let mut acc = empty.clone();
                for (r, row) in chunk.chunks(stride).enumerate() {
                    acc.add_unchecked(row, held_out.row(task * USERS_PER_TASK + r).0);
                }
                acc
            })
            .reduce(
                || empty.clone(),
                |mut a, b| {
                    a.add_sums(&b);
                    a
                },
            );
        self.add_sums(&total);
        Ok(())
    }

    /// Adds the users of `other` (e.g. another rank's or thread's accumulator).
    /// Errors if the cutoffs differ.
    pub fn merge(&mut self, other: &RankingMetrics) -> Result<()> {
        if self.ks != other.ks {
            return Err(Error::invalid_argument(
                "other",
                format!("cutoffs {:?} differ from {:?}", other.ks, self.ks),
            ));
        }
        self.add_sums(other);
        Ok(())
    }

    /// Replaces the counts and sums by their totals over every rank of `comm` (each rank
    /// having evaluated other users): an exact all-reduce, the same on every rank.
    /// Collective; every rank must have the same cutoffs.
    pub fn sum_over<C: Collective>(&mut self, comm: &C) -> Result<()> {
        let mut totals: Vec<i128> = vec![self.users as i128, self.skipped as i128];
        totals.extend(self.sums.iter().flatten().map(|&s| s as i128));
        comm.all_reduce(&mut totals, ReduceOp::Sum)?;
        self.users = totals[0] as u64;
        self.skipped = totals[1] as u64;
        for (s, &t) in self.sums.iter_mut().flatten().zip(&totals[2..]) {
            *s = t as u128;
        }
        Ok(())
    }

    /// Mean metrics per cutoff, ascending K; empty if no user was evaluated.
    pub fn means(&self) -> Vec<AtK> {
        if self.users == 0 {
            return Vec::new();
        }
        let n = self.users as f64;
        let mean = |sum: u128| sum as f64 / SCALE / n;
        self.ks
            .iter()
            .zip(&self.sums)
            .map(|(&k, s)| AtK {
                k,
                precision: mean(s[0]),
                recall: mean(s[1]),
                recall_full: mean(s[3]),
                ndcg: mean(s[2]),
            })
            .collect()
    }

    /// Mean metrics at cutoff `k`, or `None` if `k` is not a cutoff or no user was evaluated.
    pub fn mean_at(&self, k: usize) -> Option<AtK> {
        self.means().into_iter().find(|m| m.k == k)
    }

    /// The means as JSON:
    /// `{"users": n, "skipped": m, "metrics": [{"k": 10, "precision": …, "recall": …,
    /// "recall_full": …, "ndcg": …}, …]}`
    /// (`metrics` is empty when no user was evaluated).
    pub fn to_json(&self) -> Value {
        let metrics: Vec<Value> = self
            .means()
            .iter()
            .map(|m| {
                json!({"k": m.k, "precision": m.precision, "recall": m.recall,
                        "recall_full": m.recall_full, "ndcg": m.ndcg})
            })
            .collect();
        json!({"users": self.users, "skipped": self.skipped, "metrics": metrics})
    }

    /// Builds the discount tables, if not done yet.
    fn ensure_tables(&mut self) {
        if !self.discount.is_empty() {
            return;
        }
        let max_k = self.max_k();
        self.discount = (0..max_k).map(|i| 1.0 / ((i + 2) as f64).log2()).collect();
        self.ideal = Vec::with_capacity(max_k + 1);
        self.ideal.push(0.0);
        for i in 0..max_k {
            self.ideal.push(self.ideal[i] + self.discount[i]);
        }
    }

    /// An accumulator with the same cutoffs and no users.
    fn empty_like(&self) -> Self {
        RankingMetrics {
            ks: self.ks.clone(),
            discount: self.discount.clone(),
            ideal: self.ideal.clone(),
            users: 0,
            skipped: 0,
            sums: vec![[0; 4]; self.ks.len()],
            held: Vec::new(),
        }
    }

    fn add_sums(&mut self, other: &RankingMetrics) {
        self.users += other.users;
        self.skipped += other.skipped;
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// Adds one user; `ranked` has at least `max_k` entries.
    fn add_unchecked(&mut self, ranked: &[u32], held_out: &[u32]) -> bool {
        self.held.clear();
        self.held.extend_from_slice(held_out);
        self.held.sort_unstable();
        self.held.dedup();
        let h = self.held.len();
        if h == 0 {
            self.skipped += 1;
            return false;
        }
        self.users += 1;
        let fixed = |v: f64| (v * SCALE).round() as u128;
        let (mut hits, mut dcg, mut next) = (0usize, 0.0f64, 0usize);
        for (i, item) in ranked[..self.max_k()].iter().enumerate() {
            if self.held.binary_search(item).is_ok() {
                hits += 1;
                dcg += self.discount[i];
            }
            while next < self.ks.len() && self.ks[next] == i + 1 {
                let k = self.ks[next];
                let denom = k.min(h);
                let sums = &mut self.sums[next];
                sums[0] += fixed(hits as f64 / k as f64);
                sums[1] += fixed(hits as f64 / denom as f64);
                sums[2] += fixed(dcg / self.ideal[denom]);
                sums[3] += fixed(hits as f64 / h as f64);
                next += 1;
            }
        }
        true
    }
}

/// A plain-text table of the means, one line per cutoff, then the user counts.
impl fmt::Display for RankingMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>6}  {:>8}  {:>8}  {:>8}",
            "K", "P@K", "Recall@K", "NDCG@K"
        )?;
        for m in self.means() {
            writeln!(
                f,
                "{:>6}  {:>8.4}  {:>8.4}  {:>8.4}",
                m.k, m.precision, m.recall, m.ndcg
            )?;
        }
        write!(
            f,
            "users: {} evaluated, {} skipped (empty held-out set)",
            self.users, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_sorted_deduplicated_and_validated() {
        assert!(RankingMetrics::new(&[]).is_err());
        assert!(RankingMetrics::new(&[5, 0]).is_err());
        let m = RankingMetrics::new(&[20, 5, 20]).unwrap();
        assert_eq!(m.ks(), [5, 20]);
        assert_eq!(m.max_k(), 20);
        assert!(m.means().is_empty());
        assert_eq!(m.to_json()["metrics"], json!([]));
    }

    #[test]
    fn ranked_list_shorter_than_max_k_is_an_error() {
        let mut m = RankingMetrics::new(&[3]).unwrap();
        assert!(m.add_user(&[1, 2], &[1]).is_err());
        assert!(user_metrics(&[1], &[1], 0).is_err());
        // An absurd K allocates nothing and is refused with the first user.
        let mut huge = RankingMetrics::new(&[usize::MAX]).unwrap();
        assert!(huge.add_user(&[1, 2], &[1]).is_err());
    }
}
