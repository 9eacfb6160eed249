//! The harness of the rank-agreement tests (tests/rank_agreement.rs: model parallelism,
//! tests/data_parallel.rs: data parallelism): descriptors exercising every layer feature, a
//! short training run on MovieLens-1M's first users over `Threads` ranks, and the comparison
//! of its loss and weights against one rank.
#![allow(dead_code)]

use moira::backend::Cpu;
use moira::collective::{Collective, Threads};
use moira::dataset::Dataset;
use moira::dense::Matrix;
use moira::descriptor::{Descriptor, LayerKind};
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::parallel::choice::hybrid_layouts;
use moira::parallel::{retain_rank_columns, Layout, Parallelism, ShardPlan};
use moira::predict::AtK;
use moira::sparse::Csr;
use moira::train::{resume, shapes, train, train_with, CheckpointPlan, DataBinding, Quiet};
use moira::train::{TrainConfig, TrainState, Validation};

#[path = "../ml1m_common/mod.rs"]
mod ml1m_common;
pub use ml1m_common::ml1m;

pub const USERS: usize = 512;
pub const BATCH: usize = 64;
/// The learning rate of Adam and RMSProp here. They scale a step by the gradient's running
/// RMS, so a weight whose true gradient is 0 up to rounding takes a step of about α whose
/// sign is that rounding's: such weights differ between rank counts by about α.
pub const ADAM_ALPHA: f32 = 0.001;

/// Input → H1 (128 units, input-sharded: partial products reduce-scattered) → H2 (96,
/// output-sharded: H1 all-gathered) → Output (output-sharded), `hidden` and `output` adding
/// keys to H1/H2 and to the output layer, `top` to the network.
pub fn net(top: &str, h1: &str, h2: &str, output: &str) -> String {
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

pub const SIGMOID_CE: &str = r#", "Activation": "Sigmoid""#;

/// The descriptors, by feature.
pub fn features() -> Vec<(&'static str, String)> {
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
        ("variational bottleneck", variational()),
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
pub fn tied() -> String {
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
pub fn skips() -> String {
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

/// Mult-VAE's shape: a Tanh encoder, a variational bottleneck (mean `Mu`, log variance
/// `LogVar`, `β` annealed over the first steps), a Tanh decoder and a SoftMax output, with
/// input denoising.
pub fn variational() -> String {
    r#"{ "Version": 0.9, "Name": "vae", "Kind": "AutoEncoder", "ErrorFunction": "CrossEntropy",
      "Denoising": { "p": 0.3 },
      "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
        { "Name": "H1", "Kind": "Hidden", "N": 128, "Activation": "Tanh", "Source": "Input" },
        { "Name": "LogVar", "Kind": "Hidden", "N": 48, "Activation": "Linear", "Source": "H1" },
        { "Name": "Mu", "Kind": "Hidden", "N": 48, "Activation": "Linear", "Source": "H1",
          "Variational": { "LogVariance": "LogVar", "Beta": 0.2, "AnnealSteps": 20 } },
        { "Name": "H3", "Kind": "Hidden", "N": 128, "Activation": "Tanh", "Source": "Mu" },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
          "Activation": "SoftMax", "Sparse": true, "Source": "H3" } ] }"#
        .to_owned()
}

pub fn config(optimizer: Optimizer) -> TrainConfig {
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

/// Which weights a hybrid run replicates (the layers they lead into held by examples, the
/// rest by units; [`hybrid_layouts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicate {
    /// Weights between hidden layers: hidden activations are re-laid both ways (all-to-all)
    /// and gathered by rows into the output.
    Middle,
    /// Weights out of the input and into the output: the input's rows and the output's
    /// targets are split by examples.
    Ends,
}

impl Replicate {
    /// Per graph weight: replicated or not.
    pub fn weights(self, graph: &Graph) -> Vec<bool> {
        let kind = |id| graph.layer(id).kind;
        graph
            .weights()
            .iter()
            .map(|w| {
                let (from, to) = (kind(w.input), kind(w.output));
                match self {
                    Replicate::Middle => from == LayerKind::Hidden && to == LayerKind::Hidden,
                    Replicate::Ends => from == LayerKind::Input || to == LayerKind::Output,
                }
            })
            .collect()
    }

    /// The layouts of this hybrid of `graph`.
    pub fn layouts(self, graph: &Graph) -> Vec<Layout> {
        hybrid_layouts(graph, &self.weights(graph))
    }
}

/// How a run splits its work.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub ranks: usize,
    pub parallelism: Parallelism,
    /// Under [`Parallelism::Hybrid`]: which weights are replicated.
    pub replicate: Replicate,
    /// Let plain SGD fuse its update into the backward pass.
    pub fused: bool,
    /// MovieLens-1M's first `users` users (minibatches of [`BATCH`]).
    pub users: usize,
    /// The users' rows as dense datasets (for descriptors without `Sparse` layers).
    pub dense: bool,
}

impl Run {
    /// Model parallelism on `ranks` ranks over [`USERS`] users, SGD fused.
    pub fn model(ranks: usize) -> Run {
        Run {
            ranks,
            parallelism: Parallelism::Model,
            replicate: Replicate::Middle,
            fused: true,
            users: USERS,
            dense: false,
        }
    }

    /// A hybrid on `ranks` ranks over [`USERS`] users, replicating `replicate`.
    pub fn hybrid(ranks: usize, replicate: Replicate) -> Run {
        Run {
            parallelism: Parallelism::Hybrid,
            replicate,
            ..Run::model(ranks)
        }
    }

    /// Data parallelism on `ranks` ranks over [`USERS`] users.
    pub fn data(ranks: usize) -> Run {
        Run {
            parallelism: Parallelism::Data,
            ..Run::model(ranks)
        }
    }

    /// The same run on `ranks` ranks.
    pub fn on(self, ranks: usize) -> Run {
        Run { ranks, ..self }
    }
}

/// The epoch's mean loss and the whole parameters after training `json` for one epoch on
/// `run.ranks` ranks (rank 0's view). Under model parallelism each rank keeps only its
/// columns of the data, as the trainer does.
pub fn train_on(json: &str, run: Run, cfg: &TrainConfig) -> (f64, Vec<(Matrix, Vec<f32>)>) {
    let rows = ml1m(run.users);
    let descriptor = Descriptor::from_str(json, "agree.json").unwrap();
    let dense = run.dense.then(|| dense_rows(&rows));
    let mut out = Threads::run(run.ranks, |comm| {
        let mut datasets = datasets_of(&rows, dense.as_deref())?;
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let (mut net, data) = build_on(comm, graph, &mut datasets, run, cfg)?;
        net.set_fused_sgd(run.fused);
        let reports = train(&mut net, &data, cfg, None, &mut Quiet)?;
        Ok((reports[0].loss, net.download_params()?))
    })
    .unwrap();
    out.swap_remove(0)
}

/// The `input` and `output` datasets of `rows`: sparse, or dense with `dense`'s values.
pub fn datasets_of(rows: &Csr, dense: Option<&[f32]>) -> moira::Result<Vec<Dataset>> {
    let dims = vec![rows.n_cols()];
    Ok(match dense {
        Some(values) => vec![
            Dataset::dense("input", dims.clone(), values.to_vec())?,
            Dataset::dense("output", dims, values.to_vec())?,
        ],
        None => vec![
            Dataset::sparse("input", dims.clone(), rows.clone())?,
            Dataset::sparse("output", dims, rows.clone())?,
        ],
    })
}

/// `rows` as dense row-major values (1 at each non-zero).
pub fn dense_rows(rows: &Csr) -> Vec<f32> {
    let n = rows.n_cols() as usize;
    let mut values = vec![0.0f32; rows.n_rows() * n];
    for r in 0..rows.n_rows() {
        for &c in rows.row(r).0 {
            values[r * n + c as usize] = 1.0;
        }
    }
    values
}

/// `graph` built on `comm` as `run` says, and its data bound (under model parallelism and a
/// hybrid each rank keeps only its columns of the data, as the trainer does).
pub fn build_on<'a>(
    comm: &'a Threads,
    graph: Graph,
    datasets: &'a mut [Dataset],
    run: Run,
    cfg: &TrainConfig,
) -> moira::Result<(Network<Cpu, &'a Threads>, DataBinding<'a>)> {
    let layouts = match run.parallelism {
        Parallelism::Hybrid => run.replicate.layouts(&graph),
        _ => vec![Layout::Units; graph.layers().len()],
    };
    if matches!(run.parallelism, Parallelism::Model | Parallelism::Hybrid) {
        let plan = ShardPlan::with_layouts(&graph, comm.size(), &layouts)?;
        retain_rank_columns(&graph, &plan, comm.rank(), datasets)?;
    }
    let data = DataBinding::new(&graph, datasets, false)?;
    let (backend, optimizer, seed) = (Cpu::new(1)?, cfg.optimizer, cfg.seed);
    let net = match run.parallelism {
        Parallelism::Hybrid => {
            Network::build_with_layouts(backend, comm, graph, BATCH, optimizer, seed, &layouts)?
        }
        mode => Network::build_parallel(backend, comm, graph, BATCH, optimizer, seed, mode)?,
    };
    Ok((net, data))
}

/// Training with validation and checkpoints: ML-1M's first 300 users without every third
/// item (held out for validation at K 5 and 20 every epoch, in batches of 50), Adam for 2
/// epochs, checkpoints in a temporary folder.
pub struct Validated {
    json: String,
    cfg: TrainConfig,
    rows: Csr,
    validation: Validation,
    dir: tempfile::TempDir,
}

impl Validated {
    /// The fixture for the network `json`.
    pub fn new(json: &str) -> Validated {
        let (rows, held_out) = hold_out_every_third_item(&ml1m(300));
        Validated {
            json: json.to_owned(),
            cfg: TrainConfig {
                epochs: 2,
                ..config(Optimizer::Adam)
            },
            rows,
            validation: Validation {
                held_out,
                ks: vec![5, 20],
                every: 1,
                batch: 50,
                select: None,
            },
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Trained as `run` says, resumed from checkpoint `from` when given, checkpointing every
    /// epoch beside `save` when given: the whole parameters and the last epoch's mean
    /// validation metrics (rank 0's).
    pub fn run(
        &self,
        run: Run,
        save: Option<&str>,
        from: Option<&str>,
    ) -> (Vec<(Matrix, Vec<f32>)>, Vec<AtK>) {
        let descriptor = Descriptor::from_str(&self.json, "agree.json").unwrap();
        let dense = run.dense.then(|| dense_rows(&self.rows));
        let mut out = Threads::run(run.ranks, |comm| {
            let mut datasets = datasets_of(&self.rows, dense.as_deref())?;
            let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
            let (mut net, data) = build_on(comm, graph, &mut datasets, run, &self.cfg)?;
            let (mut config, mut state) = (self.cfg.clone(), TrainState::default());
            if let Some(name) = from {
                let resumed = resume(&self.dir.path().join(name), &mut net, &config)?;
                config.first_epoch = resumed.epochs_done;
                config.epochs -= resumed.epochs_done;
                state = resumed.state;
            }
            let checkpoints =
                save.map(|name| CheckpointPlan::beside(&self.dir.path().join(name), 1));
            let reports = train_with(
                &mut net,
                &data,
                &config,
                Some(&self.validation),
                &mut Quiet,
                &mut state,
                checkpoints.as_ref(),
            )?;
            let metrics = reports.last().and_then(|r| r.validation.clone());
            Ok((net.download_params()?, metrics.unwrap().means()))
        })
        .unwrap();
        out.swap_remove(0)
    }
}

/// Asserts that validation metrics `got` match one rank's `one`: the same cutoffs, NDCG and
/// recall within 1e-3.
pub fn assert_metrics_match(got: &[AtK], one: &[AtK]) {
    for (a, b) in got.iter().zip(one) {
        assert_eq!(a.k, b.k);
        assert!(
            (a.ndcg - b.ndcg).abs() < 1e-3 && (a.recall - b.recall).abs() < 1e-3,
            "validation on several ranks {a:?} against one rank {b:?}"
        );
    }
}

/// Each user's items without every third one, and those held out (the same width).
fn hold_out_every_third_item(rows: &Csr) -> (Csr, Csr) {
    let (mut kept, mut held) = ((vec![0u64], Vec::new()), (vec![0u64], Vec::new()));
    for r in 0..rows.n_rows() {
        for (i, &c) in rows.row(r).0.iter().enumerate() {
            if i % 3 == 2 {
                held.1.push(c);
            } else {
                kept.1.push(c);
            }
        }
        kept.0.push(kept.1.len() as u64);
        held.0.push(held.1.len() as u64);
    }
    (
        Csr::new_checked(rows.n_cols(), kept.0, kept.1, None),
        Csr::new_checked(rows.n_cols(), held.0, held.1, None),
    )
}

/// The bits of every weight and bias.
pub fn bits(p: &[(Matrix, Vec<f32>)]) -> Vec<u32> {
    p.iter()
        .flat_map(|(w, b)| w.data().iter().chain(b).map(|v| v.to_bits()))
        .collect()
}

/// `‖a − b‖ / ‖b‖` over every weight and bias.
pub fn relative_difference(a: &[(Matrix, Vec<f32>)], b: &[(Matrix, Vec<f32>)]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for ((wa, ba), (wb, bb)) in a.iter().zip(b) {
        for (x, y) in wa.data().iter().chain(ba).zip(wb.data().iter().chain(bb)) {
            diff += (*x as f64 - *y as f64).powi(2);
            norm += (*y as f64).powi(2);
        }
    }
    (diff / norm).sqrt()
}

/// `json` with `cfg` on each of `ranks` ranks (as `run` says otherwise) against 1 rank: the
/// loss within 1e-6 relative, the weights within 1e-5; the first of `ranks` twice, bit for
/// bit.
pub fn agrees(what: &str, json: &str, cfg: &TrainConfig, run: Run, ranks: &[usize]) {
    let (loss, params) = train_on(json, run.on(1), cfg);
    assert!(loss.is_finite() && loss > 0.0, "{what}: loss {loss}");
    for (i, &n) in ranks.iter().enumerate() {
        let (l, p) = train_on(json, run.on(n), cfg);
        let (loss_err, weight_err) = (
            (l - loss).abs() / loss.abs(),
            relative_difference(&p, &params),
        );
        let mode = run.parallelism;
        eprintln!("{what}, {n} ranks ({mode}): loss {loss_err:.1e}, weights {weight_err:.1e}");
        assert!(
            loss_err < 1e-6,
            "{what}, {n} ranks ({mode}): loss {l} against {loss}"
        );
        assert!(
            weight_err < 1e-5,
            "{what}, {n} ranks ({mode}): weights differ by {weight_err:e}"
        );
        if i == 0 {
            let (l2, p2) = train_on(json, run.on(n), cfg);
            assert_eq!(l.to_bits(), l2.to_bits(), "{what}: loss run to run");
            assert!(bits(&p) == bits(&p2), "{what}: weights run to run");
        }
    }
}

/// The training configuration of feature `what`'s agreement test: Adam, except for batch
/// normalisation. There the bias of an edge into a normalised layer has a true gradient of 0
/// (the normalisation removes it), so what it gets is rounding noise, which Adam turns into
/// full-size steps whose signs differ between rank counts. SGD at α 0.02 there: normalising a
/// unit of small batch variance amplifies the rounding of its inputs, and at α 0.05 the steps
/// compound it to 1.1e-5 on 4 ranks in 8 minibatches (6e-7 at 0.02), while the loss still
/// agrees within 6e-8.
pub fn feature_config(what: &str) -> TrainConfig {
    if what == "batch normalisation" {
        let mut cfg = config(Optimizer::Sgd);
        cfg.hyper.alpha = 0.02;
        cfg
    } else {
        config(Optimizer::Adam)
    }
}

/// The descriptor of feature `name` ([`features`]).
pub fn feature(name: &str) -> String {
    features()
        .into_iter()
        .find(|(w, _)| *w == name)
        .unwrap_or_else(|| panic!("no feature {name}"))
        .1
}
