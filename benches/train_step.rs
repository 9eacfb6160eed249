//! One training step of a DSSTNE-style autoencoder I→200→I (Sigmoid, CrossEntropy, Adam) on a
//! minibatch of 500 synthetic sparse rows, on the CPU backend with 2 threads: upload of the
//! minibatch (CSR and its transpose), forward, loss/delta, backward, and the Adam update of
//! every weight.
//!
//! - `train_step/ml1m`: 3,712 items (MovieLens-1M's 3,706 rounded up to 128), ~110 items/user;
//! - `train_step/gowalla`: 40,960 items (Gowalla's 40,981 in DSSTNE's benchmarks, rounded
//!   down to a multiple of 128 here), ~34 items/user.
//!
//! Throughput is in examples per second. `cargo test --benches` runs each once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use moira::backend::Cpu;
use moira::dataset::Dataset;
use moira::descriptor::Descriptor;
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::Hyper;
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{shapes, DataBinding};

const BATCH: usize = 500;
const HIDDEN: usize = 200;
const THREADS: usize = 2;

const NET: &str = r#"{
  "Version": 0.9, "Name": "bench", "Kind": "FeedForward",
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "N": HIDDEN, "Activation": "Sigmoid" },
    { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "input",
      "Activation": "Sigmoid", "Sparse": true }
  ],
  "ErrorFunction": "CrossEntropy"
}"#;

/// `BATCH` indicator rows of about `mean` distinct items (uniform in `[mean/2, 3·mean/2]`),
/// items drawn with a skew towards low ids (the square of a uniform), like popularity.
fn rows(items: u32, mean: u64, seed: u64) -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for r in 0..BATCH as u64 {
        let n = mean / 2 + u64_at(seed, 0, r) % (mean + 1);
        let mut row: Vec<u32> = (0..n)
            .map(|k| {
                let u = (u64_at(seed, 1, r * 4096 + k) >> 11) as f64 / (1u64 << 53) as f64;
                ((u * u) * items as f64) as u32
            })
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(items, offsets, cols, None).expect("valid rows")
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, items, mean) in [("ml1m", 3_712, 110), ("gowalla", 40_960, 34)] {
        let datasets = vec![Dataset::sparse("input", vec![items], rows(items, mean, 1)).unwrap()];
        let descriptor = Descriptor::from_str(&NET.replace("HIDDEN", &HIDDEN.to_string()), name)
            .expect("valid descriptor");
        let graph = Graph::compile(&descriptor, &shapes(&datasets)).expect("compiles");
        let data = DataBinding::new(&graph, &datasets, false).expect("binds");
        let examples: Vec<u32> = (0..BATCH as u32).collect();
        let batch = data.batch(&graph, &examples, None).expect("batch");
        let backend = Cpu::new(THREADS).expect("thread pool");
        let mut network =
            Network::build(backend, graph, BATCH, Optimizer::Adam, 12134).expect("network");
        let hyper = Hyper {
            alpha: 0.001,
            lambda: 0.0,
            lambda1: 0.0,
            mu: 0.9,
            mu1: 0.999,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                network.load_batch(batch.clone()).expect("load");
                black_box(network.train_step(&hyper, 12134).expect("step"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
