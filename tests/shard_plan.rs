//! `ShardPlan` on the example networks: DSSTNE's sharding rule, weight blocks that tile each
//! weight, and the bytes each collective moves per minibatch.

use std::path::Path;

use moira::descriptor::{Descriptor, LayerKind};
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
                    // except an output-sharded edge out of the data (`ml1m-dlae.json`'s one
                    // square weight): every rank reads the whole input rows, and no delta
                    // goes back into the data.
                    let from_data = g.layer(w.source).kind == LayerKind::Input;
                    let collectives = if from_data && e.sharding == Sharding::ByOutput {
                        (0, 0)
                    } else {
                        (1, 1)
                    };
                    assert_eq!((e.forward.len(), e.backward.len()), collectives, "{name}");
                }
                let bytes = plan.step_bytes(256);
                let edgeless = plan.edges().iter().all(|e| e.forward.is_empty());
                assert_eq!(
                    bytes == 0,
                    ranks == 1 || edgeless,
                    "{name} on {ranks} ranks"
                );
                // A sparse input into an input-sharded weight is split by column; into an
                // output-sharded one every rank holds the whole rows.
                let into = match plan.edges()[0].sharding {
                    Sharding::ByInput => DataLayout::Columns,
                    Sharding::ByOutput => DataLayout::Replicated,
                };
                assert_eq!(plan.input_layouts()[0].1, into, "{name}");
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

/// A hybrid plan of the deep recommender (I -> 1024 x3 -> I) on 4 ranks with Hidden2 and
/// Hidden3 held by examples: the weight into Hidden2 re-lays Hidden1 by all-to-all, the one
/// into Hidden3 moves nothing, the output edge gathers Hidden3's rows; the replicated weights
/// add their gradient sums; the blocks of the replicated weights are whole on every rank.
#[test]
fn a_hybrid_plan_counts_its_relayouts_and_gradient_sums() {
    use moira::parallel::Layout::{Rows, Units};
    let g = network("deep-recommender.json", 27_278);
    let names: Vec<&str> = g.layers().iter().map(|l| l.name.as_str()).collect();
    let layouts: Vec<_> = names
        .iter()
        .map(|&n| {
            if n == "Hidden2" || n == "Hidden3" {
                Rows
            } else {
                Units
            }
        })
        .collect();
    let plan = ShardPlan::with_layouts(&g, 4, &layouts).unwrap();
    let (b, w) = (256u64, 1024u64);
    let edges = plan.edges();
    // Input -> Hidden1 as under model parallelism.
    assert!(!edges[0].replicated);
    assert_eq!(edges[0].forward[0].bytes(256), b * (w - w / 4) * 4);
    // Hidden1 -> Hidden2: all-to-all both ways; rank 0 receives 3 ranks' 64 rows of its 256
    // units (or its 64 rows of their 768 units: the same 49,152 values).
    assert!(edges[1].replicated);
    assert_eq!(edges[1].forward[0].kind, TransferKind::AllToAll);
    assert_eq!(edges[1].forward[0].bytes(256), (b - b / 4) * (w / 4) * 4);
    assert_eq!(edges[1].backward[0].kind, TransferKind::AllToAll);
    // Hidden2 -> Hidden3: both held by examples.
    assert!(edges[2].replicated && edges[2].forward.is_empty() && edges[2].backward.is_empty());
    // Hidden3 -> Output: Hidden3's rows gathered, the partial deltas reduce-scattered by rows.
    assert!(!edges[3].replicated);
    let t = &edges[3].forward[0];
    assert!(t.by_rows && t.kind == TransferKind::AllGather);
    assert_eq!(t.bytes(256), (b - b / 4) * w * 4);
    assert!(edges[3].backward[0].by_rows);
    // Two replicated 1024 x 1024 weights with their biases, under the sharded update:
    // 2 · (P − 1)/P · 4 bytes per value (the owned gradients in, the updated values out).
    let gradients = plan.gradient_bytes(1) + plan.gradient_bytes(2);
    assert_eq!(gradients, 2 * (2 * 3 * (w * w + w) * 4 / 4));
    let transfers: u64 = plan.transfers(256).iter().map(|&(_, f, b)| f + b).sum();
    assert_eq!(plan.step_bytes(256), transfers + gradients);
    for r in 0..4 {
        assert_eq!(plan.weights()[1].local_shape(r), (1024, 1024));
    }
    let table = plan.table(Some(256));
    assert!(table.contains("by examples (each rank its rows, all units): Hidden2, Hidden3"));
    // One layout per layer, and layers sharing a weight laid out alike.
    assert!(ShardPlan::with_layouts(&g, 4, &layouts[1..]).is_err());
    let tied = network("tied-ae.json", 3_706);
    let mut apart = vec![Units; tied.layers().len()];
    let owner = tied.weights()[0].output;
    apart[owner.0] = Rows;
    let e = ShardPlan::with_layouts(&tied, 2, &apart)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("share a weight but are laid out differently"),
        "{e}"
    );
}
