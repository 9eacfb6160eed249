//! Finite-difference gradient checks (DSSTNE's `Validate`): for every error function with
//! every output activation it supports, every hidden activation, and dense and sparse inputs
//! and targets, the backward pass's weight and bias gradients match central differences of
//! the loss.

use moira::backend::Cpu;
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::{Activation, ErrorFunction, Optimizer};
use moira::sparse::Csr;
use moira::train::{shapes, DataBinding};

const EXAMPLES: usize = 4;
const N_IN: u32 = 6;
const N_HIDDEN: u32 = 5;
const N_OUT: u32 = 7;

/// A deterministic pseudo-random value in [0, 1).
fn hash01(i: u64) -> f32 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 40) as f32 / (1u64 << 24) as f32
}

fn sparse_rows(width: u32, salt: u64, valued: bool) -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    for r in 0..EXAMPLES as u64 {
        for c in 0..width as u64 {
            if hash01(salt + r * 131 + c) < 0.45 {
                cols.push(c as u32);
                vals.push(0.2 + 0.6 * hash01(salt + 7 + r * 17 + c));
            }
        }
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(width, offsets, cols, valued.then_some(vals)).unwrap()
}

fn dense_rows(width: u32, salt: u64) -> Vec<f32> {
    (0..EXAMPLES as u64 * width as u64)
        .map(|i| 0.1 + 0.8 * hash01(salt + i))
        .collect()
}

fn descriptor(error: ErrorFunction, hidden: Activation, output: Activation) -> Descriptor {
    let json = format!(
        r#"{{ "Version": 0.9, "Name": "check", "ErrorFunction": "{}",
            "ScaledMarginalCrossEntropy": {{ "oneTarget": 0.95, "zeroTarget": 0.05, "oneScale": 2.0, "zeroScale": 0.5 }},
            "RELUSlope": 0.1,
            "Layers": [
              {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input" }},
              {{ "Name": "h", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "{}",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "{}",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5, "Bias": 0.1 }} }}
            ] }}"#,
        error.name(),
        hidden.name(),
        output.name()
    );
    Descriptor::from_str(&json, "check.json").unwrap()
}

fn datasets(sparse_in: bool, sparse_out: bool, error: ErrorFunction) -> Vec<Dataset> {
    let input = if sparse_in {
        Dataset::sparse("input", vec![N_IN], sparse_rows(N_IN, 1, true)).unwrap()
    } else {
        Dataset::dense("input", vec![N_IN], dense_rows(N_IN, 2)).unwrap()
    };
    // Targets in (0, 1) with analog values for DataScaled; indicator otherwise when sparse.
    let valued = error == ErrorFunction::DataScaledMarginalCrossEntropy;
    let output = if sparse_out {
        Dataset::sparse("output", vec![N_OUT], sparse_rows(N_OUT, 3, valued)).unwrap()
    } else {
        let t = dense_rows(N_OUT, 4)
            .into_iter()
            .map(|v| if v > 0.5 { 1.0 } else { 0.0 })
            .collect();
        Dataset::dense("output", vec![N_OUT], t).unwrap()
    };
    vec![input, output]
}

/// Loss of the whole (single) minibatch at the current weights; with `training`, through
/// dropout (the same mask every time: it depends on the seed and the update count only).
fn loss(net: &mut Network<Cpu>, training: bool) -> f64 {
    net.forward(training, 0).unwrap();
    net.loss().unwrap().to_f64()
}

/// Checks every weight and bias of a network; returns the worst relative error and the
/// number of parameters whose difference exceeds the tolerance.
fn check(
    error: ErrorFunction,
    hidden: Activation,
    output: Activation,
    si: bool,
    so: bool,
) -> (f64, usize, usize) {
    check_network(descriptor(error, hidden, output), datasets(si, so, error))
}

/// Checks every weight and bias of `d` on `data` (see [`check`]).
fn check_network(d: Descriptor, data: Vec<Dataset>) -> (f64, usize, usize) {
    check_network_mode(d, data, false)
}

/// [`check_network`], through dropout when `training`.
fn check_network_mode(d: Descriptor, data: Vec<Dataset>, training: bool) -> (f64, usize, usize) {
    let graph = Graph::compile(&d, &shapes(&data)).unwrap();
    let binding = DataBinding::new(&graph, &data, false).unwrap();
    let mut net = Network::build(
        Cpu::new(1).unwrap(),
        graph.clone(),
        EXAMPLES,
        Optimizer::Sgd,
        5,
    )
    .unwrap();
    let order: Vec<u32> = (0..EXAMPLES as u32).collect();
    net.load_batch(binding.batch(&graph, &order, None).unwrap())
        .unwrap();
    net.forward(training, 0).unwrap();
    net.backward(0).unwrap();
    let grads = net.download_gradients().unwrap();
    let params = net.download_params().unwrap();
    let eps = 1e-3f32;
    let (mut worst, mut bad, mut checked) = (0.0f64, 0usize, 0usize);
    for (wi, (w, b)) in params.iter().enumerate() {
        let n_w = w.rows() * w.cols();
        for k in 0..n_w + b.len() {
            let analytic = if k < n_w {
                -(EXAMPLES as f64) * grads[wi].0.data()[k] as f64
            } else {
                -(EXAMPLES as f64) * grads[wi].1[k - n_w] as f64
            };
            let mut at = |delta: f32| {
                let mut p = params.clone();
                if k < n_w {
                    p[wi].0.data_mut()[k] += delta;
                } else {
                    p[wi].1[k - n_w] += delta;
                }
                net.upload_params(&p).unwrap();
                loss(&mut net, training)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            let err = (numeric - analytic).abs() / (1.0f64).max(numeric.abs()).max(analytic.abs());
            worst = worst.max(err);
            checked += 1;
            if err > 2e-2 {
                bad += 1;
            }
        }
    }
    (worst, bad, checked)
}

fn supported(error: ErrorFunction, output: Activation) -> bool {
    use Activation::*;
    match error {
        ErrorFunction::CrossEntropy | ErrorFunction::ScaledMarginalCrossEntropy => {
            matches!(output, Sigmoid | SoftMax)
        }
        ErrorFunction::DataScaledMarginalCrossEntropy => output == Sigmoid,
        _ => output != ParametricRectifiedLinear,
    }
}

/// Activations with kinks, where a central difference may straddle the kink.
fn has_kinks(a: Activation) -> bool {
    use Activation::*;
    matches!(
        a,
        RectifiedLinear | LeakyRectifiedLinear | ReluMax | LinearMax
    )
}

#[test]
fn every_error_function_and_activation_matches_finite_differences() {
    let hidden: Vec<Activation> = Activation::ALL
        .iter()
        .copied()
        .filter(|&a| a != Activation::ParametricRectifiedLinear)
        .collect();
    let mut failures = Vec::new();
    let mut combos = 0;
    for (e, &error) in ErrorFunction::ALL.iter().enumerate() {
        for (o, &output) in hidden.iter().enumerate() {
            if !supported(error, output) {
                continue;
            }
            let h = hidden[(e * 5 + o) % hidden.len()];
            let (si, so) = ((e + o) % 2 == 0, (e + o / 2) % 2 == 0);
            let (worst, bad, checked) = check(error, h, output, si, so);
            combos += 1;
            // Kinks (ReLU-like units, hinge and margin losses, L1) may put a few parameters on
            // both sides of a non-differentiable point; smooth combinations must all match.
            let nonsmooth = has_kinks(h)
                || has_kinks(output)
                || matches!(
                    error,
                    ErrorFunction::L1
                        | ErrorFunction::Hinge
                        | ErrorFunction::L2Hinge
                        | ErrorFunction::ScaledMarginalCrossEntropy
                        | ErrorFunction::DataScaledMarginalCrossEntropy
                );
            let allowed = if nonsmooth { checked / 20 } else { 0 };
            if bad > allowed {
                failures.push(format!(
                    "{error} / hidden {h} / output {output} / sparse in {si} out {so}: \
                     {bad} of {checked} parameters off (worst relative error {worst:.3e})"
                ));
            }
        }
    }
    assert!(combos > 40, "only {combos} combinations checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_hidden_activation_backpropagates_correctly() {
    for &h in Activation::ALL {
        if h == Activation::ParametricRectifiedLinear {
            continue;
        }
        for (si, so) in [(true, true), (false, false)] {
            let (worst, bad, checked) = check(ErrorFunction::L2, h, Activation::Linear, si, so);
            let allowed = if has_kinks(h) { checked / 20 } else { 0 };
            assert!(
                bad <= allowed,
                "hidden {h} sparse {si}/{so}: {bad} of {checked} off, worst {worst:.3e}"
            );
        }
    }
}

#[test]
fn several_sources_and_skip_connections_backpropagate_correctly() {
    let json = format!(
        r#"{{ "Version": 0.9, "Name": "graph", "ErrorFunction": "L2",
            "Layers": [
              {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input" }},
              {{ "Name": "h1", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh", "Source": "in",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "h2", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Sigmoid", "Source": ["h1", "in"],
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "h3", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh", "Source": "h2", "Skip": "h1",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "Sigmoid",
                 "Source": ["h3", "h1"], "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }}
            ] }}"#
    );
    let d = Descriptor::from_str(&json, "graph.json").unwrap();
    let (i, h, o) = (N_IN as usize, N_HIDDEN as usize, N_OUT as usize);
    // Weights in→h1, h1→h2, in→h2, h2→h3, h3→out, h1→out, each with a bias.
    let parameters = 2 * i * h + 2 * h * h + 2 * h * o + 4 * h + 2 * o;
    for (si, so) in [(false, false), (true, true)] {
        let (worst, bad, checked) = check_network(d.clone(), datasets(si, so, ErrorFunction::L2));
        assert_eq!(checked, parameters);
        assert_eq!(
            bad, 0,
            "sparse {si}/{so}: {bad} of {checked} off, worst {worst:.3e}"
        );
    }
}

/// Through dropout (DSSTNE's rule: a dropped sigmoid unit is 0.5, a kept one is scaled by
/// 1/(1−p)), the gradient takes f' from the activation before dropout.
#[test]
fn dropout_gradients_match_finite_differences() {
    for hidden in [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::ExponentialLinear,
    ] {
        let json = format!(
            r#"{{ "Version": 0.9, "Name": "check-dropout", "ErrorFunction": "CrossEntropy",
                "Layers": [
                  {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
                  {{ "Name": "h", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "{}",
                     "pDropout": 0.3, "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output",
                     "Activation": "Sigmoid", "Sparse": true,
                     "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }}
                ] }}"#,
            hidden.name()
        );
        let d = Descriptor::from_str(&json, "check.json").unwrap();
        let data = datasets(true, true, ErrorFunction::CrossEntropy);
        let (worst, bad, checked) = check_network_mode(d, data, true);
        assert!(
            bad == 0,
            "{hidden} with dropout: {bad} of {checked} parameters off (worst {worst:.3e})"
        );
    }
}
