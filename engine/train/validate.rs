//! Ranking validation: score each user's input, exclude what the user already has, and
//! measure P@K, Recall@K and NDCG@K against held-out items (EVALUATION.md's definitions).

use super::DataBinding;
use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::network::Network;
use crate::parallel::data::rank_examples;
use crate::parallel::Parallelism;
use crate::predict::metrics::RankingMetrics;
use crate::sparse::{Csr, CsrView};

/// Held-out items to rank against, and when to do it.
#[derive(Clone, Debug)]
pub struct Validation {
    /// Row `e` holds the held-out items of example `e` (column = output unit). Rows past the
    /// end, and empty rows, are not evaluated.
    pub held_out: Csr,
    /// The cutoffs K.
    pub ks: Vec<usize>,
    /// Evaluate after every `every` epochs (and always after the last); 0: only after the last.
    pub every: u32,
    /// Examples per forward pass.
    pub batch: usize,
    /// Model selection on these metrics (keep the best epoch, stop early), if any.
    pub select: Option<super::Selection>,
}

impl Validation {
    /// Whether to evaluate after `epochs_done` of `total` epochs (both counted from the start
    /// of training).
    pub(crate) fn due(&self, epochs_done: u32, total: u32) -> bool {
        epochs_done == total || (self.every > 0 && epochs_done.is_multiple_of(self.every))
    }
}

/// Ranks the output units of the first output layer for every example with held-out items,
/// excluding the example's own items of the first sparse input layer (when it is as wide as
/// the output), and accumulates the metrics. No dropout or denoising.
pub fn evaluate<B: Backend, C: Collective>(
    network: &mut Network<B, C>,
    data: &DataBinding,
    validation: &Validation,
) -> Result<RankingMetrics> {
    let graph = network.graph();
    let output = graph
        .outputs()
        .next()
        .ok_or_else(|| Error::InvalidData("the network has no output layer".into()))?;
    let (output_id, width) = (output.id, output.units);
    if validation.held_out.n_cols() as usize != width {
        return Err(Error::InvalidData(format!(
            "held-out data is {} wide but output layer `{}` has {} units: \
             convert it with the output's features index",
            validation.held_out.n_cols(),
            output.name,
            width
        )));
    }
    let exclude = graph
        .inputs()
        .filter_map(|l| data.dataset(l.id))
        .find(|d| d.stride() as usize == width)
        .and_then(|d| d.sparse_data().map(|csr| (d, csr)));
    let mut metrics = RankingMetrics::new(&validation.ks)?;
    let k = metrics.max_k().min(width);
    let n = data.examples().min(validation.held_out.n_rows());
    let evaluated: Vec<u32> = (0..n as u32)
        .filter(|&e| !validation.held_out.row(e as usize).0.is_empty())
        .collect();
    let batch = validation.batch.clamp(1, network.capacity());
    let (mut ranked, mut scores) = (Vec::new(), Vec::new());
    // Data parallelism: each rank ranks its share of every batch; the sums are added up.
    let (rank, ranks) = match network.parallelism() {
        Parallelism::Data => (network.comm().rank(), network.comm().size()),
        _ => (0, 1),
    };
    for whole in evaluated.chunks(batch) {
        let chunk = rank_examples(whole, rank, ranks);
        let mut mb = data.batch(network.graph(), chunk, None)?;
        mb.layers
            .retain(|(id, _)| network.graph().layer(*id).kind == LayerKind::Input);
        mb.example_weights.clear();
        network.load_batch(mb)?;
        network.forward(false, 0)?;
        let seen =
            exclude.map(|(d, csr)| rows_of(csr, chunk.iter().map(|&e| d.row_of(e as usize))));
        ranked.resize(chunk.len() * k, 0);
        scores.resize(chunk.len() * k, 0.0);
        network.top_k(
            output_id,
            width,
            k,
            seen.as_ref().map(Csr::view),
            &mut ranked,
            &mut scores,
        )?;
        let held = rows_of(&validation.held_out, chunk.iter().map(|&e| e as usize));
        metrics.add_batch(&ranked, k, held.view())?;
    }
    if ranks > 1 {
        metrics.sum_over(network.comm())?;
    }
    Ok(metrics)
}

/// The given rows of `csr` as a new matrix.
fn rows_of(csr: &Csr, rows: impl Iterator<Item = usize>) -> Csr {
    let view: CsrView = csr.view();
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for r in rows {
        cols.extend_from_slice(view.row(r).0);
        offsets.push(cols.len() as u64);
    }
    Csr::new_checked(csr.n_cols(), offsets, cols, None)
}
