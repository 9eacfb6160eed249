//! Every example descriptor in `networks/` compiles against generated data, builds, and
//! trains two epochs on the CPU with a finite loss, after which its loss over the data
//! without noise (as prediction computes it) is lower; its model saves and loads back.

use std::path::{Path, PathBuf};

use moira::backend::Cpu;
use moira::checkpoint::{load_model, save_model, Extras};
use moira::dataset::Dataset;
use moira::descriptor::{Descriptor, LayerKind};
use moira::graph::Graph;
use moira::network::Network;
use moira::ops::optimizer::Hyper;
use moira::ops::Optimizer;
use moira::rng::u64_at;
use moira::sparse::Csr;
use moira::train::{self, shapes, DataBinding, Quiet, TrainConfig};

const USERS: usize = 64;
const ITEMS: u32 = 128;
const BATCH: usize = 16;

/// `USERS` rows of 3..12 distinct items, clustered by `user % 4`.
fn rows() -> Csr {
    let mut offsets = vec![0u64];
    let mut cols = Vec::new();
    for u in 0..USERS as u64 {
        let n = 3 + u64_at(21, 0, u) % 10;
        let base = (u % 4) as u32 * (ITEMS / 4);
        let mut row: Vec<u32> = (0..n)
            .map(|k| base + (u64_at(21, 1, u * 64 + k) % (ITEMS as u64 / 4)) as u32)
            .collect();
        row.sort_unstable();
        row.dedup();
        cols.extend_from_slice(&row);
        offsets.push(cols.len() as u64);
    }
    Csr::try_new(ITEMS, offsets, cols, None).unwrap()
}

/// The loss over every example, as prediction computes it: no dropout, denoising or
/// variational noise, so that a falling value shows learning even where the training loss of
/// two short epochs is noisy (a variational bottleneck's sample).
fn loss_without_noise(net: &mut Network<Cpu>, binding: &DataBinding) -> f64 {
    let mut total = 0.0;
    let order: Vec<u32> = (0..USERS as u32).collect();
    for chunk in order.chunks(BATCH) {
        let batch = binding.batch(net.graph(), chunk, None).unwrap();
        net.load_batch(batch).unwrap();
        net.forward(false, 0).unwrap();
        total += net.loss().unwrap().to_f64();
    }
    total / USERS as f64
}

fn network_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_network_trains() {
    let files = network_files();
    assert!(files.len() >= 7, "{files:?}");
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let name = f.display().to_string();
        let d = Descriptor::from_file(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        // One sparse dataset per DataSet name, all the same rows (an autoencoder's data).
        let mut names: Vec<&str> = d
            .layers
            .iter()
            .filter(|l| matches!(l.kind, LayerKind::Input | LayerKind::Output))
            .filter_map(|l| l.dataset.as_deref())
            .collect();
        names.sort_unstable();
        names.dedup();
        let data: Vec<Dataset> = names
            .iter()
            .map(|n| Dataset::sparse(*n, vec![ITEMS], rows()).unwrap())
            .collect();
        let graph = Graph::compile(&d, &shapes(&data)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut net = Network::build(Cpu::new(2).unwrap(), graph, BATCH, Optimizer::Adam, 3)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let binding = DataBinding::new(net.graph(), &data, false).unwrap();
        let config = TrainConfig {
            epochs: 2,
            batch: BATCH,
            optimizer: Optimizer::Adam,
            hyper: Hyper {
                alpha: 0.001,
                mu: 0.9,
                mu1: 0.999,
                ..Hyper::default()
            },
            ..TrainConfig::default()
        };
        let before = loss_without_noise(&mut net, &binding);
        let reports = train::train(&mut net, &binding, &config, None, &mut Quiet)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            reports.iter().all(|r| r.loss.is_finite()),
            "{name}: {reports:?}"
        );
        let after = loss_without_noise(&mut net, &binding);
        assert!(
            after < before,
            "{name}: the loss does not fall: {before} before training, {after} after"
        );

        let path = dir.path().join("model.nc");
        save_model(&path, &net.to_model(Extras::default()).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let model = load_model(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        net.load_weights(&model)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
