"""Shared by the peer benchmarks: data loading, batching, timing and the JSON result line.

The model is the one of EVALUATION.md: an I -> 200 -> I autoencoder, sigmoid hidden and
sigmoid output, binary cross-entropy over the whole output (summed over items, averaged
over the users of a batch), trained on each user's own history (input = target).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def parse_args(peer):
    p = argparse.ArgumentParser(description=f"{peer}: I-200-I autoencoder training speed")
    p.add_argument("--data", required=True, help="train.txt: one line per user, 'user item item ...'")
    p.add_argument("--dataset", help="name in the JSON line (default: the data's folder name)")
    p.add_argument("--items", type=int, help="catalogue size (default: max id + 1 over "
                   "train/valid/test.txt beside --data)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after 1 warm-up epoch)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, help="learning rate (default: 1e-3 for adam, 0.1 for sgd)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.lr is None:
        a.lr = 1e-3 if a.optimizer == "adam" else 0.1
    if a.dataset is None:
        a.dataset = os.path.basename(os.path.dirname(os.path.abspath(a.data)))
    return a


def read_lists(path):
    """Returns (indptr, indices) of the user x item CSR matrix; item ids sorted per row."""
    indptr = [0]
    cols = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            items = sorted(set(int(x) for x in parts[1:]))
            cols.extend(items)
            indptr.append(len(cols))
    return np.asarray(indptr, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def catalogue_size(path, indices):
    n = int(indices.max()) + 1 if len(indices) else 0
    folder = os.path.dirname(os.path.abspath(path))
    for name in ("train.txt", "valid.txt", "test.txt"):
        p = os.path.join(folder, name)
        if os.path.exists(p) and os.path.abspath(p) != os.path.abspath(path):
            _, idx = read_lists(p)
            if len(idx):
                n = max(n, int(idx.max()) + 1)
    return n


def load(args):
    indptr, indices = read_lists(args.data)
    items = args.items or catalogue_size(args.data, indices)
    users = len(indptr) - 1
    print(f"# {args.dataset}: {users} users x {items} items, {len(indices)} entries",
          file=sys.stderr)
    return indptr, indices, users, items


def batches(indptr, indices, order, batch):
    """Yields (rows, cols, n) for each minibatch of users in `order`: the COO coordinates
    (row within the batch, item) of the batch's entries, row-major and sorted."""
    lengths = np.diff(indptr)
    for start in range(0, len(order), batch):
        users = order[start:start + batch]
        lens = lengths[users]
        rows = np.repeat(np.arange(len(users), dtype=np.int64), lens)
        # Gather the users' column ranges.
        starts = indptr[users]
        offs = np.arange(lens.sum(), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        cols = indices[np.repeat(starts, lens) + offs]
        yield rows, cols, len(users)


def report(peer, args, users, items, epoch_times, last_loss, extra=None):
    ups = [users / t for t in epoch_times]
    out = {
        "peer": peer,
        "dataset": args.dataset,
        "users_per_s": round(statistics.median(ups), 1),
        "epochs": len(epoch_times),
        "loss": round(float(last_loss), 4),
        "epoch_s": [round(t, 3) for t in epoch_times],
        "users": users,
        "items": items,
        "hidden": args.hidden,
        "batch": args.batch,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "threads": args.threads,
    }
    if extra:
        out.update(extra)
    print(json.dumps(out), flush=True)


def glorot(rng, fan_in, fan_out):
    s = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-s, s, size=(fan_in, fan_out)).astype(np.float32)


def init_params(args, items):
    rng = np.random.default_rng(args.seed)
    return (glorot(rng, items, args.hidden), np.zeros(args.hidden, np.float32),
            glorot(rng, args.hidden, items), np.zeros(items, np.float32))


def run_epochs(args, users, epoch_fn):
    """One untimed warm-up epoch, then args.epochs timed ones. epoch_fn(order) trains one
    epoch over users in `order` and returns its mean loss per user (a float, synchronised)."""
    rng = np.random.default_rng(args.seed + 1)
    times, loss = [], float("nan")
    for e in range(args.epochs + 1):
        order = rng.permutation(users)
        t0 = time.perf_counter()
        loss = epoch_fn(order)
        dt = time.perf_counter() - t0
        tag = "warm-up" if e == 0 else f"epoch {e}"
        print(f"# {tag}: {dt:.2f} s, {users / dt:.0f} users/s, loss {loss:.4f}", file=sys.stderr)
        if e > 0:
            times.append(dt)
    return times, loss
