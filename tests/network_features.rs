//! Network features beyond plain layers, on small networks: shared (tied) weights, the
//! sparseness penalty, WeightNorm, DeltaNorm, SparseIgnoreZero targets and batch
//! normalisation — their effect, their bit-reproducibility over thread counts, saving them in
//! DSSTNE's model schema and resuming training with them. (Their gradients are checked in
//! `gradient_check.rs`.)

use moira::backend::Cpu;
use moira::checkpoint::{load_model, save_model, Extras};
use moira::dataset::{Attributes, Dataset};
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::Hyper;
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{
    self, resume, shapes, CheckpointPlan, DataBinding, Quiet, TrainConfig, TrainState,
};

const USERS: usize = 96;
const ITEMS: u32 = 64;
const BATCH: usize = 16;

/// `USERS` rows of 3..10 distinct items, clustered by `user % 4`.
fn rows(salt: u64) -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for u in 0..USERS as u64 {
        let n = 3 + u64_at(salt, 0, u) % 8;
        let base = (u % 4) as u32 * (ITEMS / 4);
        let mut row: Vec<u32> = (0..n)
            .map(|k| base + (u64_at(salt, 1, u * 64 + k) % (ITEMS as u64 / 4)) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, None).unwrap()
}

fn datasets() -> Vec<Dataset> {
    vec![
        Dataset::sparse("input", vec![ITEMS], rows(3)).unwrap(),
        Dataset::sparse("output", vec![ITEMS], rows(3)).unwrap(),
    ]
}

/// Every feature at once: a dense copy of the input feeds a tied (transposed) output, the
/// hidden layers are batch-normalised and sparseness-penalised, with weight and delta norms.
const ALL: &str = r#"{
  "Version": 0.9, "Name": "features", "ErrorFunction": "CrossEntropy",
  "SparsenessPenalty": { "p": 0.05, "beta": 0.1 },
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "N": 24, "Activation": "Sigmoid", "Sparse": true,
      "BatchNormalization": true, "WeightNorm": 2.0, "pDropout": 0.1 },
    { "Name": "H2", "Kind": "Hidden", "N": 12, "Activation": "Tanh", "BatchNormalization": true,
      "DeltaNorm": 5.0 },
    { "Name": "H3", "Kind": "Hidden", "N": 24, "Activation": "Sigmoid",
      "SharedWeights": { "SourceInputLayer": "H1", "SourceOutputLayer": "H2", "InputLayer": "H2",
                         "Transposed": true } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true, "DeltaNorm": 20.0 }
  ]
}"#;

fn network(json: &str, data: &[Dataset], threads: usize, optimizer: Optimizer) -> Network<Cpu> {
    let d = Descriptor::from_str(json, "features.json").unwrap();
    let graph = Graph::compile(&d, &shapes(data)).unwrap();
    Network::build(Cpu::new(threads).unwrap(), graph, BATCH, optimizer, 11).unwrap()
}

fn config(epochs: u32, optimizer: Optimizer) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: BATCH,
        optimizer,
        hyper: Hyper {
            alpha: 0.05,
            mu: 0.9,
            mu1: 0.999,
            ..Hyper::default()
        },
        seed: 5,
        ..TrainConfig::default()
    }
}

/// Every weight, bias and batch-normalisation value as bits.
fn bits(net: &Network<Cpu>) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, b) in net.download_params().unwrap() {
        out.extend(w.data().iter().chain(&b).map(|x| x.to_bits()));
    }
    for v in net.download_batch_norm().unwrap() {
        for x in [&v.scale, &v.bias, &v.running_mean, &v.running_var] {
            out.extend(x.iter().map(|x| x.to_bits()));
        }
    }
    out
}

#[test]
fn every_feature_trains_reproducibly_on_any_thread_count_and_resumes_bit_for_bit() {
    let data = datasets();
    let dir = tempfile::tempdir().unwrap();
    let mut full = network(ALL, &data, 1, Optimizer::Adam);
    let binding = DataBinding::new(full.graph(), &data, false).unwrap();
    let plan = CheckpointPlan::beside(&dir.path().join("run.nc"), 2);
    let mut state = TrainState::default();
    let reports = train::train_with(
        &mut full,
        &binding,
        &config(4, Optimizer::Adam),
        None,
        &mut Quiet,
        &mut state,
        Some(&plan),
    )
    .unwrap();
    assert!(
        reports.last().unwrap().loss < reports[0].loss,
        "{reports:?}"
    );

    let mut two = network(ALL, &data, 2, Optimizer::Adam);
    train::train(
        &mut two,
        &binding,
        &config(4, Optimizer::Adam),
        None,
        &mut Quiet,
    )
    .unwrap();
    assert!(bits(&two) == bits(&full), "2 threads differ from 1");

    let mut resumed = network(ALL, &data, 2, Optimizer::Adam);
    let mut cfg = config(4, Optimizer::Adam);
    let r = resume(&dir.path().join("run.epoch2.nc"), &mut resumed, &cfg).unwrap();
    cfg.first_epoch = r.epochs_done;
    cfg.epochs = 2;
    let mut state = r.state;
    train::train_with(
        &mut resumed,
        &binding,
        &cfg,
        None,
        &mut Quiet,
        &mut state,
        None,
    )
    .unwrap();
    assert!(bits(&resumed) == bits(&full), "the resumed run differs");
    assert_eq!(
        resumed.download_batch_norm_state().unwrap(),
        full.download_batch_norm_state().unwrap()
    );
}

#[test]
fn shared_weights_and_batch_norm_are_saved_in_the_dsstne_schema_and_load_back() {
    let data = datasets();
    let mut net = network(ALL, &data, 1, Optimizer::Sgd);
    let binding = DataBinding::new(net.graph(), &data, false).unwrap();
    train::train(
        &mut net,
        &binding,
        &config(2, Optimizer::Sgd),
        None,
        &mut Quiet,
    )
    .unwrap();
    let bn = net.download_batch_norm().unwrap();
    assert_eq!(bn.len(), 2);
    assert!(bn[0].running_var.iter().all(|&v| v > 0.0));
    assert!(bn[0].scale.iter().any(|&g| g != 1.0), "γ trains");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.nc");
    save_model(&path, &net.to_model(Extras::default()).unwrap()).unwrap();
    {
        let file = netcdf::open(&path).unwrap();
        for var in [
            "layer1_scaleBN",
            "layer1_biasBN",
            "layer1_runningMeanBN",
            "layer1_runningVarianceBN",
        ] {
            assert_eq!(file.variable(var).unwrap().len(), 24, "{var}");
        }
        let shared = (0..4)
            .find(|i| {
                file.attribute(&format!("weight{i}_outputLayer"))
                    .map(|a| format!("{:?}", a.value().unwrap()).contains("H3"))
                    .unwrap_or(false)
            })
            .unwrap();
        assert!(file.variable(&format!("weight{shared}_weights")).is_none());
        assert!(file.variable(&format!("weight{shared}_bias")).is_some());
    }
    let model = load_model(&path).unwrap();
    let mut fresh = network(ALL, &data, 1, Optimizer::Sgd);
    fresh.load_weights(&model).unwrap();
    assert_eq!(fresh.download_batch_norm().unwrap(), bn);
    assert!(bits(&fresh) == bits(&net));

    // Inference uses the running statistics: the same for any batch composition.
    let order: Vec<u32> = (0..BATCH as u32).collect();
    let out_id = net.graph().layer_by_name("Output").unwrap().id;
    let mut outputs = Vec::new();
    for n in [&mut net, &mut fresh] {
        n.load_batch(binding.batch(n.graph(), &order, None).unwrap())
            .unwrap();
        n.forward(false, 0).unwrap();
        outputs.push(n.layer_output(out_id).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    let one: Vec<u32> = vec![3];
    net.load_batch(binding.batch(net.graph(), &one, None).unwrap())
        .unwrap();
    net.forward(false, 0).unwrap();
    // (Equal up to the rounding of products of another shape.)
    let alone = net.layer_output(out_id).unwrap();
    for (a, b) in alone.row(0).iter().zip(outputs[0].row(3)) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

/// A two-layer network whose output layer carries `extra` keys.
fn small(extra: &str, hidden_extra: &str) -> String {
    format!(
        r#"{{ "Version": 0.9, "Name": "small", "ErrorFunction": "CrossEntropy",
            "Layers": [
              {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
              {{ "Name": "H", "Kind": "Hidden", "N": 16, "Activation": "Sigmoid"{hidden_extra} }},
              {{ "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
                 "Activation": "Sigmoid", "Sparse": true{extra} }}
            ] }}"#
    )
}

fn one_batch(net: &mut Network<Cpu>, data: &[Dataset]) {
    let binding = DataBinding::new(net.graph(), data, false).unwrap();
    let order: Vec<u32> = (0..BATCH as u32).collect();
    net.load_batch(binding.batch(net.graph(), &order, None).unwrap())
        .unwrap();
}

#[test]
fn weight_norm_caps_every_incoming_weight_vector_after_the_update() {
    let data = datasets();
    let mut net = network(
        &small(r#", "WeightNorm": 0.05"#, ""),
        &data,
        2,
        Optimizer::Sgd,
    );
    one_batch(&mut net, &data);
    let h = Hyper {
        alpha: 5.0,
        ..Hyper::default()
    };
    net.train_step(&h, 1).unwrap();
    let params = net.download_params().unwrap();
    // Edge 1 is H → Output (WeightNorm 0.05); edge 0 (Input → H) has none.
    let w = &params[1].0;
    let norms: Vec<f64> = (0..w.cols())
        .map(|j| {
            (0..w.rows())
                .map(|i| f64::from(w.get(i, j)).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    assert!(norms.iter().all(|&n| n <= 0.05 * (1.0 + 1e-5)), "{norms:?}");
    assert!(
        norms.iter().any(|&n| (n - 0.05).abs() < 1e-5),
        "some column is capped"
    );
    let w0 = &params[0].0;
    let big = (0..w0.cols()).any(|j| {
        (0..w0.rows())
            .map(|i| f64::from(w0.get(i, j)).powi(2))
            .sum::<f64>()
            .sqrt()
            > 0.05
    });
    assert!(big, "the Input → H weight has no WeightNorm");
}

#[test]
fn delta_norm_caps_each_examples_delta() {
    let data = datasets();
    let bias_grad_norm = |json: &str| {
        let mut net = network(json, &data, 1, Optimizer::Sgd);
        one_batch(&mut net, &data);
        net.forward(true, 0).unwrap();
        net.backward(0).unwrap();
        let g = net.download_gradients().unwrap();
        // The output bias gradient is −mean over examples of the output delta rows.
        g[1].1
            .iter()
            .map(|&x| f64::from(x).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let free = bias_grad_norm(&small("", ""));
    let capped = bias_grad_norm(&small(r#", "DeltaNorm": 0.01"#, ""));
    assert!(free > 0.1, "{free}");
    assert!(capped <= 0.01 * (1.0 + 1e-5), "{capped}");
    assert!(
        capped > 0.005,
        "rows were scaled down to the cap, not zeroed: {capped}"
    );
}

#[test]
fn sparse_ignore_zero_targets_train_on_their_non_zeros_only() {
    let data = datasets();
    let ignoring = vec![
        data[0].clone(),
        data[1]
            .clone()
            .with_extra_attributes(Attributes::SPARSE_IGNORE_ZERO),
    ];
    let json = small("", "");
    let run = |d: &[Dataset]| {
        let mut net = network(&json, d, 1, Optimizer::Sgd);
        one_batch(&mut net, d);
        net.forward(true, 0).unwrap();
        let loss = net.loss().unwrap().to_f64();
        net.backward(0).unwrap();
        (loss, net.download_gradients().unwrap()[1].1.clone())
    };
    let (loss_all, g_all) = run(&data);
    let (loss_pos, g_pos) = run(&ignoring);
    assert!(loss_pos < loss_all, "{loss_pos} vs {loss_all}");
    // Columns no example of the batch has as a target get no gradient with IgnoreZero.
    let targets = rows(3);
    let mut seen = vec![false; ITEMS as usize];
    for r in 0..BATCH {
        for &c in targets.row(r).0 {
            seen[c as usize] = true;
        }
    }
    for j in 0..ITEMS as usize {
        if !seen[j] {
            assert_eq!(g_pos[j], 0.0, "column {j}");
            assert_ne!(g_all[j], 0.0, "column {j}");
        }
    }
}

#[test]
fn unsupported_combinations_are_clear_errors() {
    let data = datasets();
    let build = |json: &str| {
        let d = Descriptor::from_str(json, "bad.json").unwrap();
        let graph = Graph::compile(&d, &shapes(&data)).unwrap();
        Network::build(Cpu::new(1).unwrap(), graph, BATCH, Optimizer::Sgd, 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let tied_from_sparse = r#"{ "Version": 0.9, "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input" },
        { "Name": "H", "Kind": "Hidden", "N": 64, "Source": "Input" },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Source": ["H", "Input"],
          "SharedWeights": { "SourceInputLayer": "Input", "SourceOutputLayer": "H", "InputLayer": "Input",
                             "Transposed": true } } ] }"#;
    let e = build(tied_from_sparse);
    assert!(
        e.contains("transposed shared weight from the sparse input layer `Input`"),
        "{e}"
    );
    let skip = r#"{ "Version": 0.9, "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input" },
        { "Name": "H", "Kind": "Hidden", "N": 64, "Skip": "Input" },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output" } ] }"#;
    let e = build(skip);
    assert!(
        e.contains("a Skip from the sparse input layer `Input`"),
        "{e}"
    );
}
