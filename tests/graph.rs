//! Compiling descriptors into layer graphs: sizes, order, edges, weights and rejections.

use std::path::Path;

use moira::descriptor::{Descriptor, LayerDescriptor, LayerKind, Size};
use moira::graph::{DataShape, Graph, LayerId};
use moira::ops::Activation;
use moira::Error;

fn shape(name: &str, dims: &[u32], sparse: bool) -> DataShape {
    DataShape {
        name: name.to_owned(),
        dims: dims.to_vec(),
        examples: 100,
        sparse,
    }
}

fn io_shapes(width: u32) -> Vec<DataShape> {
    vec![
        shape("input", &[width], true),
        shape("output", &[width], true),
    ]
}

fn descriptor(text: &str) -> Descriptor {
    Descriptor::from_str(text, "test.json").unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn compile(text: &str, shapes: &[DataShape]) -> Graph {
    Graph::compile(&descriptor(text), shapes).unwrap_or_else(|e| panic!("{e}"))
}

/// The `(layer, message)` of a graph error.
pub(crate) fn graph_error(text: &str, shapes: &[DataShape]) -> (String, String) {
    match Graph::compile(&descriptor(text), shapes) {
        Err(Error::Graph {
            network,
            layer,
            message,
        }) => {
            assert!(!network.is_empty());
            (layer, message)
        }
        other => panic!("expected Error::Graph, got {other:?}"),
    }
}

pub(crate) fn names(g: &Graph) -> Vec<&str> {
    g.layers().iter().map(|l| l.name.as_str()).collect()
}

/// Every layer comes after its sources and skips.
fn assert_topological(g: &Graph) {
    for l in g.layers() {
        for s in l.sources.iter().chain(&l.skips) {
            assert!(
                s.0 < l.id.0,
                "{} must come after {}",
                l.name,
                g.layer(*s).name
            );
        }
    }
}

#[test]
fn every_example_network_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let d = Descriptor::from_file(&path).unwrap();
            let g = Graph::compile(&d, &io_shapes(1000))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_topological(&g);
            assert_eq!(g.inputs().next().unwrap().units, 1000);
            assert_eq!(g.outputs().next().unwrap().units, 1000);
            count += 1;
        }
    }
    assert!(count >= 3);
}

#[test]
fn movielens_autoencoder_resolves_sizes_and_parameters() {
    let d = Descriptor::from_file(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/movielens-ae.json"),
    )
    .unwrap();
    let g = Graph::compile(&d, &io_shapes(26752)).unwrap();
    assert_eq!(g.name(), "movielens-ae");
    assert_eq!(names(&g), ["Input", "Hidden", "Output"]);
    let units: Vec<usize> = g.layers().iter().map(|l| l.units).collect();
    assert_eq!(units, [26752, 128, 26752]);
    assert_eq!(g.layer(LayerId(0)).dims, [26752]);

    let input = g.layer_by_name("Input").unwrap();
    assert!(input.sparse && input.denoising);
    let hidden = g.layer_by_name("Hidden").unwrap();
    let penalty = hidden
        .sparseness_penalty
        .expect("sparse hidden layer is penalised");
    assert_eq!((penalty.p, penalty.beta), (0.5, 2.0));
    assert!(!hidden.denoising);
    assert_eq!(g.layer_by_name("Output").unwrap().sparseness_penalty, None);

    assert_eq!(g.edges().len(), 2);
    assert_eq!(g.weights().len(), 2);
    let w = &g.weights()[0];
    assert_eq!(
        (w.input_units, w.output_units, w.sharing_count),
        (26752, 128, 1)
    );
    assert_eq!(hidden.incoming.len(), 1);
    assert_eq!(input.outgoing, hidden.incoming);
    assert!(!g.edge(hidden.incoming[0]).is_shared(&g));
}

#[test]
fn auto_sizes_take_every_dataset_dimension() {
    let g = compile(
        r#"{ "Layers": [
            { "Name": "in", "N": "auto", "DataSet": "pixels" },
            { "Name": "h", "N": [4, 5] },
            { "Name": "out", "N": "auto", "DataSet": "labels" } ] }"#,
        &[
            shape("pixels", &[8, 6, 3], false),
            shape("labels", &[10], false),
        ],
    );
    assert_eq!(g.layers()[0].dims, [8, 6, 3]);
    assert_eq!(g.layers()[0].units, 144);
    assert!(
        !g.layers()[0].sparse,
        "the input takes the dataset's storage"
    );
    assert_eq!(g.layers()[1].units, 20);
    assert_eq!(g.layers()[2].units, 10);
    assert_eq!(g.weights()[0].input_units, 144);
}

#[test]
fn a_missing_dataset_names_the_layer_and_lists_the_available_ones() {
    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": "auto", "DataSet": "ratings" }, { "N": 3, "DataSet": "output" } ] }"#,
        &io_shapes(10),
    );
    assert_eq!(layer, "in");
    assert!(message.contains("dataset `ratings` not found"), "{message}");
    assert!(message.contains("available: input, output"), "{message}");
    let (_, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": "auto", "DataSet": "input" }, { "N": 3 } ] }"#,
        &[],
    );
    assert!(message.contains("none were given"), "{message}");
}

#[test]
fn a_fixed_size_must_match_its_dataset() {
    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": 12, "DataSet": "input" }, { "Name": "out", "N": "auto", "DataSet": "output" } ] }"#,
        &io_shapes(10),
    );
    assert_eq!(layer, "in");
    assert!(
        message.contains("12 units") && message.contains("`input` has 10"),
        "{message}"
    );
    // A fixed size equal to the dataset's is fine, whatever its dimensions.
    compile(
        r#"{ "Layers": [ { "N": [2, 5], "DataSet": "input" }, { "N": 10, "DataSet": "output" } ] }"#,
        &io_shapes(10),
    );
}

#[test]
fn unknown_sources_and_skips_are_rejected() {
    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": 4 }, { "Name": "h", "N": 4, "Source": "inn" }, { "Name": "out", "N": 4 } ] }"#,
        &[],
    );
    assert_eq!(layer, "h");
    assert!(message.contains("source `inn` is not a layer"), "{message}");
    assert!(message.contains("did you mean `in`?"), "{message}");
    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": 4 }, { "Name": "h", "N": 4 }, { "Name": "out", "N": 4, "Skip": "nowhere" } ] }"#,
        &[],
    );
    assert_eq!(layer, "out");
    assert!(
        message.contains("skip `nowhere` is not a layer"),
        "{message}"
    );
}

#[test]
fn cycles_are_detected_and_named() {
    let (layer, message) = graph_error(
        r#"{ "Layers": [
            { "Name": "in", "N": 4 },
            { "Name": "a", "N": 4, "Source": ["in", "c"] },
            { "Name": "b", "N": 4, "Source": "a" },
            { "Name": "c", "N": 4, "Source": "b" },
            { "Name": "out", "N": 4, "Source": "c" } ] }"#,
        &[],
    );
    assert_eq!(layer, "a");
    assert!(
        message.ends_with("the layers form a cycle: a -> b -> c -> a"),
        "{message}"
    );

    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": 4 }, { "Name": "self", "N": 4, "Source": "self" }, { "N": 4 } ] }"#,
        &[],
    );
    assert_eq!(layer, "self");
    assert!(message.contains("self -> self"), "{message}");
}

#[test]
fn layers_come_in_topological_order() {
    let g = compile(
        r#"{ "Layers": [
            { "Name": "in", "Kind": "Input", "N": 6 },
            { "Name": "out", "Kind": "Output", "N": 6, "Source": ["h2", "h1"] },
            { "Name": "h2", "Kind": "Hidden", "N": 3, "Source": "h1" },
            { "Name": "h1", "Kind": "Hidden", "N": 3, "Source": "in" },
            { "Name": "side", "Kind": "Input", "N": 2 } ] }"#,
        &[],
    );
    assert_eq!(names(&g), ["in", "h1", "h2", "out", "side"]);
    assert_topological(&g);
    let out = g.layer_by_name("out").unwrap();
    let sources: Vec<&str> = out
        .sources
        .iter()
        .map(|&s| g.layer(s).name.as_str())
        .collect();
    assert_eq!(sources, ["h2", "h1"], "sources keep the order written");
    assert_eq!(out.incoming.len(), 2);
    for (k, &e) in out.incoming.iter().enumerate() {
        assert_eq!(g.edge(e).source, out.sources[k]);
        assert_eq!(g.edge(e).target, out.id);
    }
    let backward: Vec<&str> = g.backward_order().map(|l| l.name.as_str()).collect();
    assert_eq!(backward, ["side", "out", "h2", "h1", "in"]);
    assert_eq!(g.layer_by_name("out").unwrap().descriptor_index, 1);
}

#[test]
fn multiple_sources_get_one_weight_per_edge() {
    let g = compile(
        r#"{ "Layers": [
            { "Name": "a", "Kind": "Input", "N": 5 },
            { "Name": "b", "Kind": "Input", "N": 7 },
            { "Name": "out", "Kind": "Output", "N": 3, "Source": ["a", "b"], "WeightNorm": 2.5,
              "WeightInit": { "Scheme": "Uniform", "Scale": 0.1, "Bias": 0.5 } } ] }"#,
        &[],
    );
    assert_eq!(g.weights().len(), 2);
    let shapes: Vec<(usize, usize)> = g
        .weights()
        .iter()
        .map(|w| (w.input_units, w.output_units))
        .collect();
    assert_eq!(shapes, [(5, 3), (7, 3)]);
    for w in g.weights() {
        assert_eq!(w.norm, 2.5);
        assert_eq!((w.init.scale, w.init.bias), (0.1, 0.5));
    }
}

#[test]
fn skips_must_match_their_layer() {
    let g = compile(
        r#"{ "Layers": [
            { "Name": "in", "N": 8 },
            { "Name": "h1", "N": 4 },
            { "Name": "h2", "N": 4, "Skip": "h1" },
            { "Name": "out", "N": 8 } ] }"#,
        &[],
    );
    let h1 = g.layer_by_name("h1").unwrap();
    let h2 = g.layer_by_name("h2").unwrap();
    assert_eq!(h2.skips, [h1.id]);
    assert_eq!(h1.skip_targets, [h2.id]);
    assert_eq!(g.edges().len(), 3, "a skip is not a weighted edge");

    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "in", "N": 8 }, { "Name": "h1", "N": 4 }, { "Name": "out", "N": 8, "Skip": "h1" } ] }"#,
        &[],
    );
    assert_eq!(layer, "out");
    assert!(
        message.contains("skip `h1` has 4 units but this layer has 8"),
        "{message}"
    );
}

const TIED: &str = r#"{ "Layers": [
    { "Name": "in", "N": 100 },
    { "Name": "h", "N": 10 },
    { "Name": "out", "N": 100,
      "SharedWeights": { "InputLayer": "h", "SourceInputLayer": "in", "SourceOutputLayer": "h", "Transposed": TRANSPOSED } } ] }"#;

#[test]
fn shared_weights_reuse_the_source_weight() {
    let g = compile(&TIED.replace("TRANSPOSED", "true"), &[]);
    assert_eq!(g.edges().len(), 2);
    assert_eq!(g.weights().len(), 1);
    let w = &g.weights()[0];
    assert_eq!(
        (w.input_units, w.output_units, w.sharing_count),
        (100, 10, 2)
    );
    let out = g.layer_by_name("out").unwrap();
    let e = g.edge(out.incoming[0]);
    assert!(e.transposed && e.is_shared(&g));
    assert_eq!(e.weight, w.id);
}

#[test]
fn shared_weights_must_fit() {
    let (layer, message) = graph_error(&TIED.replace("TRANSPOSED", "false"), &[]);
    assert_eq!(layer, "out");
    assert!(
        message.contains("10 x 100") && message.contains("100 x 10"),
        "{message}"
    );

    let (layer, message) = graph_error(
        &TIED
            .replace("\"InputLayer\": \"h\"", "\"InputLayer\": \"in\"")
            .replace("TRANSPOSED", "true"),
        &[],
    );
    assert_eq!(layer, "out");
    assert!(
        message.contains("InputLayer `in` is not a source"),
        "{message}"
    );

    let (_, message) = graph_error(
        &TIED
            .replace(
                "\"SourceOutputLayer\": \"h\"",
                "\"SourceOutputLayer\": \"out\"",
            )
            .replace("TRANSPOSED", "true"),
        &[],
    );
    assert!(message.contains("does not exist"), "{message}");

    let (_, message) = graph_error(
        &TIED
            .replace(
                "\"SourceInputLayer\": \"in\"",
                "\"SourceInputLayer\": \"h\"",
            )
            .replace(
                "\"SourceOutputLayer\": \"h\"",
                "\"SourceOutputLayer\": \"out\"",
            )
            .replace("TRANSPOSED", "true"),
        &[],
    );
    assert!(message.contains("is itself shared"), "{message}");
}

#[test]
fn convolutional_and_pooling_layers_are_unsupported() {
    for (ty, extra) in [("Convolutional", ""), ("Pooling", r#", "Function": "Max""#)] {
        let text = format!(
            r#"{{ "Layers": [ {{ "Name": "in", "N": [8, 8] }}, {{ "Name": "c1", "Type": "{ty}", "Kernel": [3, 3] {extra} }}, {{ "N": 4 }} ] }}"#
        );
        match Graph::compile(&descriptor(&text), &[]) {
            Err(Error::Unsupported(m)) => {
                assert!(m.contains("`c1`"), "{m}");
                assert!(
                    m.contains(&format!("{ty} layers are not supported yet")),
                    "{m}"
                );
            }
            other => panic!("expected Error::Unsupported, got {other:?}"),
        }
    }
}

#[test]
fn layers_need_sources_and_the_network_needs_inputs_and_outputs() {
    let (layer, message) = graph_error(
        r#"{ "Layers": [ { "Name": "h", "Kind": "Hidden", "N": 4 }, { "Name": "in", "Kind": "Input", "N": 4 }, { "N": 4 } ] }"#,
        &[],
    );
    assert_eq!(layer, "h");
    assert!(message.contains("needs at least one source"), "{message}");
    let (_, message) = graph_error(
        r#"{ "Layers": [ { "N": 4 }, { "N": 4, "Kind": "Hidden" } ] }"#,
        &[],
    );
    assert!(message.contains("no Output layer"), "{message}");
}

#[test]
fn code_built_descriptors_are_validated_too() {
    let mut d = Descriptor {
        name: "built".into(),
        ..Descriptor::default()
    };
    d.layers
        .push(LayerDescriptor::new("in", LayerKind::Input).with_size(Size::units(4)));
    d.layers.push(
        LayerDescriptor::new("h", LayerKind::Hidden)
            .with_size(Size::Fixed(vec![2, 0]))
            .with_sources(["in"]),
    );
    d.layers
        .push(LayerDescriptor::new("out", LayerKind::Output).with_sources(["h"]));
    match Graph::compile(&d, &[]) {
        Err(Error::Graph {
            network,
            layer,
            message,
        }) => {
            assert_eq!((network.as_str(), layer.as_str()), ("built", "h"));
            assert!(message.contains("positive dimensions"), "{message}");
        }
        other => panic!("expected Error::Graph, got {other:?}"),
    }
    d.layers[1].size = Size::units(3);
    d.layers[2].name = "in".into();
    let err = Graph::compile(&d, &[]).unwrap_err().to_string();
    assert!(err.contains("two layers have this name"), "{err}");
}

#[test]
fn invalid_shapes_are_rejected() {
    let text = r#"{ "Layers": [ { "N": "auto", "DataSet": "input" }, { "N": "auto", "DataSet": "output" } ] }"#;
    let dup = [shape("input", &[4], true), shape("input", &[4], true)];
    assert!(matches!(
        Graph::compile(&descriptor(text), &dup),
        Err(Error::InvalidArgument { .. })
    ));
    let zero = [shape("input", &[0], true), shape("output", &[4], true)];
    assert!(matches!(
        Graph::compile(&descriptor(text), &zero),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn activation_parameters_are_resolved_per_layer() {
    let g = compile(
        r#"{ "RELUSlope": 0.01, "Layers": [ { "N": 4 }, { "N": 4, "Activation": "LRelu" },
            { "N": 4, "Activation": "LRelu", "Slope": 0.2 } ] }"#,
        &[],
    );
    let slopes: Vec<f32> = g.layers().iter().map(|l| l.relu_slope).collect();
    assert_eq!(slopes, [0.01, 0.01, 0.2]);
    assert_eq!(g.layers()[1].activation, Activation::LeakyRectifiedLinear);
}

#[test]
fn the_layer_table_lists_every_layer() {
    let g = compile(
        r#"{ "Layers": [ { "Name": "in", "N": "auto", "DataSet": "input" }, { "Name": "hidden", "N": 16, "pDropout": 0.5 },
            { "Name": "out", "N": "auto", "DataSet": "output" } ] }"#,
        &io_shapes(300),
    );
    let table = g.layer_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("#  name") && lines[0].contains("units"),
        "{table}"
    );
    assert!(
        lines[1].contains("in") && lines[1].contains("300") && lines[1].contains("input"),
        "{table}"
    );
    assert!(
        lines[2].contains("hidden")
            && lines[2].contains("16")
            && lines[2].contains("Sigmoid")
            && lines[2].contains("0.5"),
        "{table}"
    );
    assert!(
        lines[3].contains("out") && lines[3].contains("hidden"),
        "{table}"
    );
    assert_eq!(g.to_string(), table);
}

#[path = "graph/variational.rs"]
mod variational;
