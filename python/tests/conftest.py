"""Fixtures: the repository, the command-line tools cargo built, MovieLens-1M from
../shared/data (converted by the CLI's converter exactly as scripts/demo.sh does), and a
small generated set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[2]
ML1M = Path(os.environ.get("MOIRA_ML1M", REPO.parent / "shared" / "data" / "ml-1m-lightgcnpp"))
TOOLS = ("converter", "trainer", "predictor")


def _bin_dir() -> Path | None:
    """``MOIRA_BIN_DIR``, else target/ci (scripts/test.sh's build), else target/release,
    whichever holds every tool first. They must be built from the same source as the
    package: the tests compare bits."""
    given = os.environ.get("MOIRA_BIN_DIR")
    if given:
        return Path(given)
    for profile in ("ci", "release"):
        d = REPO / "target" / profile
        if all((d / t).is_file() for t in TOOLS):
            return d
    return None


@pytest.fixture(scope="session")
def bins() -> Dict[str, Path]:
    """The paths of converter, trainer and predictor (skips when cargo has not built them)."""
    d = _bin_dir()
    if d is None:
        pytest.skip(
            "the command-line tools are not built: run `cargo build --release --workspace` "
            "(or scripts/test.sh), or set MOIRA_BIN_DIR"
        )
    return {t: d / t for t in TOOLS}


def run(*args: object) -> str:
    """Runs a tool; fails the test with its stderr when it fails."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def read_lists(path: Path) -> Dict[str, List[str]]:
    """``user item item …`` lines: user → items, in file order."""
    out: Dict[str, List[str]] = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields:
            out.setdefault(fields[0], []).extend(fields[1:])
    return out


def to_csr(lists: Dict[str, List[str]], users: List[str], items: List[str]) -> sp.csr_matrix:
    """A boolean user × item CSR matrix (rows in ``users`` order, columns in ``items``'s)."""
    col = {it: j for j, it in enumerate(items)}
    indptr, indices = [0], []
    for u in users:
        cols = sorted({col[i] for i in lists.get(u, []) if i in col})
        indices += cols
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(users), len(items)))


@pytest.fixture(scope="session")
def ml1m(tmp_path_factory, bins) -> Dict[str, Path]:
    """MovieLens-1M converted as scripts/demo.sh converts it: ``input.nc`` (train + valid,
    rows L2-normalised), ``output.nc`` (the same items, boolean), ``test.nc`` (held out), and
    the ``features``/``samples`` index files."""
    if not (ML1M / "train.txt").is_file():
        pytest.skip(f"MovieLens-1M is not at {ML1M} (../shared/data): the ML-1M tests need it")
    d = tmp_path_factory.mktemp("ml1m")
    lists = d / "lists"
    lists.mkdir()
    (lists / "1-train.txt").write_text((ML1M / "train.txt").read_text())
    (lists / "2-valid.txt").write_text((ML1M / "valid.txt").read_text())
    f, s = d / "features", d / "samples"
    conv = bins["converter"]
    run(conv, "--format", "lists", "-d", "input", "-i", lists, "-o", d / "input.nc",
        "-f", f, "-s", s, "-c", "--l2-normalize")  # fmt: skip
    run(conv, "--format", "lists", "-d", "output", "-i", lists, "-o", d / "output.nc", "-f", f, "-s", s)
    run(conv, "--format", "lists", "-d", "test", "-i", ML1M / "test.txt", "-o", d / "test.nc", "-f", f, "-s", s)
    return {
        "dir": d,
        "input": d / "input.nc",
        "output": d / "output.nc",
        "test": d / "test.nc",
        "features": f,
        "samples": s,
    }


@pytest.fixture(scope="session")
def generated() -> sp.csr_matrix:
    """A generated implicit-feedback set: 400 users × 250 items, power-law item popularity,
    5 to 40 items per user (seeded)."""
    rng = np.random.default_rng(20240518)
    n_users, n_items = 400, 250
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    rows = []
    for _ in range(n_users):
        rows.append(np.sort(rng.choice(n_items, size=rng.integers(5, 41), replace=False, p=popularity)))
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows)
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_users, n_items))


def l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to unit L2 norm (the converter's --l2-normalize)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms) @ m, dtype=np.float32)


SMALL_NET = {
    "Version": 0.9,
    "Name": "small-dae",
    "Kind": "AutoEncoder",
    "ErrorFunction": "CrossEntropy",
    "Denoising": {"p": 0.2},
    "Layers": [
        {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
        {"Name": "Hidden", "Kind": "Hidden", "N": 32, "Activation": "Tanh", "pDropout": 0.2},
        {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output", "Activation": "SoftMax"},
    ],
}
