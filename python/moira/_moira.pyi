"""Type stubs of the native module (python/src/, private: use the ``moira`` API)."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

# (indptr int64, indices int32, data float32 or None for a boolean matrix, columns)
Parts = Tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], Optional[npt.NDArray[np.float32]], int]
Matrices = Union[Parts, Mapping[str, Parts]]

class Core:
    fitted: bool
    epochs_trained: int
    def __init__(self, descriptor: str, is_path: bool, settings: Dict[str, Any]) -> None: ...
    @staticmethod
    def load(path: str, settings: Dict[str, Any]) -> "Core": ...
    def summary(self) -> str: ...
    def fit(
        self,
        x: Matrices,
        y: Optional[Matrices],
        validation: Optional[Parts],
        validation_k: List[int],
        validate_every: int,
        epochs: Optional[int],
        callback: Optional[Callable[..., None]],
        select_by: Optional[str],
        patience: Optional[int],
    ) -> Tuple[List[Dict[str, float]], List[str], Optional[int]]: ...
    def recommend(
        self,
        x: Matrices,
        k: int,
        exclude_seen: bool,
        filter: Optional[Parts],
        filter_mode: str,
        n_items: Optional[int],
        batch: int,
    ) -> Tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...
    def embed(self, x: Matrices, layer: str, batch: int) -> npt.NDArray[np.float32]: ...
    def evaluate(
        self,
        x: Matrices,
        held_out: Parts,
        ks: List[int],
        exclude_seen: bool,
        n_items: Optional[int],
        batch: int,
    ) -> Dict[str, float]: ...
    def save(self, path: str, include_optimizer: bool) -> None: ...
    def get_weights(
        self,
    ) -> Dict[str, Tuple[Optional[npt.NDArray[np.float32]], npt.NDArray[np.float32]]]: ...

def read_dataset(
    path: str, name: Optional[str]
) -> Tuple[Any, ...]: ...
def write_dataset(
    path: str, x: Union[Parts, npt.NDArray[np.float32]], name: str
) -> None: ...
def read_index(path: str) -> List[str]: ...
def write_index(path: str, labels: List[str]) -> None: ...
