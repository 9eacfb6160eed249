//! Models saved without assembling them (`Network::save`, `checkpoint::save_model_streamed`):
//! on 1, 2 and 4 ranks the file is the one `to_model` + `save_model` writes (every weight,
//! bias, optimizer slot and the checksum), bands of rows crossing the ranks' blocks; a
//! non-finite weight or an unwritable path fails every rank without a hang and leaves no
//! file; a source's pieces of any sizes give the same file.

use moira::backend::Cpu;
use moira::checkpoint::{load_model, save_model, save_model_streamed, Model, TensorSource};
use moira::collective::{Collective, Threads};
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::parallel::{retain_rank_columns, ShardPlan};
use moira::train::{save_checkpoint, shapes, train, DataBinding, Quiet, TrainConfig, TrainState};
use moira::Error;

mod ml1m_common;
use ml1m_common::ml1m;

/// Input → H1 (128, input-sharded) → H2 (96, output-sharded) → Output, and a tied edge.
const NET: &str = r#"{ "Version": 0.9, "Name": "save", "Kind": "FeedForward",
  "ErrorFunction": "CrossEntropy",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "H1", "Kind": "Hidden", "N": 128, "Activation": "Tanh", "Source": "Input" },
    { "Name": "H2", "Kind": "Hidden", "N": 96, "Activation": "Sigmoid", "Source": "H1",
      "BatchNormalization": true },
    { "Name": "H3", "Kind": "Hidden", "N": 128, "Activation": "Sigmoid", "Source": "H2",
      "SharedWeights": { "SourceInputLayer": "H1", "SourceOutputLayer": "H2",
                         "InputLayer": "H2", "Transposed": true } },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true, "Source": "H3" } ] }"#;

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch: 64,
        optimizer: Optimizer::Adam,
        hyper: Hyper {
            alpha: 0.001,
            lambda: 0.0001,
            lambda1: 0.0,
            mu: 0.9,
            mu1: 0.999,
        },
        schedule: LrSchedule::Constant,
        seed: 5,
        shuffle: true,
        first_epoch: 0,
        brake: true,
    }
}

/// Trains one epoch on `ranks` ranks, then saves it with `Network::save` (`saved`) and as a
/// checkpoint, and assembles it with `to_model`; rank 0's model and outcomes.
fn run(ranks: usize, dir: &std::path::Path) -> (Model, Vec<moira::Result<()>>) {
    let rows = ml1m(512);
    let descriptor = Descriptor::from_str(NET, "save.json").unwrap();
    let cfg = config();
    let out = Threads::run(ranks, |comm| {
        let mut datasets = vec![
            Dataset::sparse("input", vec![rows.n_cols()], rows.clone())?,
            Dataset::sparse("output", vec![rows.n_cols()], rows.clone())?,
        ];
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let plan = ShardPlan::new(&graph, comm.size())?;
        retain_rank_columns(&graph, &plan, comm.rank(), &mut datasets)?;
        let data = DataBinding::new(&graph, &datasets, false)?;
        let mut net = Network::build_with(Cpu::new(1)?, comm, graph, 64, cfg.optimizer, 5)?;
        train(&mut net, &data, &cfg, None, &mut Quiet)?;
        let saved = net.save(
            &dir.join(format!("net{ranks}.nc")),
            Default::default(),
            &[],
            true,
        );
        let saved = net.agree(saved);
        let state = TrainState::default();
        let path = dir.join(format!("ck{ranks}.nc"));
        let checkpoint = net.agree(save_checkpoint(&net, &cfg, &state, 1, &path));
        let model = net.to_model(Default::default())?;
        Ok((model, vec![saved, checkpoint]))
    })
    .unwrap();
    out.into_iter().next().unwrap()
}

fn bits(m: &Model) -> Vec<Vec<u32>> {
    m.weights
        .iter()
        .flat_map(|w| [&w.data, &w.bias])
        .chain(
            m.batch_norm
                .iter()
                .flat_map(|b| [&b.scale, &b.running_mean]),
        )
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn streamed_saves_equal_assembled_ones_on_every_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    for ranks in [1, 2, 4] {
        let (model, outcomes) = run(ranks, dir.path());
        for o in &outcomes {
            assert!(o.is_ok(), "{ranks} ranks: {o:?}");
        }
        // The streamed file loads (its checksum verified) to the assembled model.
        let streamed = load_model(&dir.path().join(format!("net{ranks}.nc"))).unwrap();
        assert_eq!(bits(&streamed), bits(&model), "{ranks} ranks");
        // And its bytes are those of the assembled model saved whole.
        let whole = dir.path().join(format!("whole{ranks}.nc"));
        save_model(&whole, &model).unwrap();
        assert_eq!(
            std::fs::read(&whole).unwrap(),
            std::fs::read(dir.path().join(format!("net{ranks}.nc"))).unwrap(),
            "{ranks} ranks: the streamed file differs from the whole one"
        );
        // The checkpoint holds every optimizer slot of every weight, whole.
        let ck = load_model(&dir.path().join(format!("ck{ranks}.nc"))).unwrap();
        let m1 = ck
            .extras
            .tensor("optimizer_s0:Input->H1:weights")
            .expect("Adam's first moment of Input -> H1");
        assert_eq!(m1.len(), model.weights[0].data.len());
        assert!(m1.iter().any(|&x| x != 0.0));
    }
    // Every rank count saved the same checkpoint layout; 2 and 4 ranks' slots agree with
    // 1 rank's up to rounding.
    let one = load_model(&dir.path().join("ck1.nc")).unwrap();
    for ranks in [2, 4] {
        let other = load_model(&dir.path().join(format!("ck{ranks}.nc"))).unwrap();
        let names =
            |m: &Model| -> Vec<String> { m.extras.tensors.iter().map(|t| t.0.clone()).collect() };
        assert_eq!(names(&one), names(&other));
    }
}

/// A weight with a NaN is refused on every rank and nothing is left at the path; so is a
/// path that cannot be written, without a rank hanging.
#[test]
fn refused_and_failed_saves_fail_every_rank_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let rows = ml1m(256);
    let descriptor = Descriptor::from_str(NET, "save.json").unwrap();
    for ranks in [1, 2, 4] {
        let outcomes = Threads::run(ranks, |comm| {
            let datasets = vec![
                Dataset::sparse("input", vec![rows.n_cols()], rows.clone())?,
                Dataset::sparse("output", vec![rows.n_cols()], rows.clone())?,
            ];
            let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
            let mut net = Network::build_with(Cpu::new(1)?, comm, graph, 64, Optimizer::Sgd, 5)?;
            // A NaN in every rank's block of H1 -> H2 (uploads take whole tensors).
            let whole = {
                let ranks_params = net.download_params()?;
                let mut len = [ranks_params[1].0.data().len() as u64];
                comm.broadcast(0, &mut len)?;
                let mut v = ranks_params[1].0.data().to_vec();
                v.resize(len[0] as usize, 0.0);
                comm.broadcast(0, &mut v)?;
                v
            };
            let mut params = Vec::new();
            for (i, edge) in net.graph().edges().iter().enumerate() {
                let units = net.graph().layer(edge.target).units;
                let (rows_, cols) = if edge.is_shared(net.graph()) {
                    (0, 0)
                } else {
                    let w = net.graph().weight(edge.weight);
                    (w.input_units, w.output_units)
                };
                let mut values = vec![0.01f32; rows_ * cols];
                if i == 1 {
                    values.copy_from_slice(&whole);
                    values[17] = f32::NAN;
                }
                params.push((
                    moira::dense::Matrix::from_vec(rows_, cols, values)?,
                    vec![0.0; units],
                ));
            }
            net.upload_params(&params)?;
            let nan = dir.path().join(format!("nan{ranks}.nc"));
            let refused = net.agree(net.save(&nan, Default::default(), &[], true));
            let unwritable = dir.path().join("no-such-dir").join("x.nc");
            let failed = net.agree(net.save(&unwritable, Default::default(), &[], false));
            Ok((refused, failed, nan.exists()))
        })
        .unwrap();
        for (rank, (refused, failed, exists)) in outcomes.into_iter().enumerate() {
            let refused = refused.expect_err("a NaN weight is refused");
            if rank == 0 {
                assert!(
                    matches!(&refused, Error::NonFiniteWeight { weight } if weight.contains("H1")),
                    "{refused}"
                );
            } else {
                assert!(refused.to_string().contains("NaN"), "{refused}");
            }
            assert!(
                failed.is_err(),
                "{ranks} ranks, rank {rank}: an unwritable path"
            );
            assert!(!exists, "{ranks} ranks: a refused save left a file");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// A source whose pieces have awkward sizes (1, then 7, then the rest of each array) gives
/// the file `save_model` writes from the whole arrays.
#[test]
fn pieces_of_any_size_give_the_same_file() {
    struct Pieces<'m>(&'m Model);
    fn feed(values: &[f32], put: &mut dyn FnMut(&[f32]) -> moira::Result<()>) -> moira::Result<()> {
        let (a, rest) = values.split_at(values.len().min(1));
        let (b, c) = rest.split_at(rest.len().min(7));
        put(a)?;
        put(b)?;
        put(&[])?;
        put(c)
    }
    impl TensorSource for Pieces<'_> {
        fn weight(
            &mut self,
            i: usize,
            put: &mut dyn FnMut(&[f32]) -> moira::Result<()>,
        ) -> moira::Result<()> {
            feed(&self.0.weights[i].data, put)
        }
        fn extra(
            &mut self,
            k: usize,
            put: &mut dyn FnMut(&[f32]) -> moira::Result<()>,
        ) -> moira::Result<()> {
            feed(&self.0.extras.tensors[k].1, put)
        }
        fn extra_len(&self, k: usize) -> usize {
            self.0.extras.tensors[k].1.len()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = run(1, dir.path());
    let mut full = model.clone();
    full.extras.tensors = vec![("t".into(), vec![1.5, -2.0, 3.25]), ("u".into(), vec![])];
    let mut skeleton = full.clone();
    for w in &mut skeleton.weights {
        w.data.clear();
    }
    skeleton.extras.tensors[0].1.clear();
    save_model(&dir.path().join("whole.nc"), &full).unwrap();
    save_model_streamed(
        &dir.path().join("pieces.nc"),
        &skeleton,
        &mut Pieces(&full),
        true,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("whole.nc")).unwrap(),
        std::fs::read(dir.path().join("pieces.nc")).unwrap()
    );
}
