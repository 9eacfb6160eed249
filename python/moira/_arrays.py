"""Matrices in: anything ``scipy.sparse.csr_matrix`` accepts, canonicalised into the CSR parts
the native module takes (``int64`` row offsets, ``int32`` column indices, ``float32`` values or
``None`` for a boolean matrix). Arrays already in those types are passed on without a copy; the
native module copies them once into the engine's own CSR."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp

Parts = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], int]


def csr(x: Any, what: str, *, keep_zeros: bool = False) -> sp.csr_matrix:
    """``x`` as a CSR matrix of real numbers without explicit zeros (unless ``keep_zeros``);
    ``what`` names the argument in errors. Each row keeps its entries in the order given: the
    engine sums them in that order, so data in the order the CLI's files hold it gives the
    CLI's bits (a SciPy conversion, e.g. from COO, sorts them).

    Raises ``TypeError`` for something that is not a matrix or not of real numbers, and
    ``ValueError`` for one that is not two-dimensional."""
    if x is None:
        raise TypeError(f"{what}: expected a matrix, got None")
    try:
        m = sp.csr_matrix(x)  # shares a CSR matrix's arrays; converts anything else
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{what}: expected a SciPy sparse matrix or anything scipy.sparse.csr_matrix "
            f"accepts, got {type(x).__name__} ({e})"
        ) from None
    if m.ndim != 2:
        raise ValueError(f"{what}: expected a two-dimensional matrix, got shape {m.shape}")
    kind = m.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{what}: dtype {m.dtype} is not a real number type")
    if not keep_zeros and m.nnz and kind != "b" and not np.all(m.data):
        m = m.copy()
        m.eliminate_zeros()
    return m


def parts(x: Any, what: str, *, keep_zeros: bool = False) -> Parts:
    """The CSR parts of ``x`` (see :func:`csr`): ``(indptr, indices, data or None, columns)``."""
    m = csr(x, what, keep_zeros=keep_zeros)
    indptr = m.indptr.astype(np.int64, copy=False)
    if m.indices.size and int(m.indices.max()) > np.iinfo(np.int32).max:
        raise ValueError(f"{what}: column indices above 2^31 - 1 are not supported")
    indices = m.indices.astype(np.int32, copy=False)
    data = None if m.dtype.kind == "b" else m.data.astype(np.float32, copy=False)
    return (indptr, indices, data, int(m.shape[1]))


def named(x: Any, what: str) -> Union[Parts, Mapping[str, Parts]]:
    """One matrix's parts, or a dict ``{dataset name: matrix}``'s."""
    if isinstance(x, Mapping):
        return {str(k): parts(v, f"{what}[{k!r}]") for k, v in x.items()}
    return parts(x, what)


def descriptor(d: Any) -> Tuple[str, bool]:
    """``(text or path, is_path)`` of a descriptor given as a dict, a JSON string or a path."""
    if isinstance(d, Mapping):
        import json

        return json.dumps(d), False
    if isinstance(d, (str, bytes, os.PathLike)):
        s = os.fsdecode(d)
        if s.lstrip().startswith("{"):
            return s, False
        return s, True
    raise TypeError(
        f"descriptor: expected a path, a JSON string or a dict, got {type(d).__name__}"
    )
