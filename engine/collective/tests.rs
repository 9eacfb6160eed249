//! Every collective through `Threads` on 1–4 ranks (and `Local`), the failure protocol, and
//! bit-identical fixed-point sums across rank counts.

use super::*;
use crate::ops::fixed::from_fixed;
use crate::rng::u64_at;

const RANKS: [usize; 4] = [1, 2, 3, 4];

/// Runs `f` on `size` threads; panics with the first error.
fn on<T: Send>(size: usize, f: impl Fn(&Threads) -> Result<T> + Sync) -> Vec<T> {
    Threads::run(size, f).unwrap_or_else(|e| panic!("{size} ranks: {e}"))
}

#[test]
fn barrier_and_identity() {
    for p in RANKS {
        let ids = on(p, |c| {
            c.barrier()?;
            c.barrier()?;
            Ok((c.rank(), c.size()))
        });
        assert_eq!(ids, (0..p).map(|r| (r, p)).collect::<Vec<_>>());
    }
    assert_eq!((Local.rank(), Local.size()), (0, 1));
    Local.barrier().unwrap();
}

#[test]
fn all_gather_concatenates_uneven_parts_in_rank_order() {
    for p in RANKS {
        let counts: Vec<usize> = (0..p).map(|r| r % 3 + 1).collect();
        let expect: Vec<f32> = (0..p)
            .flat_map(|r| (0..counts[r]).map(move |i| (r * 10 + i) as f32))
            .collect();
        let got = on(p, |c| {
            let mine: Vec<f32> = (0..counts[c.rank()])
                .map(|i| (c.rank() * 10 + i) as f32)
                .collect();
            let mut all = vec![0.0; expect.len()];
            c.all_gather(&mine, &counts, &mut all)?;
            let (varying, lengths) = c.all_gather_varying(&mine)?;
            assert_eq!(lengths, counts);
            assert_eq!(varying, all);
            Ok(all)
        });
        assert!(got.iter().all(|g| *g == expect), "{p} ranks");
    }
    let mut out = [0u32; 2];
    Local.all_gather(&[4, 5], &[2], &mut out).unwrap();
    assert_eq!(out, [4, 5]);
}

#[test]
fn broadcast_copies_the_root_everywhere() {
    for p in RANKS {
        for root in 0..p {
            let got = on(p, |c| {
                let mut buf = [c.rank() as i64, -(c.rank() as i64), 7];
                c.broadcast(root, &mut buf)?;
                Ok(buf)
            });
            assert!(got.iter().all(|b| *b == [root as i64, -(root as i64), 7]));
        }
    }
    let mut buf = [1.5f64];
    Local.broadcast(0, &mut buf).unwrap();
    assert_eq!(buf, [1.5]);
    assert!(Local.broadcast(1, &mut buf).is_err());
}

#[test]
fn all_reduce_sums_and_maxima() {
    for p in RANKS {
        let got = on(p, |c| {
            let r = c.rank();
            let mut f = [r as f32 + 0.5, -(r as f32)];
            c.all_reduce(&mut f, ReduceOp::Sum)?;
            let mut d = [r as f64 * 0.25];
            c.all_reduce(&mut d, ReduceOp::Sum)?;
            let mut i = [i64::MAX, r as i64 - 2];
            c.all_reduce(&mut i, ReduceOp::Sum)?;
            let mut u = [r as u64 + 1];
            c.all_reduce(&mut u, ReduceOp::Max)?;
            let mut s = [r as i32 - 3];
            c.all_reduce(&mut s, ReduceOp::Sum)?;
            let mut w = [i128::MAX - r as i128, -(1i128 << 100) * r as i128];
            c.all_reduce(&mut w, ReduceOp::Sum)?;
            let mut m = [-(r as f32), if r == p - 1 { f32::NAN } else { 1.0 }, -0.0];
            if r == 0 {
                m[2] = 0.0;
            }
            c.all_reduce(&mut m, ReduceOp::Max)?;
            let mut md = [-(r as f64) - 1.0];
            c.all_reduce(&mut md, ReduceOp::Max)?;
            Ok((f, d, i, u, s, w, m, md))
        });
        let n = p as i64;
        let tri = (n * (n - 1) / 2) as f32;
        for (f, d, i, u, s, w, m, md) in got {
            assert_eq!(f, [tri + 0.5 * n as f32, -tri]);
            assert_eq!(d, [tri as f64 * 0.25]);
            assert_eq!(
                i,
                [i64::MAX.wrapping_mul(n), (0..n).map(|r| r - 2).sum::<i64>()]
            );
            assert_eq!(u, [p as u64]);
            assert_eq!(s, [(0..p as i32).map(|r| r - 3).sum::<i32>()]);
            let w0 = (0..p as i128).fold(0i128, |a, r| a.wrapping_add(i128::MAX - r));
            assert_eq!(w, [w0, -(1i128 << 100) * (tri as i128)]);
            assert_eq!(m[0], 0.0);
            assert!(m[1].is_nan(), "NaN is above everything");
            assert_eq!(m[2].to_bits(), 0.0f32.to_bits(), "+0 is above -0");
            assert_eq!(md, [-1.0]);
        }
    }
    let mut m = [3.0f32];
    Local.all_reduce(&mut m, ReduceOp::Max).unwrap();
    assert_eq!(m, [3.0]);
    assert!(Local.all_reduce(&mut [1i128], ReduceOp::Max).is_err());
}

#[test]
fn reduce_scatter_gives_each_rank_its_segment_of_the_sum() {
    for p in RANKS {
        let counts: Vec<usize> = (0..p).map(|r| if r == 1 { 0 } else { r + 2 }).collect();
        let total: usize = counts.iter().sum();
        let got = on(p, |c| {
            let r = c.rank();
            let send: Vec<f32> = (0..total).map(|i| (i * (r + 1)) as f32).collect();
            let mut recv = vec![0.0f32; counts[r]];
            c.reduce_scatter(&send, &counts, &mut recv, ReduceOp::Sum)?;
            let send: Vec<i128> = (0..total).map(|i| (i as i128) << 90).collect();
            let mut wide = vec![0i128; counts[r]];
            c.reduce_scatter(&send, &counts, &mut wide, ReduceOp::Sum)?;
            let send: Vec<f32> = (0..total).map(|i| (i + r) as f32).collect();
            let mut max = vec![0.0f32; counts[r]];
            c.reduce_scatter(&send, &counts, &mut max, ReduceOp::Max)?;
            Ok((recv, wide, max))
        });
        let factor: usize = (1..=p).sum();
        let mut at = 0;
        for (r, (sum, wide, max)) in got.into_iter().enumerate() {
            let seg = at..at + counts[r];
            at += counts[r];
            let exp: Vec<f32> = seg.clone().map(|i| (i * factor) as f32).collect();
            assert_eq!(sum, exp, "{p} ranks, rank {r}");
            let exp: Vec<i128> = seg
                .clone()
                .map(|i| ((i as i128) << 90) * p as i128)
                .collect();
            assert_eq!(wide, exp);
            let exp: Vec<f32> = seg.map(|i| (i + p - 1) as f32).collect();
            assert_eq!(max, exp);
        }
    }
}

#[test]
fn all_to_all_delivers_each_ranks_segment_for_each_rank() {
    // Rank r sends `count(r, q)` values to rank q (uneven, some none), each value naming its
    // sender, receiver and place.
    let count = |from: usize, to: usize| {
        if (from + to) % 3 == 2 {
            0
        } else {
            from + to + 1
        }
    };
    let value = |from: usize, to: usize, k: usize| (from * 10_000 + to * 100 + k) as u32;
    for p in RANKS {
        let got = on(p, |c| {
            let r = c.rank();
            let send_counts: Vec<usize> = (0..p).map(|q| count(r, q)).collect();
            let recv_counts: Vec<usize> = (0..p).map(|q| count(q, r)).collect();
            let send: Vec<u32> = (0..p)
                .flat_map(|q| (0..count(r, q)).map(move |k| value(r, q, k)))
                .collect();
            let mut recv = vec![0u32; recv_counts.iter().sum()];
            c.all_to_all(&send, &send_counts, &mut recv, &recv_counts)?;
            Ok(recv)
        });
        for (r, recv) in got.into_iter().enumerate() {
            let exp: Vec<u32> = (0..p)
                .flat_map(|q| (0..count(q, r)).map(move |k| value(q, r, k)))
                .collect();
            assert_eq!(recv, exp, "{p} ranks, rank {r}");
        }
    }
    // Counts that do not add up, or a receiver expecting another count, are errors.
    let mut recv = [0u32; 2];
    assert!(Local.all_to_all(&[1u32, 2], &[3], &mut recv, &[2]).is_err());
    let errors = Threads::run_each(2, |c| {
        let mut recv = vec![0u32; 2];
        let recv_counts = if c.rank() == 0 { [1, 1] } else { [2, 0] };
        c.all_to_all(&[1u32, 2], &[1, 1], &mut recv, &recv_counts)
    })
    .unwrap();
    assert!(errors.iter().any(|e| e.is_err()));
}

/// Terms spanning many magnitudes, so that f32 sums depend on the order.
fn terms(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = u64_at(7, 0, i);
            let mantissa = (u % 10_000) as f32 / 997.0 - 5.0;
            mantissa * 10f32.powi((u >> 20) as i32 % 9 - 4)
        })
        .collect()
}

#[test]
fn fixed_point_sums_are_bit_identical_across_rank_counts() {
    let n = 1000;
    let values = terms(n);
    // Each of 8 output elements sums every 8th term; ranks hold contiguous chunks of terms.
    let per_rank = |c: &Threads| -> Result<Vec<i64>> {
        let (r, p) = (c.rank(), c.size());
        let mut acc = vec![0i64; 8];
        for (i, &v) in values.iter().enumerate() {
            if i * p / n == r {
                acc[i % 8] = acc[i % 8].wrapping_add(to_fixed(v));
            }
        }
        c.all_reduce(&mut acc, ReduceOp::Sum)?;
        Ok(acc)
    };
    let reference = on(1, per_rank).remove(0);
    for p in RANKS {
        for got in on(p, per_rank) {
            assert_eq!(got, reference, "{p} ranks");
        }
    }
    let approx: f64 = values.iter().step_by(8).map(|&v| v as f64).sum();
    assert!((from_fixed(reference[0]) - approx).abs() < 1e-5);
    // sum_fixed: one term per element and rank.
    let sums = on(3, |c| {
        let mut s = [0i64; 2];
        sum_fixed(c, &[c.rank() as f32 * 0.5, 1e-3], &mut s)?;
        Ok(s)
    });
    assert!(sums
        .iter()
        .all(|s| *s == [to_fixed(0.5) * 3, to_fixed(1e-3) * 3]));
    assert!(sum_fixed(&Local, &[1.0], &mut []).is_err());
}

#[test]
fn check_gives_every_rank_the_failing_ranks_message() {
    for p in [2, 3, 4] {
        let results = Threads::run_each(p, |c| {
            let local = if c.rank() >= 1 {
                Err(Error::InvalidData(format!(
                    "bad shard on rank {}",
                    c.rank()
                )))
            } else {
                Ok(())
            };
            c.check(local)?;
            Ok(())
        })
        .unwrap();
        for (r, res) in results.iter().enumerate() {
            let msg = res.as_ref().unwrap_err().to_string();
            if r == 0 {
                assert_eq!(
                    msg,
                    format!("rank 1 of {p} failed: invalid data: bad shard on rank 1")
                );
            } else {
                assert_eq!(msg, format!("invalid data: bad shard on rank {r}"));
            }
        }
        let ok = on(p, |c| c.check(Ok(c.rank())));
        assert_eq!(ok, (0..p).collect::<Vec<_>>());
    }
    assert!(Local
        .check(Err::<(), _>(Error::Unsupported("x".into())))
        .is_err());
}

#[test]
fn a_rank_that_fails_or_panics_between_sync_points_releases_the_others() {
    for p in [2, 4] {
        let err = Threads::run(p, |c| {
            if c.rank() == p - 1 {
                return Err(Error::Unsupported("simulated failure".into()));
            }
            c.barrier()?;
            c.all_reduce(&mut [1.0f32], ReduceOp::Sum)
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "not supported yet: simulated failure");
        let each = Threads::run_each(p, |c| {
            if c.rank() == 0 {
                panic!("boom");
            }
            c.barrier()
        })
        .unwrap();
        for res in each {
            let msg = res.unwrap_err().to_string();
            assert!(msg.contains("rank 0") && msg.contains("boom"), "{msg}");
        }
    }
    // A rank returning early leaves the others with an error, not a hang.
    let each = Threads::run_each(3, |c| if c.rank() == 1 { Ok(()) } else { c.barrier() }).unwrap();
    assert!(each[1].is_ok());
    assert!(each[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("rank 1 of 3"));
}

#[test]
fn mismatched_calls_and_counts_are_errors() {
    let each = Threads::run_each(2, |c| {
        if c.rank() == 0 {
            c.barrier()
        } else {
            c.all_reduce(&mut [1u64], ReduceOp::Sum)
        }
    })
    .unwrap();
    assert!(each.iter().all(|r| r
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("different collectives")));
    let each = Threads::run_each(2, |c| {
        let mut out = [0u8; 3];
        c.all_gather(&[1u8], &[1, 1], &mut out)
    })
    .unwrap();
    assert!(each
        .iter()
        .all(|r| r.as_ref().unwrap_err().to_string().contains("add up to 2")));
    assert!(Threads::run_each(0, |_| Ok(())).is_err());
    assert!(Local
        .reduce_scatter(&[1.0f32], &[2], &mut [0.0], ReduceOp::Sum)
        .is_err());
}
