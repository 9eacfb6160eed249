//! Descriptors that must be rejected, with the JSON path and message expected.

use std::path::Path;

use moira::descriptor::{Descriptor, LayerKind};
use moira::Error;

use super::{assert_rejected, parse, reject, with_hidden};

#[test]
fn misspelt_keys_suggest_the_right_one() {
    assert_rejected(
        &with_hidden(r#", "Activaton": "Relu""#),
        "Layers[1].Activaton",
        &[
            "unknown layer key `Activaton`",
            "did you mean `Activation`?",
        ],
    );
    assert_rejected(
        r#"{ "WeightData": "w.nc", "Layers": [ { "N": 1 } ] }"#,
        "WeightData",
        &[
            "unknown network key `WeightData`",
            "did you mean `WeightsData`?",
        ],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 1 } ], "ShuffleIndex": true }"#,
        "ShuffleIndex",
        &["did you mean `ShuffleIndices`?"],
    );
    let (path, message) = reject(&with_hidden(r#", "Colour": "blue""#));
    assert_eq!(path, "Layers[1].Colour");
    assert!(message.contains("unknown layer key `Colour`") && !message.contains("did you mean"));
    assert_rejected(
        r#"{ "Denoising": { "q": 0.2 }, "Layers": [ { "N": 1 } ] }"#,
        "Denoising.q",
        &["unknown Denoising key `q`"],
    );
    assert_rejected(
        &with_hidden(r#", "WeightInit": { "Sheme": "Gaussian" }"#),
        "Layers[1].WeightInit.Sheme",
        &["did you mean `Scheme`?"],
    );
}

#[test]
fn keys_dsstne_rejects_are_rejected() {
    for (key, value) in [
        ("L1Penalty", "0.1"),
        ("Recurrent", "true"),
        ("ErrorFunction", "\"L2\""),
        ("Transpose", "true"),
        ("Dimensions", "2"),
    ] {
        let (path, message) = reject(&with_hidden(&format!(r#", "{key}": {value}"#)));
        assert_eq!(path, format!("Layers[1].{key}"));
        assert!(
            message.contains(&format!("unknown layer key `{key}`")),
            "{message}"
        );
    }
    assert_rejected(
        &with_hidden(r#", "Kind": "Pooling""#),
        "Layers[1].Kind",
        &["unknown layer kind `Pooling`", "\"Type\": \"Pooling\""],
    );
    assert_rejected(
        &with_hidden(
            r#", "SharedWeights": { "InputLayer": "in", "SourceInputLayer": "in", "SourceOutputLayer": "h", "Transpose": true }"#,
        ),
        "Layers[1].SharedWeights.Transpose",
        &["did you mean `Transposed`?"],
    );
}

#[test]
fn wrong_types_are_rejected() {
    assert_rejected(
        &with_hidden(r#", "pDropout": "0.5""#),
        "Layers[1].pDropout",
        &["expected a number, found a string"],
    );
    assert_rejected(
        &with_hidden(r#", "Sparse": 1"#),
        "Layers[1].Sparse",
        &["expected a boolean", "found a number"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": "many" } ] }"#,
        "Layers[1].N",
        &["found the string \"many\""],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": 2.5 } ] }"#,
        "Layers[1].N",
        &["expected an integer, found 2.5"],
    );
    assert_rejected(
        &with_hidden(r#", "Source": 3"#),
        "Layers[1].Source",
        &["expected a layer name or an array of layer names, found a number"],
    );
    assert_rejected(
        r#"{ "Layers": 3 }"#,
        "Layers",
        &["expected an object or an array of objects"],
    );
    assert_rejected(r#"[1, 2]"#, "", &["expected an object, found an array"]);
}

#[test]
fn unknown_enum_values_list_the_accepted_ones() {
    assert_rejected(
        &with_hidden(r#", "Activation": "PRelu""#),
        "Layers[1].Activation",
        &[
            "unknown activation `PRelu`",
            "Sigmoid",
            "LeakyRectifiedLinear",
            "did you mean `Relu`?",
        ],
    );
    let (_, m) = reject(&with_hidden(
        r#", "Activation": "ParametricRectifiedLinear""#,
    ));
    assert!(m.contains("unknown activation"), "{m}");
    assert_rejected(
        r#"{ "ErrorFunction": "SMCE", "Layers": [ { "N": 1 } ] }"#,
        "ErrorFunction",
        &[
            "unknown error function `SMCE`",
            "ScaledMarginalCrossEntropy",
            "Cross Entropy",
        ],
    );
    assert_rejected(
        &with_hidden(r#", "WeightInit": { "Scheme": "He" }"#),
        "Layers[1].WeightInit.Scheme",
        &[
            "unknown weight initialisation scheme `He`",
            "Xavier",
            "SELU",
        ],
    );
    assert_rejected(
        r#"{ "Kind": "Recurrent", "Layers": [ { "N": 1 } ] }"#,
        "Kind",
        &[
            "unknown network kind `Recurrent`",
            "FeedForward, AutoEncoder",
        ],
    );
    assert_rejected(
        &with_hidden(r#", "Type": "Pooling", "Function": "Median""#),
        "Layers[1].Function",
        &[
            "unknown pooling function `Median`",
            "LocalResponseNormalization",
        ],
    );
}

#[test]
fn duplicate_layer_names_are_rejected() {
    assert_rejected(
        r#"{ "Layers": [ { "Name": "a", "N": 1 }, { "Name": "b", "N": 1 }, { "Name": "a", "N": 1 } ] }"#,
        "Layers[2].Name",
        &["duplicate layer name `a`", "Layers[0]"],
    );
    // An explicit name that collides with a later default name.
    assert_rejected(
        r#"{ "Layers": [ { "N": 1 }, { "Name": "Hidden2", "N": 1 }, { "N": 1 }, { "N": 1 } ] }"#,
        "Layers[2]",
        &[
            "duplicate layer name `Hidden2`",
            "default name",
            "Layers[1]",
        ],
    );
}

#[test]
fn bad_sizes_are_rejected() {
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": 0 } ] }"#,
        "Layers[1].N",
        &["expected a positive integer, found 0"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": -4 } ] }"#,
        "Layers[1].N",
        &["expected a positive integer, found -4"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": [10, 0] } ] }"#,
        "Layers[1].N[1]",
        &["expected a positive integer, found 0"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": [1, 2, 3, 4, 5] } ] }"#,
        "Layers[1].N",
        &["`N` has 5 dimensions; it must have 1 to 4"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10 }, { "N": [] } ] }"#,
        "Layers[1].N",
        &["`N` has 0 dimensions"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": 10, "DataSet": "input" }, { "N": "auto" }, { "N": 3 } ] }"#,
        "Layers[1].N",
        &["\"auto\" only on Input and Output layers", "a Hidden layer"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "N": "auto" }, { "N": 3 } ] }"#,
        "Layers[0].N",
        &["no `DataSet`"],
    );
}

#[test]
fn too_many_sources_are_rejected() {
    let layers = (0..5)
        .map(|i| format!(r#"{{ "Name": "i{i}", "Kind": "Input", "N": 1 }}"#))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"{{ "Layers": [ {layers}, {{ "Kind": "Output", "N": 1, "Source": ["i0", "i1", "i2", "i3", "i4"] }} ] }}"#
    );
    assert_rejected(&text, "Layers[5].Source", &["5 sources given", "at most 4"]);
    assert_rejected(
        &with_hidden(r#", "Source": ["in", "in"]"#),
        "Layers[1].Source[1]",
        &["listed twice"],
    );
    assert_rejected(
        &with_hidden(r#", "Source": []"#),
        "Layers[1].Source",
        &["at least one layer"],
    );
}

#[test]
fn keys_are_allowed_only_on_their_layer_kinds() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{ "N": 4, "DataSet": "x" }"#,
            "DataSet",
            "a Hidden layer (only on Input or Output layers)",
        ),
        (
            r#"{ "N": 4, "Kind": "Input", "Activation": "Relu" }"#,
            "Activation",
            "an Input layer",
        ),
        (
            r#"{ "N": 4, "Kind": "Input", "Source": "in" }"#,
            "Source",
            "an Input layer",
        ),
        (
            r#"{ "N": 4, "Kind": "Output", "BatchNormalization": true }"#,
            "BatchNormalization",
            "only on Hidden layers",
        ),
        (
            r#"{ "N": 4, "Kind": "Output", "SparsenessPenalty": { "p": 0.1 } }"#,
            "SparsenessPenalty",
            "an Output layer",
        ),
        (
            r#"{ "N": 4, "Kind": "Target", "WeightInit": { "Scale": 1 } }"#,
            "WeightInit",
            "a Target layer",
        ),
        (
            r#"{ "N": 4, "Kind": "Target", "DataSet": "x" }"#,
            "DataSet",
            "a Target layer",
        ),
        (
            r#"{ "N": 4, "Kind": "Input", "Skip": "in" }"#,
            "Skip",
            "an Input layer",
        ),
    ];
    for (layer, key, fragment) in cases {
        let text =
            format!(r#"{{ "Layers": [ {{ "Name": "in", "N": 4 }}, {layer}, {{ "N": 4 }} ] }}"#);
        assert_rejected(
            &text,
            &format!("Layers[1].{key}"),
            &[&format!("key `{key}` is not allowed on"), fragment],
        );
    }
    // Function needs a Pooling layer even on a Hidden layer.
    assert_rejected(
        &with_hidden(r#", "Function": "Max""#),
        "Layers[1].Function",
        &["only allowed on Pooling layers"],
    );
    // Target layers take the common keys and DSSTNE's non-Input keys.
    let d = parse(
        r#"{ "Layers": [ { "Name": "in", "N": 4 }, { "Kind": "Target", "Name": "t", "N": 4, "Sparse": true, "pDropout": 0.1, "Source": "in" }, { "N": 4 } ] }"#,
    );
    assert_eq!(d.layers[1].kind, LayerKind::Target);
}

#[test]
fn values_out_of_range_are_rejected() {
    assert_rejected(
        &with_hidden(r#", "pDropout": 1.0"#),
        "Layers[1].pDropout",
        &["in [0, 1)"],
    );
    assert_rejected(
        r#"{ "Denoising": { "p": -0.1 }, "Layers": [ { "N": 1 } ] }"#,
        "Denoising.p",
        &["in [0, 1)"],
    );
    assert_rejected(
        r#"{ "ScaledMarginalCrossEntropy": { "oneTarget": 1.5 }, "Layers": [ { "N": 1 } ] }"#,
        "ScaledMarginalCrossEntropy.oneTarget",
        &["in [0, 1]"],
    );
    assert_rejected(
        r#"{ "Version": 0.6, "Layers": [ { "N": 1 } ] }"#,
        "Version",
        &["too old", "0.7"],
    );
    assert_rejected(
        r#"{ "Decay": -1, "Layers": [ { "N": 1 } ] }"#,
        "Decay",
        &["≥ 0"],
    );
    assert_rejected(
        r#"{ "Maxout": { "k": 0 }, "Layers": [ { "N": 1 } ] }"#,
        "Maxout.k",
        &["positive integer"],
    );
    assert_rejected(
        &with_hidden(r#", "pDropout": 1e60"#),
        "Layers[1].pDropout",
        &["out of range"],
    );
}

#[test]
fn structural_problems_are_rejected() {
    assert_rejected(r#"{ "Name": "x" }"#, "Layers", &["missing key `Layers`"]);
    assert_rejected(r#"{ "Layers": [] }"#, "Layers", &["`Layers` is empty"]);
    assert_rejected(
        r#"{ "Name": "a", "name": "b", "Layers": [ { "N": 1 } ] }"#,
        "name",
        &["repeats `Name`"],
    );
    assert_rejected(
        r#"{ "Slope": 0.1, "RELUSlope": 0.2, "Layers": [ { "N": 1 } ] }"#,
        "Slope",
        &["repeats `RELUSlope`"],
    );
    assert_rejected(
        &with_hidden(r#", "SharedWeights": { "InputLayer": "in", "Transposed": true }"#),
        "Layers[1].SharedWeights",
        &["missing key `SourceInputLayer`, `SourceOutputLayer`"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "Name": "in", "N": 10 }, { "Name": "", "N": 4 } ] }"#,
        "Layers[1].Name",
        &["empty"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "Name": "a", "N": 4 }, { "Name": "b", "N": 4 },
            { "Kind": "Output", "Type": "Pooling", "Function": "DotProduct", "Source": "a" } ] }"#,
        "Layers[2].Source",
        &["at least 2 sources"],
    );
}

#[test]
fn malformed_json_reports_line_and_column() {
    let text = "{\n  \"Layers\": [\n    { \"N\": 1, }\n  ]\n}";
    match Descriptor::from_str(text, "bad.json") {
        Err(Error::Json {
            file,
            line,
            column,
            message,
        }) => {
            assert_eq!(file, Path::new("bad.json"));
            assert_eq!(line, 3);
            assert!(column > 0);
            assert!(!message.contains("at line"), "{message}");
        }
        other => panic!("expected Error::Json, got {other:?}"),
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("networks/does-not-exist.json");
    match Descriptor::from_file(&path) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn errors_display_file_path_and_message() {
    let err = Descriptor::from_str(&with_hidden(r#", "Activaton": "Relu""#), "nets/x.json")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "nets/x.json: Layers[1].Activaton: unknown layer key `Activaton`; did you mean `Activation`?"
    );
}

/// A key repeated in one object (serde_json would keep the last silently) is an error at the
/// repeated key's line.
#[test]
fn repeated_keys_are_rejected_at_their_line() {
    let text = "{ \"Layers\": [\n  { \"N\": 64,\n    \"N\": 32 } ] }";
    match Descriptor::from_str(text, "dup.json") {
        Err(Error::Json {
            file,
            line,
            message,
            ..
        }) => {
            assert_eq!(file, Path::new("dup.json"));
            assert_eq!(line, 3);
            assert!(message.contains("the key `N` appears twice"), "{message}");
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let err = Descriptor::from_str(r#"{ "Name": "a", "Name": "b", "Layers": [] }"#, "d.json");
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("`Name` appears twice"));
}

/// `Variational` (Moira's extension): an object on a Hidden layer, naming its log-variance
/// layer, with `Beta` ≥ 0 and a whole `AnnealSteps` ≥ 0.
#[test]
fn variational_settings_are_checked() {
    assert_rejected(
        &with_hidden(r#", "Variational": { "Beta": 0.1 }"#),
        "Layers[1].Variational",
        &["missing key `LogVariance`"],
    );
    assert_rejected(
        &with_hidden(r#", "Variational": { "LogVariance": "lv", "Beta": -1 }"#),
        "Layers[1].Variational.Beta",
        &[],
    );
    assert_rejected(
        &with_hidden(r#", "Variational": { "LogVariance": "lv", "AnnealSteps": 2.5 }"#),
        "Layers[1].Variational.AnnealSteps",
        &[],
    );
    assert_rejected(
        &with_hidden(r#", "Variational": { "LogVariance": "lv", "AnnealStep": 5 }"#),
        "Layers[1].Variational.AnnealStep",
        &["did you mean `AnnealSteps`?"],
    );
    assert_rejected(
        r#"{ "Layers": [ { "Name": "in", "N": 10 }, { "Name": "out", "N": 10,
              "Variational": { "LogVariance": "in" } } ] }"#,
        "Layers[1].Variational",
        &["not allowed on an Output layer"],
    );
    let d = parse(&with_hidden(
        r#", "Variational": { "LogVariance": "lv", "Beta": 0.5, "AnnealSteps": 0 }"#,
    ));
    let v = d.layers[1].variational.as_ref().unwrap();
    assert_eq!(
        (v.log_variance.as_str(), v.beta, v.anneal_steps),
        ("lv", 0.5, 0)
    );
}
