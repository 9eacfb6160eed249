//! Exact sums (`Network::set_exact_chunk`): data-parallel training bit-identical to one rank.
//! Every layer feature that does not couple the examples of a minibatch, on MovieLens-1M's
//! first 514 users in minibatches of 64 processed in chunks of 24 (64 = 24 + 24 + 16, so the
//! chunks do not divide the minibatch, 3 and 4 ranks get uneven shares and on 4 ranks one
//! rank has no chunk in every step; the last minibatch of 2 rows is one chunk): 2, 3 and 4
//! ranks give the one-rank loss and weights bit for bit, and the one-rank model up to
//! rounding of the ordinary mode. What exact sums refuse.

use moira::backend::Cpu;
use moira::collective::Threads;
use moira::dense::Matrix;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::Optimizer;
use moira::parallel::Parallelism;
use moira::train::{shapes, train, Quiet, TrainConfig};

mod agreement_common;
use agreement_common::{bits, build_on, config, datasets_of, feature, features, ml1m};
use agreement_common::{relative_difference, Run, BATCH};

const CHUNK: usize = 24;
const USERS: usize = 8 * BATCH + 2;

/// The epoch's mean loss and the parameters after one epoch of `json` on `ranks` data-parallel
/// ranks, with exact sums in chunks of `chunk` (or the ordinary mode).
fn train_exact(
    json: &str,
    ranks: usize,
    chunk: Option<usize>,
    cfg: &TrainConfig,
) -> (f64, Vec<(Matrix, Vec<f32>)>) {
    let rows = ml1m(USERS);
    let descriptor = Descriptor::from_str(json, "exact.json").unwrap();
    let run = Run {
        users: USERS,
        ..Run::data(ranks)
    };
    let mut out = Threads::run(ranks, |comm| {
        let mut datasets = datasets_of(&rows, None)?;
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let (mut net, data) = build_on(comm, graph, &mut datasets, run, cfg)?;
        net.set_exact_chunk(chunk)?;
        let reports = train(&mut net, &data, cfg, None, &mut Quiet)?;
        Ok((reports[0].loss, net.download_params()?))
    })
    .unwrap();
    out.swap_remove(0)
}

/// The features exact sums take: all but batch normalisation and the sparseness penalty.
fn exact_features() -> Vec<(&'static str, String)> {
    features()
        .into_iter()
        .filter(|(_, json)| !json.contains("BatchNormalization") && !json.contains("Sparseness"))
        .collect()
}

fn assert_bit_identical(what: &str, json: &str, cfg: &TrainConfig, ranks: &[usize]) {
    let (loss, params) = train_exact(json, 1, Some(CHUNK), cfg);
    assert!(loss.is_finite() && loss > 0.0, "{what}: loss {loss}");
    for &n in ranks {
        let (l, p) = train_exact(json, n, Some(CHUNK), cfg);
        assert_eq!(
            l.to_bits(),
            loss.to_bits(),
            "{what}, {n} ranks: loss {l} against {loss}"
        );
        let e = relative_difference(&p, &params);
        assert!(
            bits(&p) == bits(&params),
            "{what}, {n} ranks: weights differ by {e:e}"
        );
    }
    // The same model as the ordinary mode, up to its rounding.
    let (l, p) = train_exact(json, 1, None, cfg);
    let (loss_err, weight_err) = ((l - loss).abs() / loss, relative_difference(&p, &params));
    eprintln!("{what}: exact against ordinary sums: loss {loss_err:.1e}, weights {weight_err:.1e}");
    assert!(
        loss_err < 1e-6 && weight_err < 1e-5,
        "{what}: {loss_err:e} {weight_err:e}"
    );
}

#[test]
fn every_feature_trains_bit_identically_on_one_to_four_ranks() {
    let cfg = config(Optimizer::Adam);
    for (what, json) in exact_features() {
        assert_bit_identical(what, &json, &cfg, &[2, 4]);
    }
}

#[test]
fn every_optimizer_trains_bit_identically_on_three_ranks() {
    let json = feature("dropout");
    for &opt in Optimizer::ALL {
        assert_bit_identical(opt.name(), &json, &config(opt), &[3]);
    }
}

#[test]
fn steps_coupling_the_examples_and_split_weights_are_refused() {
    let cfg = config(Optimizer::Adam);
    let rows = ml1m(BATCH);
    let refusal = |json: &str, ranks: usize, mode: Parallelism, chunk: usize| {
        let descriptor = Descriptor::from_str(json, "exact.json").unwrap();
        let run = Run {
            users: BATCH,
            ..Run::data(ranks)
        };
        let run = Run {
            parallelism: mode,
            ..run
        };
        let out = Threads::run(ranks, |comm| {
            let mut datasets = datasets_of(&rows, None)?;
            let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
            let (mut net, _): (Network<Cpu, _>, _) =
                build_on(comm, graph, &mut datasets, run, &cfg)?;
            net.set_exact_chunk(Some(chunk))
        });
        out.unwrap_err().to_string()
    };
    let data = Parallelism::Data;
    let e = refusal(&feature("batch normalisation"), 1, data, CHUNK);
    assert!(
        e.contains("batch normalisation") && e.contains("`H1`"),
        "{e}"
    );
    let e = refusal(&feature("sparseness penalty"), 2, data, CHUNK);
    assert!(e.contains("sparseness penalty"), "{e}");
    let e = refusal(&feature("dropout"), 2, Parallelism::Model, CHUNK);
    assert!(e.contains("data parallelism"), "{e}");
    let e = refusal(&feature("dropout"), 1, data, 0);
    assert!(e.contains("at least 1"), "{e}");
}

/// Chunk by chunk through the library: the update refuses a step whose chunks are summed but
/// not applied (so `train_step` cannot silently apply one chunk's raw sums), and takes it
/// after `finish_exact_step`.
#[test]
fn an_update_before_the_step_is_finished_is_refused() {
    let cfg = config(Optimizer::Sgd);
    let rows = ml1m(BATCH);
    let descriptor = Descriptor::from_str(&feature("dropout"), "exact.json").unwrap();
    let run = Run {
        users: BATCH,
        ..Run::data(1)
    };
    Threads::run(1, |comm| {
        let mut datasets = datasets_of(&rows, None)?;
        let graph = Graph::compile(&descriptor, &shapes(&datasets))?;
        let (mut net, data) = build_on(comm, graph, &mut datasets, run, &cfg)?;
        net.set_exact_chunk(Some(CHUNK))?;
        let examples: Vec<u32> = (0..BATCH as u32).collect();
        let graph = net.graph().clone();
        for range in moira::network::chunk_passes(BATCH, CHUNK, 0, 1)
            .into_iter()
            .flatten()
        {
            let first = range.start;
            net.load_chunk(data.batch(&graph, &examples[range], None)?, first, BATCH)?;
            net.forward(true, cfg.seed)?;
            net.backward(cfg.seed)?;
        }
        let e = net.update(&cfg.hyper).unwrap_err().to_string();
        assert!(e.contains("finish_exact_step"), "{e}");
        net.finish_exact_step(BATCH)?;
        net.update(&cfg.hyper)?;
        assert_eq!(net.step_count(), 1);
        Ok(())
    })
    .unwrap();
}
