"""Moira: sparse recommendation autoencoders in the manner of Amazon's DSSTNE, from NumPy and
SciPy, on the CPU or an NVIDIA GPU.

- :class:`Recommender`: ``fit`` / ``recommend`` / ``embed`` / ``evaluate`` / ``save``;
  :func:`load` reads a model file (``trainer``'s, DSSTNE's, or a saved one).
- :func:`read_dataset` / :func:`write_dataset`: DSSTNE NetCDF datasets ↔ SciPy CSR matrices
  (NumPy arrays for dense datasets); :func:`read_index` / :func:`write_index`: DSSTNE's
  ``label<TAB>index`` files.

The same library calls as Moira's command-line tools (``converter``, ``trainer``,
``predictor``): the same descriptor, data, seed and settings give the same weights, and the
tools and the package read each other's files. Errors are exceptions with the engine's
message: ``ValueError`` (bad arguments, descriptors, data), ``FileNotFoundError`` /
``OSError`` (files), ``RuntimeError`` (divergence, devices)."""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp

from . import _arrays, _moira
from ._progress import History
from ._recommender import NotFittedError, Recommender, load

__version__: str = _moira.__version__
__all__ = [
    "History",
    "NotFittedError",
    "Recommender",
    "load",
    "read_dataset",
    "read_index",
    "write_dataset",
    "write_index",
]

StrPath = Union[str, "os.PathLike[str]"]


def read_index(path: StrPath) -> List[str]:
    """The labels of a DSSTNE index file (``label<TAB>index`` lines, as ``converter -f/-s``
    writes): ``labels[i]`` is the label of index ``i``. Raises ``FileNotFoundError``, or
    ``ValueError`` naming the line of a malformed one."""
    return list(_moira.read_index(os.fspath(path)))


def write_index(path: StrPath, labels: Sequence[str]) -> None:
    """Writes a DSSTNE index file giving ``labels[i]`` index ``i`` (atomically). Raises
    ``ValueError`` for a repeated or empty label, or one with a TAB, CR or LF."""
    _moira.write_index(os.fspath(path), [str(s) for s in labels])


def read_dataset(
    path: StrPath,
    name: Optional[str] = None,
    *,
    features: Optional[StrPath] = None,
    samples: Optional[StrPath] = None,
) -> Any:
    """Reads a dataset of a DSSTNE NetCDF file (``converter``'s output, ``predictor
    --layer``'s): the one named ``name``, or the file's only one.

    A sparse dataset comes back as a ``scipy.sparse.csr_matrix`` of ``float32`` (a boolean
    dataset's entries are 1), a dense one as a ``float32`` array; one row per example (the
    shared rows of an indexed dataset repeated), as many columns as the dataset's width
    (times height and length). Its arrays are handed over without a copy.

    With ``features`` and/or ``samples`` (index files), returns ``(matrix, feature_labels,
    sample_labels)`` instead, each list ``None`` when its file is not given. Raises
    ``FileNotFoundError``, ``OSError`` for a file that is not a DSSTNE dataset (naming the
    variable), ``ValueError`` for an unknown ``name`` (listing the file's)."""
    kind, payload, *shape = _moira.read_dataset(os.fspath(path), name)
    if kind == "sparse":
        indptr, indices, data = payload
        if data is None:
            data = np.ones(len(indices), dtype=np.float32)
        matrix: Any = sp.csr_matrix((data, indices, indptr), shape=tuple(shape[0]), copy=False)
    else:
        matrix = payload
    if features is None and samples is None:
        return matrix
    return (
        matrix,
        None if features is None else read_index(features),
        None if samples is None else read_index(samples),
    )


def write_dataset(
    path: StrPath,
    X: Any,
    name: str = "input",
    *,
    features: Optional[Tuple[StrPath, Sequence[str]]] = None,
    samples: Optional[Tuple[StrPath, Sequence[str]]] = None,
) -> None:
    """Writes ``X`` as dataset ``name`` of a new DSSTNE NetCDF file (atomically), readable by
    ``trainer -i``/``-o``, ``predictor`` and DSSTNE.

    A NumPy array becomes a dense dataset; anything else is read as a sparse matrix (see
    ``Recommender.fit``), stored boolean when its values are all 1 (as ``converter`` writes
    indicator data), else analog. Its width is ``X.shape[1]``. ``features`` / ``samples``:
    ``(index_path, labels)`` also writes the feature (column) or sample (row) index file;
    there are at most as many feature labels as columns and exactly one sample label per
    row."""
    if isinstance(X, np.ndarray) and X.ndim == 2:
        kind = X.dtype.kind
        if kind not in "biuf":
            raise TypeError(f"X: dtype {X.dtype} is not a real number type")
        matrix: Any = np.ascontiguousarray(X, dtype=np.float32)
        shape = X.shape
    else:
        matrix = _arrays.parts(X, "X")
        shape = (len(matrix[0]) - 1, matrix[3])
    for what, given, axis, most in (("features", features, 1, True), ("samples", samples, 0, False)):
        if given is not None:
            labels = given[1]
            if len(labels) > shape[axis] or (not most and len(labels) != shape[axis]):
                raise ValueError(
                    f"{what}: {len(labels)} labels for {shape[axis]} "
                    f"{'columns' if axis else 'rows'} of X (shape {shape})"
                )
    _moira.write_dataset(os.fspath(path), matrix, str(name))
    if features is not None:
        write_index(features[0], features[1])
    if samples is not None:
        write_index(samples[0], samples[1])
