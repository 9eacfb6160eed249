//! The prediction loop ([`run`]): the examples of a [`DataBinding`] batch by batch through a
//! trained [`Network`] (forward pass without dropout), then per batch a layer's activations,
//! the exact top-K of the output layer's candidate items, and ranking metrics against
//! held-out items. Each batch's results go to the caller's callback as the batch ends
//! ([`PredictedBatch`]), so that memory does not grow with the number of examples.
//!
//! # Exclusions and the filter
//!
//! An example is never recommended an item of its own input row ([`PredictConfig::exclude`],
//! usually [`input_items`]). A per-example filter ([`PredictConfig::filter`], row `e` for
//! example `e`) changes the ranking by its [`FilterMode`]: in `Exclude` mode every item of an
//! example's filter row is excluded; in `Multiply` mode (DSSTNE's) each item's score is
//! multiplied by its filter value, a missing value (boolean data, text without `,value`)
//! counts as 0, and an item whose value is 0 is excluded instead of being ranked with score 0.
//! The scores handed over are the multiplied ones.
//!
//! # Ranking
//!
//! [`Network::top_k`]'s contract: higher score first, ties to the lower item index, NaN never
//! selected, [`NO_ITEM`](super::NO_ITEM) with score `−∞` in the slots past the eligible
//! items.
//!
//! # Several ranks
//!
//! On a model-parallel network the loop is collective: every rank calls [`run`] with the same
//! data and configuration and runs every step; every rank's callback gets the whole results
//! (the top-K lists are merged and the layer gathered on every rank). Let one rank write
//! ([`Network::is_root`]).
//!
//! On a data-parallel network ([`Parallelism::Data`]) the loop is collective too and the
//! examples are split: each rank scores its [`rank_examples`] share of each batch, and the ranked lists (and the layer's rows) are all-gathered, so
//! that every rank's callback gets the whole step in example order, as on one rank.

use crate::backend::traits::Backend;
use crate::collective::Collective;
use crate::dataset::Dataset;
use crate::dense::Matrix;
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::{DataShape, Graph, LayerId};
use crate::network::Network;
use crate::parallel::data::rank_examples;
use crate::parallel::{Parallelism, Split};
use crate::predict::metrics::RankingMetrics;
use crate::sparse::Csr;
use crate::topk::top_k_batch;
use crate::train::DataBinding;

/// What a per-example filter does to the scores (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FilterMode {
    /// Exclude every filtered item.
    #[default]
    Exclude,
    /// Multiply each filtered item's score by its value; value 0 (or none) excludes it.
    Multiply,
}

/// What [`run`] computes.
#[derive(Clone, Copy, Debug)]
pub struct PredictConfig<'a> {
    /// The layer whose units are ranked: usually the first output layer.
    pub output: LayerId,
    /// The candidate items: the first `items` units of `output` (fewer than its units when
    /// the last ones are padding, e.g. a width rounded up past the output's features index).
    pub items: usize,
    /// Recommendations per example ([`PredictedBatch::recommendations`]); 0 for none (only
    /// the metrics or the layer).
    pub k: usize,
    /// A layer whose activations each batch hands over ([`PredictedBatch::layer`]).
    pub layer: Option<LayerId>,
    /// Examples per forward pass, clamped to `1..=network.capacity()`.
    pub batch: usize,
    /// Each example's own items, never recommended: row `d.row_of(e)` of this sparse dataset
    /// (as wide as `output`) for example `e`; usually the input's ([`input_items`]).
    pub exclude: Option<&'a Dataset>,
    /// The per-example filter, row `e` for example `e`, as wide as `output` (rows past its
    /// end filter nothing), and its mode.
    pub filter: Option<(&'a Csr, FilterMode)>,
}

/// One batch's results, handed to the callback of [`run`].
#[derive(Clone, Copy, Debug)]
pub struct PredictedBatch<'a> {
    /// The examples of the batch (indices into the data, consecutive and increasing).
    pub examples: &'a [u32],
    /// The configuration's [`k`](PredictConfig::k): the recommendations per example.
    pub k: usize,
    /// Slots per example in `ranked` and `scores`: the larger of `k` and the metrics' largest
    /// cutoff; 0 when nothing was ranked.
    pub stride: usize,
    /// Row-major `[examples.len() × stride]`: each example's ranked items (unit indices of
    /// the output layer), best first, [`NO_ITEM`](super::NO_ITEM) past the eligible items.
    pub ranked: &'a [u32],
    /// The scores of `ranked` (multiplied by the filter in `Multiply` mode; `−∞` for
    /// padding).
    pub scores: &'a [f32],
    /// The activations of the configuration's [`layer`](PredictConfig::layer),
    /// `[examples.len() × units]`.
    pub layer: Option<&'a Matrix>,
}

impl<'a> PredictedBatch<'a> {
    /// Number of examples in the batch.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether the batch has no examples (never, for a batch handed over by [`run`]).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The recommendations of the batch's `i`-th example: its first [`k`](Self::k) ranked
    /// items and their scores, padding ([`NO_ITEM`](super::NO_ITEM)) included; empty when
    /// `k` is 0 or `i` is outside the batch.
    pub fn recommendations(&self, i: usize) -> (&'a [u32], &'a [f32]) {
        let row = i * self.stride..i * self.stride + self.k;
        match (self.ranked.get(row.clone()), self.scores.get(row)) {
            (Some(items), Some(scores)) if i < self.len() => (items, scores),
            _ => (&[], &[]),
        }
    }
}

/// The shapes to compile a saved `model` against for prediction: those of the input
/// `datasets`, and for every other data-bound layer (the outputs, whose data prediction does
/// not read) its saved size.
pub fn model_shapes(model: &crate::checkpoint::Model, datasets: &[Dataset]) -> Vec<DataShape> {
    let mut shapes = crate::train::shapes(datasets);
    let examples = datasets.first().map_or(0, Dataset::examples);
    for layer in &model.descriptor.layers {
        let (Some(name), crate::descriptor::Size::Fixed(dims)) = (&layer.dataset, &layer.size)
        else {
            continue;
        };
        if !shapes.iter().any(|s| &s.name == name) {
            shapes.push(DataShape {
                name: name.clone(),
                dims: dims.clone(),
                examples,
                sparse: layer.sparse,
            });
        }
    }
    shapes
}

/// The dataset holding each example's own items, to exclude from its recommendations: the
/// dataset bound in `data` to the first Input layer as wide as layer `output`, if that one is
/// sparse (`None` otherwise).
pub fn input_items<'a>(
    graph: &Graph,
    data: &DataBinding<'a>,
    output: LayerId,
) -> Option<&'a Dataset> {
    let width = graph.layers().get(output.0)?.units;
    graph
        .inputs()
        .filter_map(|l| data.dataset(l.id))
        .find(|d| d.stride() as usize == width)
        .filter(|d| d.is_sparse())
}

/// Predicts every example of `data` (bound to `network`'s graph; only its Input layers are
/// loaded) as `config` says, batch by batch in order, and hands each batch to `on_batch`
/// ([`PredictedBatch`]): the layer's activations when asked, and when `config.k > 0` or
/// `evaluate` is given, the exact top-`stride` of the first `config.items` units of
/// `config.output`, without each example's excluded items (see the [module
/// documentation](self)).
///
/// `evaluate`: held-out items (row `e` for example `e`, as wide as the output) and the
/// metrics to accumulate; an example whose row is empty or past the end is not counted.
///
/// Collective on a model-parallel network (every rank calls it alike). Stops at the first
/// error, `on_batch`'s included.
///
/// Errors ([`Error::InvalidArgument`]): a layer id outside the graph; `config.items` above
/// the output's units; a ranked length (`k`, the metrics' largest cutoff) above
/// `config.items`; an `exclude` dataset that is dense, not as wide as the output or with
/// fewer examples than `data`; a filter or held-out matrix not as wide as the output; more
/// than 2³² examples. And the network's errors (a sparse input layer as `layer` or
/// `output`, a failed device).
pub fn run<B, C, E>(
    network: &mut Network<B, C>,
    data: &DataBinding<'_>,
    config: &PredictConfig<'_>,
    mut evaluate: Option<(&Csr, &mut RankingMetrics)>,
    mut on_batch: impl FnMut(&PredictedBatch<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E>
where
    B: Backend,
    C: Collective,
    E: From<Error>,
{
    let max_k = evaluate.as_ref().map_or(0, |(_, m)| m.max_k());
    let held_out = evaluate.as_ref().map(|(h, _)| *h);
    let stride = check(network.graph(), data, config, held_out, max_k)?;
    let (n, items, output) = (data.examples(), config.items, config.output);
    let width = network.graph().layer(output).units;
    let batch = config.batch.clamp(1, network.capacity());
    let exclude = config
        .exclude
        .and_then(|d| d.sparse_data().map(|csr| (d, csr)));
    let (mut ranked, mut scores, mut work) = (Vec::new(), Vec::new(), Vec::<f32>::new());
    let (rank, ranks) = match network.parallelism() {
        Parallelism::Data => (network.comm().rank(), network.comm().size()),
        _ => (0, 1),
    };
    let mut whole: Vec<u32> = Vec::with_capacity(batch);
    let mut gathered = Gathered::default();
    for start in (0..n).step_by(batch) {
        whole.clear();
        whole.extend((start..n.min(start + batch)).map(|e| e as u32));
        let chunk = rank_examples(&whole, rank, ranks);
        let graph = network.graph();
        let mut mb = data.batch(graph, chunk, None)?;
        mb.layers
            .retain(|(id, _)| graph.layer(*id).kind == LayerKind::Input);
        mb.example_weights.clear();
        network.load_batch(mb)?;
        network.forward(false, 0)?;
        let values = config
            .layer
            .map(|id| network.layer_output(id))
            .transpose()?;
        ranked.resize(chunk.len() * stride, 0);
        scores.resize(chunk.len() * stride, 0.0);
        if stride > 0 {
            let seen = exclusions(chunk, exclude, config.filter, items);
            if let Some((f, FilterMode::Multiply)) = config.filter {
                // Scores change on the host first: select there.
                let out = network.layer_output(output)?;
                work.clear();
                for row in out.data().chunks(width) {
                    work.extend_from_slice(&row[..items]);
                }
                multiply(&mut work, items, chunk, f);
                top_k_batch(
                    &work,
                    items,
                    stride,
                    seen.as_ref().map(Csr::view),
                    0,
                    &mut ranked,
                    &mut scores,
                )?;
            } else {
                // On the device where the scores are (the CPU backend selects in place).
                network.top_k(
                    output,
                    items,
                    stride,
                    seen.as_ref().map(Csr::view),
                    &mut ranked,
                    &mut scores,
                )?;
            }
        }
        let (ranked, scores, values) = if ranks > 1 {
            gathered.collect(
                network.comm(),
                whole.len(),
                stride,
                (&ranked, &scores),
                values,
            )?;
            (&gathered.ranked, &gathered.scores, gathered.layer.take())
        } else {
            (&ranked, &scores, values)
        };
        if let Some((held, metrics)) = evaluate.as_mut() {
            for (i, &e) in whole.iter().enumerate() {
                let e = e as usize;
                if e < held.n_rows() && !held.row(e).0.is_empty() {
                    metrics.add_user(&ranked[i * stride..(i + 1) * stride], held.row(e).0)?;
                }
            }
        }
        on_batch(&PredictedBatch {
            examples: &whole,
            k: config.k,
            stride,
            ranked,
            scores,
            layer: values.as_ref(),
        })?;
    }
    Ok(())
}

/// A data-parallel step's results assembled from every rank's share.
#[derive(Default)]
struct Gathered {
    ranked: Vec<u32>,
    scores: Vec<f32>,
    layer: Option<Matrix>,
}

impl Gathered {
    /// All-gathers the ranked lists and scores (`stride` per example) and the layer's rows of
    /// every rank's [`rank_examples`] share of a step of `examples` examples.
    fn collect<C: Collective>(
        &mut self,
        comm: &C,
        examples: usize,
        stride: usize,
        (ranked, scores): (&[u32], &[f32]),
        layer: Option<Matrix>,
    ) -> Result<()> {
        let rows = Split::even(examples, comm.size())?.counts();
        let counts: Vec<usize> = rows.iter().map(|r| r * stride).collect();
        self.ranked.resize(examples * stride, 0);
        self.scores.resize(examples * stride, 0.0);
        comm.all_gather(ranked, &counts, &mut self.ranked)?;
        comm.all_gather(scores, &counts, &mut self.scores)?;
        self.layer = match layer {
            Some(m) => {
                let units = m.cols();
                let counts: Vec<usize> = rows.iter().map(|r| r * units).collect();
                let mut all = vec![0.0f32; examples * units];
                comm.all_gather(m.data(), &counts, &mut all)?;
                Some(Matrix::from_vec(examples, units, all)?)
            }
            None => None,
        };
        Ok(())
    }
}

/// Checks `config` against `graph` and `data` (see [`run`]'s errors); returns the ranked
/// length (0: nothing to rank).
fn check(
    graph: &Graph,
    data: &DataBinding<'_>,
    config: &PredictConfig<'_>,
    held_out: Option<&Csr>,
    max_k: usize,
) -> Result<usize> {
    let arg = Error::invalid_argument;
    let layer = |id: LayerId, name: &'static str| {
        graph.layers().get(id.0).ok_or_else(|| {
            arg(
                name,
                format!("layer {} of a graph of {}", id.0, graph.layers().len()),
            )
        })
    };
    let output = layer(config.output, "output")?;
    if let Some(id) = config.layer {
        layer(id, "layer")?;
    }
    let (width, name) = (output.units, &output.name);
    if config.items > width {
        return Err(arg(
            "items",
            format!("{} items, layer `{name}` has {width} units", config.items),
        ));
    }
    let stride = config.k.max(max_k);
    if stride > config.items {
        return Err(arg(
            "k",
            format!(
                "{stride} items ranked of {} candidates of layer `{name}`",
                config.items
            ),
        ));
    }
    let n = data.examples();
    if u32::try_from(n).is_err() {
        return Err(arg("data", format!("{n} examples exceed 2^32")));
    }
    if let Some(d) = config.exclude {
        if !d.is_sparse() || d.stride() != width as u64 || d.examples() < n {
            return Err(arg(
                "exclude",
                format!(
                    "dataset `{}` ({}, {} wide, {} examples) must be sparse, as wide as \
                     layer `{name}` ({width}) with an example per example of the data ({n})",
                    d.name(),
                    if d.is_sparse() { "sparse" } else { "dense" },
                    d.stride(),
                    d.examples()
                ),
            ));
        }
    }
    let wide = |csr: &Csr, what: &'static str| {
        if csr.n_cols() as usize == width {
            Ok(())
        } else {
            Err(arg(
                what,
                format!("{} wide but layer `{name}` has {width} units", csr.n_cols()),
            ))
        }
    };
    if let Some((f, _)) = config.filter {
        wide(f, "filter")?;
    }
    if let Some(h) = held_out {
        wide(h, "held_out")?;
    }
    Ok(stride)
}

/// The excluded items of each example of `chunk`, sorted and deduplicated, those below
/// `width`: its input row (if `input`) and the entries of its `filter` row (all of them in
/// exclude mode, those of value 0 or without value in multiply mode); `None` when nothing
/// can be excluded. An example past the end of the input dataset or of the filter gets
/// nothing from it.
pub fn exclusions(
    chunk: &[u32],
    input: Option<(&Dataset, &Csr)>,
    filter: Option<(&Csr, FilterMode)>,
    width: usize,
) -> Option<Csr> {
    if input.is_none() && filter.is_none() {
        return None;
    }
    let mut offsets = vec![0u64];
    let mut cols: Vec<u32> = Vec::new();
    for &e in chunk {
        let start = cols.len();
        if let Some((d, csr)) = input.filter(|(d, _)| (e as usize) < d.examples()) {
            if let Some(row) = Some(d.row_of(e as usize)).filter(|&r| r < csr.n_rows()) {
                cols.extend_from_slice(csr.row(row).0);
            }
        }
        if let Some((f, mode)) = filter.filter(|(f, _)| (e as usize) < f.n_rows()) {
            let (c, v) = f.row(e as usize);
            match (mode, v) {
                (FilterMode::Multiply, Some(v)) => {
                    cols.extend(c.iter().zip(v).filter(|(_, &v)| v == 0.0).map(|(&c, _)| c))
                }
                _ => cols.extend_from_slice(c),
            }
        }
        cols[start..].sort_unstable();
        let mut w = start;
        for r in start..cols.len() {
            if (cols[r] as usize) < width && (w == start || cols[r] != cols[w - 1]) {
                cols[w] = cols[r];
                w += 1;
            }
        }
        cols.truncate(w);
        offsets.push(cols.len() as u64);
    }
    Some(Csr::new_checked(width as u32, offsets, cols, None))
}

/// Multiply mode: multiplies `scores` (`chunk.len()` rows of `width`) by the values of each
/// example's filter row (entries beyond `width` ignored; value-less entries are excluded by
/// [`exclusions`] instead). A repeated entry multiplies once per occurrence.
pub fn multiply(scores: &mut [f32], width: usize, chunk: &[u32], filter: &Csr) {
    for (row, &e) in scores.chunks_mut(width).zip(chunk) {
        if (e as usize) >= filter.n_rows() {
            continue;
        }
        let (cols, values) = filter.row(e as usize);
        let Some(values) = values else { continue };
        for (&c, &v) in cols.iter().zip(values) {
            if let Some(s) = row.get_mut(c as usize) {
                *s *= v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_mode_excludes_zeros_and_scales_the_rest() {
        let f = Csr::try_new(4, vec![0, 2, 3], vec![1, 3, 0], Some(vec![0.0, 2.0, 0.5])).unwrap();
        let ex = exclusions(&[0, 1], None, Some((&f, FilterMode::Multiply)), 4).unwrap();
        assert_eq!(ex.row(0).0, &[1]);
        assert!(ex.row(1).0.is_empty());
        let ex = exclusions(&[0, 1], None, Some((&f, FilterMode::Exclude)), 4).unwrap();
        assert_eq!((ex.row(0).0, ex.row(1).0), (&[1, 3][..], &[0][..]));
        let mut s = vec![1.0; 8];
        multiply(&mut s, 4, &[0, 1], &f);
        assert_eq!(s, [1.0, 0.0, 1.0, 2.0, 0.5, 1.0, 1.0, 1.0]);
        // Boolean filters exclude in both modes.
        let b = Csr::try_new(4, vec![0, 1], vec![2], None).unwrap();
        let ex = exclusions(&[0, 5], None, Some((&b, FilterMode::Multiply)), 4).unwrap();
        assert_eq!((ex.row(0).0, ex.row(1).0), (&[2][..], &[][..]));
    }

    #[test]
    fn exclusions_merge_the_input_row_and_the_filter_below_the_width() {
        // Example e reads row index[e] of the input; example 3 is past its end.
        let csr = Csr::try_new(6, vec![0, 2, 4], vec![1, 5, 0, 3], None).unwrap();
        let input = Dataset::sparse("input", vec![6], csr)
            .unwrap()
            .with_index(vec![1, 0, 1])
            .unwrap();
        let f = Csr::try_new(6, vec![0, 2], vec![3, 4], None).unwrap();
        let pair = (&input, input.sparse_data().unwrap());
        let ex = exclusions(&[0, 1, 3], Some(pair), Some((&f, FilterMode::Exclude)), 5).unwrap();
        assert_eq!(ex.n_cols(), 5);
        assert_eq!(ex.row(0).0, &[0, 3, 4]);
        assert_eq!(ex.row(1).0, &[1]);
        assert!(ex.row(2).0.is_empty());
        assert!(exclusions(&[0], None, None, 5).is_none());
    }
}
