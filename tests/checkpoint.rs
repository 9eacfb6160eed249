//! Saving and loading models in DSSTNE's NetCDF schema: round trips, the schema itself,
//! atomic writes, and rejection of damaged files.

use std::path::{Path, PathBuf};
use std::process::Command;

use moira::checkpoint::{
    check_against_graph, load_model, resolved_descriptor, save_model, Extras, Model, WeightTensor,
};
use moira::descriptor::{Descriptor, Size};
use moira::graph::{DataShape, Graph};
use moira::Error;
use netcdf::AttributeValue;

const NETWORK: &str = r#"{
    "Version": 0.9,
    "Name": "checkpoint-test",
    "Kind": "AutoEncoder",
    "ErrorFunction": "ScaledMarginalCrossEntropy",
    "ShuffleIndices": false,
    "SparsenessPenalty": { "p": 0.1, "beta": 2.0 },
    "Denoising": { "p": 0.2 },
    "DeltaBoost": { "one": 1.5, "zero": 0.5 },
    "ScaledMarginalCrossEntropy": { "oneTarget": 1.0, "zeroTarget": 0.0, "oneScale": 30.0, "zeroScale": 1.0 },
    "RELUSlope": 0.2, "ELUAlpha": 1.5, "SELULambda": 1.1, "Decay": 0.01,
    "LRN": { "k": 3, "n": 7, "alpha": 0.001, "beta": 0.5 },
    "Maxout": { "k": 3 },
    "Layers": [
        { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
        { "Name": "Side", "Kind": "Input", "N": [2, 3], "DataSet": "side" },
        { "Name": "Hidden1", "Kind": "Hidden", "N": 8, "Source": ["Input", "Side"], "Activation": "Relu",
          "Sparse": true, "SparsenessPenalty": { "p": 0.05, "beta": 1.0 }, "pDropout": 0.1,
          "WeightInit": { "Scheme": "Gaussian", "Scale": 0.5, "Bias": 0.1 } },
        { "Name": "Hidden2", "Kind": "Hidden", "N": 8, "Source": "Hidden1", "Skip": "Hidden1",
          "Activation": "LRelu", "RELUSlope": 0.3, "WeightNorm": 2.0, "DeltaNorm": 1.0 },
        { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Source": "Hidden2",
          "Activation": "Sigmoid",
          "SharedWeights": { "InputLayer": "Hidden2", "SourceInputLayer": "Input",
                             "SourceOutputLayer": "Hidden1", "Transposed": true } }
    ]
}"#;

fn shapes(width: u32) -> Vec<DataShape> {
    let shape = |name: &str, dims: &[u32], sparse| DataShape {
        name: name.to_owned(),
        dims: dims.to_vec(),
        examples: 50,
        sparse,
    };
    vec![
        shape("input", &[width], true),
        shape("side", &[2, 3], false),
        shape("output", &[width], true),
    ]
}

fn graph(width: u32) -> Graph {
    let d = Descriptor::from_str(NETWORK, "net.json").unwrap_or_else(|e| panic!("{e}"));
    Graph::compile(&d, &shapes(width)).unwrap_or_else(|e| panic!("{e}"))
}

/// Values whose bits a lossy round trip would change.
fn value(k: usize) -> f32 {
    match k % 7 {
        0 => -0.0,
        1 => f32::from_bits(1),           // smallest subnormal
        2 => f32::from_bits(0x7fc0_1234), // NaN with a payload
        3 => f32::MAX,
        4 => -1.0 / 3.0,
        5 => f32::EPSILON,
        _ => k as f32 * 0.37 - 5.0,
    }
}

/// A model of the test network: one tensor per edge, shared edges without data.
fn model() -> Model {
    let g = graph(10);
    let weights = g
        .edges()
        .iter()
        .enumerate()
        .map(|(e, edge)| {
            let (input, output) = (g.layer(edge.source), g.layer(edge.target));
            let w = g.weight(edge.weight);
            let shared = edge.is_shared(&g).then(|| moira::checkpoint::SharedRef {
                source_input_layer: g.layer(w.input).name.clone(),
                source_output_layer: g.layer(w.output).name.clone(),
                transposed: edge.transposed,
            });
            let data = if shared.is_some() {
                Vec::new()
            } else {
                (0..input.units * output.units)
                    .map(|k| value(k + e))
                    .collect()
            };
            WeightTensor {
                input_layer: input.name.clone(),
                output_layer: output.name.clone(),
                rows: input.units,
                cols: output.units,
                data,
                bias: (0..output.units).map(|k| value(3 * k + e)).collect(),
                shared,
                norm: w.norm,
                locked: e == 1,
            }
        })
        .collect();
    Model {
        descriptor: resolved_descriptor(&g),
        weights,
        batch_norm: Vec::new(),
        extras: Extras {
            tensors: vec![
                (
                    "adam.m.Input->Hidden1".to_owned(),
                    (0..80).map(value).collect(),
                ),
                ("empty".to_owned(), Vec::new()),
            ],
            scalars: vec![("epoch".to_owned(), 7), ("rng_seed".to_owned(), u64::MAX)],
            strings: vec![
                ("optimizer".to_owned(), "Adam".to_owned()),
                ("note".to_owned(), String::new()),
            ],
        },
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Equality of models, comparing floats by their bits.
fn assert_same(a: &Model, b: &Model) {
    assert_eq!(a.descriptor, b.descriptor);
    assert_eq!(a.weights.len(), b.weights.len());
    for (x, y) in a.weights.iter().zip(&b.weights) {
        assert_eq!(
            (
                &x.input_layer,
                &x.output_layer,
                x.rows,
                x.cols,
                &x.shared,
                x.locked
            ),
            (
                &y.input_layer,
                &y.output_layer,
                y.rows,
                y.cols,
                &y.shared,
                y.locked
            )
        );
        assert_eq!(x.norm.to_bits(), y.norm.to_bits());
        assert_eq!(
            bits(&x.data),
            bits(&y.data),
            "{} -> {}",
            x.input_layer,
            x.output_layer
        );
        assert_eq!(bits(&x.bias), bits(&y.bias));
    }
    assert_eq!(a.extras.scalars, b.extras.scalars);
    assert_eq!(a.extras.strings, b.extras.strings);
    assert_eq!(a.extras.tensors.len(), b.extras.tensors.len());
    for ((n, x), (m, y)) in a.extras.tensors.iter().zip(&b.extras.tensors) {
        assert_eq!(n, m);
        assert_eq!(bits(x), bits(y));
    }
}

fn saved(dir: &Path) -> (PathBuf, Model) {
    let path = dir.join("model.nc");
    let m = model();
    save_model(&path, &m).unwrap_or_else(|e| panic!("{e}"));
    (path, m)
}

/// Copies `src` to `dst`, passing each attribute and variable through the edit functions
/// (returning `None` drops it).
fn rewrite(
    src: &Path,
    dst: &Path,
    att: impl Fn(&str, AttributeValue) -> Option<AttributeValue>,
    var: impl Fn(&str, Vec<f32>) -> Option<Vec<f32>>,
) {
    let _lock = moira::netcdf_lock::hold();
    let s = netcdf::open(src).unwrap();
    let mut d = netcdf::create(dst).unwrap();
    for a in s.attributes() {
        if let Some(v) = att(a.name(), a.value().unwrap()) {
            d.add_attribute(a.name(), v).unwrap();
        }
    }
    for v in s.variables() {
        let name = v.name();
        let dim = v.dimensions()[0].name();
        let data: Vec<f32> = if v.len() == 0 {
            Vec::new()
        } else {
            v.get_values(..).unwrap()
        };
        if let Some(data) = var(&name, data) {
            d.add_dimension(&dim, data.len()).unwrap();
            let mut nv = d.add_variable::<f32>(&name, &[&dim]).unwrap();
            if !data.is_empty() {
                nv.put_values(&data, ..).unwrap();
            }
        }
    }
    d.close().unwrap();
}

/// The `(item, message)` of an `Error::NetCdf` about `path`.
fn netcdf_error(result: Result<Model, Error>, path: &Path) -> (Option<String>, String) {
    match result {
        Err(Error::NetCdf {
            file,
            item,
            message,
        }) => {
            assert_eq!(file, path);
            (item, message)
        }
        other => panic!("expected Error::NetCdf, got {other:?}"),
    }
}

#[test]
fn round_trip_keeps_every_field_and_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = saved(dir.path());
    let loaded = load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_same(&m, &loaded);
    // The shared transposed weight, the skip and the two sources survive in the descriptor.
    let out = loaded.descriptor.layer("Output").unwrap();
    assert_eq!(out.shared_weights.len(), 1);
    assert!(out.shared_weights[0].transposed);
    assert_eq!(
        loaded.descriptor.layer("Hidden2").unwrap().skips,
        ["Hidden1"]
    );
    assert_eq!(
        loaded.descriptor.layer("Hidden1").unwrap().sources,
        ["Input", "Side"]
    );
    assert_eq!(
        loaded.descriptor.layer("Side").unwrap().size,
        Size::Fixed(vec![2, 3])
    );

    // The loaded descriptor compiles to the same graph as the original.
    let original = graph(10);
    let again = Graph::compile(&loaded.descriptor, &shapes(10)).unwrap();
    assert_eq!(again.layers(), original.layers());
    assert_eq!(again.edges(), original.edges());
    assert_eq!(again.weights(), original.weights());
    check_against_graph(&loaded, &again).unwrap();

    // Saving what was loaded gives the same model again (and overwrites atomically).
    save_model(&path, &loaded).unwrap();
    assert_same(&m, &load_model(&path).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["model.nc"], "no temporary file is left behind");
}

#[test]
fn ncdump_shows_dsstne_names_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let out = Command::new("ncdump").arg("-h").arg(&path).output();
    let Ok(out) = out else {
        eprintln!("ncdump is not installed; skipping");
        return;
    };
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = [
        "float weight0_weights(weight0_weightDim) ;",
        "float weight0_bias(weight0_biasDim) ;",
        "weight0_weightDim = 80 ;",
        ":version = 0.9f ;",
        ":name = \"checkpoint-test\" ;",
        ":kind = 1U ;",
        ":errorFunction = 3U ;",
        ":maxout_k = 3 ;",
        ":decay = 0.01f ;",
        ":LRN_n = 7 ;",
        ":bSparsenessPenalty = 1U ;",
        ":bDenoising = 1U ;",
        ":ShuffleIndices = 0U ;",
        ":checkpoint_name = \"checkpoint\" ;",
        ":checkpoint_interval = 0 ;",
        ":checkpoint_epochs = 7 ;",
        ":layers = 5U ;",
        ":layer0_name = \"Input\" ;",
        ":layer0_kind = 0U ;",
        ":layer0_Nx = 10U ;",
        ":layer0_attributes = 3U ;",
        ":layer1_Ny = 3U ;",
        ":layer1_dimensions = 2U ;",
        ":layer2_sources = 2U ;",
        ":layer2_source1 = \"Side\" ;",
        ":layer2_activation = 2U ;",
        ":layer2_weightInit = 2U ;",
        ":layer2_sparsenessPenalty_p = 0.05f ;",
        ":layer2_attributes = 1U ;",
        ":layer3_skip0 = \"Hidden1\" ;",
        ":layer3_RELUSlope = 0.3f ;",
        ":layer4_poolingfunction = 0U ;",
        ":weights = 4U ;",
        ":weight0_inputLayer = \"Input\" ;",
        ":weight0_width = 8ULL ;",
        ":weight0_height = 10ULL ;",
        ":weight0_breadth = 1ULL ;",
        ":weight0_bShared = 0U ;",
        ":weight1_bLocked = 1U ;",
        ":weight3_bShared = 1U ;",
        ":weight3_bTransposed = 1U ;",
        ":weight3_sourceInputLayer = \"Input\" ;",
        ":moira_scalar1 = 18446744073709551615ULL ;",
    ];
    for line in expected {
        assert!(text.contains(line), "ncdump -h lacks `{line}`:\n{text}");
    }
    assert!(
        !text.contains("weight3_weights"),
        "a shared weight has no data"
    );
}

#[test]
fn failed_saves_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    // Target directory missing.
    let missing = dir.path().join("missing").join("model.nc");
    assert!(save_model(&missing, &m).is_err());
    assert!(!dir.path().join("missing").exists());
    // Target is a directory.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(save_model(&sub, &m), Err(Error::Io { .. })));
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    // An inconsistent model is rejected before anything is written.
    let mut bad = m.clone();
    bad.weights[0].data.pop();
    let path = dir.path().join("bad.nc");
    let err = save_model(&path, &bad).unwrap_err();
    assert!(matches!(err, Error::InvalidData(_)), "{err}");
    assert!(err.to_string().contains("`Input` -> `Hidden1`"), "{err}");
    // Only `sub` remains.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn truncated_or_foreign_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.nc");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (item, message) = netcdf_error(load_model(&cut), &cut);
    assert_eq!(item, None);
    assert!(message.contains("not a readable NetCDF file"), "{message}");

    let text = dir.path().join("text.nc");
    std::fs::write(&text, "not a model").unwrap();
    netcdf_error(load_model(&text), &text);

    let absent = dir.path().join("absent.nc");
    assert!(matches!(load_model(&absent), Err(Error::Io { .. })));
}

#[test]
fn missing_or_wrong_length_variables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let edited = dir.path().join("edited.nc");
    let keep = |_: &str, v| Some(v);

    rewrite(&path, &edited, keep, |n, v| {
        (n != "weight2_weights").then_some(v)
    });
    let (item, message) = netcdf_error(load_model(&edited), &edited);
    assert_eq!(item.as_deref(), Some("weight2_weights"));
    assert!(message.contains("missing variable"), "{message}");

    rewrite(&path, &edited, keep, |n, mut v| {
        if n == "weight0_weights" {
            v.pop();
        }
        Some(v)
    });
    let (item, message) = netcdf_error(load_model(&edited), &edited);
    assert_eq!(item.as_deref(), Some("weight0_weights"));
    assert!(message.contains("has 79 values; expected 80"), "{message}");

    rewrite(&path, &edited, keep, |n, mut v| {
        if n == "weight3_bias" {
            v.push(1.0);
        }
        Some(v)
    });
    let (item, message) = netcdf_error(load_model(&edited), &edited);
    assert_eq!(item.as_deref(), Some("weight3_bias"));
    assert!(message.contains("has 11 values; expected 10"), "{message}");
}

#[test]
fn missing_attributes_and_unknown_enums_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let edited = dir.path().join("edited.nc");
    let cases: [(&str, Option<AttributeValue>, &str); 5] = [
        ("layer1_Nx", None, "missing attribute"),
        (
            "layer2_activation",
            Some(AttributeValue::Uint(99)),
            "99 is not a known activation",
        ),
        (
            "errorFunction",
            Some(AttributeValue::Uint(12)),
            "not a known error function",
        ),
        (
            "layer0_Nx",
            Some(AttributeValue::Str("ten".into())),
            "a string",
        ),
        (
            "weight1_inputLayer",
            Some(AttributeValue::Str("Nowhere".into())),
            "`Nowhere` is not a layer",
        ),
    ];
    for (name, replacement, expected) in cases {
        rewrite(
            &path,
            &edited,
            |n, v| {
                if n == name {
                    replacement.clone()
                } else {
                    Some(v)
                }
            },
            |_, v| Some(v),
        );
        let (item, message) = netcdf_error(load_model(&edited), &edited);
        assert_eq!(item.as_deref(), Some(name));
        assert!(message.contains(expected), "{name}: {message}");
    }
}

#[test]
fn reads_dsstne_files() {
    // What DSSTNE writes: no `moira_*`, other numeric types, and a global sparseness
    // penalty its reader would (wrongly) use for every layer.
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = saved(dir.path());
    let dsstne = dir.path().join("dsstne.nc");
    rewrite(
        &path,
        &dsstne,
        |n, v| match n {
            _ if n.starts_with("moira_") => None,
            "sparsenessPenalty_p" => Some(AttributeValue::Float(0.1)),
            "layer0_Nx" => Some(AttributeValue::Int(10)),
            "version" => Some(AttributeValue::Double(0.9)),
            "decay" | "checkpoint_name" | "weight0_depth" | "weight0_breadth" => None,
            _ => Some(v),
        },
        |n, v| (!n.starts_with("moira_")).then_some(v),
    );
    let loaded = load_model(&dsstne).unwrap_or_else(|e| panic!("{e}"));
    let mut expected = m.descriptor.clone();
    let defaults = Descriptor::default();
    expected.relu_slope = defaults.relu_slope;
    expected.elu_alpha = defaults.elu_alpha;
    expected.selu_lambda = defaults.selu_lambda;
    expected.decay = 0.0;
    assert_eq!(loaded.descriptor, expected);
    assert_eq!(
        loaded
            .descriptor
            .layer("Hidden1")
            .unwrap()
            .sparseness_penalty
            .p,
        0.05,
        "the per-layer penalty is read, not the global one"
    );
    assert_eq!(loaded.extras, Extras::default());
    assert_eq!(bits(&loaded.weights[0].data), bits(&m.weights[0].data));
}

#[test]
fn check_against_graph_names_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let loaded = load_model(&path).unwrap();
    // The same network on data 12 wide.
    let mut d = loaded.descriptor.clone();
    for l in &mut d.layers {
        if l.name == "Input" || l.name == "Output" {
            l.size = Size::Auto;
        }
    }
    let wider = Graph::compile(&d, &shapes(12)).unwrap();
    let err = check_against_graph(&loaded, &wider)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`Input` -> `Hidden1`"), "{err}");
    assert!(
        err.contains("10 x 8 in the model but 12 x 8 in the network"),
        "{err}"
    );

    let same = Graph::compile(&d, &shapes(10)).unwrap();
    check_against_graph(&loaded, &same).unwrap();

    let mut missing = loaded.clone();
    missing.weights.remove(1);
    let err = check_against_graph(&missing, &same)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no weight `Side` -> `Hidden1`"), "{err}");
}
