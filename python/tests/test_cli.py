"""The CLI round trip on the generated set: data converted by `converter` reads in Python
and data written by Python trains in `trainer`; `trainer`'s models load in Python and
Python's in `predictor`, with the same recommendations; checkpoints continue across doors;
exact sums in Python reproduce a two-rank `mpirun` run bit for bit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import moira
from conftest import SMALL_NET, l2_rows, run, to_csr

FLAGS = ["-b", "64", "--optimizer", "adam", "--alpha", "0.01", "--seed", "7", "--threads", "2",
         "--device", "cpu", "--force"]  # fmt: skip
SETTINGS = dict(batch=64, optimizer="adam", alpha=0.01, seed=7, threads=2, device="cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory, bins, generated):
    """The generated set as lists, converted by `converter` (boolean input and target)."""
    d = tmp_path_factory.mktemp("cli")
    lines = [
        " ".join([f"u{r}"] + [f"i{c}" for c in generated.indices[generated.indptr[r] : generated.indptr[r + 1]]])
        for r in range(generated.shape[0])
    ]
    (d / "lists.txt").write_text("\n".join(lines) + "\n")
    net = d / "net.json"
    net.write_text(json.dumps(SMALL_NET))
    f, s = d / "features", d / "samples"
    for name, extra in (("input", ["-c"]), ("output", [])):
        run(bins["converter"], "--format", "lists", "-d", name, "-i", d / "lists.txt",
            "-o", d / f"{name}.nc", "-f", f, "-s", s, *extra)  # fmt: skip
    return {"dir": d, "net": net, "features": f, "samples": s, "input": d / "input.nc"}


def same_weights(a, b) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return wa.keys() == wb.keys() and all(
        np.array_equal(wa[k][i].view(np.uint32), wb[k][i].view(np.uint32)) for k in wa for i in (0, 1)
    )


def predictor_recs(bins, model, data, k=5):
    """`predictor`'s top-k of every sample of ``data`` (a dict of the ``input`` file and the
    ``features``/``samples`` indices) as (items, scores) arrays in samples order."""
    out = data["input"].with_suffix(".recs.tsv")
    run(bins["predictor"], "-n", model, "-i", data["input"], "-o", data["features"],
        "--samples", data["samples"], "-k", k, "-s", out, "--format", "tsv", "-p", 9,
        "--threads", 2, "--quiet", "--device", "cpu")  # fmt: skip
    users = {u: r for r, u in enumerate(moira.read_index(data["samples"]))}
    items = {it: j for j, it in enumerate(moira.read_index(data["features"]))}
    got = np.full((len(users), k), -1)
    scores = np.zeros((len(users), k))
    for line in out.read_text().splitlines():
        u, rank, it, score = line.split("\t")
        got[users[u], int(rank) - 1] = items[it]
        scores[users[u], int(rank) - 1] = float(score)
    return got, scores


def test_converted_data_reads_as_the_lists(files, generated):
    x, features, samples = moira.read_dataset(
        files["dir"] / "input.nc", features=files["features"], samples=files["samples"]
    )
    assert x.shape == (400, 256) and len(samples) == 400
    lists = {f"u{r}": [f"i{c}" for c in generated.indices[generated.indptr[r] : generated.indptr[r + 1]]] for r in range(400)}
    assert (x[:, : len(features)] != to_csr(lists, samples, features)).nnz == 0


def test_trainer_models_load_in_python_and_recommend_alike(bins, files):
    d = files["dir"]
    run(bins["trainer"], files["net"], "-i", d / "input.nc", "-o", d / "output.nc", "-n", d / "cli.nc", "-e", 3, *FLAGS)
    x = moira.read_dataset(d / "input.nc")
    rec = moira.Recommender(files["net"], epochs=3, **SETTINGS)
    rec.fit(x, moira.read_dataset(d / "output.nc"), verbose=0)
    loaded = moira.load(d / "cli.nc", threads=2, device="cpu")
    assert same_weights(rec, loaded)
    n = len(moira.read_index(files["features"]))
    items, scores = loaded.recommend(x, k=5, n_items=n)
    cli_items, cli_scores = predictor_recs(bins, d / "cli.nc", files)
    assert np.array_equal(items, cli_items) and np.allclose(scores, cli_scores, atol=1e-9)


def test_python_models_and_data_work_in_the_cli(bins, files, generated, tmp_path):
    x = l2_rows(generated)
    ours = {"input": tmp_path / "input.nc", "features": tmp_path / "f", "samples": tmp_path / "s"}
    moira.write_dataset(ours["input"], x, "input", features=(ours["features"], [f"i{j}" for j in range(250)]),
                        samples=(ours["samples"], [f"u{i}" for i in range(400)]))  # fmt: skip
    moira.write_dataset(tmp_path / "output.nc", generated, "output")
    rec = moira.Recommender(files["net"], epochs=2, **SETTINGS)
    rec.fit(x, generated, verbose=0)
    run(bins["trainer"], files["net"], "-i", ours["input"], "-o", tmp_path / "output.nc",
        "-n", tmp_path / "cli.nc", "-e", 2, *FLAGS)  # fmt: skip
    assert same_weights(rec, moira.load(tmp_path / "cli.nc"))
    # A Python-saved model predicts in `predictor` what it predicts in Python.
    rec.save(tmp_path / "py.nc")
    cli_items, cli_scores = predictor_recs(bins, tmp_path / "py.nc", ours)
    items, scores = rec.recommend(x, k=5)
    assert np.array_equal(items, cli_items) and np.allclose(scores, cli_scores, atol=1e-9)


def test_checkpoints_continue_across_doors(bins, files, tmp_path):
    d = files["dir"]
    x, y = moira.read_dataset(d / "input.nc"), moira.read_dataset(d / "output.nc")
    data = ["-i", d / "input.nc", "-o", d / "output.nc"]
    # trainer 4 epochs, in one run.
    run(bins["trainer"], files["net"], *data, "-n", tmp_path / "four.nc", "-e", 4, *FLAGS)
    # Python 2 epochs, saved with the optimizer state; trainer --resume to 4.
    rec = moira.Recommender(files["net"], epochs=2, **SETTINGS)
    rec.fit(x, y, verbose=0)
    rec.save(tmp_path / "py2.nc", include_optimizer=True)
    run(bins["trainer"], files["net"], *data, "-n", tmp_path / "resumed.nc", "-e", 4,
        "--resume", tmp_path / "py2.nc", *FLAGS)  # fmt: skip
    four = moira.load(tmp_path / "four.nc")
    assert same_weights(four, moira.load(tmp_path / "resumed.nc"))
    # trainer's checkpoint after 2 epochs, continued in Python to 4.
    run(bins["trainer"], files["net"], *data, "-n", tmp_path / "two.nc", "-e", 2,
        "--checkpoint-every", 2, *FLAGS)  # fmt: skip
    cont = moira.load(tmp_path / "two.epoch2.nc", epochs=2, **SETTINGS)
    cont.fit(x, y, verbose=0)
    assert cont.epochs_trained == 4 and same_weights(four, cont)


def test_exact_sums_in_python_reproduce_a_two_rank_mpirun_run(bins, files, tmp_path):
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        pytest.skip("mpirun is not installed")
    d = files["dir"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    args = [mpirun, "-np", "2", "--oversubscribe", bins["trainer"], files["net"],
            "-i", d / "input.nc", "-o", d / "output.nc", "-n", tmp_path / "mpi.nc", "-e", "2",
            *FLAGS, "--exact-chunk", "16", "--parallel", "data"]  # fmt: skip
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    if "rank 0 of 2 (data parallelism)" not in p.stderr:
        pytest.skip("the trainer was built without the `mpi` feature")
    x, y = moira.read_dataset(d / "input.nc"), moira.read_dataset(d / "output.nc")
    mpi = moira.load(tmp_path / "mpi.nc", threads=2, device="cpu")
    rec = moira.Recommender(files["net"], epochs=2, exact_chunk=16, **SETTINGS)
    rec.fit(x, y, verbose=0)
    assert same_weights(rec, mpi)
    ordinary = moira.Recommender(files["net"], epochs=2, **SETTINGS)
    ordinary.fit(x, y, verbose=0)
    assert not same_weights(ordinary, mpi)
    with pytest.raises(ValueError, match="exact_chunk"):
        moira.Recommender(files["net"], exact_chunk=0)
