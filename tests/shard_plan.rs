//! `ShardPlan` on the example networks: DSSTNE's sharding rule, weight blocks that tile each
//! weight, and the bytes each collective moves per minibatch.

use std::path::Path;

use moira::descriptor::Descriptor;
use moira::graph::{DataShape, Graph};
use moira::parallel::{DataLayout, ShardPlan, Sharding, TransferKind};

fn shapes(width: u32) -> Vec<DataShape> {
    ["input", "output"]
        .iter()
        .map(|name| DataShape {
            name: name.to_string(),
            dims: vec![width],
            examples: 138_493,
            sparse: true,
        })
        .collect()
}

fn network(name: &str, width: u32) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("networks")
        .join(name);
    let d = Descriptor::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    Graph::compile(&d, &shapes(width)).unwrap_or_else(|e| panic!("{e}"))
}

/// Each weight's rank blocks are disjoint and cover it exactly.
fn assert_blocks_tile(plan: &ShardPlan) {
    for w in plan.weights() {
        let mut covered = 0usize;
        let mut previous_end = 0usize;
        for r in 0..plan.ranks() {
            let (rows, cols) = w.local_block(r);
            let (a, b) = w.local_shape(r);
            assert_eq!((rows.len(), cols.len()), (a, b));
            let sharded = match w.sharding {
                Sharding::ByOutput => cols,
                Sharding::ByInput => rows,
            };
            assert_eq!(sharded.start, previous_end);
            previous_end = sharded.end;
            covered += a * b;
        }
        assert_eq!(covered, w.input_units * w.output_units);
    }
}

#[test]
fn every_example_network_plans_at_every_rank_count() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        for width in [3_706, 27_278] {
            let g = network(&name, width);
            for ranks in [1, 2, 3, 4, 7, 8, 64] {
                let plan = ShardPlan::new(&g, ranks).unwrap();
                assert_eq!(plan.edges().len(), g.edges().len());
                assert_eq!(plan.weights().len(), g.weights().len());
                assert_blocks_tile(&plan);
                for (e, w) in plan.edges().iter().zip(g.edges()) {
                    let weight = g.weight(w.weight);
                    // A transposed use of a shared weight is sharded the other way round
                    // (the owner's output split is its input split).
                    let owner = Sharding::for_weight(weight.input_units, weight.output_units);
                    let expected = if w.transposed { owner.flipped() } else { owner };
                    assert_eq!(e.sharding, expected, "{name}");
                    // Every edge of these autoencoders has exactly one collective each way,
                    // except output-sharded edges out of the data (none here).
                    assert_eq!((e.forward.len(), e.backward.len()), (1, 1), "{name}");
                }
                let bytes = plan.step_bytes(256);
                assert_eq!(bytes == 0, ranks == 1, "{name} on {ranks} ranks: {bytes}");
                // The sparse input is input-sharded: its data is split by column.
                assert_eq!(plan.input_layouts()[0].1, DataLayout::Columns);
                assert!(plan.table(Some(256)).lines().count() >= 3 + g.edges().len());
            }
            count += 1;
        }
    }
    assert!(count >= 8);
}

#[test]
fn deep_recommender_communicates_only_hidden_activations() {
    let g = network("deep-recommender.json", 27_278);
    let plan = ShardPlan::new(&g, 4).unwrap();
    let kinds: Vec<Sharding> = plan.edges().iter().map(|e| e.sharding).collect();
    use Sharding::*;
    assert_eq!(kinds, [ByInput, ByOutput, ByOutput, ByOutput]);
    // Every collective moves a 256 × 1024 matrix: (1024 − 256) · 4 bytes per row.
    for e in plan.edges() {
        for t in e.forward.iter().chain(&e.backward) {
            assert_eq!(t.width, 1024);
            assert_eq!(t.bytes(256), 786_432);
        }
    }
    let first = &plan.edges()[0];
    assert_eq!(first.forward[0].kind, TransferKind::ReduceScatter);
    assert_eq!(first.backward[0].kind, TransferKind::AllGather);
    let last = &plan.edges()[3];
    assert_eq!(last.forward[0].kind, TransferKind::AllGather);
    assert_eq!(last.backward[0].kind, TransferKind::ReduceScatter);
    assert_eq!(plan.step_bytes(256), 8 * 786_432);
    // Rank 0 holds 6,820 of the input rows and 6,820 of the output columns (27,278 = 4·6,819 + 2).
    assert_eq!(plan.weights()[0].local_shape(0), (6_820, 1_024));
    assert_eq!(plan.weights()[3].local_shape(3), (1_024, 6_819));
    assert_eq!(
        plan.max_local_parameters(),
        2 * 6_820 * 1_024 + 2 * 1_024 * 256
    );
    // The same bytes for a 10M-item catalogue: the wide layers never move their wide side.
    let big = ShardPlan::new(&network("deep-recommender.json", 10_000_000), 4).unwrap();
    assert_eq!(big.step_bytes(256), plan.step_bytes(256));
    let table = plan.table(Some(256));
    println!("{table}");
    assert!(table.contains("Input->Hidden1"));
    assert!(table.contains("reduce-scatter partial pre-activations Hidden1"));
    assert!(table.contains("6,291,456 bytes"));
    assert!(plan.to_string().starts_with("shard plan: 4 ranks"));
}

#[test]
fn transposed_shared_weights_and_narrow_inputs() {
    let tied = r#"{ "Layers": [
        { "Name": "in", "N": 100 },
        { "Name": "h", "N": 10 },
        { "Name": "out", "N": 100,
          "SharedWeights": { "InputLayer": "h", "SourceInputLayer": "in",
                             "SourceOutputLayer": "h", "Transposed": true } } ] }"#;
    let d = Descriptor::from_str(tied, "tied.json").unwrap();
    let plan = ShardPlan::new(&Graph::compile(&d, &[]).unwrap(), 3).unwrap();
    assert_eq!(plan.weights().len(), 1);
    assert_eq!(plan.weights()[0].sharding, Sharding::ByInput);
    let e = &plan.edges()[1];
    assert!(e.transposed);
    assert_eq!(e.sharding, Sharding::ByOutput);
    assert_eq!(e.forward[0].kind, TransferKind::AllGather);
    assert!(plan.to_string().contains("h->out (shared, W^T)"));

    // A narrow input feeding a wider layer is output-sharded: the data is replicated and the
    // edge out of it communicates nothing.
    let wide = r#"{ "Layers": [
        { "Name": "in", "N": 10 },
        { "Name": "h", "N": 100 },
        { "Name": "out", "N": 10 } ] }"#;
    let d = Descriptor::from_str(wide, "wide.json").unwrap();
    let plan = ShardPlan::new(&Graph::compile(&d, &[]).unwrap(), 2).unwrap();
    assert_eq!(plan.input_layouts()[0].1, DataLayout::Replicated);
    let first = &plan.edges()[0];
    assert_eq!(first.sharding, Sharding::ByOutput);
    assert!(first.forward.is_empty() && first.backward.is_empty());
    assert!(plan.to_string().contains("replicated"));
    assert!(ShardPlan::new(&Graph::compile(&d, &[]).unwrap(), 0).is_err());
}
