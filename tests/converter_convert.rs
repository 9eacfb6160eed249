//! The generateNetCDF pipeline as a library: text → NetCDF → read back, index handling,
//! row alignment through a shared samples index, and bad inputs (fatal with `file:line`,
//! nothing written).

use std::path::{Path, PathBuf};

use moira::dataset::convert::{
    convert, ConvertOptions, ConvertReport, FeatureIndexMode, InputFormat, ValueType,
};
use moira::dataset::index::Index;
use moira::dataset::io::netcdf::read;
use moira::dataset::Dataset;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
    fn options(&self, input: &str, output: &str) -> ConvertOptions {
        ConvertOptions {
            dataset_name: "input".into(),
            input: self.path(input),
            output: self.path(output),
            features_index: self.path("features.idx"),
            samples_index: self.path("samples.idx"),
            feature_mode: FeatureIndexMode::Create,
            value_type: ValueType::Indicator,
            format: InputFormat::Text,
            exact_width: false,
            l2_normalize: false,
        }
    }
}

fn run(o: &ConvertOptions) -> moira::Result<(ConvertReport, Dataset)> {
    let mut bytes = 0;
    let report = convert(o, &mut |n| bytes += n)?;
    assert_eq!(bytes, report.bytes);
    let mut all = read(&o.output)?;
    assert_eq!(all.len(), 1);
    Ok((report, all.remove(0)))
}

/// The rows of a dataset as `(sample label, [(feature label, value)])`, through the indexes.
fn labelled(ds: &Dataset, samples: &Path, features: &Path) -> Vec<(String, Vec<(String, f32)>)> {
    let s = Index::load(samples).unwrap().labels();
    let f = Index::load(features).unwrap().labels();
    let csr = ds.sparse_data().unwrap();
    (0..csr.n_rows())
        .map(|r| {
            let (cols, vals) = csr.row(r);
            let entries = cols
                .iter()
                .enumerate()
                .map(|(i, &c)| (f[c as usize].clone(), vals.map_or(1.0, |v| v[i])))
                .collect();
            (s[r].clone(), entries)
        })
        .collect()
}

const TEXT: &str = "alice\tm1,5:m2,3.5\nbob\tm2,1:m3,4\ncarol\tm1,2\n";

#[test]
fn text_round_trips_in_both_modes_and_widths() {
    let dir = Dir::new();
    dir.write("in.txt", TEXT);
    let mut o = dir.options("in.txt", "ind.nc");
    let (report, ds) = run(&o).unwrap();
    assert_eq!(
        (report.examples, report.features, report.width, report.nnz),
        (3, 3, 128, 5)
    );
    assert_eq!(ds.shape_parts(), ("input".into(), vec![128], 3, true));
    assert!(ds.is_boolean());
    let rows = labelled(&ds, &o.samples_index, &o.features_index);
    assert_eq!(
        rows[1],
        ("bob".into(), vec![("m2".into(), 1.0), ("m3".into(), 1.0)])
    );

    o.output = dir.path("analog.nc");
    o.value_type = ValueType::Analog;
    o.exact_width = true;
    o.feature_mode = FeatureIndexMode::Existing;
    let (report, ds) = run(&o).unwrap();
    assert_eq!(
        (report.width, report.new_samples, report.new_features),
        (3, 0, 0)
    );
    assert!(!report.samples_index_written && !report.features_index_written);
    assert_eq!(ds.attributes().0, 1);
    let rows = labelled(&ds, &o.samples_index, &o.features_index);
    assert_eq!(
        rows[0],
        ("alice".into(), vec![("m1".into(), 5.0), ("m2".into(), 3.5)])
    );
    assert_eq!(rows[2], ("carol".into(), vec![("m1".into(), 2.0)]));
}

#[test]
fn a_shared_samples_index_keeps_input_and_output_rows_aligned() {
    let dir = Dir::new();
    dir.write("in.txt", "u1\ta:b\nu2\tb\nu3\tc\n");
    // The output text lists the users in another order, one of them missing, one new.
    dir.write("out.txt", "u3\tx\nu4\ty\nu1\tz\n");
    let input = dir.options("in.txt", "in.nc");
    let mut output = dir.options("out.txt", "out.nc");
    output.dataset_name = "output".into();
    output.features_index = dir.path("features_out.idx");
    let (_, ds_in) = run(&input).unwrap();
    let (report, ds_out) = run(&output).unwrap();
    assert_eq!(
        (report.examples, report.new_samples, report.empty_rows),
        (4, 1, 1)
    );
    let rows_in = labelled(&ds_in, &input.samples_index, &input.features_index);
    let rows_out = labelled(&ds_out, &output.samples_index, &output.features_index);
    let names_out: Vec<&str> = rows_out.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names_out, ["u1", "u2", "u3", "u4"]);
    for (a, b) in rows_in.iter().zip(&rows_out) {
        assert_eq!(a.0, b.0, "row-aligned");
    }
    assert_eq!(rows_out[0].1, vec![("z".into(), 1.0)]);
    assert!(rows_out[1].1.is_empty());
    assert_eq!(rows_out[2].1, vec![("x".into(), 1.0)]);
}

#[test]
fn merge_adds_features_and_a_fixed_index_counts_what_it_drops() {
    let dir = Dir::new();
    dir.write("a.txt", "u1\tf1:f2\n");
    dir.write("b.txt", "u2\tf2:f3:f4\n");
    run(&dir.options("a.txt", "a.nc")).unwrap();
    let mut o = dir.options("b.txt", "b.nc");
    o.feature_mode = FeatureIndexMode::Existing;
    let (report, ds) = run(&o).unwrap();
    assert_eq!(report.stats.unknown_features, 2);
    assert_eq!((report.nnz, report.features), (1, 2));
    assert_eq!(ds.examples(), 2);
    o.feature_mode = FeatureIndexMode::Merge;
    let (report, _) = run(&o).unwrap();
    assert_eq!(
        (report.new_features, report.features, report.nnz),
        (2, 4, 3)
    );
    assert_eq!(
        Index::load(&o.features_index).unwrap().labels(),
        ["f1", "f2", "f3", "f4"]
    );
}

#[test]
fn dsstne_text_quirks_are_skipped_and_counted() {
    let dir = Dir::new();
    dir.write("in.txt", "u1\ta,1,2:b\n\nno tab here\nu2\t::c\nu1\td\n");
    let mut o = dir.options("in.txt", "out.nc");
    o.value_type = ValueType::Analog;
    let (report, ds) = run(&o).unwrap();
    let s = &report.stats;
    assert_eq!(
        (
            s.lines,
            s.skipped_lines,
            s.extra_values,
            s.duplicate_samples
        ),
        (5, 1, 1, 1)
    );
    let rows = labelled(&ds, &o.samples_index, &o.features_index);
    assert_eq!(rows[0], ("u1".into(), vec![("d".into(), 0.0)]));
    assert_eq!(rows[1], ("u2".into(), vec![("c".into(), 0.0)]));
}

/// Runs a conversion that must fail; checks the message and that the directory still
/// holds exactly `before` (no output, no temporary file, no index rewritten).
fn fails(dir: &Dir, o: &ConvertOptions, expected: &str) {
    let before = dir.files();
    let index_texts: Vec<Option<String>> = [&o.features_index, &o.samples_index]
        .iter()
        .map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let err = convert(o, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains(expected), "expected `{expected}` in `{err}`");
    assert_eq!(dir.files(), before, "nothing may be written");
    let after: Vec<Option<String>> = [&o.features_index, &o.samples_index]
        .iter()
        .map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert_eq!(after, index_texts);
}

#[test]
fn bad_inputs_are_fatal_with_file_and_line_and_write_nothing() {
    let dir = Dir::new();
    let input = dir.write("in.txt", "u1\ta,1\nu2\tb,x\n");
    let mut o = dir.options("in.txt", "out.nc");
    o.value_type = ValueType::Analog;
    fails(
        &dir,
        &o,
        &format!("{}:2: value `x` of feature `b`", input.display()),
    );

    // Invalid UTF-8.
    std::fs::write(&input, b"u1\ta\nu2\t\xfe\n").unwrap();
    fails(&dir, &o, "in.txt:2: not valid UTF-8");

    // Bad index lines: wrong field count, duplicate label.
    dir.write("in.txt", "u1\ta\n");
    let features = dir.write("features.idx", "a\t0\nb 1\n");
    o.feature_mode = FeatureIndexMode::Merge;
    fails(
        &dir,
        &o,
        &format!("{}:2: expected `label<TAB>index`", features.display()),
    );
    dir.write("features.idx", "a\t0\nb\t1\na\t2\n");
    fails(&dir, &o, "features.idx:3: duplicate label `a`");
    let samples = dir.write("samples.idx", "u1\t0\nu2\tzero\n");
    dir.write("features.idx", "a\t0\n");
    fails(&dir, &o, &format!("{}:2: index `zero`", samples.display()));
    std::fs::remove_file(&samples).unwrap();

    // A missing features index without -c.
    std::fs::remove_file(&features).unwrap();
    o.feature_mode = FeatureIndexMode::Existing;
    fails(&dir, &o, "features.idx does not exist: create it with -c");

    // Nothing left to write: every feature unknown to a fixed index.
    dir.write("features.idx", "zz\t0\n");
    fails(&dir, &o, "no entries to write");

    // A missing input.
    o.input = dir.path("nope.txt");
    fails(&dir, &o, "nope.txt");

    // The output must not overwrite an index.
    o.input = dir.path("in.txt");
    o.output = dir.path("features.idx");
    fails(&dir, &o, "is also the features index");
}
