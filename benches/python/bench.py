"""The Python package against the command-line tools on MovieLens-1M, in one run.

- fit: networks/ml1m-multdae.json's recipe (scripts/demo.sh: batch 500, Adam α 0.003, λ 1e-4,
  μ 0.9) for EPOCHS epochs through `trainer` and through `Recommender.fit`, alternating ROUNDS
  times; compares the median epoch time after the first epoch of each run (`trainer`'s metrics
  log, `fit`'s History: both the library's training-loop time) and checks the weights are
  bit-identical.
- recommend: top-10 of every user (own items excluded) through `predictor` (its own
  "samples/s" line: network build, weights, forward, top-K and the recs file) and through
  `Recommender.recommend` (wall time of the call: CSR conversion, network build, weights,
  forward, top-K), alternating ROUNDS times; medians of users/s.

    python benches/python/bench.py [--rounds 3] [--epochs 4] [--threads 2] [--bin target/release]

Needs `pip install ./python` and the tools built (`cargo build --release --workspace`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import moira

ROOT = Path(__file__).resolve().parents[2]
NET = ROOT / "networks" / "ml1m-multdae.json"
RECIPE = dict(batch=500, optimizer="adam", alpha=0.003, l2=0.0001, mu=0.9)
FLAGS = ["-b", "500", "--optimizer", "adam", "--alpha", "0.003", "--lambda", "0.0001", "--mu", "0.9"]


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True)


def convert(bin_dir: Path, data: Path, d: Path) -> None:
    """ML-1M as scripts/demo.sh converts it."""
    lists = d / "lists"
    lists.mkdir()
    (lists / "1-train.txt").write_text((data / "train.txt").read_text())
    (lists / "2-valid.txt").write_text((data / "valid.txt").read_text())
    common = ["--format", "lists", "-i", lists, "-f", d / "features", "-s", d / "samples"]
    run(bin_dir / "converter", "-d", "input", "-o", d / "input.nc", *common, "-c", "--l2-normalize")
    run(bin_dir / "converter", "-d", "output", "-o", d / "output.nc", *common)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "release")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-1m-lightgcnpp")
    args = p.parse_args()
    d = Path(tempfile.mkdtemp(prefix="moira-pybench-"))
    convert(args.bin, args.data, d)
    x, y = moira.read_dataset(d / "input.nc"), moira.read_dataset(d / "output.nc")
    n_items = len(moira.read_index(d / "features"))
    dev = ["--threads", args.threads, "--device", "cpu"]
    fit = {"cli": [], "python": []}
    users = {"cli": [], "python": []}
    for r in range(args.rounds):
        model = d / "cli.nc"
        run(args.bin / "trainer", NET, "-i", d / "input.nc", "-o", d / "output.nc", "-n", model,
            "-e", args.epochs, *FLAGS, *dev, "--force")  # fmt: skip
        log = [json.loads(line) for line in model.with_suffix(".metrics.jsonl").read_text().splitlines()]
        fit["cli"].append(statistics.median(e["seconds"] for e in log[1:]))
        rec = moira.Recommender(NET, epochs=args.epochs, threads=args.threads, device="cpu", **RECIPE)
        h = rec.fit(x, y, verbose=0)
        fit["python"].append(statistics.median(h["time"][1:]))
        theirs = moira.load(model).get_weights()
        same = all(
            np.array_equal(w.view(np.uint32), theirs[k][0].view(np.uint32)) for k, (w, _) in rec.get_weights().items()
        )
        out = run(args.bin / "predictor", "-n", model, "-i", d / "input.nc", "-o", d / "features",
                  "--samples", d / "samples", "-k", 10, "-s", d / "recs", *dev, "--quiet")  # fmt: skip
        users["cli"].append(float(re.search(r"\(([0-9.]+) samples/s\)", out.stderr).group(1)))
        loaded = moira.load(model, threads=args.threads, device="cpu")
        t0 = time.perf_counter()
        items, _ = loaded.recommend(x, k=10, n_items=n_items)
        users["python"].append(items.shape[0] / (time.perf_counter() - t0))
        print(
            f"round {r + 1}: epoch {fit['cli'][-1]:.3f} s trainer, {fit['python'][-1]:.3f} s fit "
            f"(weights {'identical' if same else 'DIFFERENT'}); recommend {users['cli'][-1]:,.0f} "
            f"users/s predictor, {users['python'][-1]:,.0f} users/s Python"
        )
    paired = statistics.median(p / c for c, p in zip(fit["cli"], fit["python"]))
    cli, py = statistics.median(fit["cli"]), statistics.median(fit["python"])
    print(f"fit: median epoch {cli:.3f} s trainer, {py:.3f} s Python ({py / cli:.3f}x; paired median {paired:.3f}x)")
    paired = statistics.median(p / c for c, p in zip(users["cli"], users["python"]))
    cli, py = statistics.median(users["cli"]), statistics.median(users["python"])
    print(f"recommend: median {cli:,.0f} users/s predictor, {py:,.0f} users/s Python ({py / cli:.3f}x; paired median {paired:.3f}x)")


if __name__ == "__main__":
    main()
