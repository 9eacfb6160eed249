//! Unit tests of the model consistency checks and helpers.

use super::*;
use crate::descriptor::{LayerKind, SharedWeight};
use crate::graph::DataShape;

/// Input(4) -> Hidden(3) -> Output(4), the last edge sharing the first one transposed.
fn model() -> Model {
    let mut d = Descriptor::default();
    d.push_layer_inheriting(
        LayerDescriptor::new("In", LayerKind::Input)
            .with_size(Size::units(4))
            .with_dataset("in"),
    );
    d.push_layer_inheriting(
        LayerDescriptor::new("Hid", LayerKind::Hidden)
            .with_size(Size::units(3))
            .with_sources(["In"]),
    );
    let mut out = LayerDescriptor::new("Out", LayerKind::Output)
        .with_size(Size::units(4))
        .with_sources(["Hid"]);
    out.shared_weights.push(SharedWeight {
        input_layer: "Hid".into(),
        source_input_layer: "In".into(),
        source_output_layer: "Hid".into(),
        transposed: true,
    });
    d.push_layer_inheriting(out);
    let tensor = |i: &str, o: &str, rows, cols, shared| WeightTensor {
        input_layer: i.into(),
        output_layer: o.into(),
        rows,
        cols,
        data: if shared {
            Vec::new()
        } else {
            vec![0.5; rows * cols]
        },
        bias: vec![0.0; cols],
        shared: shared.then(|| SharedRef {
            source_input_layer: "In".into(),
            source_output_layer: "Hid".into(),
            transposed: true,
        }),
        norm: 0.0,
        locked: false,
    };
    Model {
        descriptor: d,
        weights: vec![
            tensor("In", "Hid", 4, 3, false),
            tensor("Hid", "Out", 3, 4, true),
        ],
        batch_norm: Vec::new(),
        extras: Extras::default(),
    }
}

fn problem(m: &Model) -> String {
    let p = check_model(m, false).expect_err("the model should be rejected");
    p.describe(m)
}

#[test]
fn consistent_model_passes() {
    check_model(&model(), false).unwrap();
}

#[test]
fn auto_sizes_are_rejected_with_a_hint() {
    let mut m = model();
    m.descriptor.layers[0].size = Size::Auto;
    let message = problem(&m);
    assert!(message.contains("layer `In` has size auto"), "{message}");
    assert!(message.contains("resolved_descriptor"), "{message}");
}

#[test]
fn wrong_shapes_and_lengths_name_the_weight() {
    let mut m = model();
    m.weights[0].bias.push(1.0);
    let message = problem(&m);
    assert!(message.contains("`In` -> `Hid`"), "{message}");
    assert!(message.contains("4 biases; expected 3"), "{message}");

    let mut m = model();
    m.weights[0].rows = 5;
    assert!(problem(&m).contains("shape 5 x 3 but the layers have 4 and 3 units"));

    let mut m = model();
    m.weights[0].data.clear();
    assert!(problem(&m).contains("0 values; expected 4 x 3 = 12"));

    let mut m = model();
    m.weights[1].data = vec![1.0; 12];
    assert!(problem(&m).contains("a shared weight has no data of its own"));
}

#[test]
fn weights_must_be_exactly_the_edges() {
    let mut m = model();
    m.weights.pop();
    assert!(problem(&m).contains("no weight is given for the edge `Hid` -> `Out`"));

    let mut m = model();
    let extra = m.weights[0].clone();
    m.weights.push(extra);
    assert!(problem(&m).contains("a second weight for the same edge"));

    let mut m = model();
    m.weights[0].output_layer = "Out".into();
    m.weights[0].cols = 4;
    m.weights[0].bias = vec![0.0; 4];
    assert!(problem(&m).contains("`In` is not a source of `Out`"));

    let mut m = model();
    m.weights[1].input_layer = "Nowhere".into();
    assert!(problem(&m).contains("no layer is named `Nowhere`"));
}

#[test]
fn sharing_must_agree_with_the_descriptor() {
    let mut m = model();
    m.weights[1].shared = None;
    m.weights[1].data = vec![0.0; 12];
    assert!(problem(&m).contains("disagrees with the SharedWeights of layer `Out`"));

    let mut m = model();
    if let Some(s) = &mut m.weights[1].shared {
        s.transposed = false;
    }
    assert!(problem(&m).contains("disagrees"));
}

#[test]
fn resolved_descriptor_fixes_sizes_and_input_sparseness() {
    let mut d = model().descriptor;
    d.layers[0].size = Size::Auto;
    let shape = DataShape {
        name: "in".into(),
        dims: vec![2, 2],
        examples: 3,
        sparse: true,
    };
    let g = Graph::compile(&d, &[shape]).unwrap();
    let r = resolved_descriptor(&g);
    assert_eq!(r.layers[0].size, Size::Fixed(vec![2, 2]));
    assert!(r.layers[0].sparse, "taken from the dataset");
    assert_eq!(r.layers[1], d.layers[1]);
    assert_eq!(r.layers[2], d.layers[2]);
}

#[test]
fn extras_look_up_by_name() {
    let x = Extras {
        tensors: vec![("m".into(), vec![1.0])],
        scalars: vec![("epoch".into(), 3)],
        strings: vec![("opt".into(), "SGD".into())],
    };
    assert_eq!(x.tensor("m"), Some(&[1.0][..]));
    assert_eq!(x.scalar("epoch"), Some(3));
    assert_eq!(x.string("opt"), Some("SGD"));
    assert_eq!(x.scalar("none"), None);
}

#[test]
fn save_rejects_an_inconsistent_model_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nc");
    let mut m = model();
    m.weights[0].data.pop();
    assert!(matches!(save_model(&path, &m), Err(Error::InvalidData(_))));
    assert!(!path.exists());
    save_model(&path, &model()).unwrap();
    assert_eq!(load_model(&path).unwrap(), model());
}
