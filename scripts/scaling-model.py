#!/usr/bin/env python3
"""The model-parallel performance model of docs/scaling.md: prints its tables.

Usage: scripts/scaling-model.py   (no arguments; every assumption is a constant below)

Per training step (one minibatch), on P ranks, with no overlap of compute and communication
(DSSTNE synchronises at every collective stage):

    T(P) = Tc(P) + Tcomm(P)
    Tc(P) = (T1 - F) / P + F          compute: every layer split evenly by units (ShardPlan);
                                      F is a per-step floor that does not shrink with P
                                      (kernel launches, small-GEMM inefficiency)
    Tcomm(P) = n * (s(P) * alpha + (P - 1) / P * M / beta)
                                      n collectives (all-gather or reduce-scatter) of an
                                      M-byte batch x hidden f32 matrix; s(P) latency steps
                                      (ring: P - 1; tree-like: ceil(log2 P)) of alpha seconds,
                                      beta bytes/s per direction per rank

For the deep-recommender network (I -> 1024 -> 1024 -> 1024 -> I, batch 256), ShardPlan gives
n = 8 collectives of M = 256 * 1024 * 4 bytes per step, whatever I is (tests/shard_plan.rs).
"""

import math

BATCH = 256
HIDDEN = 1024
N_COLLECTIVES = 8
M = BATCH * HIDDEN * 4  # bytes of one batch x hidden f32 matrix

# Measured: H100, MovieLens-20M (27,278 items), 541 minibatches of 256 per epoch.
H100_EPOCH_S = {"FP32": 1.17, "TF32": 0.72}
BATCHES = 541
# BENCHMARKS.md: 120-143 GFLOP/s on this 2-core CPU (I -> 200 -> I, 6*H*I flops per example).
CPU_GFLOPS = 130.0

# Links: beta in bytes/s per direction per rank, alpha in seconds per latency step, and the
# latency steps of one collective: "ring" (P - 1, DSSTNE's ring and NCCL's ring) or "log"
# (ceil(log2 P): recursive doubling / halving, what MPI libraries pick for small messages).
LINKS = {
    "NVLink 900 GB/s, ring": (450e9, 2e-6, "ring"),
    "100 GbE, ring": (12.5e9, 20e-6, "ring"),
    "100 GbE, log2 P steps": (12.5e9, 20e-6, "log"),
}
FLOOR_S = 100e-6  # F: per-step compute that does not shrink with P (assumption)
RANKS = [1, 2, 4, 8, 16, 32, 64]


def flops_per_step(items):
    """Dense flops of one step (forward + both backward GEMMs) of I -> 1024 x3 -> I."""
    hidden = 2 * 6 * BATCH * HIDDEN * HIDDEN  # two 1024 x 1024 layers
    output = 6 * BATCH * HIDDEN * items  # hidden -> output
    return hidden + output  # the sparse input layer is ~nnz-bound and small


def comm_s(p, beta, alpha, algo):
    if p == 1:
        return 0.0
    steps = p - 1 if algo == "ring" else math.ceil(math.log2(p))
    return N_COLLECTIVES * (steps * alpha + (p - 1) / p * M / beta)


def table(title, t1, floor=FLOOR_S):
    print(f"\n{title}: T1 = {t1 * 1e3:.3f} ms per step\n")
    print("| ranks | compute/rank (ms) | " + " | ".join(
        f"{k}: comm (ms) | speed-up" for k in LINKS) + " |")
    print("| --- | --- | " + " | ".join("--- | ---" for _ in LINKS) + " |")
    for p in RANKS:
        tc = (t1 - floor) / p + floor if p > 1 else t1
        cells = []
        for beta, alpha, algo in LINKS.values():
            c = comm_s(p, beta, alpha, algo)
            cells.append(f"{c * 1e3:.3f} | {t1 / (tc + c):.2f}")
        print(f"| {p} | {tc * 1e3:.3f} | " + " | ".join(cells) + " |")


def main():
    f27 = flops_per_step(27_278)
    print(f"collectives per step: {N_COLLECTIVES} x {M:,} bytes (batch x hidden f32)")
    print(f"flops per step, 27,278 items: {f27 / 1e9:.1f} GFLOP")
    for prec, epoch in H100_EPOCH_S.items():
        t1 = epoch / BATCHES
        print(f"H100 {prec}: {t1 * 1e3:.3f} ms/step = {f27 / t1 / 1e12:.1f} TFLOP/s effective")
    t1 = H100_EPOCH_S["FP32"] / BATCHES
    table("MovieLens-20M (27,278 items), H100 FP32", t1)
    table("MovieLens-20M (27,278 items), H100 TF32", H100_EPOCH_S["TF32"] / BATCHES)
    # 10M items: the same effective rate as measured, scaled by the flops.
    rate = f27 / t1
    f10m = flops_per_step(10_000_000)
    t1_10m = f10m / rate
    print(f"\nflops per step, 10M items: {f10m / 1e12:.2f} TFLOP")
    table("10M items, H100 FP32 rate (one GPU cannot hold it: see the text)", t1_10m)
    t1_cpu = f27 / (CPU_GFLOPS * 1e9)
    table("MovieLens-20M on 2-core CPU ranks (130 GFLOP/s each)", t1_cpu, floor=0.0)


if __name__ == "__main__":
    main()
