"""MovieLens-1M (../shared/data) through both doors: networks/ml1m-multdae.json's recipe
(scripts/demo.sh: input = train + valid, rows L2-normalised; Adam α 0.003, λ 0.0001, μ 0.9,
batch 500) trained by `trainer` and by `Recommender.fit`, which must give bit-identical
weights, the same metrics and the same recommendations, at the quality of EVALUATION.md's
Mult-DAE (Recall@20 ≥ 0.36)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import moira
from conftest import REPO, ML1M, read_lists, run, to_csr

NET = REPO / "networks" / "ml1m-multdae.json"
EPOCHS = 20
RECIPE = dict(batch=500, optimizer="adam", alpha=0.003, l2=0.0001, mu=0.9, seed=12134)
FLAGS = ["-b", "500", "--optimizer", "adam", "--alpha", "0.003", "--lambda", "0.0001",
         "--mu", "0.9", "--seed", "12134"]  # fmt: skip


@pytest.fixture(scope="module")
def data(ml1m):
    x, features, samples = moira.read_dataset(ml1m["input"], features=ml1m["features"], samples=ml1m["samples"])
    return {
        "X": x,
        "Y": moira.read_dataset(ml1m["output"]),
        "T": moira.read_dataset(ml1m["test"]),
        "features": features,
        "samples": samples,
    }


@pytest.fixture(scope="module")
def trained(ml1m, bins, data):
    """The recipe trained by `trainer` (its model file) and by `fit` (the Recommender)."""
    cli = ml1m["dir"] / "cli.nc"
    run(bins["trainer"], NET, "-i", ml1m["input"], "-o", ml1m["output"], "-n", cli,
        "-e", EPOCHS, *FLAGS, "--threads", 2, "--device", "cpu", "--force")  # fmt: skip
    rec = moira.Recommender(NET, epochs=EPOCHS, threads=2, device="cpu", **RECIPE)
    history = rec.fit(data["X"], data["Y"], verbose=0)
    return {"cli": cli, "rec": rec, "history": history}


def test_read_dataset_is_the_converted_lists(ml1m, data):
    x, y, t = data["X"], data["Y"], data["T"]
    users, items = data["samples"], data["features"]
    width = -(-len(items) // 128) * 128  # the converter rounds the width up to 128
    assert len(users) == 6039 and len(items) > 3500
    assert x.shape == y.shape == t.shape == (6039, width)
    assert x.dtype == y.dtype == np.float32
    lists = read_lists(ML1M / "train.txt")
    for u, more in read_lists(ML1M / "valid.txt").items():
        lists.setdefault(u, []).extend(more)
    expected = to_csr(lists, users, items)
    assert (y[:, : len(items)] != expected).nnz == 0
    assert y[:, len(items) :].nnz == 0
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    assert np.allclose(norms[np.diff(x.indptr) > 0], 1.0, atol=1e-6)
    assert (t[:, : len(items)] != to_csr(read_lists(ML1M / "test.txt"), users, items)).nnz == 0


def test_fit_gives_the_trainers_weights_bit_for_bit(trained):
    ours = trained["rec"].get_weights()
    theirs = moira.load(trained["cli"]).get_weights()
    assert ours.keys() == theirs.keys() == {"Input->Hidden", "Hidden->Output"}
    for key, (w, b) in ours.items():
        assert w.dtype == np.float32 and w.shape == theirs[key][0].shape
        assert np.array_equal(w.view(np.uint32), theirs[key][0].view(np.uint32)), key
        assert np.array_equal(b.view(np.uint32), theirs[key][1].view(np.uint32)), key


def test_history_records_every_epoch(trained):
    h = trained["history"]
    assert len(h) == EPOCHS and h.epoch == list(range(EPOCHS))
    assert h["loss"][-1] < h["loss"][0]
    assert all(t > 0 for t in h["time"])
    assert trained["rec"].epochs_trained == EPOCHS


def test_quality_equals_the_predictors(ml1m, bins, data, trained):
    rec = trained["rec"]
    ours = rec.evaluate(data["X"], data["T"], k=(10, 20), n_items=len(data["features"]))
    assert ours["recall@20"] >= 0.36, ours
    out = run(bins["predictor"], "-n", trained["cli"], "-i", ml1m["input"], "--evaluate",
              ml1m["test"], "--evaluate-k", "10,20", "-o", ml1m["features"], "--threads", 2,
              "--quiet", "--device", "cpu")  # fmt: skip
    cli = json.loads(out.strip().splitlines()[-1])
    assert ours["users"] == cli["users"] > 6000
    for m in cli["metrics"]:
        for name in ("precision", "recall", "ndcg"):
            assert ours[f"{name}@{m['k']}"] == pytest.approx(m[name], abs=1e-12), (name, m)


def test_recommend_equals_the_predictor_on_the_cli_model(ml1m, bins, data, trained):
    recs = ml1m["dir"] / "recs.tsv"
    run(bins["predictor"], "-n", trained["cli"], "-i", ml1m["input"], "-o", ml1m["features"],
        "--samples", ml1m["samples"], "-k", 10, "-s", recs, "--format", "tsv", "-p", 9,
        "--threads", 2, "--quiet", "--device", "cpu")  # fmt: skip
    loaded = moira.load(trained["cli"], threads=2, device="cpu")
    items, scores = loaded.recommend(data["X"], k=10, n_items=len(data["features"]))
    assert items.shape == scores.shape == (6039, 10)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    user_row = {u: r for r, u in enumerate(data["samples"])}
    item_col = {it: j for j, it in enumerate(data["features"])}
    cli_items = np.full((6039, 10), -1, dtype=np.int64)
    cli_scores = np.zeros((6039, 10))
    for line in recs.read_text().splitlines():
        user, rank, item, score = line.split("\t")
        cli_items[user_row[user], int(rank) - 1] = item_col[item]
        cli_scores[user_row[user], int(rank) - 1] = float(score)
    assert np.array_equal(items, cli_items)
    assert np.allclose(scores, cli_scores, atol=1e-9)
    # The Python-trained model recommends the same (same bits).
    assert np.array_equal(trained["rec"].recommend(data["X"], k=10, n_items=len(data["features"]))[0], items)


def test_recommendations_exclude_the_users_items(data, trained):
    x = data["X"][:200]
    items, _ = trained["rec"].recommend(x, k=20)
    for r in range(x.shape[0]):
        seen = set(x.indices[x.indptr[r] : x.indptr[r + 1]])
        assert not seen & set(items[r])


def test_embed_gives_the_hidden_code(data, trained):
    e = trained["rec"].embed(data["X"][:100])
    assert e.shape == (100, 600) and e.dtype == np.float32
    assert np.all(np.abs(e) <= 1.0)  # Tanh
