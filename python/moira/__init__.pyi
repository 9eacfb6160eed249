"""Type stubs of the public API of ``moira`` (see the docstrings in the package)."""

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__version__: str

StrPath = Union[str, os.PathLike[str]]
# Anything scipy.sparse.csr_matrix accepts: SciPy sparse matrices and arrays, NumPy arrays.
MatrixLike = Union[sp.spmatrix, sp.sparray, npt.ArrayLike]
# One matrix, or {DataSet name: matrix} for a network with several Input or Output layers.
Data = Union[MatrixLike, Mapping[str, MatrixLike]]
Descriptor = Union[StrPath, Mapping[str, Any]]

class NotFittedError(ValueError, AttributeError): ...

class History:
    """Per-epoch measures of a fit: ``history["loss"]``, ``["time"]``, ``["val_recall@20"]``…"""

    epochs: List[Dict[str, float]]
    epoch: List[int]
    history: Dict[str, List[float]]
    def __init__(self, epochs: List[Dict[str, float]]) -> None: ...
    def __getitem__(self, key: str) -> List[float]: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Dict[str, float]]: ...

class Recommender:
    """A DSSTNE network trained on sparse user × item rows (see ``help(moira.Recommender)``)."""

    history_: Optional[History]
    selected_epoch_: Optional[int]
    def __init__(
        self,
        descriptor: Descriptor,
        *,
        epochs: int = 40,
        batch: int = 1024,
        optimizer: str = "sgd",
        alpha: float = 0.025,
        l2: float = 0.0001,
        l1: float = 0.0,
        mu: Optional[float] = None,
        mu1: float = 0.0,
        alpha_interval: int = 0,
        alpha_multiplier: float = 1.0,
        seed: int = 12134,
        brake: bool = True,
        device: str = "auto",
        precision: str = "fp32",
        threads: int = 0,
        exact_chunk: Optional[int] = None,
    ) -> None: ...
    @property
    def fitted(self) -> bool: ...
    @property
    def epochs_trained(self) -> int: ...
    def fit(
        self,
        X: Data,
        y: Optional[Data] = None,
        validation: Optional[MatrixLike] = None,
        *,
        epochs: Optional[int] = None,
        validation_k: Union[int, Sequence[int]] = (20,),
        validate_every: int = 1,
        select_by: Optional[str] = None,
        patience: Optional[int] = None,
        verbose: int = 1,
    ) -> History: ...
    def recommend(
        self,
        X: Data,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filter: Optional[MatrixLike] = None,
        filter_mode: str = "exclude",
        n_items: Optional[int] = None,
        batch: int = 1024,
    ) -> Tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
    def embed(self, X: Data, layer: str = "Hidden", *, batch: int = 1024) -> npt.NDArray[np.float32]: ...
    def evaluate(
        self,
        X: Data,
        heldout: MatrixLike,
        k: Union[int, Sequence[int]] = (10, 20),
        *,
        exclude_seen: bool = True,
        n_items: Optional[int] = None,
        batch: int = 1024,
    ) -> Dict[str, float]: ...
    def save(self, path: StrPath, *, include_optimizer: bool = False) -> None: ...
    def get_weights(
        self,
    ) -> Dict[str, Tuple[Optional[npt.NDArray[np.float32]], npt.NDArray[np.float32]]]: ...
    def summary(self) -> str: ...

def load(
    path: StrPath,
    *,
    epochs: int = 40,
    batch: int = 1024,
    optimizer: str = "sgd",
    alpha: float = 0.025,
    l2: float = 0.0001,
    l1: float = 0.0,
    mu: Optional[float] = None,
    mu1: float = 0.0,
    alpha_interval: int = 0,
    alpha_multiplier: float = 1.0,
    seed: int = 12134,
    brake: bool = True,
    device: str = "auto",
    precision: str = "fp32",
    threads: int = 0,
    exact_chunk: Optional[int] = None,
) -> Recommender: ...
def read_index(path: StrPath) -> List[str]: ...
def write_index(path: StrPath, labels: Sequence[str]) -> None: ...
@overload
def read_dataset(
    path: StrPath, name: Optional[str] = None, *, features: None = None, samples: None = None
) -> Union[sp.csr_matrix, npt.NDArray[np.float32]]: ...
@overload
def read_dataset(
    path: StrPath,
    name: Optional[str] = None,
    *,
    features: Optional[StrPath] = None,
    samples: Optional[StrPath] = None,
) -> Tuple[
    Union[sp.csr_matrix, npt.NDArray[np.float32]], Optional[List[str]], Optional[List[str]]
]: ...
def write_dataset(
    path: StrPath,
    X: Union[MatrixLike, npt.NDArray[Any]],
    name: str = "input",
    *,
    features: Optional[Tuple[StrPath, Sequence[str]]] = None,
    samples: Optional[Tuple[StrPath, Sequence[str]]] = None,
) -> None: ...
