//! Every layer feature trains the same model on 1, 2 and 4 ranks (the `Threads` collective,
//! each rank keeping only its columns of the data as the trainer does), at a short horizon
//! where float rounding is still far below what a rank-dependent random mask would show: on
//! MovieLens-1M's first 512 users in 8 minibatches of 64, the epoch's loss agrees within 1e-6
//! relative and the weights within 1e-5, and each rank count repeats itself bit for bit.
//! Features: dropout (and alpha-dropout), denoising, SoftMax outputs, the sparseness penalty,
//! WeightNorm and DeltaNorm, batch normalisation, shared (tied) weights, skips, a variational
//! bottleneck (Mult-VAE), fused and unfused SGD, every optimizer, all stochastic features at
//! once, and DSSTNE's MovieLens descriptor (networks/movielens-ae.json).

use moira::backend::Cpu;
use moira::collective::{Collective, Threads};
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::Optimizer;
use moira::parallel::{retain_rank_columns, ShardPlan};
use moira::train::{shapes, DataBinding, Quiet, TrainConfig};

mod agreement_common;
use agreement_common::{agrees, bits, config, feature, feature_config, features, ml1m};
use agreement_common::{relative_difference, train_on};
use agreement_common::{Run, BATCH, USERS};

#[test]
fn every_feature_trains_alike_on_one_two_and_four_ranks() {
    for (what, json) in features() {
        agrees(what, &json, &feature_config(what), Run::model(1), &[2, 4]);
    }
}

#[test]
fn fused_and_unfused_sgd_train_alike_on_every_rank_count() {
    let json = &features()[0].1;
    let sgd = config(Optimizer::Sgd);
    let unfused = Run {
        fused: false,
        ..Run::model(1)
    };
    agrees("fused SGD", json, &sgd, Run::model(1), &[2, 4]);
    agrees("unfused SGD", json, &sgd, unfused, &[2, 4]);
    // Fusing changes only the rounding of each update.
    let (_, fused) = train_on(json, Run::model(2), &sgd);
    let (_, unfused) = train_on(json, unfused.on(2), &sgd);
    let e = relative_difference(&fused, &unfused);
    assert!(e < 1e-5, "fused against unfused on 2 ranks: {e:e}");
}

#[test]
fn every_optimizer_trains_alike_on_one_two_and_four_ranks() {
    let everything = feature("everything stochastic");
    for &opt in Optimizer::ALL {
        agrees(
            opt.name(),
            &everything,
            &config(opt),
            Run::model(1),
            &[2, 4],
        );
    }
}

/// On 1, 2 and 4 ranks, with every stochastic feature and Adam's state: two epochs straight
/// and one epoch, a checkpoint, then a resumed second epoch end with the same bits; the
/// checkpoint of 2 ranks resumes on 4 to the same model up to rounding.
#[test]
fn checkpoints_resume_bit_for_bit_on_every_rank_count() {
    use moira::train::{resume, train_with, CheckpointPlan, TrainState};
    let everything = feature("everything stochastic");
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
