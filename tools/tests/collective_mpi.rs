//! The MPI collectives in real processes: `collective-check` under `mpirun -np 2` and
//! `-np 4 --oversubscribe`, and the failure drills (a rank that reports an error, exits or
//! panics): every run must end, non-zero, within seconds. Skipped, with a message, when
//! `mpirun` is absent or the tools were built without the `mpi` feature.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_collective-check");
/// Far above the ~1 s these runs take; a hang fails the test instead of stalling the suite.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Whether MPI runs can be tested here; prints why not.
fn available() -> bool {
    let transport = Command::new(BIN).arg("--transport").output();
    if !transport.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "mpi") {
        eprintln!("skipped: collective-check was built without the `mpi` feature");
        return false;
    }
    if Command::new("mpirun").arg("--version").output().is_err() {
        eprintln!("skipped: mpirun not found (install openmpi-bin)");
        return false;
    }
    true
}

/// `mpirun -np N collective-check ARGS`, as root if need be, killed after `TIMEOUT`.
fn mpirun(np: usize, args: &[&str]) -> Outcome {
    let start = Instant::now();
    let mut child = Command::new("mpirun")
        .args(["-np", &np.to_string(), "--oversubscribe", BIN])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        let _ = out.read_to_string(&mut o);
        let _ = err.read_to_string(&mut e);
        (o, e)
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mpirun -np {np} {args:?} did not end within {TIMEOUT:?}: a rank hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let (stdout, stderr) = reader.join().unwrap();
    Outcome {
        code,
        stdout,
        stderr,
        elapsed,
    }
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
