//! Every layer feature trains the same model on 1, 2 and 4 ranks (the `Threads` collective,
//! each rank keeping only its columns of the data as the trainer does), at a short horizon
//! where float rounding is still far below what a rank-dependent random mask would show: on
//! MovieLens-1M's first 512 users in 8 minibatches of 64, the epoch's loss agrees within 1e-6
//! relative and the weights within 1e-5, and each rank count repeats itself bit for bit.
//! Features: dropout (and alpha-dropout), denoising, SoftMax outputs, the sparseness penalty,
//! WeightNorm and DeltaNorm, batch normalisation, shared (tied) weights, skips, fused and
//! unfused SGD, every optimizer, all stochastic features at once, and DSSTNE's MovieLens
//! descriptor (networks/movielens-ae.json).

use moira::backend::Cpu;
use moira::collective::{Collective, Threads};
use moira::dataset::Dataset;
use moira::dense::Matrix;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::parallel::{retain_rank_columns, ShardPlan};
use moira::train::{shapes, train, DataBinding, Quiet, TrainConfig};

mod ml1m_common;
use ml1m_common::ml1m;

const USERS: usize = 512;
const BATCH: usize = 64;
/// The learning rate of Adam and RMSProp here. They scale a step by the gradient's running
/// RMS, so a weight whose true gradient is 0 up to rounding takes a step of about α whose
/// sign is that rounding's: such weights differ between rank counts by about α.
const ADAM_ALPHA: f32 = 0.001;

/// Input → H1 (128 units, input-sharded: partial products reduce-scattered) → H2 (96,
/// output-sharded: H1 all-gathered) → Output (output-sharded), `hidden` and `output` adding
/// keys to H1/H2 and to the output layer, `top` to the network.
fn net(top: &str, h1: &str, h2: &str, output: &str) -> String {
    format!(
        r#"{{ "Version": 0.8, "Name": "agree", "Kind": "FeedForward", "ShuffleIndices": true, {top}
        "Layers": [
          {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
          {{ "Name": "H1", "Kind": "Hidden", "Source": "Input", "N": 128 {h1} }},
          {{ "Name": "H2", "Kind": "Hidden", "Source": "H1", "N": 96 {h2} }},
          {{ "Name": "Output", "Kind": "Output", "Source": "H2", "N": "auto", "DataSet": "output",
             "Sparse": true {output} }}
        ] }}"#
    )
}

const SIGMOID_CE: &str = r#", "Activation": "Sigmoid""#;

/// The descriptors, by feature.
fn features() -> Vec<(&'static str, String)> {
    let ce = r#""ErrorFunction": "CrossEntropy","#;
    let tanh = r#", "Activation": "Tanh""#;
    let relu = r#", "Activation": "Relu""#;
    vec![
        (
            "dropout",
            net(
                ce,
                r#", "Activation": "Sigmoid", "pDropout": 0.2"#,
                r#", "Activation": "Relu", "pDropout": 0.1"#,
                SIGMOID_CE,
            ),
        ),
        (
            "alpha-dropout",
            net(
                ce,
                tanh,
                r#", "Activation": "ScaledExponentialLinear", "pDropout": 0.1"#,
                SIGMOID_CE,
            ),
        ),
        (
            "denoising",
            net(
                &format!(r#"{ce} "Denoising": {{ "p": 0.2 }},"#),
                tanh,
                relu,
                SIGMOID_CE,
            ),
        ),
        (
            "softmax output",
            net(ce, tanh, relu, r#", "Activation": "SoftMax""#),
        ),
        (
            "sparseness penalty",
            net(
                &format!(r#"{ce} "SparsenessPenalty": {{ "p": 0.3, "beta": 0.5 }},"#),
                r#", "Activation": "Sigmoid", "Sparse": true"#,
                r#", "Activation": "Sigmoid", "Sparse": true"#,
                SIGMOID_CE,
            ),
        ),
        (
            "weight and delta norms",
            net(
                ce,
                r#", "Activation": "Tanh", "WeightNorm": 0.5, "DeltaNorm": 0.05"#,
                r#", "Activation": "Relu", "WeightNorm": 0.5, "DeltaNorm": 0.05"#,
                r#", "Activation": "Sigmoid", "DeltaNorm": 0.5"#,
            ),
        ),
        (
            "batch normalisation",
            net(
                ce,
                r#", "Activation": "Relu", "BatchNormalization": true"#,
                r#", "Activation": "Tanh", "BatchNormalization": true, "pDropout": 0.1"#,
                SIGMOID_CE,
            ),
        ),
        ("shared weights", tied()),
        ("skips", skips()),
        (
            "everything stochastic",
            net(
                &format!(
                    r#"{ce} "Denoising": {{ "p": 0.3 }},
                    "SparsenessPenalty": {{ "p": 0.3, "beta": 0.5 }},"#
                ),
                r#", "Activation": "Sigmoid", "Sparse": true, "pDropout": 0.2"#,
                r#", "Activation": "Relu", "pDropout": 0.1"#,
                r#", "Activation": "SoftMax""#,
            ),
        ),
        (
            "DSSTNE's MovieLens autoencoder",
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/networks/movielens-ae.json"
            ))
            .unwrap(),
        ),
    ]
}

/// A tied autoencoder: the output edge uses Input → Hidden's weight transposed (so it is
/// sharded the other way round on every rank count).
fn tied() -> String {
    r#"{ "Version": 0.9, "Name": "tied", "Kind": "AutoEncoder", "ErrorFunction": "CrossEntropy",
      "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
        { "Name": "H1", "Kind": "Hidden", "N": 128, "Activation": "Tanh", "Source": "Input" },
        { "Name": "H2", "Kind": "Hidden", "N": 96, "Activation": "Sigmoid", "Source": "H1" },
        { "Name": "H3", "Kind": "Hidden", "N": 128, "Activation": "Sigmoid", "Source": "H2",
          "SharedWeights": { "SourceInputLayer": "H1", "SourceOutputLayer": "H2",
                             "InputLayer": "H2", "Transposed": true } },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
          "Activation": "Sigmoid", "Sparse": true, "Source": "H3" } ] }"#
        .to_owned()
}

/// Two hidden layers feeding a third, which also adds the first (`Skip`).
fn skips() -> String {
    r#"{ "Version": 0.9, "Name": "skips", "Kind": "FeedForward", "ErrorFunction": "CrossEntropy",
      "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
        { "Name": "H1", "Kind": "Hidden", "N": 96, "Activation": "Tanh", "Source": "Input" },
        { "Name": "H2", "Kind": "Hidden", "N": 160, "Activation": "Relu", "Source": "H1" },
        { "Name": "H3", "Kind": "Hidden", "N": 96, "Activation": "Tanh", "Source": "H2",
          "Skip": "H1" },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
          "Activation": "Sigmoid", "Sparse": true, "Source": ["H3", "H1"] } ] }"#
        .to_owned()
}

fn config(optimizer: Optimizer) -> TrainConfig {
    let alpha = match optimizer {
        Optimizer::Sgd | Optimizer::Momentum | Optimizer::Nesterov => 0.05,
        Optimizer::AdaGrad | Optimizer::AdaDelta => 0.05,
        Optimizer::RmsProp | Optimizer::Adam => ADAM_ALPHA,
    };
    TrainConfig {
        epochs: 1,
        batch: BATCH,
        optimizer,
        hyper: Hyper {
            alpha,
            lambda: 0.0001,
            lambda1: 0.0,
            mu: 0.9,
            mu1: 0.999,
        },
        schedule: LrSchedule::Constant,
        seed: 3,
        shuffle: true,
        first_epoch: 0,
        brake: true,
    }
}

/// The epoch's mean loss and the whole parameters after training `json` for one epoch of
/// 8 minibatches on `ranks` ranks (rank 0's view; `fused`: let plain SGD fuse its update into
/// the backward pass).
fn train_on(
    json: &str,
    ranks: usize,
    cfg: &TrainConfig,
    fused: bool,
) -> (f64, Vec<(Matrix, Vec<f32>)>) {
    let rows = ml1m(USERS);
    let descriptor = Descriptor::from_str(json, "agree.json").unwrap();
    let mut out = Threads::run(ranks, |comm| {
        let mut datasets = vec![
            Dataset::sparse("input", vec![rows.n_cols()], rows.clone())?,
            Dataset::sparse("output", vec![rows.n_cols()], rows.clone())?,
        ];
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let plan = ShardPlan::new(&graph, comm.size())?;
        retain_rank_columns(&graph, &plan, comm.rank(), &mut datasets)?;
        let data = DataBinding::new(&graph, &datasets, false)?;
        let mut net =
            Network::build_with(Cpu::new(1)?, comm, graph, BATCH, cfg.optimizer, cfg.seed)?;
        net.set_fused_sgd(fused);
        let reports = train(&mut net, &data, cfg, None, &mut Quiet)?;
        Ok((reports[0].loss, net.download_params()?))
    })
    .unwrap();
    out.swap_remove(0)
}

/// `‖a − b‖ / ‖b‖` over every weight and bias.
fn relative_difference(a: &[(Matrix, Vec<f32>)], b: &[(Matrix, Vec<f32>)]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for ((wa, ba), (wb, bb)) in a.iter().zip(b) {
        for (x, y) in wa.data().iter().chain(ba).zip(wb.data().iter().chain(bb)) {
            diff += (*x as f64 - *y as f64).powi(2);
            norm += (*y as f64).powi(2);
        }
    }
    (diff / norm).sqrt()
}

/// `json` with `cfg` on 2 and 4 ranks against 1 rank; 2 ranks twice, bit for bit.
fn agrees(what: &str, json: &str, cfg: &TrainConfig, fused: bool) {
    let (loss, params) = train_on(json, 1, cfg, fused);
    assert!(loss.is_finite() && loss > 0.0, "{what}: loss {loss}");
    for ranks in [2, 4] {
        let (l, p) = train_on(json, ranks, cfg, fused);
        let (loss_err, weight_err) = (
            (l - loss).abs() / loss.abs(),
            relative_difference(&p, &params),
        );
        eprintln!("{what}, {ranks} ranks: loss {loss_err:.1e}, weights {weight_err:.1e}");
        assert!(
            loss_err < 1e-6,
            "{what}, {ranks} ranks: loss {l} against {loss}"
        );
        assert!(
            weight_err < 1e-5,
            "{what}, {ranks} ranks: weights differ by {weight_err:e}"
        );
        if ranks == 2 {
            let (l2, p2) = train_on(json, ranks, cfg, fused);
            assert_eq!(l.to_bits(), l2.to_bits(), "{what}: loss run to run");
            let bits = |p: &[(Matrix, Vec<f32>)]| -> Vec<u32> {
                p.iter()
                    .flat_map(|(w, b)| w.data().iter().chain(b).map(|v| v.to_bits()))
                    .collect()
            };
            assert!(bits(&p) == bits(&p2), "{what}: weights run to run");
        }
    }
}

/// Adam, except for batch normalisation: there the bias of an edge into a normalised layer
/// has a true gradient of 0 (the normalisation removes it), so what it gets is rounding
/// noise, which Adam turns into full-size steps whose signs differ between rank counts. SGD
/// at α 0.02 there: normalising a unit of small batch variance amplifies the rounding of its
/// inputs, and at α 0.05 the steps compound it to 1.1e-5 on 4 ranks in 8 minibatches (6e-7 at
/// 0.02), while the loss still agrees within 6e-8.
#[test]
fn every_feature_trains_alike_on_one_two_and_four_ranks() {
    for (what, json) in features() {
        let cfg = if what == "batch normalisation" {
            let mut cfg = config(Optimizer::Sgd);
            cfg.hyper.alpha = 0.02;
            cfg
        } else {
            config(Optimizer::Adam)
        };
        agrees(what, &json, &cfg, true);
    }
}

#[test]
fn fused_and_unfused_sgd_train_alike_on_every_rank_count() {
    let json = &features()[0].1;
    agrees("fused SGD", json, &config(Optimizer::Sgd), true);
    agrees("unfused SGD", json, &config(Optimizer::Sgd), false);
    // Fusing changes only the rounding of each update.
    let (_, fused) = train_on(json, 2, &config(Optimizer::Sgd), true);
    let (_, unfused) = train_on(json, 2, &config(Optimizer::Sgd), false);
    let e = relative_difference(&fused, &unfused);
    assert!(e < 1e-5, "fused against unfused on 2 ranks: {e:e}");
}

#[test]
fn every_optimizer_trains_alike_on_one_two_and_four_ranks() {
    let everything = features()
        .into_iter()
        .find(|(w, _)| *w == "everything stochastic")
        .unwrap()
        .1;
    for &opt in Optimizer::ALL {
        agrees(opt.name(), &everything, &config(opt), true);
    }
}

/// On 1, 2 and 4 ranks, with every stochastic feature and Adam's state: two epochs straight
/// and one epoch, a checkpoint, then a resumed second epoch end with the same bits; the
/// checkpoint of 2 ranks resumes on 4 to the same model up to rounding.
#[test]
fn checkpoints_resume_bit_for_bit_on_every_rank_count() {
    use moira::train::{resume, train_with, CheckpointPlan, TrainState};
    let everything = features()
        .into_iter()
        .find(|(w, _)| *w == "everything stochastic")
        .unwrap()
        .1;
    let descriptor = Descriptor::from_str(&everything, "agree.json").unwrap();
    let rows = ml1m(USERS);
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 2,
        ..config(Optimizer::Adam)
    };
    // `first_epochs` epochs from a fresh start (checkpoint after each when `save`), then, when
    // `from` is given, the rest resumed from that checkpoint; rank 0's parameters.
    let run = |ranks: usize, save: Option<&str>, from: Option<&std::path::Path>| {
        let mut out = Threads::run(ranks, |comm| {
            let mut datasets = vec![
                Dataset::sparse("input", vec![rows.n_cols()], rows.clone())?,
                Dataset::sparse("output", vec![rows.n_cols()], rows.clone())?,
            ];
            let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
            let plan = ShardPlan::new(&graph, comm.size())?;
            retain_rank_columns(&graph, &plan, comm.rank(), &mut datasets)?;
            let data = DataBinding::new(&graph, &datasets, false)?;
            let mut net =
                Network::build_with(Cpu::new(1)?, comm, graph, BATCH, cfg.optimizer, cfg.seed)?;
            let mut config = cfg.clone();
            let mut state = TrainState::default();
            if let Some(path) = from {
                let resumed = resume(path, &mut net, &config)?;
                config.first_epoch = resumed.epochs_done;
                config.epochs -= resumed.epochs_done;
                state = resumed.state;
            }
            let checkpoints = save.map(|name| CheckpointPlan::beside(&dir.path().join(name), 1));
            train_with(
                &mut net,
                &data,
                &config,
                None,
                &mut Quiet,
                &mut state,
                checkpoints.as_ref(),
            )?;
            net.download_params()
        })
        .unwrap();
        out.swap_remove(0)
    };
    let bits = |p: &[(Matrix, Vec<f32>)]| -> Vec<u32> {
        p.iter()
            .flat_map(|(w, b)| w.data().iter().chain(b).map(|v| v.to_bits()))
            .collect()
    };
    for ranks in [1, 2, 4] {
        let name = format!("r{ranks}.nc");
        let straight = run(ranks, Some(&name), None);
        let checkpoint = dir.path().join(format!("r{ranks}.epoch1.nc"));
        let resumed = run(ranks, None, Some(&checkpoint));
        assert!(
            bits(&resumed) == bits(&straight),
            "{ranks} ranks: the resumed run differs"
        );
        if ranks == 4 {
            let from_two = run(4, None, Some(&dir.path().join("r2.epoch1.nc")));
            let e = relative_difference(&from_two, &straight);
            assert!(e < 1e-5, "2 ranks' checkpoint resumed on 4: {e:e}");
        }
    }
}
