//! Running the tools under a real `mpirun` in the CLI tests: the launcher command (as root
//! when need be, oversubscribed), a time limit that turns a hang into a failure, and whether
//! MPI can be tested here at all.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Far above what these runs take; a hang fails the test instead of stalling the suite.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// How an `mpirun` ended.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Whether `mpirun` exists here; prints why not.
pub fn mpirun_found() -> bool {
    if Command::new("mpirun").arg("--version").output().is_err() {
        eprintln!("skipped: mpirun not found (install openmpi-bin)");
        return false;
    }
    true
}

/// `mpirun -np N --oversubscribe BIN ARGS`, started (stdout and stderr piped).
pub fn spawn(np: usize, bin: &str, args: &[&str]) -> Child {
    Command::new("mpirun")
        .args(["-np", &np.to_string(), "--oversubscribe", bin])
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts")
}

/// Waits for `child` (started at `start`) to end, killing it and failing after `TIMEOUT`.
pub fn wait(mut child: Child, start: Instant, what: &str) -> Outcome {
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
            panic!("{what} did not end within {TIMEOUT:?}: a rank hangs");
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

/// `mpirun -np N --oversubscribe BIN ARGS` to the end.
pub fn mpirun(np: usize, bin: &str, args: &[&str]) -> Outcome {
    let start = Instant::now();
    let child = spawn(np, bin, args);
    wait(child, start, &format!("mpirun -np {np} {bin} {args:?}"))
}
