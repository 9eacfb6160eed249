//! Save → load → predict: a network trained through `train::train`, saved with `save_model`,
//! loaded with `load_model` into a freshly compiled and built network (other seed, other
//! thread count), gives bit-identical output activations.

use moira::backend::Cpu;
use moira::checkpoint::{check_against_graph, load_model, save_model, Extras};
use moira::dataset::Dataset;
use moira::descriptor::{Descriptor, LayerKind};
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{self, shapes, DataBinding, Quiet, TrainConfig};

const USERS: usize = 200;
const ITEMS: u32 = 300;
const BATCH: usize = 50;

/// An I→32→I sigmoid autoencoder with dropout and denoising.
const SHALLOW: &str = r#"{
  "Version": 0.9, "Name": "roundtrip", "Kind": "FeedForward", "Denoising": { "p": 0.2 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 32, "Activation": "Sigmoid", "pDropout": 0.2 },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// Two hidden layers of other activations, a bias init, and SMCE.
const DEEP: &str = r#"{
  "Version": 0.9, "Name": "roundtrip-deep", "Kind": "FeedForward",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "N": 24, "Activation": "Tanh", "pDropout": 0.1 },
    { "Name": "H2", "Kind": "Hidden", "N": 16, "Activation": "RectifiedLinear" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true,
      "WeightInit": { "Scheme": "Xavier", "Scale": 1.0, "Bias": -2.0 } }
  ],
  "ErrorFunction": "ScaledMarginalCrossEntropy"
}"#;

/// Mult-VAE's shape (a Moira extension DSSTNE's files lack): the variational bottleneck's
/// settings travel in the model file.
const VARIATIONAL: &str = r#"{
  "Version": 0.9, "Name": "roundtrip-vae", "Kind": "AutoEncoder", "Denoising": { "p": 0.3 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Encoder", "Kind": "Hidden", "N": 24, "Activation": "Tanh" },
    { "Name": "LogVar", "Kind": "Hidden", "N": 8, "Activation": "Linear", "Source": "Encoder" },
    { "Name": "Latent", "Kind": "Hidden", "N": 8, "Activation": "Linear", "Source": "Encoder",
      "Variational": { "LogVariance": "LogVar", "Beta": 0.3, "AnnealSteps": 5 } },
    { "Name": "Decoder", "Kind": "Hidden", "N": 24, "Activation": "Tanh", "Source": "Latent" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "SoftMax", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// `USERS` rows of 5..25 distinct items, clustered by `user % 4`.
fn rows() -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for u in 0..USERS as u64 {
        let n = 5 + u64_at(3, 0, u) % 20;
        let base = (u % 4) as u32 * (ITEMS / 4);
        let mut row: Vec<u32> = (0..n)
            .map(|k| base + (u64_at(3, 1, u * 64 + k) % (ITEMS as u64 / 4)) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, None).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The output activations of `network` for the first `BATCH` examples (inputs only, no
/// dropout), as bits.
fn predict(network: &mut Network<Cpu>, data: &DataBinding) -> Vec<u32> {
    let examples: Vec<u32> = (0..BATCH as u32).collect();
    let mut batch = data.batch(network.graph(), &examples, None).unwrap();
    let graph = network.graph();
    batch
        .layers
        .retain(|(id, _)| graph.layer(*id).kind == LayerKind::Input);
    batch.example_weights.clear();
    let output = graph.outputs().next().unwrap().id;
    network.load_batch(batch).unwrap();
    network.forward(false, 0).unwrap();
    let out = network.layer_output(output).unwrap();
    assert_eq!((out.rows(), out.cols()), (BATCH, ITEMS as usize));
    bits(out.data())
}

fn roundtrip(json: &str, optimizer: Optimizer) {
    let descriptor = Descriptor::from_str(json, "roundtrip.json").unwrap();
    let datasets = vec![
        Dataset::sparse("input", vec![ITEMS], rows()).unwrap(),
        Dataset::sparse("output", vec![ITEMS], rows()).unwrap(),
    ];
    let graph = Graph::compile(&descriptor, &shapes(&datasets)).unwrap();
    let data = DataBinding::new(&graph, &datasets, false).unwrap();
    let mut trained = Network::build(Cpu::new(1).unwrap(), graph, BATCH, optimizer, 5).unwrap();
    let config = TrainConfig {
        epochs: 2,
        batch: BATCH,
        optimizer,
        hyper: Hyper {
            alpha: 0.05,
            mu: 0.9,
            mu1: 0.999,
            ..Hyper::default()
        },
        schedule: LrSchedule::Constant,
        seed: 5,
        shuffle: true,
        first_epoch: 0,
        brake: true,
    };
    let reports = train::train(&mut trained, &data, &config, None, &mut Quiet).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(trained.step_count(), 2 * (USERS / BATCH) as u64);
    let expected = predict(&mut trained, &data);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.nc");
    let in_memory = trained.to_model(Extras::default()).unwrap();
    save_model(&path, &in_memory).unwrap();
    let model = load_model(&path).unwrap();
    assert_eq!(model.weights.len(), in_memory.weights.len());
    for (a, b) in model.weights.iter().zip(&in_memory.weights) {
        assert_eq!(
            (&a.input_layer, &a.output_layer),
            (&b.input_layer, &b.output_layer)
        );
        assert!(
            bits(&a.data) == bits(&b.data),
            "weights of {}",
            a.output_layer
        );
        assert!(bits(&a.bias) == bits(&b.bias), "bias of {}", a.output_layer);
    }

    let variational =
        |d: &Descriptor| -> Vec<_> { d.layers.iter().map(|l| l.variational.clone()).collect() };
    assert_eq!(variational(&model.descriptor), variational(&descriptor));
    let graph = Graph::compile(&model.descriptor, &shapes(&datasets)).unwrap();
    check_against_graph(&model, &graph).unwrap();
    let data = DataBinding::new(&graph, &datasets, false).unwrap();
    let mut loaded = Network::build(Cpu::new(2).unwrap(), graph, BATCH, optimizer, 99).unwrap();
    assert!(
        predict(&mut loaded, &data) != expected,
        "a fresh network already predicts the trained outputs: the test proves nothing"
    );
    loaded.load_weights(&model).unwrap();
    let got = predict(&mut loaded, &data);
    let differing = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} of {} outputs differ", got.len());
}

#[test]
fn shallow_autoencoder_predicts_the_same_after_save_and_load() {
    roundtrip(SHALLOW, Optimizer::Adam);
}

#[test]
fn deep_network_predicts_the_same_after_save_and_load() {
    roundtrip(DEEP, Optimizer::Nesterov);
}

#[test]
fn variational_autoencoder_predicts_the_same_after_save_and_load() {
    roundtrip(VARIATIONAL, Optimizer::Adam);
}
