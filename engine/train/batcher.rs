//! Binding datasets to layers, shuffling, and cutting minibatches without densifying sparse
//! data.

use crate::dataset::{Data, Dataset};
use crate::descriptor::LayerKind;
use crate::error::{Error, Result};
use crate::graph::{DataShape, Graph, LayerId};
use crate::network::{HostRows, MiniBatch};
use crate::rng::{u64_at, uniform_f32};
use crate::sparse::Csr;

/// RNG stream of epoch `e`'s shuffle: `SHUFFLE_STREAM + e`.
const SHUFFLE_STREAM: u64 = 1 << 48;
/// RNG stream of epoch `e`'s input denoising: `DENOISE_STREAM + e`.
const DENOISE_STREAM: u64 = 2 << 48;

/// The shapes of `datasets`, for [`Graph::compile`].
pub fn shapes(datasets: &[Dataset]) -> Vec<DataShape> {
    datasets
        .iter()
        .map(|d| {
            let (name, dims, examples, sparse) = d.shape_parts();
            DataShape {
                name,
                dims,
                examples,
                sparse,
            }
        })
        .collect()
}

/// Every data-bound layer of a graph with its dataset.
#[derive(Clone, Debug)]
pub struct DataBinding<'a> {
    bound: Vec<(LayerId, &'a Dataset)>,
    examples: usize,
}

impl<'a> DataBinding<'a> {
    /// Binds each Input and Output layer with a `DataSet` name to the dataset of that name.
    /// `only_inputs` binds the Input layers alone (prediction). Errors when a dataset is
    /// missing (listing the available names) or when bound datasets disagree on the number of
    /// examples.
    pub fn new(graph: &Graph, datasets: &'a [Dataset], only_inputs: bool) -> Result<Self> {
        let mut bound = Vec::new();
        let mut examples: Option<(usize, &str)> = None;
        for layer in graph.layers() {
            let wanted = match layer.kind {
                LayerKind::Input => true,
                LayerKind::Output => !only_inputs,
                _ => false,
            };
            let Some(name) = layer.dataset.as_deref().filter(|_| wanted) else {
                if layer.kind == LayerKind::Input {
                    return Err(Error::Graph {
                        network: graph.name().to_owned(),
                        layer: layer.name.clone(),
                        message: "an input layer needs a `DataSet`".into(),
                    });
                }
                continue;
            };
            let dataset = datasets.iter().find(|d| d.name() == name).ok_or_else(|| {
                let names: Vec<&str> = datasets.iter().map(|d| d.name()).collect();
                Error::Graph {
                    network: graph.name().to_owned(),
                    layer: layer.name.clone(),
                    message: format!(
                        "dataset `{name}` is not loaded; the data files hold {names:?}"
                    ),
                }
            })?;
            if dataset.stride() != layer.units as u64 {
                return Err(Error::Graph {
                    network: graph.name().to_owned(),
                    layer: layer.name.clone(),
                    message: format!(
                        "has {} units but dataset `{name}` is {} wide",
                        layer.units,
                        dataset.stride()
                    ),
                });
            }
            match examples {
                Some((n, other)) if n != dataset.examples() => {
                    return Err(Error::InvalidData(format!(
                        "dataset `{name}` has {} examples but `{other}` has {n}: \
                         bound datasets must be row-aligned (share the samples index)",
                        dataset.examples()
                    )))
                }
                _ => examples = Some((dataset.examples(), dataset.name())),
            }
            bound.push((layer.id, dataset));
        }
        Ok(DataBinding {
            bound,
            examples: examples.map_or(0, |(n, _)| n),
        })
    }

    /// Number of examples.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The dataset bound to `layer`, if any.
    pub fn dataset(&self, layer: LayerId) -> Option<&'a Dataset> {
        self.bound
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, d)| *d)
    }

    /// The bound layers and their datasets.
    pub fn bound(&self) -> &[(LayerId, &'a Dataset)] {
        &self.bound
    }

    /// The minibatch of `examples` (indices into the datasets). `denoise`, when set to
    /// `(p, seed, epoch)`, drops each non-zero of a sparse *input* whose layer has denoising
    /// with probability `p` and scales the kept ones by `1/(1−p)`. The draw of the non-zero
    /// of example `e` in column `j` of a dataset `n` columns wide is number `e·n + j` of the
    /// epoch's stream: keyed by global indices only, so every rank draws the same mask for a
    /// non-zero whatever the rank count and whichever columns of the dataset it keeps
    /// ([`crate::dataset::Dataset::retain_columns`]), and a minibatch draws the same mask
    /// whatever the other examples in it.
    pub fn batch(
        &self,
        graph: &Graph,
        examples: &[u32],
        denoise: Option<(f32, u64, u32)>,
    ) -> Result<MiniBatch> {
        let mut layers = Vec::with_capacity(self.bound.len());
        let mut example_weights = Vec::new();
        let mut ignore_zero = Vec::new();
        for &(id, dataset) in &self.bound {
            let layer = graph.layer(id);
            let denoise = denoise.filter(|_| layer.kind == LayerKind::Input && layer.denoising);
            let rows = match dataset.data() {
                Data::Sparse(csr) => {
                    HostRows::Sparse(gather_sparse(dataset, csr, examples, denoise))
                }
                Data::Dense { values, .. } => {
                    let stride = dataset.stride() as usize;
                    let mut out = Vec::with_capacity(examples.len() * stride);
                    for &e in examples {
                        let r = dataset.row_of(e as usize);
                        out.extend_from_slice(&values[r * stride..(r + 1) * stride]);
                    }
                    HostRows::Dense(out)
                }
            };
            layers.push((id, rows));
            if layer.kind == LayerKind::Output {
                if dataset.is_sparse()
                    && dataset
                        .attributes()
                        .contains(crate::dataset::Attributes::SPARSE_IGNORE_ZERO)
                {
                    ignore_zero.push(id);
                }
                if let Some(w) = dataset.weights() {
                    example_weights.push((id, examples.iter().map(|&e| w[e as usize]).collect()));
                }
            }
        }
        Ok(MiniBatch {
            rows: examples.len(),
            layers,
            example_weights,
            ignore_zero,
        })
    }
}

/// The rows of `examples` as a new CSR, denoised when asked ([`DataBinding::batch`]'s rule).
fn gather_sparse(
    dataset: &Dataset,
    csr: &Csr,
    examples: &[u32],
    denoise: Option<(f32, u64, u32)>,
) -> Csr {
    let offsets = csr.row_offsets();
    let nnz: u64 = examples
        .iter()
        .map(|&e| {
            let r = dataset.row_of(e as usize);
            offsets[r + 1] - offsets[r]
        })
        .sum();
    let mut row_offsets = Vec::with_capacity(examples.len() + 1);
    let mut cols = Vec::with_capacity(nnz as usize);
    let with_values = csr.values().is_some() || denoise.is_some();
    let mut vals = with_values.then(|| Vec::with_capacity(nnz as usize));
    row_offsets.push(0u64);
    for &e in examples {
        let r = dataset.row_of(e as usize);
        let (c, v) = csr.row(r);
        match denoise {
            None => {
                cols.extend_from_slice(c);
                if let (Some(out), Some(v)) = (vals.as_mut(), v) {
                    out.extend_from_slice(v);
                }
            }
            Some((p, seed, epoch)) => {
                let q = 1.0 / (1.0 - p);
                let out = vals.as_mut().expect("denoised rows carry values");
                let first = e as u64 * csr.n_cols() as u64;
                for (k, &col) in c.iter().enumerate() {
                    let position = first + col as u64;
                    if uniform_f32(seed, DENOISE_STREAM + epoch as u64, position) >= p {
                        cols.push(col);
                        out.push(v.map_or(1.0, |v| v[k]) * q);
                    }
                }
            }
        }
        row_offsets.push(cols.len() as u64);
    }
    Csr::new_checked(csr.n_cols(), row_offsets, cols, vals)
}

/// The order of the examples in `epoch`: a Fisher–Yates shuffle drawn from `(seed, epoch)`,
/// or `0..n` when `shuffle` is off.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        let stream = SHUFFLE_STREAM + epoch as u64;
        for i in (1..n).rev() {
            let j = (u64_at(seed, stream, i as u64) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let a = epoch_order(1000, true, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_ne!(a, sorted);
        assert_eq!(a, epoch_order(1000, true, 7, 0));
        assert_ne!(a, epoch_order(1000, true, 7, 1));
        assert_eq!(epoch_order(5, false, 7, 0), vec![0, 1, 2, 3, 4]);
    }
}
