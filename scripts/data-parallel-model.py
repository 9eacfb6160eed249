#!/usr/bin/env python3
"""Model against data parallelism (docs/scaling.md, "Data parallelism"): prints the tables.

Usage: scripts/data-parallel-model.py   (no arguments; every assumption is a constant below)

Bytes per minibatch on the busiest rank, P ranks, minibatch B (the whole minibatch):

  model (moira::parallel::ShardPlan): per weight `in x out`, sharded by output units when
      out*3 > in*2 (all-gather the B x in input unless it is the sparse input, reduce-scatter
      the B x in partial deltas unless the source is an input), else by input units
      (reduce-scatter the B x out partial sums, all-gather the B x out deltas); each moves
      (P-1)/P * B * width * 4 bytes.
  data (moira::parallel::data, the sharded update of moira::parallel::owned): once per step,
      whatever B, every rank receives the others' f32 partial gradients of the 1/P of the
      parameters it owns (an all-to-all), updates them, and receives the others' updated
      shares (an all-gather): 2 * (P-1)/P * params * 4 bytes.

Time per step, no overlap of compute and communication:

  T(P) = (T1 - F)/P + F + Tcomm(P)
  model: Tcomm = n * (s(P) * alpha + (P-1)/P * M / beta)   (n collectives of M bytes each)
  data:  Tcomm = 2 * s(P) * alpha + 2 * (P-1)/P * 4 * params / beta

with s(P) = P - 1 (ring). T1 comes from the flops at the rate measured on one H100 for the
MovieLens-20M benchmark network (docs/scaling.md: 21.3 TFLOP/s effective in FP32), so the
tables compare the modes, not absolute speeds.
"""

import math

# Networks: (name, hidden widths, minibatch).
NETWORKS = {
    "ae-200 (I -> 200 -> I, B 500)": ([200], 500),
    "ml1m-multdae (I -> 600 -> I, B 500)": ([600], 500),
    "deep-recommender (I -> 1024 x3 -> I, B 256)": ([1024, 1024, 1024], 256),
}
CATALOGUES = {
    "ML-1M": 3_628,
    "Gowalla": 40_981,
    "ML-20M": 27_278,
    "10M items": 10_000_000,
}
RATE = 21.3e12  # flop/s: the H100's effective FP32 rate on deep-recommender (docs/scaling.md)
FLOOR_S = 100e-6  # per-step compute that does not shrink with P
LINKS = {
    "NVLink (450 GB/s, 2 us)": (450e9, 2e-6),
    "100 GbE (12.5 GB/s, 20 us)": (12.5e9, 20e-6),
}
RANKS = [1, 2, 4, 8, 16, 32, 64]


def weights(items, hidden):
    widths = [items] + hidden + [items]
    return list(zip(widths[:-1], widths[1:]))


def params(items, hidden):
    return sum(i * o + o for i, o in weights(items, hidden))


def model_collectives(items, hidden):
    """The widths of the B x width matrices ShardPlan moves per step."""
    out = []
    for k, (i, o) in enumerate(weights(items, hidden)):
        from_input = k == 0
        if o * 3 > i * 2:  # by output units
            if not from_input:
                out += [i, i]  # gather the input, reduce-scatter the partial deltas
        else:  # by input units
            out += [o, o]  # reduce-scatter partial sums, all-gather the deltas
    return out


def model_bytes(items, hidden, batch, p):
    return sum((p - 1) / p * batch * w * 4 for w in model_collectives(items, hidden))


def data_bytes(items, hidden, p):
    return 2 * (p - 1) / p * params(items, hidden) * 4


def flops(items, hidden, batch):
    # 6 * B * in * out per dense weight (forward, both backward GEMMs); the sparse input
    # layer is nnz-bound: counted as dense here (an upper bound for both modes alike).
    return sum(6 * batch * i * o for i, o in weights(items, hidden))


def step_s(mode, items, hidden, batch, p, beta, alpha):
    t1 = flops(items, hidden, batch) / RATE + FLOOR_S
    if p == 1:
        return t1
    tc = (t1 - FLOOR_S) / p + FLOOR_S
    if mode == "model":
        cols = model_collectives(items, hidden)
        comm = sum((p - 1) * alpha + (p - 1) / p * batch * w * 4 / beta for w in cols)
    else:
        comm = 2 * (p - 1) * alpha + data_bytes(items, hidden, p) / beta
    return tc + comm


def mib(b):
    return f"{b / 2**20:,.2f}"


def main():
    print("## Bytes per minibatch on the busiest rank (MiB), P = 2 / 8 / 64\n")
    print("| network | catalogue | parameters | model P=2 | data P=2 | model P=8 | data P=8 "
          "| model P=64 | data P=64 | cheaper |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (hidden, batch) in NETWORKS.items():
        for cat, items in CATALOGUES.items():
            cells = []
            for p in (2, 8, 64):
                cells += [mib(model_bytes(items, hidden, batch, p)), mib(data_bytes(items, hidden, p))]
            m, d = model_bytes(items, hidden, batch, 2), data_bytes(items, hidden, 2)
            print(f"| {name} | {cat} | {params(items, hidden):,} | " + " | ".join(cells)
                  + f" | {'model' if m <= d else 'data'} |")
    for name, (hidden, batch) in NETWORKS.items():
        for cat in ("ML-1M", "Gowalla", "ML-20M", "10M items"):
            items = CATALOGUES[cat]
            print(f"\n## Predicted speed-up: {name}, {cat}\n")
            print("| ranks | " + " | ".join(f"{l}: model | data" for l in LINKS) + " |")
            print("| --- | " + " | ".join("--- | ---" for _ in LINKS) + " |")
            for p in RANKS:
                cells = []
                for beta, alpha in LINKS.values():
                    t1 = step_s("model", items, hidden, batch, 1, beta, alpha)
                    for mode in ("model", "data"):
                        cells.append(f"{t1 / step_s(mode, items, hidden, batch, p, beta, alpha):.2f}")
                print(f"| {p} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
