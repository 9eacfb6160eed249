//! MovieLens-1M's training lists from ../shared/data, for the tests that train on real rows.

use moira::sparse::Csr;

/// ML-1M's training lists (`user item item …`); the environment's `MOIRA_ML1M_TRAIN` names
/// another copy (the GPU bundle of benches/gpu/pack.sh carries one: the GPU machine has no
/// ../shared).
const ML1M_TRAIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-1m-lightgcnpp/train.txt"
);

/// The first `users` rows of ML-1M's training lists, as a CSR over every item id seen in
/// them (columns sorted, duplicates removed).
pub fn ml1m(users: usize) -> Csr {
    let path = std::env::var("MOIRA_ML1M_TRAIN").unwrap_or_else(|_| ML1M_TRAIN.to_string());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path} (../shared/data must be present): {e}"));
    let mut rows: Vec<Vec<u32>> = text
        .lines()
        .take(users)
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|t| t.parse().unwrap())
                .collect()
        })
        .collect();
    let items = rows.iter().flatten().max().unwrap() + 1;
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for r in &mut rows {
        r.sort_unstable();
        r.dedup();
        cols.extend_from_slice(r);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(items, offsets, cols, None).unwrap()
}
