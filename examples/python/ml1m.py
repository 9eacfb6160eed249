"""Trains networks/ml1m-multdae.json on MovieLens-1M from Python, prints Recall@20 / NDCG@20
on the held-out items and writes every user's top 10 (EVALUATION.md's protocol: input = train
+ valid of each user, held out = test; scripts/demo.sh's recipe).

    pip install ./python
    python examples/python/ml1m.py [--data ../shared/data/ml-1m-lightgcnpp] [--epochs 20] [--out recs.tsv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import moira

ROOT = Path(__file__).resolve().parents[2]


def read_lists(*paths: Path) -> dict[int, list[int]]:
    """``user item item …`` lines (0-based ids) of every file, joined per user."""
    users: dict[int, list[int]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            ids = [int(t) for t in line.split()]
            if ids:
                users.setdefault(ids[0], []).extend(ids[1:])
    return users


def matrix(users: dict[int, list[int]], n_users: int, n_items: int) -> sp.csr_matrix:
    """A boolean user × item CSR matrix."""
    rows = [u for u, items in users.items() for _ in items]
    cols = [i for items in users.values() for i in items]
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_users, n_items))
    m.data[:] = 1  # repeated items count once
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ml-1m-lightgcnpp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("recs.tsv"))
    args = p.parse_args()

    seen = read_lists(args.data / "train.txt", args.data / "valid.txt")
    test = read_lists(args.data / "test.txt")
    n_users = 1 + max(max(seen), max(test))
    n_items = 1 + max(i for lists in (seen, test) for items in lists.values() for i in items)
    y = matrix(seen, n_users, n_items)  # the target: every item a user has
    x = sp.csr_matrix(sp.diags(1 / np.sqrt(np.maximum(y.getnnz(axis=1), 1))) @ y, dtype=np.float32)
    held_out = matrix(test, n_users, n_items)

    rec = moira.Recommender(
        ROOT / "networks" / "ml1m-multdae.json",
        epochs=args.epochs, batch=500, optimizer="adam", alpha=0.003, l2=0.0001, mu=0.9,
    )  # fmt: skip
    rec.fit(x, y)  # input rows L2-normalised (Mult-DAE); the target is the binary history
    m = rec.evaluate(x, held_out, k=(10, 20))
    print(f"Recall@20 {m['recall@20']:.4f}  NDCG@20 {m['ndcg@20']:.4f}  ({m['users']} users)")

    items, scores = rec.recommend(x, k=10)  # without each user's own items
    with args.out.open("w") as f:
        for user in range(n_users):
            recs = ":".join(f"{i},{s:.4f}" for i, s in zip(items[user], scores[user]) if i >= 0)
            f.write(f"{user}\t{recs}\n")
    print(f"top-10 recommendations of {n_users} users in {args.out}")


if __name__ == "__main__":
    main()
