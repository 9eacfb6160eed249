//! Model parallelism through the `Threads` collective: a network sharded over 1–4 ranks
//! trains like the single-device network (weights within 1e-5 after an epoch, the same
//! top-10 for ≥ 99% of users) on MovieLens-1M, is bit-identical to itself on the same rank
//! count whatever the thread count, and its checkpoints load on any rank count.

use moira::backend::Cpu;
use moira::collective::{Collective, Threads};
use moira::dataset::Dataset;
use moira::dense::Matrix;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::parallel::Sharding;
use moira::sparse::Csr;
use moira::train::{shapes, train, DataBinding, Quiet, TrainConfig};

mod ml1m_common;
use ml1m_common::ml1m;

fn descriptor(hidden: &str, output: &str, error: &str) -> Descriptor {
    let json = format!(
        r#"{{ "Version": 0.8, "Name": "mp", "Kind": "FeedForward", "ShuffleIndices": true,
        "SparsenessPenalty": {{ "p": 0.3, "beta": 0.01 }},
        "Layers": [
          {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
          {hidden},
          {{ "Name": "Output", "Kind": "Output", "Source": "H2", "N": "auto", "DataSet": "output",
             "Sparse": true, {output} }}
        ],
        "ErrorFunction": "{error}" }}"#
    );
    Descriptor::from_str(&json, "mp.json").unwrap()
}

/// Input → H1 (128, input-sharded) → H2 (96, output-sharded) → Output (output-sharded),
/// with dropout, DeltaNorm, WeightNorm and a sparseness penalty.
fn sigmoid_net() -> Descriptor {
    descriptor(
        r#"{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128, "Activation": "Sigmoid",
             "pDropout": 0.2, "WeightNorm": 3.0, "Sparse": true },
           { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 96, "Activation": "Relu",
             "pDropout": 0.1, "DeltaNorm": 0.5 }"#,
        r#""Activation": "Sigmoid""#,
        "CrossEntropy",
    )
}

/// A SoftMax output (row maxima and sums across ranks) after a SELU layer with alpha-dropout.
fn softmax_net() -> Descriptor {
    descriptor(
        r#"{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 64, "Activation": "Tanh" },
           { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 48, "Activation": "ScaledExponentialLinear",
             "pDropout": 0.1 }"#,
        r#""Activation": "SoftMax""#,
        "CrossEntropy",
    )
}

fn config(optimizer: Optimizer, batch: usize) -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch,
        optimizer,
        hyper: Hyper {
            alpha: if optimizer == Optimizer::Adam {
                0.002
            } else {
                0.05
            },
            lambda: 0.0001,
            lambda1: 0.0,
            mu: 0.9,
            mu1: 0.999,
        },
        schedule: LrSchedule::Constant,
        seed: 7,
        shuffle: true,
        first_epoch: 0,
        brake: true,
    }
}

struct Trained {
    params: Vec<(Matrix, Vec<f32>)>,
    loss: f64,
    top10: Vec<u32>,
}

/// Trains one epoch and ranks the first 512 users' items (own items excluded).
fn run<B: moira::backend::Backend, C: Collective>(
    net: &mut Network<B, C>,
    data: &[Dataset],
    cfg: &TrainConfig,
) -> (f64, Vec<u32>) {
    let binding = DataBinding::new(net.graph(), data, false).unwrap();
    let reports = train(net, &binding, cfg, None, &mut Quiet).unwrap();
    let rows = data[0].sparse_data().unwrap();
    let users = 512.min(rows.n_rows());
    let out = net.graph().layer_by_name("Output").unwrap().id;
    let width = net.graph().layer(out).units;
    let mut top = vec![0u32; users * 10];
    let mut scores = vec![0.0f32; users * 10];
    let chunk: Vec<u32> = (0..users as u32).collect();
    for part in chunk.chunks(cfg.batch) {
        let mut mb = binding.batch(net.graph(), part, None).unwrap();
        mb.layers
            .retain(|(id, _)| net.graph().layer(*id).name == "Input");
        let seen = match &mb.layers[0].1 {
            moira::network::HostRows::Sparse(c) => c.clone(),
            _ => unreachable!(),
        };
        net.load_batch(mb).unwrap();
        net.forward(false, 0).unwrap();
        let at = part[0] as usize * 10;
        net.top_k(
            out,
            width,
            10,
            Some(seen.view()),
            &mut top[at..at + part.len() * 10],
            &mut scores[at..at + part.len() * 10],
        )
        .unwrap();
    }
    (reports[0].loss, top)
}

fn datasets(rows: Csr) -> Vec<Dataset> {
    let n = rows.n_cols();
    vec![
        Dataset::sparse("input", vec![n], rows.clone()).unwrap(),
        Dataset::sparse("output", vec![n], rows).unwrap(),
    ]
}

fn single(d: &Descriptor, data: &[Dataset], cfg: &TrainConfig) -> Trained {
    let graph = Graph::compile(d, &shapes(data)).unwrap();
    let mut net = Network::build(
        Cpu::new(2).unwrap(),
        graph,
        cfg.batch,
        cfg.optimizer,
        cfg.seed,
    )
    .unwrap();
    net.set_fused_sgd(false);
    let (loss, top10) = run(&mut net, data, cfg);
    Trained {
        params: net.download_params().unwrap(),
        loss,
        top10,
    }
}

fn sharded(
    d: &Descriptor,
    data: &[Dataset],
    cfg: &TrainConfig,
    ranks: usize,
    threads: usize,
) -> Trained {
    let mut out = Threads::run(ranks, |comm| {
        let graph = Graph::compile(d, &shapes(data))?;
        let mut net = Network::build_with(
            Cpu::new(threads)?,
            comm,
            graph,
            cfg.batch,
            cfg.optimizer,
            cfg.seed,
        )?;
        let (loss, top10) = run(&mut net, data, cfg);
        let params = net.download_params()?;
        Ok(Trained {
            params,
            loss,
            top10,
        })
    })
    .unwrap();
    for other in &out[1..] {
        assert_eq!(other.loss, out[0].loss, "every rank reports the same loss");
        assert_eq!(
            other.top10, out[0].top10,
            "every rank merges the same top-K"
        );
        assert!(other
            .params
            .iter()
            .all(|(w, b)| w.rows() == 0 && b.is_empty()));
    }
    out.swap_remove(0)
}

/// `‖a − b‖ / ‖b‖` over every weight and bias.
fn relative_difference(a: &[(Matrix, Vec<f32>)], b: &[(Matrix, Vec<f32>)]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for ((wa, ba), (wb, bb)) in a.iter().zip(b) {
        assert_eq!((wa.rows(), wa.cols()), (wb.rows(), wb.cols()));
        for (x, y) in wa.data().iter().chain(ba).zip(wb.data().iter().chain(bb)) {
            diff += (*x as f64 - *y as f64).powi(2);
            norm += (*y as f64).powi(2);
        }
    }
    (diff / norm).sqrt()
}

fn same_top10(a: &[u32], b: &[u32]) -> f64 {
    let users = a.len() / 10;
    let same = a
        .chunks(10)
        .zip(b.chunks(10))
        .filter(|(x, y)| x == y)
        .count();
    same as f64 / users as f64
}

#[test]
fn sharded_training_matches_one_device_on_movielens() {
    let data = datasets(ml1m(2048));
    let d = sigmoid_net();
    // The plan this test relies on: H1 input-sharded (reduce-scatter), H2 and Output
    // output-sharded (all-gather), the input split by column.
    let graph = Graph::compile(&d, &shapes(&data)).unwrap();
    let plan = moira::parallel::ShardPlan::new(&graph, 2).unwrap();
    let kinds: Vec<Sharding> = plan.edges().iter().map(|e| e.sharding).collect();
    assert_eq!(
        kinds,
        [Sharding::ByInput, Sharding::ByOutput, Sharding::ByOutput]
    );
    for optimizer in [Optimizer::Adam, Optimizer::Sgd] {
        let cfg = config(optimizer, 256);
        let one = single(&d, &data, &cfg);
        for ranks in 1..=4 {
            let got = sharded(&d, &data, &cfg, ranks, 1);
            let rel = relative_difference(&got.params, &one.params);
            assert!(
                rel < 1e-5,
                "{optimizer:?}, {ranks} ranks: weights differ by {rel:e}"
            );
            assert!(
                (got.loss - one.loss).abs() <= 1e-5 * one.loss.abs(),
                "{optimizer:?}, {ranks} ranks: loss {} vs {}",
                got.loss,
                one.loss
            );
            let same = same_top10(&got.top10, &one.top10);
            assert!(
                same >= 0.99,
                "{optimizer:?}, {ranks} ranks: same top-10 for {same}"
            );
        }
    }
}

#[test]
fn sharded_softmax_matches_one_device() {
    let data = datasets(ml1m(1024));
    let d = softmax_net();
    let cfg = config(Optimizer::Adam, 128);
    let one = single(&d, &data, &cfg);
    for ranks in [2, 3] {
        let got = sharded(&d, &data, &cfg, ranks, 1);
        let rel = relative_difference(&got.params, &one.params);
        assert!(rel < 1e-5, "{ranks} ranks: weights differ by {rel:e}");
        assert!(same_top10(&got.top10, &one.top10) >= 0.99);
    }
}

#[test]
fn sharded_training_is_bit_identical_on_the_same_rank_count() {
    let data = datasets(ml1m(1024));
    let d = sigmoid_net();
    let cfg = config(Optimizer::Adam, 128);
    let a = sharded(&d, &data, &cfg, 3, 1);
    let b = sharded(&d, &data, &cfg, 3, 2);
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    for ((wa, ba), (wb, bb)) in a.params.iter().zip(&b.params) {
        assert_eq!(wa.data(), wb.data(), "weights differ between thread counts");
        assert_eq!(ba, bb);
    }
}

#[test]
fn checkpoints_move_between_rank_counts() {
    let data = datasets(ml1m(512));
    let d = sigmoid_net();
    let cfg = config(Optimizer::Adam, 128);
    // Train on 3 ranks; the gathered model loads on 1 and on 2 ranks with the same weights.
    let models = Threads::run(3, |comm| {
        let graph = Graph::compile(&d, &shapes(&data))?;
        let mut net = Network::build_with(
            Cpu::new(1)?,
            comm,
            graph,
            cfg.batch,
            cfg.optimizer,
            cfg.seed,
        )?;
        let binding = DataBinding::new(net.graph(), &data, false)?;
        train(&mut net, &binding, &cfg, None, &mut Quiet)?;
        let state = net.download_optimizer_state()?;
        Ok((net.to_model(Default::default())?, state, comm.rank()))
    })
    .unwrap();
    let (model, state, _) = &models[0];
    assert!(models[1].0.weights.iter().all(|w| w.data.is_empty()));
    let graph = Graph::compile(&d, &shapes(&data)).unwrap();
    let mut one =
        Network::build(Cpu::new(1).unwrap(), graph.clone(), 128, cfg.optimizer, 1).unwrap();
    one.load_weights(model).unwrap();
    one.upload_optimizer_state(state).unwrap();
    let whole = one.download_params().unwrap();
    for (t, (w, b)) in model.weights.iter().zip(&whole) {
        assert_eq!(&t.data, w.data());
        assert_eq!(&t.bias, b);
    }
    let back = Threads::run(2, |comm| {
        let mut net =
            Network::build_with(Cpu::new(1)?, comm, graph.clone(), 128, cfg.optimizer, 1)?;
        net.load_weights(model)?;
        net.upload_optimizer_state(state)?;
        Ok((net.download_params()?, net.download_optimizer_state()?))
    })
    .unwrap();
    assert_eq!(back[0].0.len(), whole.len());
    for ((w, b), (w1, b1)) in back[0].0.iter().zip(&whole) {
        assert_eq!(w.data(), w1.data());
        assert_eq!(b, b1);
    }
    for (a, b) in back[0].1.iter().zip(state) {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.weights, y.weights);
            assert_eq!(x.bias, y.bias);
        }
    }
}

#[test]
fn a_softmax_hidden_layer_is_refused_by_name() {
    let data = datasets(ml1m(64));
    let d = descriptor(
        r#"{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 16, "Activation": "SoftMax" },
           { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 16, "Activation": "Sigmoid" }"#,
        r#""Activation": "Sigmoid""#,
        "CrossEntropy",
    );
    let err = Threads::run(2, |comm| {
        let graph = Graph::compile(&d, &shapes(&data))?;
        Network::build_with(Cpu::new(1)?, comm, graph, 8, Optimizer::Sgd, 1).map(|_| ())
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`H1`") && err.contains("SoftMax hidden layer"),
        "{err}"
    );
}

/// A tied autoencoder (`networks/tied-ae.json`: the output edge uses the input weight
/// transposed): the shared block serves both edges on every rank count, and the model moves
/// between rank counts.
#[test]
fn shared_weights_train_across_ranks() {
    let data = datasets(ml1m(1024));
    let tied = Descriptor::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/networks/tied-ae.json"
    ))
    .unwrap();
    let cfg = config(Optimizer::Adam, 128);
    let one = single(&tied, &data, &cfg);
    assert!(
        one.params[1].0.rows() == 0,
        "the output edge's weight is shared"
    );
    for ranks in [2, 3] {
        let got = sharded(&tied, &data, &cfg, ranks, 1);
        let rel = relative_difference(&got.params, &one.params);
        assert!(rel < 1e-5, "{ranks} ranks: weights differ by {rel:e}");
        assert!(same_top10(&got.top10, &one.top10) >= 0.99);
    }
    let graph = Graph::compile(&tied, &shapes(&data)).unwrap();
    let models = Threads::run(3, |comm| {
        let mut net = Network::build_with(
            Cpu::new(1)?,
            comm,
            graph.clone(),
            128,
            cfg.optimizer,
            cfg.seed,
        )?;
        let binding = DataBinding::new(&graph, &data, false)?;
        train(&mut net, &binding, &cfg, None, &mut Quiet)?;
        Ok((net.to_model(Default::default())?, net.download_params()?))
    })
    .unwrap();
    let (model, params) = &models[0];
    let mut net = Network::build(Cpu::new(1).unwrap(), graph, 128, cfg.optimizer, 1).unwrap();
    net.load_weights(model).unwrap();
    for ((w, b), (w1, b1)) in net.download_params().unwrap().iter().zip(params) {
        assert_eq!(w.data(), w1.data());
        assert_eq!(b, b1);
    }
}

/// Batch normalisation is per unit: each rank normalises its units; the model (with the BN
/// tensors) matches one device and moves between rank counts. SGD: with Adam, the bias of an
/// edge into a normalised layer (whose true gradient is 0, so what it gets is rounding noise)
/// takes full-size steps whose signs differ between rank counts, and the running means follow.
#[test]
fn batch_normalised_layers_train_across_ranks() {
    let data = datasets(ml1m(1024));
    let d = descriptor(
        r#"{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 96, "Activation": "Relu",
             "BatchNormalization": true, "pDropout": 0.1 },
           { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 64, "Activation": "Tanh",
             "BatchNormalization": true }"#,
        r#""Activation": "Sigmoid""#,
        "CrossEntropy",
    );
    let cfg = config(Optimizer::Sgd, 128);
    let graph = Graph::compile(&d, &shapes(&data)).unwrap();
    let mut one = Network::build(
        Cpu::new(1).unwrap(),
        graph.clone(),
        128,
        cfg.optimizer,
        cfg.seed,
    )
    .unwrap();
    let binding = DataBinding::new(&graph, &data, false).unwrap();
    train(&mut one, &binding, &cfg, None, &mut Quiet).unwrap();
    let want = one.to_model(Default::default()).unwrap();
    for ranks in [2, 3] {
        let got = Threads::run(ranks, |comm| {
            let mut net = Network::build_with(
                Cpu::new(1)?,
                comm,
                graph.clone(),
                128,
                cfg.optimizer,
                cfg.seed,
            )?;
            let binding = DataBinding::new(&graph, &data, false)?;
            train(&mut net, &binding, &cfg, None, &mut Quiet)?;
            let state = net.download_batch_norm_state()?;
            Ok((net.to_model(Default::default())?, state))
        })
        .unwrap();
        let (model, state) = &got[0];
        assert_eq!(model.batch_norm.len(), 2);
        for (a, b) in model.batch_norm.iter().zip(&want.batch_norm) {
            for (what, x, y) in [
                ("scale", &a.scale, &b.scale),
                ("bias", &a.bias, &b.bias),
                ("running mean", &a.running_mean, &b.running_mean),
                ("running variance", &a.running_variance, &b.running_variance),
            ] {
                let rel = relative_difference(
                    &[(Matrix::zeros(0, 0), x.clone())],
                    &[(Matrix::zeros(0, 0), y.clone())],
                );
                // Running statistics average every step's batch statistics, so they collect
                // the rounding of every step (measured up to 1.7e-5).
                let tolerance = if what.starts_with("running") {
                    1e-4
                } else {
                    1e-5
                };
                eprintln!("{ranks} ranks, layer {} {what}: {rel:e}", a.layer);
                assert!(
                    rel < tolerance,
                    "{ranks} ranks, layer {} {what}: {rel:e}",
                    a.layer
                );
            }
        }
        let w: Vec<_> = model
            .weights
            .iter()
            .map(|t| {
                (
                    Matrix::from_vec(t.rows, t.cols, t.data.clone()).unwrap(),
                    t.bias.clone(),
                )
            })
            .collect();
        let v: Vec<_> = want
            .weights
            .iter()
            .map(|t| {
                (
                    Matrix::from_vec(t.rows, t.cols, t.data.clone()).unwrap(),
                    t.bias.clone(),
                )
            })
            .collect();
        let rel = relative_difference(&w, &v);
        assert!(rel < 1e-5, "{ranks} ranks: weights differ by {rel:e}");
        // The gathered model and BN state load on another rank count and come back whole.
        let back = Threads::run(2, |comm| {
            let mut net =
                Network::build_with(Cpu::new(1)?, comm, graph.clone(), 128, cfg.optimizer, 1)?;
            net.load_weights(model)?;
            net.upload_batch_norm_state(state)?;
            Ok((
                net.to_model(Default::default())?,
                net.download_batch_norm_state()?,
            ))
        })
        .unwrap();
        assert_eq!(back[0].0.batch_norm, model.batch_norm);
        assert_eq!(&back[0].1, state);
    }
}

#[test]
fn ranks_keeping_only_their_columns_train_the_same_bits() {
    let data = datasets(ml1m(512));
    let d = sigmoid_net();
    let cfg = config(Optimizer::Adam, 128);
    let whole = sharded(&d, &data, &cfg, 2, 1);
    let kept = Threads::run(2, |comm| {
        let graph = Graph::compile(&d, &shapes(&data))?;
        let plan = moira::parallel::ShardPlan::new(&graph, 2)?;
        let mut mine = data.clone();
        let nnz = moira::parallel::retain_rank_columns(&graph, &plan, comm.rank(), &mut mine)?;
        let all: Vec<usize> = data.iter().map(|d| d.nnz()).collect();
        assert!(
            nnz.iter().zip(&all).all(|(k, a)| k < a),
            "{nnz:?} of {all:?}"
        );
        let mut net = Network::build_with(
            Cpu::new(1)?,
            comm,
            graph,
            cfg.batch,
            cfg.optimizer,
            cfg.seed,
        )?;
        let binding = DataBinding::new(net.graph(), &mine, false)?;
        train(&mut net, &binding, &cfg, None, &mut Quiet)?;
        net.download_params()
    })
    .unwrap();
    for ((wa, ba), (wb, bb)) in kept[0].iter().zip(&whole.params) {
        assert_eq!(wa.data(), wb.data());
        assert_eq!(ba, bb);
    }
}

/// A layer narrower than the rank count leaves some ranks without units of it.
#[test]
fn layers_narrower_than_the_rank_count_train() {
    let data = datasets(ml1m(256));
    let d = descriptor(
        r#"{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 3, "Activation": "Sigmoid" },
           { "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 2, "Activation": "Tanh",
             "DeltaNorm": 1.0, "WeightNorm": 2.0 }"#,
        r#""Activation": "Sigmoid""#,
        "CrossEntropy",
    );
    let cfg = config(Optimizer::Adam, 64);
    let one = single(&d, &data, &cfg);
    let got = sharded(&d, &data, &cfg, 4, 1);
    let rel = relative_difference(&got.params, &one.params);
    assert!(rel < 1e-5, "weights differ by {rel:e}");
}
