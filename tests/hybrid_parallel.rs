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

/// A hybrid run with validation checkpoints and resumes bit for bit on 2 ranks; its
/// checkpoint resumes on one rank, under data parallelism on 2 and as another hybrid on 3 to
/// the same model up to rounding; validation over either hybrid gives the one-rank metrics.
#[test]
fn checkpoints_resume_and_validation_match_one_rank() {
    use agreement_common::{assert_metrics_match, bits, relative_difference, Validated};
    // The variational bottleneck's layers held by examples, its encoder and output by units.
    let fixture = Validated::new(&feature("variational bottleneck"));
    let run = |run: Run, save: Option<&str>, from: Option<&str>| fixture.run(run, save, from);
    let hybrid = Run::hybrid(2, Replicate::Middle);
    let (straight, metrics) = run(hybrid, Some("h2.nc"), None);
    let (resumed, resumed_metrics) = run(hybrid, None, Some("h2.epoch1.nc"));
    assert!(bits(&resumed) == bits(&straight), "resumed on 2 ranks");
    assert_eq!(resumed_metrics, metrics);
    let (one, one_metrics) = run(Run::model(1), None, Some("h2.epoch1.nc"));
    let e = relative_difference(&one, &straight);
    assert!(e < 1e-5, "hybrid checkpoint resumed on one rank: {e:e}");
    let (data, _) = run(Run::data(2), None, Some("h2.epoch1.nc"));
    let e = relative_difference(&data, &straight);
    assert!(e < 1e-5, "resumed under data parallelism: {e:e}");
    // The output held by examples: validation ranks each rank's rows, gathered.
    let (ends, ends_metrics) = run(Run::hybrid(3, Replicate::Ends), None, Some("h2.epoch1.nc"));
    let e = relative_difference(&ends, &straight);
    assert!(e < 1e-5, "resumed as another hybrid on 3 ranks: {e:e}");
    assert_metrics_match(&metrics, &one_metrics);
    assert_metrics_match(&ends_metrics, &one_metrics);
    assert!(metrics[1].recall > 0.0);
}

/// `Auto` takes the per-weight hybrid where it moves the fewest bytes: a deep recommender
/// whose narrow middle layers are cheaper to replicate (gradients) than to shard
/// (activations at a large minibatch), and whose wide ends are cheaper to shard; the plan
/// holds the middle by examples and the log says why.
#[test]
fn auto_takes_the_hybrid_when_it_moves_the_fewest_bytes() {
    use moira::dataset::Dataset;
    use moira::descriptor::Descriptor;
    use moira::graph::Graph;
    use moira::parallel::{Choice, Parallelism, ShardPlan};
    use moira::sparse::Csr;
    use moira::train::shapes;
    let deep = |items: usize| {
        let hidden = |name: &str, source: &str, n: usize| {
            format!(
                r#"{{ "Name": "{name}", "Kind": "Hidden", "Source": "{source}", "N": {n},
                     "Activation": "Relu" }},"#
            )
        };
        let json = format!(
            r#"{{ "Version": 0.8, "Name": "deep", "Kind": "FeedForward", "Layers": [
              {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
              {} {} {} {} {} {}
              {{ "Name": "Output", "Kind": "Output", "Source": "H6", "N": "auto",
                "DataSet": "output", "Sparse": true, "Activation": "Sigmoid" }} ] }}"#,
            hidden("H1", "Input", 512),
            hidden("H2", "H1", 128),
            hidden("H3", "H2", 128),
            hidden("H4", "H3", 128),
            hidden("H5", "H4", 128),
            hidden("H6", "H5", 512),
        );
        let descriptor = Descriptor::from_str(&json, "deep.json").unwrap();
        let rows = Csr::new_checked(items as u32, vec![0, 1], vec![0], None);
        let datasets = vec![
            Dataset::sparse("input", vec![items as u32], rows.clone()).unwrap(),
            Dataset::sparse("output", vec![items as u32], rows).unwrap(),
        ];
        Graph::compile(&descriptor, &shapes(&datasets)).unwrap()
    };
    let graph = deep(1_000_000);
    let choice = Choice::new(&graph, 2, 4096).unwrap();
    let table = choice.to_string();
    println!("{table}");
    assert_eq!(choice.mode, Parallelism::Hybrid, "{table}");
    assert!(choice.hybrid_bytes < choice.model_bytes.min(choice.data_bytes));
    // H2..H6 (after replicated weights) by examples; the input, H1 and the output by units.
    let by_rows: Vec<&str> = graph
        .layers()
        .iter()
        .filter(|l| choice.hybrid[l.id.0] == Layout::Rows)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(by_rows, ["H2", "H3", "H4", "H5", "H6"], "{table}");
    assert!(
        table.contains("H1 -> H2") && table.contains("replicate"),
        "{table}"
    );
    let plan = ShardPlan::with_layouts(&graph, 2, &choice.hybrid).unwrap();
    assert_eq!(plan.step_bytes(4096), choice.hybrid_bytes);
    let plan_table = plan.table(Some(4096));
    println!("{plan_table}");
    assert!(
        plan_table.contains("all-to-all activations H1"),
        "{plan_table}"
    );
    assert!(
        plan_table.contains("all-gather activations H6 (by rows)"),
        "{plan_table}"
    );
    assert!(
        plan_table.contains("sum of the weight's gradients"),
        "{plan_table}"
    );
    // At a small minibatch sharding the middle moves less: model parallelism.
    assert_eq!(Choice::new(&graph, 2, 64).unwrap().mode, Parallelism::Model);
}

/// Dense input and target data (the input's and the targets' values kept by rows where their
/// layers are held by examples, by columns where by units) train alike under model, data and
/// both hybrids.
#[test]
fn dense_data_trains_alike_in_every_mode() {
    let json = feature("dropout").replace(r#""Sparse": true"#, r#""Sparse": false"#);
    let cfg = config(Optimizer::Adam);
    let dense = |run: Run| Run {
        dense: true,
        users: 256,
        ..run
    };
    for run in [
        Run::model(1),
        Run::data(1),
        Run::hybrid(1, Replicate::Middle),
        Run::hybrid(1, Replicate::Ends),
    ] {
        agrees("dense data", &json, &cfg, dense(run), &[2, 3]);
    }
}
