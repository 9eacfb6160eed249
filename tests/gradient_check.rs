//! Finite-difference gradient checks (DSSTNE's `Validate`): for every error function with
//! every output activation it supports, every hidden activation, and dense and sparse inputs
//! and targets, the backward pass's weight and bias gradients match central differences of
//! the loss.

use moira::backend::Cpu;
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::norm::sparseness_penalty_loss;
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
/// dropout (the same mask every time: it depends on the seed and the update count only) and
/// with batch statistics. Includes the sparseness penalty of every layer that has one (the
/// loss whose gradient the penalty's delta is).
fn loss(net: &mut Network<Cpu>, training: bool) -> f64 {
    net.forward(training, 0).unwrap();
    let mut total = net.loss().unwrap().to_f64();
    for layer in net.graph().layers().to_vec() {
        if let Some(sp) = layer.sparseness_penalty {
            let a = net.layer_output(layer.id).unwrap();
            total += sparseness_penalty_loss(a.data(), a.rows(), a.cols(), sp.p, sp.beta);
        }
    }
    total
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

/// Relative difference of a numeric and an analytic derivative.
fn rel(numeric: f64, analytic: f64) -> f64 {
    (numeric - analytic).abs() / (1.0f64).max(numeric.abs()).max(analytic.abs())
}

/// [`check_network`], through dropout and batch statistics when `training`. Checks every
/// edge's weight (the true gradient of a shared weight is the reported one times its sharing
/// count) and bias, and every batch normalisation scale and shift.
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
    let bn_grads = net.download_batch_norm_gradients().unwrap();
    let params = net.download_params().unwrap();
    let bn = net.download_batch_norm().unwrap();
    let sharing: Vec<f64> = graph
        .edges()
        .iter()
        .map(|e| f64::from(graph.weight(e.weight).sharing_count.max(1)))
        .collect();
    let eps = 1e-3f32;
    let b = EXAMPLES as f64;
    let (mut worst, mut bad, mut checked) = (0.0f64, 0usize, 0usize);
    let mut count = |numeric: f64, analytic: f64| {
        let err = rel(numeric, analytic);
        worst = worst.max(err);
        checked += 1;
        if err > 2e-2 {
            bad += 1;
        }
    };
    for (wi, (w, bias)) in params.iter().enumerate() {
        let n_w = w.rows() * w.cols();
        for k in 0..n_w + bias.len() {
            let analytic = if k < n_w {
                -b * sharing[wi] * grads[wi].0.data()[k] as f64
            } else {
                -b * grads[wi].1[k - n_w] as f64
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
            count(numeric, analytic);
        }
    }
    net.upload_params(&params).unwrap();
    for (li, layer) in bn.iter().enumerate() {
        for k in 0..2 * layer.scale.len() {
            let units = layer.scale.len();
            let analytic = if k < units {
                -b * bn_grads[li].scale[k] as f64
            } else {
                -b * bn_grads[li].bias[k - units] as f64
            };
            let mut at = |delta: f32| {
                let mut v = bn.clone();
                if k < units {
                    v[li].scale[k] += delta;
                } else {
                    v[li].bias[k - units] += delta;
                }
                net.upload_batch_norm(&v).unwrap();
                loss(&mut net, training)
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            count(numeric, analytic);
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
/// 1/(1−p); ELU and SELU use alpha-dropout), the gradient takes f' from the activation
/// before dropout.
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

/// A tied autoencoder: `in → h` owns its weight, `h → out` uses it transposed (DSSTNE's
/// `SharedWeights`); the shared weight's true gradient sums both uses, and DSSTNE's reported
/// gradient divides that by the sharing count 2. Each edge keeps its own bias.
#[test]
fn tied_transposed_weights_match_finite_differences() {
    let json = format!(
        r#"{{ "Version": 0.9, "Name": "tied", "ErrorFunction": "L2",
            "Layers": [
              {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input" }},
              {{ "Name": "h", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output",
                 "Activation": "Sigmoid", "WeightInit": {{ "Bias": 0.1 }},
                 "SharedWeights": {{ "SourceInputLayer": "in", "SourceOutputLayer": "h",
                                     "InputLayer": "h", "Transposed": true }} }}
            ] }}"#
    );
    let d = Descriptor::from_str(&json, "tied.json").unwrap();
    for sparse_in in [false, true] {
        let input = if sparse_in {
            Dataset::sparse("input", vec![N_IN], sparse_rows(N_IN, 1, true)).unwrap()
        } else {
            Dataset::dense("input", vec![N_IN], dense_rows(N_IN, 2)).unwrap()
        };
        let output = Dataset::dense("output", vec![N_IN], dense_rows(N_IN, 9)).unwrap();
        let (worst, bad, checked) = check_network(d.clone(), vec![input, output]);
        let (i, h) = (N_IN as usize, N_HIDDEN as usize);
        assert_eq!(checked, i * h + h + i, "one shared matrix, two biases");
        assert_eq!(
            bad, 0,
            "sparse in {sparse_in}: {bad} of {checked} off, worst {worst:.3e}"
        );
    }
}

/// An untransposed shared weight (two sources of one layer reusing one matrix).
#[test]
fn untransposed_shared_weights_match_finite_differences() {
    let json = format!(
        r#"{{ "Version": 0.9, "Name": "shared", "ErrorFunction": "L2",
            "Layers": [
              {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input" }},
              {{ "Name": "h1", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh", "Source": "in",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "h2", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Sigmoid", "Source": "h1",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
              {{ "Name": "h3", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh", "Source": "h2",
                 "SharedWeights": {{ "SourceInputLayer": "h1", "SourceOutputLayer": "h2", "InputLayer": "h2" }} }},
              {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "Sigmoid",
                 "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }}
            ] }}"#
    );
    let d = Descriptor::from_str(&json, "shared.json").unwrap();
    for sparse in [false, true] {
        let (worst, bad, checked) =
            check_network(d.clone(), datasets(sparse, sparse, ErrorFunction::L2));
        assert_eq!(
            bad, 0,
            "sparse {sparse}: {bad} of {checked} off, worst {worst:.3e}"
        );
    }
}

/// DSSTNE's KL sparseness penalty on a `Sparse` hidden layer (network-level p/β, and a
/// per-layer β overriding it), with and without dropout: the penalty's delta is the gradient
/// of `B·β·Σ_j KL(p‖ρ̂_j)` over the activations the next layer sees.
#[test]
fn sparseness_penalty_matches_finite_differences() {
    for (own, dropout) in [
        ("", 0.0),
        (r#", "SparsenessPenalty": { "beta": 0.7 }"#, 0.3),
    ] {
        let json = format!(
            r#"{{ "Version": 0.9, "Name": "penalty", "ErrorFunction": "CrossEntropy",
                "SparsenessPenalty": {{ "p": 0.1, "beta": 0.4 }},
                "Layers": [
                  {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input" }},
                  {{ "Name": "h", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Sigmoid",
                     "Sparse": true, "pDropout": {dropout}{own},
                     "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output",
                     "Activation": "Sigmoid", "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }}
                ] }}"#
        );
        let d = Descriptor::from_str(&json, "penalty.json").unwrap();
        let data = datasets(true, true, ErrorFunction::CrossEntropy);
        let graph = Graph::compile(&d, &shapes(&data)).unwrap();
        let sp = graph
            .layer_by_name("h")
            .unwrap()
            .sparseness_penalty
            .unwrap();
        assert_eq!(
            (sp.p, sp.beta),
            (0.1, if own.is_empty() { 0.4 } else { 0.7 })
        );
        let (worst, bad, checked) = check_network_mode(d, data, dropout > 0.0);
        assert_eq!(bad, 0, "{own}: {bad} of {checked} off, worst {worst:.3e}");
    }
}

/// Batch normalisation of hidden layers in training mode (batch statistics): the weights,
/// biases, and the BN scale and shift all match central differences.
#[test]
fn batch_normalization_matches_finite_differences() {
    for hidden in [Activation::Tanh, Activation::Sigmoid] {
        let json = format!(
            r#"{{ "Version": 0.9, "Name": "bn", "ErrorFunction": "L2",
                "Layers": [
                  {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input" }},
                  {{ "Name": "h1", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "{0}",
                     "BatchNormalization": true, "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "h2", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "{0}",
                     "BatchNormalization": true, "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output",
                     "Activation": "Sigmoid", "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }}
                ] }}"#,
            hidden.name()
        );
        let d = Descriptor::from_str(&json, "bn.json").unwrap();
        for sparse in [false, true] {
            let data = datasets(sparse, sparse, ErrorFunction::L2);
            let (worst, bad, checked) = check_network_mode(d.clone(), data, true);
            let (i, h, o) = (N_IN as usize, N_HIDDEN as usize, N_OUT as usize);
            assert_eq!(checked, i * h + h * h + h * o + 2 * h + o + 4 * h);
            assert_eq!(
                bad, 0,
                "{hidden} sparse {sparse}: {bad} of {checked} off, worst {worst:.3e}"
            );
        }
    }
}

/// Mult-VAE's bottleneck (descriptor `Variational`): through the sampled `z = μ + exp(½ℓ)·ε`
/// (the same noise every time: keyed by the seed and the update count) and the `β·KL` term
/// the loss reports, the mean and log-variance layers' weights and biases, and those before
/// and after them, match central differences; with `β = 0`, the KL term is gone.
#[test]
fn variational_bottleneck_matches_finite_differences() {
    for beta in [0.0, 0.7] {
        let json = format!(
            r#"{{ "Version": 0.9, "Name": "check-vae", "ErrorFunction": "CrossEntropy",
                "Layers": [
                  {{ "Name": "in", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
                  {{ "Name": "enc", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh",
                     "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "logvar", "Kind": "Hidden", "N": 3, "Activation": "Linear",
                     "Source": "enc", "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.5 }} }},
                  {{ "Name": "mu", "Kind": "Hidden", "N": 3, "Activation": "Linear", "Source": "enc",
                     "Variational": {{ "LogVariance": "logvar", "Beta": {beta} }},
                     "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "dec", "Kind": "Hidden", "N": {N_HIDDEN}, "Activation": "Tanh",
                     "Source": "mu", "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }},
                  {{ "Name": "out", "Kind": "Output", "N": "auto", "DataSet": "output",
                     "Activation": "SoftMax", "Sparse": true,
                     "WeightInit": {{ "Scheme": "Gaussian", "Scale": 0.8 }} }}
                ] }}"#
        );
        let d = Descriptor::from_str(&json, "check.json").unwrap();
        let data = datasets(true, true, ErrorFunction::CrossEntropy);
        let (worst, bad, checked) = check_network_mode(d, data, true);
        assert!(
            bad == 0 && checked > 0,
            "β {beta}: {bad} of {checked} parameters off (worst {worst:.3e})"
        );
    }
}
