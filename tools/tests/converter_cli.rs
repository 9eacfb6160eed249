//! The `converter` binary: DSSTNE's generateNetCDF flags, an input/output pair sharing a
//! samples index, warnings on stderr (capped), `error: ...` and a non-zero exit on failure.

use std::path::Path;
use std::process::{Command, Output};

use moira::dataset::index::Index;
use moira::dataset::io::netcdf::read;

fn converter(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_converter"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn input_and_output_datasets_share_the_samples_index() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("in.txt"), "u1\ti1:i2\nu2\ti2:i3\nu3\ti1\n").unwrap();
    std::fs::write(d.join("out.txt"), "u2\tj1,2.5\nu3\tj2,1\nu1\tj1,4\n").unwrap();
    let run_in = converter(
        d,
        &[
            "-d",
            "gl_input",
            "-i",
            "in.txt",
            "-o",
            "in.nc",
            "-f",
            "features_in",
            "-s",
            "samples",
            "-c",
        ],
    );
    assert!(run_in.status.success(), "{}", stderr(&run_in));
    assert!(
        stderr(&run_in).is_empty(),
        "quiet when not a terminal: {}",
        stderr(&run_in)
    );
    let run_out = converter(
        d,
        &[
            "--dataset",
            "gl_output",
            "--input",
            "out.txt",
            "--output",
            "out.nc",
            "--features",
            "features_out",
            "--samples",
            "samples",
            "--create-features",
            "--type",
            "analog",
            "--exact-width",
        ],
    );
    assert!(run_out.status.success(), "{}", stderr(&run_out));

    let input = read(&d.join("in.nc")).unwrap().remove(0);
    let output = read(&d.join("out.nc")).unwrap().remove(0);
    assert_eq!(input.shape_parts(), ("gl_input".into(), vec![128], 3, true));
    assert_eq!(output.shape_parts(), ("gl_output".into(), vec![2], 3, true));
    assert!(input.is_boolean() && !output.is_boolean());
    // Rows are aligned: row r of both files is the sample with index r.
    let samples = Index::load(&d.join("samples")).unwrap();
    let out_features = Index::load(&d.join("features_out")).unwrap().labels();
    let csr = output.sparse_data().unwrap();
    let u1 = samples.get(b"u1").unwrap() as usize;
    let (cols, vals) = csr.row(u1);
    assert_eq!(out_features[cols[0] as usize], "j1");
    assert_eq!(vals.unwrap(), &[4.0]);
    let u2 = samples.get(b"u2").unwrap() as usize;
    assert_eq!(input.sparse_data().unwrap().row(u2).0.len(), 2);
    assert_eq!(csr.row(u2).1.unwrap(), &[2.5]);
}

#[test]
fn create_and_merge_together_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "u\ta\n").unwrap();
    let out = converter(
        dir.path(),
        &[
            "-d", "x", "-i", "in.txt", "-o", "o.nc", "-f", "f", "-s", "s", "-c", "-m",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error:"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(dir.path()), ["in.txt"]);
}

#[test]
fn failures_print_error_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("in.txt"), "u1\ta,1\nu2\tb,oops\n").unwrap();
    let args = [
        "-d", "x", "-i", "in.txt", "-o", "o.nc", "-f", "f", "-s", "s",
    ];
    let out = converter(d, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: invalid argument `features index`: f does not exist"),
        "{}",
        stderr(&out)
    );
    let mut analog = args.to_vec();
    analog.extend(["-c", "-t", "analog"]);
    let out = converter(d, &analog);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: in.txt:2: value `oops` of feature `b` is not a finite number"
    );
    assert_eq!(files(d), ["in.txt"]);
    let out = converter(
        d,
        &[
            "-d",
            "x",
            "-i",
            "in.txt",
            "-o",
            "o.nc",
            "-f",
            "f",
            "-s",
            "s",
            "--min-rating",
            "3",
        ],
    );
    assert!(
        stderr(&out).contains("--format csv and parquet only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn skipped_lines_are_warned_with_file_and_line_then_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("u0\ta\n");
    for i in 1..=15 {
        text.push_str(&format!("broken line {i}\n"));
    }
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let out = converter(
        dir.path(),
        &[
            "-d", "x", "-i", "in.txt", "-o", "o.nc", "-f", "f", "-s", "s", "-c",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: in.txt:2: no TAB after the sample name; line skipped"),
        "{err}"
    );
    assert!(
        err.contains("in.txt:11:") && !err.contains("in.txt:12:"),
        "{err}"
    );
    assert!(err.contains("5 more warning(s) like this one"), "{err}");
    assert!(dir.path().join("o.nc").exists());
}

#[test]
fn unknown_features_of_a_fixed_index_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("f"), "a\t0\n").unwrap();
    std::fs::write(d.join("in.txt"), "u\ta:b:c\n").unwrap();
    let out = converter(
        d,
        &[
            "-d", "x", "-i", "in.txt", "-o", "o.nc", "-f", "f", "-s", "s", "-v",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: 2 entries dropped"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("1 examples x width 128"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_documents_width_rounding_and_fatal_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_converter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "multiple of 128",
        "--exact-width",
        "Fatal errors",
        "Skipped with a warning",
        "-c, --create-features",
    ] {
        assert!(
            help.contains(needle),
            "`{needle}` missing from --help:\n{help}"
        );
    }
}

/// A lists file whose tail is NUL bytes (what a crash leaves) is refused naming the file and
/// the line; nothing is written.
#[test]
fn nul_bytes_are_not_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = b"u1 1 2 3\nu2 4 5\n".to_vec();
    text.extend([0u8; 4096]);
    std::fs::write(dir.path().join("lists.txt"), text).unwrap();
    let o = converter(
        dir.path(),
        &[
            "--format",
            "lists",
            "-d",
            "x",
            "-i",
            "lists.txt",
            "-o",
            "x.nc",
            "-f",
            "f",
            "-s",
            "s",
            "-c",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("lists.txt:3") && e.contains("control character"),
        "{e}"
    );
    assert_eq!(files(dir.path()), ["lists.txt"]);
}

/// A conversion into a full file system names the cause (NetCDF itself says "Permission
/// denied") and leaves nothing behind (a 64 KiB tmpfs, filled; skipped where mounting is not
/// allowed).
#[test]
fn a_full_disk_is_named_as_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lists.txt"), "u1 1 2 3\nu2 4 5\n").unwrap();
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&full)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    // Fill it (the write stops at the end of the space).
    let _ = std::fs::write(full.join("filler"), vec![0u8; 1 << 20]);
    let o = converter(
        dir.path(),
        &[
            "--format",
            "lists",
            "-d",
            "x",
            "-i",
            "lists.txt",
            "-o",
            "full/x.nc",
            "-f",
            "f",
            "-s",
            "s",
            "-c",
        ],
    );
    let listing = files(&full);
    let _ = std::process::Command::new("umount").arg(&full).status();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing, ["filler"]);
}
