"""Bad inputs: exceptions of the right type with the engine's message."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

import moira
from conftest import SMALL_NET

SETTINGS = dict(batch=64, epochs=1, seed=7, threads=2, device="cpu")


@pytest.fixture(scope="module")
def fitted(generated):
    rec = moira.Recommender(SMALL_NET, **SETTINGS)
    rec.fit(generated, verbose=0)
    return rec


def test_a_bad_descriptor_key_names_its_json_path():
    net = copy.deepcopy(SMALL_NET)
    net["Layers"][1]["Activaton"] = "Tanh"
    with pytest.raises(ValueError, match=r"Layers\[1\]\.Activaton.*Activation"):
        moira.Recommender(net)
    with pytest.raises(ValueError, match="malformed JSON"):
        moira.Recommender('{"Layers": [}')
    with pytest.raises(TypeError, match="descriptor"):
        moira.Recommender(42)


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        moira.Recommender(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        moira.load(tmp_path / "nope.nc")
    with pytest.raises(FileNotFoundError):
        moira.read_dataset(tmp_path / "nope.nc")
    with pytest.raises(FileNotFoundError):
        moira.read_index(tmp_path / "nope")


def test_a_file_that_is_not_a_model_is_an_os_error(tmp_path):
    p = tmp_path / "text.nc"
    p.write_text("not a NetCDF file\n")
    with pytest.raises(OSError, match="text.nc"):
        moira.load(p)
    with pytest.raises(OSError, match="text.nc"):
        moira.read_dataset(p)


def test_bad_settings_are_value_errors():
    for kw, what in [
        ({"optimizer": "adamw"}, "optimizer"),
        ({"device": "tpu"}, "device"),
        ({"precision": "bf16"}, "precision"),
        ({"precision": "tf32", "device": "cpu"}, "precision"),
        ({"batch": 0}, "batch"),
    ]:
        with pytest.raises(ValueError, match=what):
            moira.Recommender(SMALL_NET, **kw)


def test_wrong_dtypes_and_non_matrices_are_type_errors(generated):
    rec = moira.Recommender(SMALL_NET, **SETTINGS)
    with pytest.raises(TypeError, match="X: dtype complex"):
        rec.fit(generated.astype(np.complex64), verbose=0)
    with pytest.raises(TypeError, match="X: expected a SciPy sparse matrix"):
        rec.fit([["a", "b"], ["c", "d"]], verbose=0)
    with pytest.raises(TypeError, match="X: expected a SciPy sparse matrix"):
        rec.fit(np.zeros((2, 3, 4)), verbose=0)
    with pytest.raises(TypeError, match="X: expected a matrix, got None"):
        rec.fit(None, verbose=0)
    assert not rec.fitted
    # COO, dense arrays, sparse arrays and booleans are matrices too.
    rec.fit(generated.tocoo(), verbose=0)
    rec.fit(sp.csr_array(generated.astype(bool)), verbose=0)
    rec.fit(generated.toarray(), verbose=0)
    assert rec.epochs_trained == 3


def test_shape_mismatches_name_both_shapes(fitted, generated):
    wide = sp.csr_matrix((400, 300), dtype=np.float32)
    with pytest.raises(ValueError, match=r"250 units.*300"):
        fitted.recommend(wide)
    with pytest.raises(ValueError, match=r"250 units.*300"):
        fitted.fit(wide, verbose=0)
    rec = moira.Recommender(SMALL_NET, **SETTINGS)
    with pytest.raises(ValueError, match=r"400 examples.*300|300 examples.*400"):
        rec.fit(generated, generated[:300], verbose=0)
    with pytest.raises(ValueError, match=r"validation|held-out data is 100 wide"):
        rec.fit(generated, validation=generated[:, :100], verbose=0)
    with pytest.raises(ValueError, match="100 wide"):
        fitted.evaluate(generated, generated[:, :100])
    with pytest.raises(ValueError, match="filter"):
        fitted.recommend(generated, filter=generated[:, :100])


def test_bad_prediction_arguments(fitted, generated):
    with pytest.raises(ValueError, match="k"):
        fitted.recommend(generated, k=0)
    with pytest.raises(ValueError, match="candidates"):
        fitted.recommend(generated, k=251)
    with pytest.raises(ValueError, match="n_items"):
        fitted.recommend(generated, n_items=251)
    with pytest.raises(ValueError, match=r"no layer `Hiden`.*Hidden"):
        fitted.embed(generated, "Hiden")
    with pytest.raises(ValueError, match="sparse input layer"):
        fitted.embed(generated, "Input")
    with pytest.raises(ValueError, match="filter_mode"):
        fitted.recommend(generated, filter=generated, filter_mode="boost")
    with pytest.raises(ValueError, match="Input layers read"):
        fitted.recommend({"other": generated})
    with pytest.raises(moira.NotFittedError):
        moira.Recommender(SMALL_NET).recommend(generated)


def test_bad_datasets_and_indices(tmp_path, generated):
    with pytest.raises(ValueError, match="labels"):
        moira.write_dataset(tmp_path / "d.nc", generated, features=(tmp_path / "f", ["a"] * 300))
    with pytest.raises(ValueError, match="repeats"):
        moira.write_index(tmp_path / "f", ["a", "b", "a"])
    moira.write_dataset(tmp_path / "d.nc", generated, name="x")
    with pytest.raises(ValueError, match=r"no dataset `y`.*\"x\""):
        moira.read_dataset(tmp_path / "d.nc", "y")
    (tmp_path / "bad").write_text("a\t0\nb\tzero\n")
    with pytest.raises(ValueError, match="bad:2"):
        moira.read_index(tmp_path / "bad")


def test_divergence_is_a_runtime_error(generated):
    rec = moira.Recommender(SMALL_NET, alpha=1e30, brake=False, **SETTINGS)
    with pytest.raises(RuntimeError, match="diverged"):
        rec.fit(generated * 1e30, verbose=0)
    assert not rec.fitted
