//! The hybrid of model and data parallelism (`Parallelism::Hybrid`, DSSTNE's "one weird
//! trick"): some weights replicated and the layers they lead into split by examples, the rest
//! sharded by units, activations and deltas re-laid between the two. Every layer feature and
//! every optimizer on 2 and 4 ranks (the `Threads` collective) agree with one rank within 1e-6
//! relative in the loss and 1e-5 in the weights, and repeat bit for bit, with the middle
//! weights replicated (hidden activations re-laid both ways by all-to-all, gathered by rows
//! into the output) and with the weights at the ends replicated (the input's rows and the
//! output's targets split by examples).

use moira::ops::Optimizer;
use moira::parallel::Layout;

mod agreement_common;
use agreement_common::{agrees, config, feature, feature_config, features, ml1m};
use agreement_common::{Replicate, Run, BATCH};

#[test]
fn every_feature_trains_alike_with_the_middle_weights_replicated() {
    for (what, json) in features() {
        let run = Run::hybrid(1, Replicate::Middle);
        agrees(what, &json, &feature_config(what), run, &[2, 4]);
    }
}

#[test]
fn every_feature_trains_alike_with_the_end_weights_replicated() {
    for (what, json) in features() {
        let run = Run::hybrid(1, Replicate::Ends);
        agrees(what, &json, &feature_config(what), run, &[2, 3]);
    }
}

#[test]
fn every_optimizer_trains_alike_in_a_hybrid() {
    let everything = feature("everything stochastic");
    for &opt in Optimizer::ALL {
        let run = Run::hybrid(1, Replicate::Middle);
        agrees(opt.name(), &everything, &config(opt), run, &[2]);
    }
}

/// The hybrids tested here are hybrids: both layouts occur (so the tests above exercise the
/// re-layouts), and uneven splits with a last minibatch smaller than the rank count train
/// alike.
#[test]
fn the_tested_hybrids_mix_layouts_and_split_unevenly() {
    use moira::dataset::Dataset;
    use moira::descriptor::Descriptor;
    use moira::graph::Graph;
    use moira::train::shapes;
    let rows = ml1m(64);
    let datasets = vec![
        Dataset::sparse("input", vec![rows.n_cols()], rows.clone()).unwrap(),
        Dataset::sparse("output", vec![rows.n_cols()], rows).unwrap(),
    ];
    for (what, json) in features() {
        let descriptor = Descriptor::from_str(&json, "agree.json").unwrap();
        let graph = Graph::compile(&descriptor, &shapes(&datasets)).unwrap();
        for replicate in [Replicate::Middle, Replicate::Ends] {
            let layouts = replicate.layouts(&graph);
            let mixed = layouts.contains(&Layout::Rows) && layouts.contains(&Layout::Units);
            let replicated = replicate.weights(&graph);
            let some_not_all = replicated.contains(&true) && replicated.contains(&false);
            assert!(mixed || !some_not_all, "{what}, {replicate:?}: {layouts:?}");
        }
    }
    let run = Run {
        users: 8 * BATCH + 2,
        ..Run::hybrid(1, Replicate::Middle)
    };
    let everything = feature("everything stochastic");
    agrees(
        "uneven",
        &everything,
        &config(Optimizer::Adam),
        run,
        &[3, 4],
    );
}
