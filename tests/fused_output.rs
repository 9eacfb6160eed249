//! The training forward of an output layer with sparse targets computes its loss and delta
//! in the same pass (`Backend::sparse_output_forward`); the backward pass then only scales
//! that delta by the data weights and applies `DeltaNorm`. Checked against the unfused route
//! (`forward(false)`, whose loss and delta are computed afterwards, one primitive each): the
//! same loss, activations and gradients, bit for bit, over output activations, error
//! functions, `SparseIgnoreZero` targets, data weights and `DeltaNorm`, on MovieLens-1M rows;
//! and a second backward pass over the same forward gives the same gradients again.
//! On the CPU always; on the CUDA backend, with its fused kernel switched on, where a device
//! is present. And the CPU's one-sweep primitive against the three passes it replaces, for
//! every error function and element-wise activation, on 1 and 2 threads.

use moira::backend::traits::{sparse_output_forward_composed, MatMut};
use moira::backend::{Backend, Cpu};
use moira::descriptor::Descriptor;
use moira::graph::{DataShape, Graph, LayerId};
use moira::network::{HostRows, MiniBatch, Network};
use moira::ops::loss::LossSpec;
use moira::ops::Optimizer;
use moira::ops::{Activation, ErrorFunction};
use moira::rng::{u64_at, uniform_f32};
use moira::sparse::Csr;

const ML1M_TRAIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/ml-1m-lightgcnpp/train.txt"
);
const BATCH: usize = 96;

/// The first `users` rows of ML-1M's training lists as a CSR over every item id seen in
/// them (columns sorted, duplicates removed).
fn ml1m(users: usize) -> Csr {
    let text = std::fs::read_to_string(ML1M_TRAIN).expect("../shared/data must be present");
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

/// An autoencoder `items → 32 → items` with the given output activation, error function and
/// output `DeltaNorm` (0: none); `None` when the pair has no kernel.
fn graph(items: u32, activation: &str, error: &str, delta_norm: f32) -> Option<Graph> {
    let json = format!(
        r#"{{ "Version": 0.9, "Name": "fused-output", "Kind": "FeedForward",
        "Layers": [
          {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
          {{ "Name": "H", "Kind": "Hidden", "N": 32, "Activation": "Sigmoid" }},
          {{ "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
             "Sparse": true, "Activation": "{activation}", "DeltaNorm": {delta_norm} }}
        ],
        "ErrorFunction": "{error}" }}"#
    );
    let descriptor = Descriptor::from_str(&json, "fused-output.json").unwrap();
    let shape = |name: &str| DataShape {
        name: name.into(),
        dims: vec![items],
        examples: BATCH,
        sparse: true,
    };
    Graph::compile(&descriptor, &[shape("input"), shape("output")]).ok()
}

fn id(graph: &Graph, name: &str) -> LayerId {
    graph.layer_by_name(name).unwrap().id
}

/// The minibatch: `rows` as input and targets, with data weights and `SparseIgnoreZero` as
/// asked.
fn batch(graph: &Graph, rows: &Csr, weights: bool, ignore_zero: bool) -> MiniBatch {
    let (input, output) = (id(graph, "Input"), id(graph, "Output"));
    MiniBatch {
        rows: rows.n_rows(),
        layers: vec![
            (input, HostRows::Sparse(rows.clone())),
            (output, HostRows::Sparse(rows.clone())),
        ],
        example_weights: if weights {
            let w = (0..rows.n_rows() as u64)
                .map(|b| 0.25 + 2.0 * uniform_f32(5, 6, b))
                .collect();
            vec![(output, w)]
        } else {
            Vec::new()
        },
        ignore_zero: if ignore_zero {
            vec![output]
        } else {
            Vec::new()
        },
    }
}

/// Loss, output activations and every gradient after one forward (`training` or not) and
/// backward pass over `batch`.
fn pass<B: Backend>(
    backend: B,
    graph: &Graph,
    batch: MiniBatch,
    training: bool,
) -> (f64, Vec<f32>, Vec<Vec<f32>>) {
    let mut net = Network::build(backend, graph.clone(), BATCH, Optimizer::Adam, 3).unwrap();
    net.load_batch(batch).unwrap();
    net.forward(training, 3).unwrap();
    let loss = net.loss().unwrap().to_f64();
    let out = net
        .layer_output(id(graph, "Output"))
        .unwrap()
        .data()
        .to_vec();
    let gradients = |net: &mut Network<B>| -> Vec<Vec<f32>> {
        net.backward(3).unwrap();
        net.download_gradients()
            .unwrap()
            .into_iter()
            .flat_map(|(w, b)| [w.data().to_vec(), b])
            .collect()
    };
    let grads = gradients(&mut net);
    // A second backward pass over the same forward recomputes the same gradients (the first
    // scaled the fused delta in place).
    let again = gradients(&mut net);
    for (i, (a, g)) in again.iter().zip(&grads).enumerate() {
        same_bits(
            &format!("training={training}: second backward, array {i}"),
            a,
            g,
        );
    }
    (loss, out, grads)
}

fn same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let diff = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(diff, 0, "{what}: {diff} of {} values differ", a.len());
}

/// Every case on backends made by `make`: the fused training pass against the unfused one.
fn check<B: Backend>(make: impl Fn() -> B) {
    let rows = ml1m(BATCH);
    let mut cases = 0;
    for (activation, error) in [
        ("Sigmoid", "ScaledMarginalCrossEntropy"),
        ("Sigmoid", "CrossEntropy"),
        ("Sigmoid", "L2"),
        ("Tanh", "L2"),
        ("Linear", "L1"),
        ("RectifiedLinear", "L2"),
        ("SoftMax", "CrossEntropy"),
    ] {
        for (weights, ignore_zero, delta_norm) in [
            (false, false, 0.0),
            (true, false, 0.0),
            (false, true, 0.0),
            (true, true, 0.5),
        ] {
            let Some(g) = graph(rows.n_cols(), activation, error, delta_norm) else {
                continue;
            };
            let what = format!(
                "{activation}/{error} weights={weights} ignore_zero={ignore_zero} \
                 DeltaNorm={delta_norm}"
            );
            let b = || batch(&g, &rows, weights, ignore_zero);
            let (fused_loss, fused_out, fused_grads) = pass(make(), &g, b(), true);
            let (loss, out, grads) = pass(make(), &g, b(), false);
            assert_eq!(fused_loss.to_bits(), loss.to_bits(), "{what}: loss");
            assert!(loss.is_finite() && loss != 0.0, "{what}: loss {loss}");
            same_bits(&format!("{what}: output"), &fused_out, &out);
            for (i, (f, u)) in fused_grads.iter().zip(&grads).enumerate() {
                same_bits(&format!("{what}: gradient array {i}"), f, u);
            }
            assert!(
                grads.iter().flatten().any(|&x| x != 0.0),
                "{what}: all gradients are zero"
            );
            cases += 1;
        }
    }
    assert!(cases >= 20, "only {cases} cases compiled");
}

#[test]
fn fused_training_forward_gives_the_unfused_bits_on_the_cpu() {
    check(|| Cpu::new(2).unwrap());
}

/// `rows` random sparse rows over `cols` columns, some listing a column twice, with values
/// when `values`.
fn random_targets(rows: usize, cols: u32, values: bool) -> Csr {
    let mut offsets = vec![0u64];
    let mut idx = Vec::new();
    for r in 0..rows as u64 {
        let n = u64_at(40, 1, r) % 50;
        for k in 0..n {
            idx.push((u64_at(40, 2, r * 64 + k) % cols as u64) as u32);
        }
        if r % 7 == 3 && n > 0 {
            idx.push(idx[idx.len() - 1]);
        }
        offsets.push(idx.len() as u64);
    }
    let vals = values.then(|| {
        (0..idx.len() as u64)
            .map(|i| 0.1 + 2.0 * uniform_f32(41, 0, i))
            .collect()
    });
    Csr::try_new(cols, offsets, idx, vals).unwrap()
}

#[test]
fn cpu_one_sweep_output_pass_gives_the_bits_of_the_three_passes() {
    let (rows, cols) = (37, 1013);
    let z: Vec<f32> = (0..(rows * cols) as u64)
        .map(|i| -4.0 + 8.0 * uniform_f32(42, 0, i))
        .collect();
    let mut cases = 0;
    for threads in [1, 2] {
        let cpu = Cpu::new(threads).unwrap();
        for &error in ErrorFunction::ALL {
            for &act in Activation::ALL {
                let spec = LossSpec::new(error, act);
                if act == Activation::SoftMax || spec.check().is_err() {
                    continue;
                }
                for (values, ignore_zero) in [(false, false), (true, false), (false, true)] {
                    let what = format!("{error} {act} values={values} ignore_zero={ignore_zero}");
                    let t = cpu
                        .upload_sparse(random_targets(rows, cols as u32, values), false)
                        .unwrap();
                    let (mut a1, mut d1) = (z.clone(), vec![f32::NAN; rows * cols]);
                    let l1 = cpu
                        .sparse_output_forward(
                            MatMut::new(&mut a1, rows, cols),
                            MatMut::new(&mut d1, rows, cols),
                            &t,
                            &spec,
                            ignore_zero,
                        )
                        .unwrap();
                    let (mut a2, mut d2) = (z.clone(), vec![f32::NAN; rows * cols]);
                    let l2 = sparse_output_forward_composed(
                        &cpu,
                        MatMut::new(&mut a2, rows, cols),
                        MatMut::new(&mut d2, rows, cols),
                        &t,
                        &spec,
                        ignore_zero,
                    )
                    .unwrap();
                    assert_eq!(l1, l2, "{what}: loss");
                    same_bits(&format!("{what}: activations"), &a1, &a2);
                    same_bits(&format!("{what}: deltas"), &d1, &d2);
                    cases += 1;
                }
            }
        }
    }
    assert!(cases >= 100, "only {cases} cases");
}

#[cfg(feature = "cuda")]
#[test]
fn fused_training_forward_gives_the_unfused_bits_on_cuda() {
    use moira::backend::cuda::{Cuda, CudaChoices};
    if !Cuda::available() {
        eprintln!("skipped: no CUDA device");
        return;
    }
    check(|| {
        let mut cuda = Cuda::new(0, false).unwrap();
        cuda.set_choices(CudaChoices {
            fused_output: true,
            ..CudaChoices::default()
        });
        cuda
    });
}
