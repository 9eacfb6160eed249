"""Every function of the API on the generated set: fit, recommend, embed, evaluate, save,
load, get_weights, summary; continuing training; the GIL and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

import moira
from conftest import SMALL_NET, l2_rows

SETTINGS = dict(batch=64, optimizer="adam", alpha=0.01, seed=7, threads=2, device="cpu")


def same_weights(a: moira.Recommender, b: moira.Recommender) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return wa.keys() == wb.keys() and all(
        np.array_equal(wa[k][1].view(np.uint32), wb[k][1].view(np.uint32))
        and np.array_equal(wa[k][0].view(np.uint32), wb[k][0].view(np.uint32))
        for k in wa
    )


@pytest.fixture(scope="module")
def fitted(generated):
    rec = moira.Recommender(SMALL_NET, epochs=3, **SETTINGS)
    rec.history = rec.fit(l2_rows(generated), generated, verbose=0)
    return rec


def recall_at(items: np.ndarray, held: sp.csr_matrix, k: int) -> float:
    """EVALUATION.md's Recall@K over the rows with held-out items."""
    out = []
    for r in range(held.shape[0]):
        h = set(held.indices[held.indptr[r] : held.indptr[r + 1]])
        if h:
            out.append(len(h & set(items[r, :k])) / min(k, len(h)))
    return float(np.mean(out))


def test_fit_returns_the_history(fitted, generated):
    h = fitted.history
    assert isinstance(h, moira.History) and fitted.history_ is h
    assert len(h) == 3 and h.epoch == [0, 1, 2]
    assert set(h.history) >= {"loss", "time", "examples_per_second", "learning_rate"}
    assert h["loss"][2] < h["loss"][0]
    assert fitted.fitted and fitted.epochs_trained == 3
    assert "Hidden" in fitted.summary() and "trained 3 epochs" in repr(fitted)


def test_fit_with_validation_records_metrics(generated):
    rec = moira.Recommender(SMALL_NET, epochs=2, **SETTINGS)
    h = rec.fit(generated, validation=generated[:, ::-1], validation_k=(5, 10), verbose=0)
    assert 0 <= h["val_recall@10"][-1] <= 1 and len(h["val_ndcg@5"]) == 2


def test_two_fits_equal_one_of_both_lengths(generated):
    x = l2_rows(generated)
    once = moira.Recommender(SMALL_NET, epochs=4, **SETTINGS)
    once.fit(x, generated, verbose=0)
    twice = moira.Recommender(SMALL_NET, epochs=2, **SETTINGS)
    twice.fit(x, generated, verbose=0)
    h = twice.fit(x, generated, verbose=0)
    assert h.epoch == [2, 3] and twice.epochs_trained == 4
    assert same_weights(once, twice)


def test_descriptor_as_path_json_or_dict_and_named_data(tmp_path, generated):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(SMALL_NET))
    recs = []
    for d in (SMALL_NET, json.dumps(SMALL_NET), path, str(path)):
        rec = moira.Recommender(d, epochs=1, **SETTINGS)
        rec.fit(generated, verbose=0)
        recs.append(rec)
    named = moira.Recommender(SMALL_NET, epochs=1, **SETTINGS)
    named.fit({"input": generated}, {"output": generated}, verbose=0)
    assert all(same_weights(recs[0], r) for r in recs[1:] + [named])


def test_recommend_ranks_unseen_items_best_first(fitted, generated):
    x = l2_rows(generated)
    items, scores = fitted.recommend(x, k=15)
    assert items.shape == scores.shape == (400, 15)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    for r in range(400):
        assert not set(generated.indices[generated.indptr[r] : generated.indptr[r + 1]]) & set(items[r])
    # Without exclusions the ranking is the output layer's, ties to the lower item.
    out = fitted.embed(x, layer="Output")
    all_items, all_scores = fitted.recommend(x, k=15, exclude_seen=False)
    expected = np.argsort(-out, axis=1, kind="stable")[:, :15]
    assert np.array_equal(all_items, expected)
    assert np.array_equal(all_scores, np.take_along_axis(out, expected, axis=1))


def test_recommend_filters_and_limits(fitted, generated):
    x = l2_rows(generated)
    top, _ = fitted.recommend(x, k=5)
    filt = sp.csr_matrix((np.ones(400), top[:, 0], np.arange(401)), shape=(400, 250))
    items, _ = fitted.recommend(x, k=5, filter=filt)
    assert not np.any(items == top[:, :1]) and np.array_equal(items[:, :4], top[:, 1:])
    # Multiply: a factor 0 excludes, a factor 2 doubles the score.
    mult = sp.csr_matrix((np.full(400, 2.0), top[:, 4], np.arange(401)), shape=(400, 250))
    _, s1 = fitted.recommend(x, k=1, exclude_seen=True)
    _, s2 = fitted.recommend(x, k=1, filter=mult, filter_mode="multiply")
    assert np.all(s2[:, 0] >= s1[:, 0])
    items, _ = fitted.recommend(x, k=5, n_items=100)
    assert items.max() < 100
    # More than the eligible items: -1 and -inf past them.
    few = sp.csr_matrix(np.ones((1, 250)) - np.eye(1, 250, 7))
    items, scores = fitted.recommend(few, k=3)
    assert items[0].tolist() == [7, -1, -1] and np.isinf(scores[0, 1:]).all()


def test_embed_gives_each_layer(fitted, generated):
    e = fitted.embed(generated, "Hidden")
    assert e.shape == (400, 32) and e.dtype == np.float32 and np.all(np.abs(e) <= 1)
    assert np.array_equal(e[:10], fitted.embed(generated[:10], batch=3))
    out = fitted.embed(generated, "Output")
    assert np.allclose(out.sum(axis=1), 1, atol=1e-4)  # SoftMax
    assert fitted.embed(generated[:0]).shape == (0, 32)
    assert fitted.recommend(generated[:0], k=4)[0].shape == (0, 4)


def test_evaluate_is_evaluationmd_metrics(fitted, generated):
    rng = np.random.default_rng(3)
    held = sp.random(400, 250, density=0.03, format="csr", random_state=rng, dtype=np.float32)
    held.data[:] = 1
    held = held - held.multiply(generated)  # never a seen item
    held.eliminate_zeros()
    x = l2_rows(generated)
    m = fitted.evaluate(x, held, k=(5, 20))
    assert set(m) == {"precision@5", "recall@5", "ndcg@5", "precision@20", "recall@20", "ndcg@20", "users"}
    assert m["users"] == int((np.diff(held.indptr) > 0).sum())
    items, _ = fitted.recommend(x, k=20)
    assert m["recall@20"] == pytest.approx(recall_at(items, held, 20), abs=1e-12)
    assert fitted.evaluate(x, held, k=10).keys() == {"precision@10", "recall@10", "ndcg@10", "users"}
    none = fitted.evaluate(x, sp.csr_matrix(held.shape, dtype=np.float32), k=10)
    assert none["users"] == 0 and np.isnan(none["recall@10"])


def test_save_and_load_round_trip(fitted, generated, tmp_path):
    x = l2_rows(generated)
    fitted.save(tmp_path / "m.nc")
    loaded = moira.load(tmp_path / "m.nc", threads=2, device="cpu")
    assert loaded.fitted and same_weights(fitted, loaded)
    assert np.array_equal(loaded.recommend(x, k=5)[0], fitted.recommend(x, k=5)[0])
    # With the optimizer state, a loaded checkpoint trains on exactly as the original would.
    fitted.save(os.fspath(tmp_path / "ckpt.nc"), include_optimizer=True)
    resumed = moira.load(tmp_path / "ckpt.nc", epochs=1, **SETTINGS)
    assert resumed.epochs_trained == 3
    longer = moira.Recommender(SMALL_NET, epochs=4, **SETTINGS)
    longer.fit(x, generated, verbose=0)
    resumed.fit(x, generated, verbose=0)
    assert same_weights(longer, resumed) and resumed.epochs_trained == 4
    # A final network trains on from its weights (fresh optimizer state).
    warm = moira.load(tmp_path / "m.nc", epochs=1, **SETTINGS)
    warm.fit(x, generated, verbose=0)
    assert warm.epochs_trained == 1 and not same_weights(warm, fitted)


def test_progress_lines(generated, capsys):
    rec = moira.Recommender(SMALL_NET, epochs=2, **SETTINGS)
    rec.fit(generated, verbose=2)
    err = capsys.readouterr().err
    assert "epoch 1/2: loss" in err and "epoch 2/2: loss" in err
    rec.fit(generated, epochs=1, verbose=0)
    assert capsys.readouterr().err == ""


def test_fit_releases_the_gil(larger):
    x, y = larger
    rec = moira.Recommender(SMALL_NET, epochs=6, **{**SETTINGS, "batch": 16})
    done = threading.Event()
    thread = threading.Thread(target=lambda: (rec.fit(x, y, verbose=0), done.set()))
    ticks = 0
    thread.start()
    while not done.is_set():
        ticks += 1  # runs only while the fit does not hold the GIL
        time.sleep(0.0005)
    thread.join()
    assert rec.epochs_trained == 6 and ticks > 20


@pytest.fixture
def larger():
    """A larger generated set (2,000 users × 500 items) so that a fit lasts a while."""
    rng = np.random.default_rng(11)
    m = sp.random(2000, 500, density=0.04, format="csr", random_state=rng, dtype=np.float32)
    m.data[:] = 1
    return l2_rows(m), m


def test_ctrl_c_interrupts_and_keeps_the_model(larger):
    x, y = larger
    rec = moira.Recommender(SMALL_NET, epochs=1, **{**SETTINGS, "batch": 8})
    rec.fit(x, y, verbose=0)
    before = rec.get_weights()

    def interrupt():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rec.fit(x, y, epochs=500, verbose=0)
    timer.join()
    assert time.monotonic() - started < 30
    assert rec.epochs_trained == 1
    after = rec.get_weights()
    assert all(np.array_equal(before[k][0], after[k][0]) for k in before)
    # An interrupted first fit leaves the Recommender unfitted.
    fresh = moira.Recommender(SMALL_NET, epochs=500, **{**SETTINGS, "batch": 8})
    timer = threading.Thread(target=interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(x, y, verbose=0)
    timer.join()
    assert not fresh.fitted
    # ... and the Recommender still trains.
    rec.fit(x, y, verbose=0)
    assert rec.epochs_trained == 2


def hold_out(m: sp.csr_matrix, every: int = 4) -> tuple:
    """Every ``every``-th item of each row held out: ``(kept, held)``, both as wide as ``m``."""
    m = sp.csr_matrix(m)
    rows, cols = m.nonzero()
    position = np.arange(len(rows)) - m.indptr[rows]
    out = position % every == every - 1
    part = lambda mask: sp.csr_matrix(
        (np.ones(mask.sum(), np.float32), (rows[mask], cols[mask])), shape=m.shape
    )
    return part(~out), part(out)


def test_select_by_keeps_the_best_validation_epoch(generated):
    kept, held = hold_out(generated)
    x = l2_rows(kept)
    # A large step overfits the small set, so the best epoch comes before the last.
    settings = dict(SETTINGS, alpha=0.05)
    rec = moira.Recommender(SMALL_NET, epochs=14, **settings)
    h = rec.fit(
        x, kept, validation=held, validation_k=(5, 10), select_by="ndcg@10", patience=3, verbose=0
    )
    values = h["val_ndcg@10"]
    best = int(np.argmax(values))  # the first maximum: a tie keeps the earlier epoch
    assert best < len(h) - 1, f"no epoch after the best one ({values}): the test proves nothing"
    assert rec.selected_epoch_ == h.epoch[best] == best
    # Patience: training stopped 3 epochs without improvement after the best (or ran out).
    assert len(h) == min(14, best + 1 + 3)
    assert rec.epochs_trained == best + 1
    # The kept weights are those of a run of best + 1 epochs (validation changes nothing).
    again = moira.Recommender(SMALL_NET, epochs=best + 1, **settings)
    again.fit(x, kept, verbose=0)
    assert same_weights(rec, again)
    # A later fit starts from the kept weights (the later epochs' state is gone).
    rec.fit(x, kept, epochs=1, verbose=0)
    assert rec.epochs_trained == best + 2 and rec.selected_epoch_ is None


def test_select_by_is_checked(generated):
    rec = moira.Recommender(SMALL_NET, epochs=1, **SETTINGS)
    with pytest.raises(ValueError, match="select_by.*without validation"):
        rec.fit(generated, select_by="ndcg@10", verbose=0)
    with pytest.raises(ValueError, match="patience.*without select_by"):
        rec.fit(generated, validation=generated, patience=2, verbose=0)
    with pytest.raises(ValueError, match="unknown metric"):
        rec.fit(generated, validation=generated, select_by="auc@10", verbose=0)
    with pytest.raises(ValueError, match="among the validation cutoffs"):
        rec.fit(generated, validation=generated, validation_k=20, select_by="ndcg@10", verbose=0)
    assert not rec.fitted
