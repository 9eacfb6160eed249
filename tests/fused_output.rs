//! The training forward of an output layer with sparse targets computes its loss and delta
//! in the same pass (`Backend::sparse_output_forward`); the backward pass then only scales
//! that delta by the data weights and applies `DeltaNorm`. Checked against the unfused route
//! (`forward(false)`, whose loss and delta are computed afterwards, one primitive each): the
//! same loss, activations and gradients, bit for bit, over output activations, error
//! functions, `SparseIgnoreZero` targets, data weights and `DeltaNorm`, on MovieLens-1M rows;
//! and a second backward pass over the same forward gives the same gradients again.
//! On the CPU always; on the CUDA backend, with its fused kernel switched on, where a device
//! is present.

use moira::backend::{Backend, Cpu};
use moira::descriptor::Descriptor;
use moira::graph::{DataShape, Graph, LayerId};
use moira::network::{HostRows, MiniBatch, Network};
use moira::ops::Optimizer;
use moira::rng::uniform_f32;
use moira::sparse::Csr;

mod ml1m_common;
use ml1m_common::ml1m;

const BATCH: usize = 96;

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
