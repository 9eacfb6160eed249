#!/usr/bin/env python3
"""Baselines and the common scorer of the quality benchmarks (benches/quality/run.sh).

Reads the `user item item ...` lists of a split (0-based ids), and:

  popularity  ranks items by their count in the input lists;
  ease        EASE (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1, scores
              X B; lambda chosen from a grid by NDCG@K on the validation lists (input = train),
              then refitted on train + valid and measured once on test;
  recs FILE   scores a recommendation file of `predictor --format recs` (labels = item ids).

Every model is measured by the same function: for each user with a non-empty held-out set,
rank all items with the user's input items excluded and take the top K; P@K = hits / K,
Recall@K = hits / min(K, |H|) (Liang et al. 2018), Recall_full@K = hits / |H| (LightGCN's
definition), NDCG@K with binary gains and IDCG over min(K, |H|) items. Held-out items that
never occur in the input lists stay in |H| (they cannot be hit). Output: one JSON line per
model.

EASE's Gram matrix is dense items x items in float32 (Gowalla: 41k^2 x 4 B = 6.7 GB); it is
inverted in place by Cholesky (LAPACK spotrf + spotri), so the peak is one such matrix plus
a block of scores.
"""
import argparse
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

BLOCK = 2048


def read_lists(paths, n_users=None):
    """Lists files -> dict user -> list of items (several files: concatenated per user)."""
    rows = {}
    for path in paths:
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                t = line.split()
                if not t:
                    continue
                try:
                    u, items = int(t[0]), [int(x) for x in t[1:]]
                except ValueError:
                    sys.exit(f"{path}:{line_no}: expected `user item item ...` integers")
                rows.setdefault(u, []).extend(items)
    return rows


def to_csr(rows, n_users, n_items):
    indptr, indices = [0], []
    for u in range(n_users):
        items = sorted(set(i for i in rows.get(u, []) if i < n_items))
        indices.extend(items)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, np.array(indices, dtype=np.int64), np.array(indptr)),
                         shape=(n_users, n_items))


class Scorer:
    """Accumulates P@K, Recall@K, Recall_full@K, NDCG@K over users (float64 sums)."""

    def __init__(self, k):
        self.k = k
        self.discount = 1.0 / np.log2(np.arange(2, k + 2))
        self.ideal = np.concatenate([[0.0], np.cumsum(self.discount)])
        self.sums = np.zeros(4)
        self.users = 0

    def add(self, ranked, held):
        if not held:
            return
        hit = np.isin(ranked[: self.k], list(held))
        hits = hit.sum()
        h = len(held)
        self.sums += [hits / self.k, hits / min(self.k, h), hits / h,
                      (hit * self.discount[: len(hit)]).sum() / self.ideal[min(self.k, h)]]
        self.users += 1

    def result(self):
        p, r, rf, n = self.sums / max(self.users, 1)
        k = self.k
        return {"users": self.users, f"precision@{k}": round(p, 5), f"recall@{k}": round(r, 5),
                f"recall_full@{k}": round(rf, 5), f"ndcg@{k}": round(n, 5)}


def evaluate_scores(score_block, x, held, k):
    """score_block(u0, u1) -> dense scores of users u0..u1; excludes x's items; top k."""
    s = Scorer(k)
    n_users = x.shape[0]
    for u0 in range(0, n_users, BLOCK):
        u1 = min(u0 + BLOCK, n_users)
        users = [u for u in range(u0, u1) if held.get(u)]
        if not users:
            continue
        scores = np.asarray(score_block(u0, u1), dtype=np.float32)
        sub = x[u0:u1]
        scores[sub.nonzero()] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        part = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        for u in users:
            s.add(top[u - u0], set(held[u]))
    return s.result()


def popularity(x, held, k):
    counts = np.asarray(x.sum(axis=0)).ravel().astype(np.float32)
    return evaluate_scores(lambda u0, u1: np.tile(counts, (u1 - u0, 1)), x, held, k)


def ease_weights(x, lam):
    """B = I - P / diag(P) with P = (X^T X + lam I)^-1, float32, in place."""
    g = (x.T @ x).toarray().astype(np.float32, copy=False)  # dense items x items
    g[np.diag_indices_from(g)] += lam
    # g is symmetric: its transpose is the same matrix, Fortran-ordered, factorised in place.
    c, info = lapack.spotrf(g.T, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        sys.exit(f"spotrf failed: info {info}")
    p, info = lapack.spotri(c, lower=0, overwrite_c=1)
    if info != 0:
        sys.exit(f"spotri failed: info {info}")
    p = p.T  # the C-ordered matrix again; its lower triangle (row >= col) holds P
    n = p.shape[0]
    for r0 in range(0, n, BLOCK):
        r1 = min(r0 + BLOCK, n)
        p[r0:r1, r1:] = p[r1:, r0:r1].T
        blk = p[r0:r1, r0:r1]
        lower = np.tril(blk)
        p[r0:r1, r0:r1] = lower + np.tril(blk, -1).T
    d = p.diagonal().copy()
    p /= -d[None, :]
    p[np.diag_indices_from(p)] = 0.0
    return p


def ease(x, held, lam, k):
    b = ease_weights(x, lam)
    return evaluate_scores(lambda u0, u1: (x[u0:u1] @ b), x, held, k)


def recs_scores(path, n_users, n_items):
    """A `predictor --format recs` file: `user<TAB>item,score:item,score:...`."""
    ranked = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            user, _, rest = line.rstrip("\n").partition("\t")
            try:
                ranked[int(user)] = [int(p.split(",")[0]) for p in rest.split(":") if p]
            except ValueError:
                sys.exit(f"{path}:{line_no}: expected `user<TAB>item,score:...`")
    return ranked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--lambdas", default="200,500,1000,2000",
                    help="EASE's lambda grid, chosen on valid")
    ap.add_argument("--models", default="popularity,ease")
    ap.add_argument("--recs", help="score a recommendation file against test (input train+valid)")
    ap.add_argument("--recs-split", default="test", choices=["valid", "test"],
                    help="the held-out split of --recs (valid: input = train)")
    args = ap.parse_args()
    d = args.data.rstrip("/")
    train = read_lists([f"{d}/train.txt"])
    valid = read_lists([f"{d}/valid.txt"])
    test = read_lists([f"{d}/test.txt"])
    full = read_lists([f"{d}/train.txt", f"{d}/valid.txt"])
    n_users = 1 + max(max(r) for r in (train, valid, test))
    n_items = 1 + max(max(v) for r in (train, valid, test) for v in r.values() if v)
    x_train = to_csr(train, n_users, n_items)
    x_full = to_csr(full, n_users, n_items)
    out = lambda obj: print(json.dumps(obj), flush=True)
    if args.recs:
        ranked = recs_scores(args.recs, n_users, n_items)
        x, held = (x_full, test) if args.recs_split == "test" else (x_train, valid)
        s = Scorer(args.k)
        for u in range(n_users):
            seen = set(x.indices[x.indptr[u]:x.indptr[u + 1]].tolist())
            items = [i for i in ranked.get(u, []) if i not in seen]
            if held.get(u):
                s.add(np.array(items + [-1] * (args.k - len(items)))[: args.k], set(held[u]))
        out({"model": "moira", "split": args.recs_split, **s.result()})
        return
    models = args.models.split(",")
    if "popularity" in models:
        out({"model": "popularity", "split": "test", **popularity(x_full, test, args.k)})
    if "ease" in models:
        best = None
        for lam in [float(v) for v in args.lambdas.split(",")]:
            t0 = time.time()
            r = ease(x_train, valid, lam, args.k)
            out({"model": "ease", "split": "valid", "lambda": lam, **r,
                 "seconds": round(time.time() - t0, 1)})
            if best is None or r[f"ndcg@{args.k}"] > best[1]:
                best = (lam, r[f"ndcg@{args.k}"])
        t0 = time.time()
        r = ease(x_full, test, best[0], args.k)
        out({"model": "ease", "split": "test", "lambda": best[0], **r,
             "seconds": round(time.time() - t0, 1)})


if __name__ == "__main__":
    main()
