//! The MPI collectives in real processes: `collective-check` under `mpirun -np 2` and
//! `-np 4 --oversubscribe`, and the failure drills (a rank that reports an error, exits or
//! panics): every run must end, non-zero, within seconds. Skipped, with a message, when
//! `mpirun` is absent or the tools were built without the `mpi` feature.

mod mpi_common;

use std::process::Command;
use std::time::Duration;

use mpi_common::Outcome;

const BIN: &str = env!("CARGO_BIN_EXE_collective-check");

/// Whether MPI runs can be tested here; prints why not.
fn available() -> bool {
    let transport = Command::new(BIN).arg("--transport").output();
    if !transport.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "mpi") {
        eprintln!("skipped: collective-check was built without the `mpi` feature");
        return false;
    }
    mpi_common::mpirun_found()
}

/// `mpirun -np N collective-check ARGS`.
fn mpirun(np: usize, args: &[&str]) -> Outcome {
    mpi_common::mpirun(np, BIN, args)
}

#[test]
fn every_collective_is_right_on_2_and_4_processes() {
    if !available() {
        return;
    }
    for np in [2, 4] {
        let o = mpirun(np, &[]);
        assert_eq!(o.code, Some(0), "np {np}: {}\n{}", o.stdout, o.stderr);
        for r in 0..np {
            let line = format!("rank {r} of {np}: all collectives ok");
            assert!(
                o.stdout.contains(&line),
                "np {np}: no `{line}` in\n{}",
                o.stdout
            );
        }
    }
}

#[test]
fn a_reported_failure_reaches_every_rank() {
    if !available() {
        return;
    }
    for np in [2, 4] {
        let o = mpirun(np, &["--fail-rank", "1"]);
        assert_ne!(o.code, Some(0), "np {np}");
        assert!(o.elapsed < Duration::from_secs(30), "{:?}", o.elapsed);
        for r in 0..np {
            let expect = if r == 1 {
                format!("error: rank 1 of {np}: invalid data: simulated failure on rank 1")
            } else {
                format!(
                    "error: rank {r} of {np}: rank 1 of {np} failed: invalid data: simulated failure on rank 1"
                )
            };
            assert!(o.stderr.contains(&expect), "no `{expect}` in\n{}", o.stderr);
        }
    }
}

#[test]
fn a_rank_that_exits_or_panics_stops_the_job() {
    if !available() {
        return;
    }
    for (flag, code) in [("--exit-rank", 3), ("--panic-rank", 101)] {
        let o = mpirun(4, &[flag, "2"]);
        assert_eq!(o.code, Some(code), "{flag}: {}", o.stderr);
        assert!(
            o.elapsed < Duration::from_secs(30),
            "{flag}: {:?}",
            o.elapsed
        );
        assert!(
            !o.stdout.contains("all collectives ok"),
            "{flag}: {}",
            o.stdout
        );
    }
    let o = mpirun(2, &["--panic-rank", "1"]);
    assert!(
        o.stderr.contains("simulated panic on rank 1"),
        "{}",
        o.stderr
    );
}
