//! `collective-check`: runs every collective of `moira::collective` on the ranks it was started
//! with (`mpirun -np N collective-check`) and checks each result against what it must be for
//! N ranks; prints `rank R of N: all collectives ok` and exits 0, or exits 1 on every rank.
//!
//! Failure drills (for the tests of the failure protocol):
//! - `--fail-rank R`: rank R reports an error at a sync point; every rank exits 1 with R's message;
//! - `--exit-rank R`: rank R exits with code 3 while the others wait in a barrier (mpirun must
//!   stop them);
//! - `--panic-rank R`: rank R panics while the others wait (the panic aborts the job).
//!
//! `--transport` prints `mpi` or `local` (a build without the `mpi` feature runs one rank).

use anyhow::{ensure, Result};
use clap::Parser;
use moira::collective::{sum_fixed, Collective, ReduceOp};
use moira::ops::fixed::to_fixed;

#[derive(Parser)]
#[command(
    name = "collective-check",
    version,
    about = "Check Moira's collectives on the ranks of this run"
)]
struct Args {
    /// Print the transport (`mpi` or `local`) and exit.
    #[arg(long)]
    transport: bool,
    /// This rank reports an error at the first sync point.
    #[arg(long, value_name = "R")]
    fail_rank: Option<usize>,
    /// This rank exits (code 3) while the others wait in a barrier.
    #[arg(long, value_name = "R")]
    exit_rank: Option<usize>,
    /// This rank panics while the others wait in a barrier.
    #[arg(long, value_name = "R")]
    panic_rank: Option<usize>,
}

fn main() {
    let args = Args::parse();
    #[cfg(feature = "mpi")]
    {
        if args.transport {
            println!("mpi");
            return;
        }
        let comm = match moira::collective::Mpi::init() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        };
        comm.abort_on_panic();
        let result = run(&comm, &args);
        finish(comm, result);
    }
    #[cfg(not(feature = "mpi"))]
    {
        if args.transport {
            println!("local");
            return;
        }
        let comm = moira::collective::Local;
        let result = run(&comm, &args);
        finish(comm, result);
    }
}

/// Reports the outcome. Every error here came through `check`, so all ranks fail together:
/// each prints its message, then waits at a barrier for the others to have printed theirs
/// (mpirun stops the job as soon as one rank exits non-zero), finalises MPI and exits 1.
fn finish<C: Collective>(comm: C, result: Result<()>) {
    let (rank, size) = (comm.rank(), comm.size());
    match result {
        Ok(()) => {
            let line = format!("rank {rank} of {size}: all collectives ok\n");
            let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
        }
        Err(e) => {
            // One write, so that the ranks' lines do not interleave in mpirun's output.
            let line = format!("error: rank {rank} of {size}: {e:#}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            let _ = comm.barrier();
            drop(comm);
            std::process::exit(1);
        }
    }
}

fn run<C: Collective>(comm: &C, args: &Args) -> Result<()> {
    let rank = comm.rank();
    if args.exit_rank == Some(rank) {
        std::process::exit(3);
    }
    if args.panic_rank == Some(rank) {
        panic!("simulated panic on rank {rank}");
    }
    if args.exit_rank.is_some() || args.panic_rank.is_some() {
        // The failed rank never arrives: only the launcher can end this wait.
        comm.barrier()?;
    }
    let local = match args.fail_rank {
        Some(r) if r == rank => Err(moira::Error::InvalidData(format!(
            "simulated failure on rank {rank}"
        ))),
        _ => Ok(()),
    };
    comm.check(local)?;
    // Every check runs on every rank; a mismatch fails all of them at the final sync point.
    let checks = checks(comm);
    comm.check(checks.map_err(|e| moira::Error::InvalidData(format!("{e:#}"))))?;
    Ok(())
}

fn checks<C: Collective>(comm: &C) -> Result<()> {
    let (rank, size) = (comm.rank(), comm.size());
    comm.barrier()?;

    // all-gather of uneven parts.
    let counts: Vec<usize> = (0..size).map(|r| r % 3 + 1).collect();
    let mine: Vec<f32> = (0..counts[rank]).map(|i| (rank * 10 + i) as f32).collect();
    let mut all = vec![0.0f32; counts.iter().sum()];
    comm.all_gather(&mine, &counts, &mut all)?;
    let expect: Vec<f32> = (0..size)
        .flat_map(|r| (0..counts[r]).map(move |i| (r * 10 + i) as f32))
        .collect();
    ensure!(all == expect, "all_gather: {all:?}, expected {expect:?}");
    let (varying, lengths) = comm.all_gather_varying(&mine)?;
    ensure!(varying == expect && lengths == counts, "all_gather_varying");

    // all-to-all with uneven segments (some empty), each value naming sender, receiver, place.
    let count = |from: usize, to: usize| {
        if (from + to) % 3 == 2 {
            0
        } else {
            from + to + 1
        }
    };
    let value = |from: usize, to: usize, k: usize| (from * 10_000 + to * 100 + k) as u32;
    let send_counts: Vec<usize> = (0..size).map(|q| count(rank, q)).collect();
    let recv_counts: Vec<usize> = (0..size).map(|q| count(q, rank)).collect();
    let send: Vec<u32> = (0..size)
        .flat_map(|q| (0..count(rank, q)).map(move |k| value(rank, q, k)))
        .collect();
    let mut recv = vec![0u32; recv_counts.iter().sum()];
    comm.all_to_all(&send, &send_counts, &mut recv, &recv_counts)?;
    let expect: Vec<u32> = (0..size)
        .flat_map(|q| (0..count(q, rank)).map(move |k| value(q, rank, k)))
        .collect();
    ensure!(recv == expect, "all_to_all: {recv:?}, expected {expect:?}");

    // broadcast from every root.
    for root in 0..size {
        let mut buf = [rank as i64, 7, -(rank as i64)];
        comm.broadcast(root, &mut buf)?;
        ensure!(
            buf == [root as i64, 7, -(root as i64)],
            "broadcast from {root}: {buf:?}"
        );
    }

    // all-reduce: sums (exact on these values), wrapping integers, i128, total-order max.
    let n = size as i64;
    let tri = n * (n - 1) / 2;
    let mut f = [rank as f32 + 0.5];
    comm.all_reduce(&mut f, ReduceOp::Sum)?;
    ensure!(f == [tri as f32 + 0.5 * n as f32], "f32 sum: {f:?}");
    let mut d = [rank as f64 * 0.25];
    comm.all_reduce(&mut d, ReduceOp::Sum)?;
    ensure!(d == [tri as f64 * 0.25], "f64 sum: {d:?}");
    let mut i = [i64::MAX, rank as i64 - 2];
    comm.all_reduce(&mut i, ReduceOp::Sum)?;
    ensure!(
        i == [i64::MAX.wrapping_mul(n), tri - 2 * n],
        "i64 sum: {i:?}"
    );
    let mut w = [i128::MAX - rank as i128, -(1i128 << 100) * rank as i128];
    comm.all_reduce(&mut w, ReduceOp::Sum)?;
    let w0 = (0..size as i128).fold(0i128, |a, r| a.wrapping_add(i128::MAX - r));
    ensure!(w == [w0, -(1i128 << 100) * tri as i128], "i128 sum: {w:?}");
    let last = rank + 1 == size;
    let mut m = [-(rank as f32), if last { f32::NAN } else { 1.0 }, -0.0];
    if rank == 0 {
        m[2] = 0.0;
    }
    comm.all_reduce(&mut m, ReduceOp::Max)?;
    ensure!(
        m[0] == 0.0 && m[1].is_nan() && m[2].to_bits() == 0,
        "f32 max: {m:?}"
    );
    let mut u = [rank as u64 + 1];
    comm.all_reduce(&mut u, ReduceOp::Max)?;
    ensure!(u == [size as u64], "u64 max: {u:?}");

    // reduce-scatter with uneven counts (one rank may get nothing).
    let counts: Vec<usize> = (0..size).map(|r| if r == 1 { 0 } else { r + 2 }).collect();
    let total: usize = counts.iter().sum();
    let offset: usize = counts[..rank].iter().sum();
    let send: Vec<f32> = (0..total).map(|i| (i * (rank + 1)) as f32).collect();
    let mut recv = vec![0.0f32; counts[rank]];
    comm.reduce_scatter(&send, &counts, &mut recv, ReduceOp::Sum)?;
    let factor: usize = (1..=size).sum();
    let expect: Vec<f32> = (offset..offset + counts[rank])
        .map(|i| (i * factor) as f32)
        .collect();
    ensure!(
        recv == expect,
        "f32 reduce_scatter: {recv:?}, expected {expect:?}"
    );
    let send: Vec<i64> = (0..total).map(|i| -(i as i64) - rank as i64).collect();
    let mut recv = vec![0i64; counts[rank]];
    comm.reduce_scatter(&send, &counts, &mut recv, ReduceOp::Max)?;
    let expect: Vec<i64> = (offset..offset + counts[rank])
        .map(|i| -(i as i64))
        .collect();
    ensure!(recv == expect, "i64 max reduce_scatter: {recv:?}");
    let send: Vec<i128> = (0..total).map(|i| (i as i128) << 90).collect();
    let mut recv = vec![0i128; counts[rank]];
    comm.reduce_scatter(&send, &counts, &mut recv, ReduceOp::Sum)?;
    let expect: Vec<i128> = (offset..offset + counts[rank])
        .map(|i| ((i as i128) << 90) * size as i128)
        .collect();
    ensure!(recv == expect, "i128 reduce_scatter: {recv:?}");

    // Fixed-point sums: the same bits as one rank summing every term.
    let terms: Vec<f32> = (0..999i32)
        .map(|k| ((k * 7919 % 1000) as f32 - 500.0) * 10f32.powi(k % 9 - 4))
        .collect();
    let mut acc = [0i64];
    for (k, &t) in terms.iter().enumerate() {
        if k * size / terms.len() == rank {
            acc[0] = acc[0].wrapping_add(to_fixed(t));
        }
    }
    comm.all_reduce(&mut acc, ReduceOp::Sum)?;
    let whole = terms.iter().fold(0i64, |a, &t| a.wrapping_add(to_fixed(t)));
    ensure!(
        acc == [whole],
        "fixed-point sum {acc:?}, one rank gives {whole}"
    );
    let mut s = [0i64];
    sum_fixed(comm, &[0.125], &mut s)?;
    ensure!(s == [to_fixed(0.125) * n], "sum_fixed: {s:?}");
    comm.barrier()?;
    Ok(())
}
