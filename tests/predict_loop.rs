//! The library's prediction loop (`moira::predict::run`) on a small trained network: its top-K
//! equals a brute-force ranking of the same scores with the exclusions (the example's input
//! items, a filter in `Exclude` or DSSTNE's `Multiply` mode, the padding units past `items`),
//! and its metrics equal `train::evaluate`'s on the same data.

use moira::backend::Cpu;
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::{Graph, LayerId};
use moira::network::Network;
use moira::ops::optimizer::{Hyper, LrSchedule};
use moira::ops::Optimizer;
use moira::predict::{
    self, input_items, FilterMode, PredictConfig, PredictedBatch, RankingMetrics, NO_ITEM,
};
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{self, shapes, DataBinding, Quiet, TrainConfig, Validation};
use moira::Error;

const USERS: usize = 90;
const ITEMS: u32 = 120;
const BATCH: usize = 32;

const NET: &str = r#"{
  "Version": 0.9, "Name": "predict-loop", "Kind": "FeedForward",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": 16, "Activation": "Sigmoid" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// `USERS` rows of distinct items clustered by `user % 4` (stream `seed`), values `value(u, i)`
/// when given.
fn rows(seed: u64, per_user: u64, value: Option<fn(u64, u32) -> f32>) -> Csr {
    let mut offsets = vec![0u64];
    let (mut cols, mut values) = (Vec::new(), Vec::new());
    for u in 0..USERS as u64 {
        let n = 3 + u64_at(seed, 0, u) % per_user;
        let base = (u % 4) as u32 * (ITEMS / 4);
        let mut row: Vec<u32> = (0..n)
            .map(|k| (base + (u64_at(seed, 1, u * 64 + k) % (ITEMS as u64 / 2)) as u32) % ITEMS)
            .collect();
        row.sort_unstable();
        row.dedup();
        values.extend(row.iter().map(|&i| value.map_or(1.0, |f| f(u, i))));
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, value.map(|_| values)).unwrap()
}

/// A network trained for two epochs on the input rows, the input dataset, and the output id.
fn trained() -> (Network<Cpu>, Vec<Dataset>, LayerId) {
    let descriptor = Descriptor::from_str(NET, "predict-loop.json").unwrap();
    let datasets = vec![
        Dataset::sparse("input", vec![ITEMS], rows(3, 12, None)).unwrap(),
        Dataset::sparse("output", vec![ITEMS], rows(3, 12, None)).unwrap(),
    ];
    let graph = Graph::compile(&descriptor, &shapes(&datasets)).unwrap();
    let output = graph.outputs().next().unwrap().id;
    let data = DataBinding::new(&graph, &datasets, false).unwrap();
    let mut network =
        Network::build(Cpu::new(1).unwrap(), graph, BATCH, Optimizer::Sgd, 7).unwrap();
    let config = TrainConfig {
        epochs: 2,
        batch: BATCH,
        optimizer: Optimizer::Sgd,
        hyper: Hyper {
            alpha: 0.5,
            ..Hyper::default()
        },
        schedule: LrSchedule::Constant,
        seed: 7,
        shuffle: true,
        first_epoch: 0,
        brake: false,
    };
    train::train(&mut network, &data, &config, None, &mut Quiet).unwrap();
    let input = datasets.into_iter().next().unwrap();
    (network, vec![input], output)
}

/// What the loop handed over, for all examples.
#[derive(Default)]
struct Collected {
    examples: Vec<u32>,
    ranked: Vec<u32>,
    scores: Vec<f32>,
    /// The output layer's activations (the config's layer is the output).
    layer: Vec<f32>,
    batches: usize,
}

impl Collected {
    fn add(&mut self, b: &PredictedBatch<'_>) {
        assert_eq!(b.ranked.len(), b.len() * b.stride);
        for i in 0..b.len() {
            let (items, scores) = b.recommendations(i);
            assert_eq!((items.len(), scores.len()), (b.k, b.k));
            self.ranked.extend_from_slice(items);
            self.scores.extend_from_slice(scores);
        }
        self.examples.extend_from_slice(b.examples);
        if let Some(values) = b.layer {
            assert_eq!((values.rows(), values.cols()), (b.len(), ITEMS as usize));
            self.layer.extend_from_slice(values.data());
        }
        self.batches += 1;
    }
}

fn collect(
    network: &mut Network<Cpu>,
    data: &DataBinding<'_>,
    config: &PredictConfig<'_>,
) -> Collected {
    let mut got = Collected::default();
    predict::run(network, data, config, None, |b| {
        got.add(b);
        Ok::<_, Error>(())
    })
    .unwrap();
    got
}

/// The top `k` of the first `items` of `scores` (with `filter`'s multipliers applied first),
/// excluding `excluded`: sorted by score descending then index, padded with `NO_ITEM`/−∞.
fn brute_force(
    scores: &[f32],
    items: usize,
    k: usize,
    excluded: &[u32],
    multipliers: &[(u32, f32)],
) -> (Vec<u32>, Vec<f32>) {
    let mut s = scores[..items].to_vec();
    for &(i, v) in multipliers {
        if (i as usize) < items {
            s[i as usize] *= v;
        }
    }
    let mut order: Vec<u32> = (0..items as u32)
        .filter(|i| !excluded.contains(i))
        .collect();
    order.sort_by(|&a, &b| s[b as usize].total_cmp(&s[a as usize]).then(a.cmp(&b)));
    order.truncate(k);
    let mut top: Vec<f32> = order.iter().map(|&i| s[i as usize]).collect();
    order.resize(k, NO_ITEM);
    top.resize(k, f32::NEG_INFINITY);
    (order, top)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn top_k_equals_a_brute_force_ranking_with_exclusions() {
    let (mut network, datasets, output) = trained();
    let graph = network.graph().clone();
    let data = DataBinding::new(&graph, &datasets, true).unwrap();
    let input = input_items(&graph, &data, output).expect("the input is as wide as the output");
    let input_rows = input.sparse_data().unwrap();
    // Example 0's filter leaves three candidates: K = 10 pads its list.
    let mut filter = rows(5, 6, None);
    let (mut offsets, mut cols) = (vec![0u64], Vec::new());
    for e in 0..filter.n_rows() {
        if e == 0 {
            cols.extend((0..ITEMS).filter(|i| ![4, 50, 100].contains(i)));
        } else {
            cols.extend_from_slice(filter.row(e).0);
        }
        offsets.push(cols.len() as u64);
    }
    filter = Csr::try_new(ITEMS, offsets, cols, None).unwrap();
    let items = ITEMS as usize - 7; // the last 7 units are padding
    let (k, batch) = (10, 25);
    let config = PredictConfig {
        output,
        items,
        k,
        layer: Some(output),
        batch,
        exclude: Some(input),
        filter: Some((&filter, FilterMode::Exclude)),
    };
    let got = collect(&mut network, &data, &config);
    assert_eq!(got.batches, USERS.div_ceil(batch));
    assert_eq!(got.examples, (0..USERS as u32).collect::<Vec<_>>());
    let mut padded = 0;
    for e in 0..USERS {
        let row = &got.layer[e * ITEMS as usize..(e + 1) * ITEMS as usize];
        let mut excluded = input_rows.row(e).0.to_vec();
        excluded.extend_from_slice(filter.row(e).0);
        let (want, want_scores) = brute_force(row, items, k, &excluded, &[]);
        let r = e * k..(e + 1) * k;
        assert_eq!(got.ranked[r.clone()], want[..], "example {e}");
        assert_eq!(bits(&got.scores[r]), bits(&want_scores), "example {e}");
        padded += want.iter().filter(|&&i| i == NO_ITEM).count();
    }
    let real = [4, 50, 100]
        .iter()
        .filter(|i| !input_rows.row(0).0.contains(i))
        .count();
    assert!(got.ranked[..real].iter().all(|&i| i != NO_ITEM));
    assert!(got.ranked[real..k].iter().all(|&i| i == NO_ITEM));
    assert!(padded >= k - 3);

    // Without exclusions, a batch above the capacity (clamped) gives the plain top-K.
    let config = PredictConfig {
        exclude: None,
        filter: None,
        batch: 10 * BATCH,
        ..config
    };
    let got = collect(&mut network, &data, &config);
    assert_eq!(got.batches, USERS.div_ceil(BATCH));
    for e in 0..USERS {
        let row = &got.layer[e * ITEMS as usize..(e + 1) * ITEMS as usize];
        let (want, _) = brute_force(row, items, k, &[], &[]);
        assert_eq!(got.ranked[e * k..(e + 1) * k], want[..], "example {e}");
    }
}

#[test]
fn multiply_mode_scales_scores_and_excludes_zeros() {
    let (mut network, datasets, output) = trained();
    let graph = network.graph().clone();
    let data = DataBinding::new(&graph, &datasets, true).unwrap();
    let input = input_items(&graph, &data, output).unwrap();
    // Values 0 (excluded), 0.5, 2 and 40 (which lifts an item to the top).
    fn value(u: u64, i: u32) -> f32 {
        [0.0, 0.5, 2.0, 40.0][((u + i as u64) % 4) as usize]
    }
    let filter = rows(9, 20, Some(value as fn(u64, u32) -> f32));
    let k = 8;
    let config = PredictConfig {
        output,
        items: ITEMS as usize,
        k,
        layer: Some(output),
        batch: BATCH,
        exclude: Some(input),
        filter: Some((&filter, FilterMode::Multiply)),
    };
    let got = collect(&mut network, &data, &config);
    let mut boosted = 0;
    for e in 0..USERS {
        let row = &got.layer[e * ITEMS as usize..(e + 1) * ITEMS as usize];
        let (cols, values) = filter.row(e);
        let values = values.unwrap();
        let mut excluded = input.sparse_data().unwrap().row(e).0.to_vec();
        excluded.extend(
            cols.iter()
                .zip(values)
                .filter(|(_, &v)| v == 0.0)
                .map(|(&c, _)| c),
        );
        let multipliers: Vec<(u32, f32)> =
            cols.iter().copied().zip(values.iter().copied()).collect();
        let (want, want_scores) = brute_force(row, ITEMS as usize, k, &excluded, &multipliers);
        let r = e * k..(e + 1) * k;
        assert_eq!(got.ranked[r.clone()], want[..], "example {e}");
        assert_eq!(
            bits(&got.scores[r.clone()]),
            bits(&want_scores),
            "example {e}"
        );
        for &i in &got.ranked[r] {
            let v = cols.iter().position(|&c| c == i).map(|p| values[p]);
            assert_ne!(v, Some(0.0), "example {e}: item {i} of value 0 ranked");
            boosted += usize::from(v == Some(40.0));
        }
    }
    assert!(
        boosted > USERS,
        "the ×40 items should reach the top lists ({boosted})"
    );

    // A boolean filter excludes its items in multiply mode too.
    let boolean = rows(9, 20, None);
    let config = PredictConfig {
        filter: Some((&boolean, FilterMode::Multiply)),
        ..config
    };
    let got = collect(&mut network, &data, &config);
    for e in 0..USERS {
        let row = &got.layer[e * ITEMS as usize..(e + 1) * ITEMS as usize];
        let mut excluded = input.sparse_data().unwrap().row(e).0.to_vec();
        excluded.extend_from_slice(boolean.row(e).0);
        let (want, want_scores) = brute_force(row, ITEMS as usize, k, &excluded, &[]);
        assert_eq!(got.ranked[e * k..(e + 1) * k], want[..], "example {e}");
        assert_eq!(bits(&got.scores[e * k..(e + 1) * k]), bits(&want_scores));
    }
}

#[test]
fn metrics_equal_train_evaluate() {
    let (mut network, datasets, output) = trained();
    let graph = network.graph().clone();
    let data = DataBinding::new(&graph, &datasets, true).unwrap();
    // Held-out items apart from the input's; every fifth example has none (not counted), and
    // the last ten have no row at all.
    let all = rows(11, 10, None);
    let (mut offsets, mut cols) = (vec![0u64], Vec::new());
    for e in 0..USERS - 10 {
        if e % 5 != 2 {
            let seen = datasets[0].sparse_data().unwrap().row(e).0;
            cols.extend(all.row(e).0.iter().filter(|i| !seen.contains(i)));
        }
        offsets.push(cols.len() as u64);
    }
    let held_out = Csr::try_new(ITEMS, offsets, cols, None).unwrap();
    let ks = [5, 10, 20];
    let validation = Validation {
        held_out: held_out.clone(),
        ks: ks.to_vec(),
        every: 0,
        batch: BATCH,
        select: None,
    };
    let want = train::evaluate(&mut network, &data, &validation).unwrap();
    assert!(want.users() > 50);

    for (k, batch) in [(0, BATCH), (3, 7), (30, BATCH)] {
        let mut metrics = RankingMetrics::new(&ks).unwrap();
        let config = PredictConfig {
            output,
            items: ITEMS as usize,
            k,
            layer: None,
            batch,
            exclude: input_items(&graph, &data, output),
            filter: None,
        };
        let mut stride = 0;
        predict::run(
            &mut network,
            &data,
            &config,
            Some((&held_out, &mut metrics)),
            |b| {
                stride = b.stride;
                assert!(b.layer.is_none());
                Ok::<_, Error>(())
            },
        )
        .unwrap();
        assert_eq!(stride, k.max(20), "k {k}");
        assert_eq!(metrics.users(), want.users(), "k {k}, batch {batch}");
        assert_eq!(metrics.to_json(), want.to_json(), "k {k}, batch {batch}");
    }
}

#[test]
fn bad_configurations_and_callback_errors_stop_the_loop() {
    let (mut network, datasets, output) = trained();
    let graph = network.graph().clone();
    let data = DataBinding::new(&graph, &datasets, true).unwrap();
    let base = PredictConfig {
        output,
        items: 50,
        k: 5,
        layer: None,
        batch: BATCH,
        exclude: None,
        filter: None,
    };
    let narrow = Csr::try_new(ITEMS - 1, vec![0, 1], vec![3], None).unwrap();
    let mut metrics = RankingMetrics::new(&[60]).unwrap();
    let bad = [
        (PredictConfig { k: 51, ..base }, "`k`"),
        (
            PredictConfig {
                items: ITEMS as usize + 1,
                ..base
            },
            "`items`",
        ),
        (
            PredictConfig {
                output: LayerId(9),
                ..base
            },
            "`output`",
        ),
        (
            PredictConfig {
                layer: Some(LayerId(3)),
                ..base
            },
            "`layer`",
        ),
        (
            PredictConfig {
                filter: Some((&narrow, FilterMode::Exclude)),
                ..base
            },
            "`filter`",
        ),
        // A sparse input layer has no activations.
        (
            PredictConfig {
                layer: Some(LayerId(0)),
                ..base
            },
            "sparse input",
        ),
    ];
    for (config, what) in bad {
        let mut calls = 0;
        let e = predict::run(&mut network, &data, &config, None, |_| {
            calls += 1;
            Ok::<_, Error>(())
        })
        .unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert_eq!(calls, 0, "{what}");
    }
    // The metrics' largest cutoff counts against the candidates too.
    let held_out = Csr::try_new(ITEMS, vec![0, 1], vec![3], None).unwrap();
    let e = predict::run(
        &mut network,
        &data,
        &base,
        Some((&held_out, &mut metrics)),
        |_| Ok::<_, Error>(()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("60 items ranked"), "{e}");

    // The callback's error type is the caller's; its first error stops the loop.
    #[derive(Debug)]
    enum Stop {
        Library(Error),
        At(u32),
    }
    impl From<Error> for Stop {
        fn from(e: Error) -> Self {
            Stop::Library(e)
        }
    }
    let mut calls = 0;
    let e = predict::run(&mut network, &data, &base, None, |b| {
        calls += 1;
        match b.examples[0] {
            0 => Ok(()),
            e => Err(Stop::At(e)),
        }
    })
    .unwrap_err();
    assert!(matches!(e, Stop::At(32)), "{e:?}");
    assert_eq!(calls, 2);
    let e = predict::run(
        &mut network,
        &data,
        &PredictConfig {
            k: 0,
            items: 0,
            ..base
        },
        None,
        |_| Ok::<_, Stop>(()),
    );
    assert!(e.is_ok());
    let e = predict::run(
        &mut network,
        &data,
        &PredictConfig { k: 99, ..base },
        None,
        |_| Ok::<_, Stop>(()),
    )
    .unwrap_err();
    assert!(
        matches!(e, Stop::Library(Error::InvalidArgument { .. })),
        "{e:?}"
    );
}
