//! The `trainer` (and the other tools) refusing what cannot work, before anything is written:
//! an output over an input, a conversion into a directory, numeric flags out of range, broken
//! graphs without data, sizes that cannot fit memory, files that cannot fit the disk.

mod common;
mod trainer_common;

use std::process::{Command, Output};

use trainer_common::*;

/// No tool writes an output over one of its inputs, whatever the spelling of the path (a
/// symbolic link, `./`), even with `--force`: each refuses naming both flags, and the input
/// is unchanged.
#[test]
fn no_output_replaces_an_input() {
    let f = Fixture::new();
    f.train_ae("model.nc", &["-e", "1"]);
    let bytes = |name: &str| std::fs::read(f.path(name)).unwrap();
    let (input, model) = (bytes("input.nc"), bytes("model.nc"));
    std::os::unix::fs::symlink(f.path("input.nc"), f.path("link.nc")).unwrap();
    let refused = |out: &Output, flags: [&str; 2]| {
        let e = stderr(out);
        assert!(!out.status.success(), "{e}");
        assert!(
            e.contains("would replace an input") && flags.iter().all(|fl| e.contains(fl)),
            "{e}"
        );
    };
    // trainer: -n over the input (through a link), the metrics log over the output data.
    let base = [
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-e",
        "1",
        "--force",
    ];
    let o = f.trainer(&[&base[..], &["-n", "link.nc"]].concat());
    refused(&o, ["-n", "-i/-o"]);
    let o = f.trainer(&[&base[..], &["-n", "m2.nc", "--metrics-log", "./output.nc"]].concat());
    refused(&o, ["--metrics-log", "-i/-o"]);
    let o = f.trainer(&[&base[..], &["-n", "m3.nc", "--validation", "held.nc"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = f.trainer(&[&base[..], &["-n", "./held.nc", "--validation", "held.nc"]].concat());
    refused(&o, ["-n", "--validation"]);
    // predictor: -s over the model, over the input.
    let predictor = |s: &str| {
        Command::new(env!("CARGO_BIN_EXE_predictor"))
            .current_dir(f.0.path())
            .args([
                "-n", "model.nc", "-i", "input.nc", "-k", "3", "-s", s, "--quiet",
            ])
            .output()
            .unwrap()
    };
    refused(&predictor("model.nc"), ["-s", "-n"]);
    refused(&predictor("link.nc"), ["-s", "-i"]);
    // converter: -o over its input text or an index, the samples index over the input.
    let convert = |extra: &[&str]| {
        Command::new(CONVERTER)
            .current_dir(f.0.path())
            .args(["--format", "lists", "-d", "x", "-i", "train.txt"])
            .args(extra)
            .output()
            .unwrap()
    };
    refused(
        &convert(&["-o", "train.txt", "-f", "features.idx", "-s", "samples.idx"]),
        ["-o", "-i"],
    );
    refused(
        &convert(&["-o", "x.nc", "-f", "features.idx", "-s", "train.txt"]),
        ["-s", "-i"],
    );
    assert_eq!(bytes("input.nc"), input);
    assert_eq!(bytes("model.nc"), model);
}

/// A conversion whose output is a directory fails before any index changes.
#[test]
fn a_conversion_into_a_directory_changes_no_index() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("dir")).unwrap();
    let (features, samples) = (
        std::fs::read(f.path("features.idx")).unwrap(),
        std::fs::read(f.path("samples.idx")).unwrap(),
    );
    f.write("more.txt", "new-user 9001 9002\n");
    let o = Command::new(CONVERTER)
        .current_dir(f.0.path())
        .args([
            "--format", "lists", "-d", "x", "-i", "more.txt", "-o", "dir",
        ])
        .args(["-f", "features.idx", "-s", "samples.idx", "-m"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read(f.path("features.idx")).unwrap(), features);
    assert_eq!(std::fs::read(f.path("samples.idx")).unwrap(), samples);
}

/// Numeric flags outside their ranges are refused naming the flag, before anything is read
/// or written.
#[test]
fn numeric_flags_out_of_range_are_refused() {
    let f = Fixture::new();
    let base = [
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "m.nc",
    ];
    for (flag, value) in [
        ("--alpha", "nan"),
        ("--alpha", "inf"),
        ("--alpha", "-1"),
        ("--lambda", "-0.1"),
        ("--lambda1", "nan"),
        ("--mu", "1"),
        ("--mu1", "-0.5"),
        ("--alpha-multiplier", "0"),
        ("-e", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let o = f.trainer(&[&base[..], &[arg.as_str()]].concat());
        assert!(!o.status.success(), "{arg} was accepted");
        assert!(stderr(&o).contains(flag), "{arg}: {}", stderr(&o));
        assert!(!f.path("m.nc").exists());
    }
}

/// `--check` without data runs the graph's checks (a source that is no layer, a cycle, no
/// Output layer), naming the descriptor file; every example network passes.
#[test]
fn check_without_data_refuses_broken_graphs_naming_the_file() {
    let f = Fixture::new();
    let layers = |hidden: &str, output: bool| {
        format!(
            r#"{{ "Kind": "FeedForward", "Layers": [
              {{ "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true }},
              {hidden}{}] }}"#,
            if output {
                r#", { "Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Source": "H" }"#
            } else {
                ""
            }
        )
    };
    for (name, json, want) in [
        (
            "nosource.json",
            layers(
                r#"{ "Name": "H", "Kind": "Hidden", "N": 8, "Source": "Nope" }"#,
                true,
            ),
            "`Nope` is not a layer",
        ),
        (
            "cycle.json",
            layers(
                r#"{ "Name": "H", "Kind": "Hidden", "N": 8, "Source": "G" },
                   { "Name": "G", "Kind": "Hidden", "N": 8, "Source": "H" }"#,
                true,
            ),
            "cycle",
        ),
        (
            "nooutput.json",
            layers(
                r#"{ "Name": "H", "Kind": "Hidden", "N": 8, "Source": "Input" }"#,
                false,
            ),
            "no Output layer",
        ),
    ] {
        f.write(name, &json);
        let o = f.trainer(&["--check", name]);
        let e = stderr(&o);
        assert!(!o.status.success(), "{name} passed --check");
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    for net in example_networks() {
        let o = f.trainer(&["--check", net.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", net.display(), stderr(&o));
    }
}

/// Sizes that cannot fit are refused before anything is allocated, naming the largest part
/// and the bytes (no abort); a batch larger than the data is one minibatch of all of it.
#[test]
fn sizes_that_cannot_fit_are_refused_and_huge_batches_shrink_to_the_data() {
    let f = Fixture::new();
    f.write(
        "huge.json",
        &NET.replace("INPUT", "input")
            .replace("OUTPUT", "output")
            .replace(r#""N": 32"#, r#""N": 100000000"#),
    );
    let o = f.trainer(&[
        "huge.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "h.nc",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("GiB") && e.contains("`Hidden`"), "{e}");
    assert!(!f.path("h.nc").exists());
    let base = ["net.json", "-i", "input.nc", "-o", "output.nc", "-e", "1"];
    let o = f.trainer(&[&base[..], &["-n", "b.nc", "-b", "4000000000"]].concat());
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("-b 4000000000 exceeds the 300 examples"), "{e}");
    // The same model as a batch of exactly the data.
    let o = f.trainer(&[&base[..], &["-n", "c.nc", "-b", "300"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(params(&f.path("b.nc")), params(&f.path("c.nc")));
}

/// A run whose files do not fit the free space of their file system is refused before it
/// trains, naming the directory and the sizes (a 64 KiB tmpfs; skipped where mounting is not
/// allowed).
#[test]
fn a_run_whose_files_cannot_fit_is_refused_before_training() {
    let f = Fixture::new();
    let tiny = f.path("tiny");
    std::fs::create_dir(&tiny).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&tiny)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let o = f.trainer(&[
        "net.json",
        "-i",
        "input.nc",
        "-o",
        "output.nc",
        "-n",
        "tiny/m.nc",
    ]);
    let _ = Command::new("umount").arg(&tiny).status();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("tiny") && e.contains("MiB free"), "{e}");
    assert!(!e.contains("epoch 0"), "it trained first: {e}");
}
