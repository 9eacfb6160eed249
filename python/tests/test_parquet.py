"""Parquet through the command-line tools, checked with pyarrow: interaction logs written by
pyarrow (nulls, a dictionary-encoded item column, part files beside _SUCCESS) convert to the
same dataset as the equivalent lists, and the predictor's Parquet recommendations and layer
outputs read back in pyarrow with the values of its text outputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import moira
from conftest import SMALL_NET, run


@pytest.fixture(scope="module")
def files(tmp_path_factory, bins, generated):
    """The generated set as lists and as Parquet part files, and a network trained on it."""
    d = tmp_path_factory.mktemp("parquet")
    users, items = [], []
    lines = []
    for r in range(generated.shape[0]):
        cols = generated.indices[generated.indptr[r] : generated.indptr[r + 1]]
        lines.append(" ".join([f"u{r}"] + [f"i{c}" for c in cols]))
        users += [f"u{r}"] * len(cols)
        items += [f"i{c}" for c in cols]
    (d / "lists.txt").write_text("\n".join(lines) + "\n")
    # Spark's layout; a null user and a null item that must be skipped; items as a dictionary.
    parts = d / "log.parquet"
    parts.mkdir()
    half = len(users) // 2
    for i, (lo, hi) in enumerate(((0, half), (half, len(users)))):
        u = pa.array(users[lo:hi] + [None, "u0"])
        it = pa.array(items[lo:hi] + ["i1", None]).dictionary_encode()
        pq.write_table(pa.table({"user": u, "item": it}), parts / f"part-{i:05}.parquet", row_group_size=1000)
    (parts / "_SUCCESS").write_text("")
    net = d / "net.json"
    net.write_text(json.dumps(SMALL_NET))
    f, s = d / "features", d / "samples"
    for name, extra in (("input", ["-c"]), ("output", [])):
        run(bins["converter"], "--format", "lists", "-d", name, "-i", d / "lists.txt",
            "-o", d / f"{name}.nc", "-f", f, "-s", s, *extra)  # fmt: skip
    run(bins["trainer"], net, "-i", d / "input.nc", "-o", d / "output.nc", "-n", d / "net.nc", "-e", 2,
        "-b", 64, "--threads", 2, "--device", "cpu", "--seed", 3)  # fmt: skip
    return {"dir": d, "parts": parts, "features": f, "samples": s}


def test_pyarrow_logs_convert_like_the_lists(bins, files):
    d = files["dir"]
    out = run(bins["converter"], "--format", "parquet", "--user-column", "user", "--item-column", "item",
              "-d", "input", "-i", files["parts"], "-o", d / "pq.nc", "-f", d / "pq.features",
              "-s", d / "pq.samples", "-c", "-v")  # fmt: skip
    del out
    a = moira.read_dataset(d / "input.nc")
    b = moira.read_dataset(d / "pq.nc")
    assert (a != b).nnz == 0 and a.shape == b.shape
    assert (d / "pq.features").read_text() == files["features"].read_text()
    assert (d / "pq.samples").read_text() == files["samples"].read_text()


def test_recommendations_and_layers_read_back_in_pyarrow(bins, files):
    d = files["dir"]
    common = ["-n", d / "net.nc", "-i", d / "input.nc", "-o", files["features"], "--samples", files["samples"],
              "-k", 5, "--threads", 2, "--device", "cpu", "--quiet"]  # fmt: skip
    run(bins["predictor"], *common, "--format", "parquet", "-s", d / "recs.parquet")
    run(bins["predictor"], *common, "--format", "tsv", "-p", 9, "-s", d / "recs.tsv")
    t = pq.read_table(d / "recs.parquet")
    assert t.schema.names == ["sample", "rank", "item", "score"]
    assert t.schema.field("rank").type == pa.int32() and t.schema.field("score").type == pa.float32()
    tsv = [line.split("\t") for line in (d / "recs.tsv").read_text().splitlines()]
    assert t.num_rows == len(tsv) == 400 * 5
    assert t.column("sample").to_pylist() == [r[0] for r in tsv]
    assert t.column("rank").to_pylist() == [int(r[1]) for r in tsv]
    assert t.column("item").to_pylist() == [r[2] for r in tsv]
    np.testing.assert_allclose(t.column("score").to_numpy(), [float(r[3]) for r in tsv], atol=1e-8)
    # The hidden layer: one list of 32 float32 per sample, equal to the NetCDF output.
    run(bins["predictor"], *common, "--layer", "Hidden", "-s", d / "hidden.parquet")
    run(bins["predictor"], *common, "--layer", "Hidden", "-s", d / "hidden.nc")
    h = pq.read_table(d / "hidden.parquet")
    assert h.schema.names == ["sample", "values"]
    assert h.column("sample").to_pylist() == moira.read_index(files["samples"])
    values = np.array(h.column("values").to_pylist(), dtype=np.float32)
    dense = moira.read_dataset(d / "hidden.nc")
    dense = dense.toarray() if hasattr(dense, "toarray") else np.asarray(dense)
    assert values.shape == (400, 32)
    assert np.array_equal(values, dense)
