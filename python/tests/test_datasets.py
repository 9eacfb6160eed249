"""read_dataset / write_dataset / read_index / write_index round trips."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

import moira
from conftest import l2_rows


def test_sparse_boolean_and_analog_round_trip(tmp_path, generated):
    moira.write_dataset(tmp_path / "b.nc", generated, "items")
    b = moira.read_dataset(tmp_path / "b.nc")
    assert isinstance(b, sp.csr_matrix) and b.dtype == np.float32 and b.shape == generated.shape
    assert (b != generated).nnz == 0
    x = l2_rows(generated)
    moira.write_dataset(tmp_path / "a.nc", x)
    a = moira.read_dataset(tmp_path / "a.nc", "input")
    assert np.array_equal(a.indptr, x.indptr) and np.array_equal(a.indices, x.indices)
    assert np.array_equal(a.data, x.data)


def test_dense_round_trip(tmp_path):
    d = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    moira.write_dataset(tmp_path / "d.nc", d, "dense")
    back = moira.read_dataset(tmp_path / "d.nc")
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    assert np.array_equal(back, d.astype(np.float32))


def test_index_files(tmp_path, generated):
    items = [f"item{j}" for j in range(250)]
    users = [f"user{i}" for i in range(400)]
    moira.write_dataset(
        tmp_path / "x.nc", generated, features=(tmp_path / "f", items), samples=(tmp_path / "s", users)
    )
    x, f, s = moira.read_dataset(tmp_path / "x.nc", features=tmp_path / "f", samples=tmp_path / "s")
    assert f == items and s == users and (x != generated).nnz == 0
    assert (tmp_path / "f").read_text().splitlines()[:2] == ["item0\t0", "item1\t1"]
    _, f_only, none = moira.read_dataset(tmp_path / "x.nc", features=tmp_path / "f")
    assert f_only == items and none is None
    moira.write_index(tmp_path / "i", ["b", "a"])
    assert moira.read_index(tmp_path / "i") == ["b", "a"]


def test_empty_rows_and_row_order_survive(tmp_path):
    m = sp.csr_matrix(
        (np.array([2.0, 1.0, 3.0], dtype=np.float32), np.array([5, 1, 0]), np.array([0, 2, 2, 3])),
        shape=(3, 8),
    )
    moira.write_dataset(tmp_path / "m.nc", m)
    back = moira.read_dataset(tmp_path / "m.nc")
    assert back.indices.tolist() == [5, 1, 0] and back.data.tolist() == [2.0, 1.0, 3.0]
    assert back.indptr.tolist() == [0, 2, 2, 3]
