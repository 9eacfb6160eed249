"""``moira.Recommender`` and ``moira.load``."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _arrays, _moira
from ._progress import History, Progress

StrPath = Union[str, "os.PathLike[str]"]


class NotFittedError(ValueError, AttributeError):
    """A Recommender used before ``fit`` (scikit-learn's ``NotFittedError``)."""


def _settings(**kw: Any) -> Dict[str, Any]:
    return kw


def _ks(k: Union[int, Sequence[int]]) -> list:
    return [int(k)] if isinstance(k, (int, np.integer)) else [int(x) for x in k]


class Recommender:
    """A DSSTNE network trained on sparse user × item rows: a recommendation autoencoder.

    ``descriptor`` is the network in DSSTNE's JSON dialect: a path to a ``.json`` file, a JSON
    string, or a dict (see ``networks/`` and ``docs/descriptor.md`` of the repository). Each
    Input layer reads the dataset named by its ``DataSet`` key from ``X`` and each Output
    layer its target from ``y``; ``"N": "auto"`` sizes come from the data's widths.

    The settings are the ``trainer``'s flags, with its defaults: ``epochs`` per ``fit`` (40),
    ``batch`` examples per minibatch (1024), ``optimizer`` (``"sgd"``, ``"momentum"``,
    ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adadelta"``, ``"adam"``), ``alpha`` the
    learning rate (0.025), ``l2`` and ``l1`` the weight penalties (``--lambda`` 0.0001,
    ``--lambda1`` 0), ``mu`` (momentum, Adam's β1: 0.9 for Adam, RMSProp and AdaDelta, else
    0.5), ``mu1`` (Adam's β2; 0 means 0.999), ``alpha_interval``/``alpha_multiplier`` (a step
    schedule, unless the descriptor has ``Decay``), ``seed`` (12134), ``brake`` (DSSTNE's
    divergence brake, on). ``device`` is ``"auto"`` (a CUDA GPU when one is usable, else the
    CPU), ``"cpu"`` or ``"cuda"``; ``precision`` ``"fp32"``, or ``"tf32"`` (TF32 tensor-core
    products in dense layers, CUDA only); ``threads`` the CPU threads (0: one per core).
    ``exact_chunk`` (``None``: off) trains with exact sums, each minibatch in chunks of that
    many examples with the gradients summed in 64-bit fixed point: the bits of
    ``mpirun -np N trainer --exact-chunk C --parallel data`` on any number of ranks ``N``.

    The same descriptor, data, seed and settings give bit-identical weights to
    ``trainer NET.json -i … -o … -b batch -e epochs --optimizer … --alpha … --seed …``, and
    each reads the other's model files (``save``, :func:`load`).

    Raises ``ValueError`` for a descriptor that does not parse (with its JSON path, e.g.
    ``Layers[1].Activation``) and for unknown settings; ``FileNotFoundError`` for a missing
    descriptor file."""

    def __init__(
        self,
        descriptor: Union[StrPath, Mapping[str, Any]],
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
    ) -> None:
        self._settings = _settings(
            epochs=epochs, batch=batch, optimizer=optimizer, alpha=alpha, l2=l2, l1=l1,
            mu=mu, mu1=mu1, alpha_interval=alpha_interval, alpha_multiplier=alpha_multiplier,
            seed=seed, brake=brake, device=device, precision=precision, threads=threads,
            exact_chunk=exact_chunk,
        )  # fmt: skip
        text, is_path = _arrays.descriptor(descriptor)
        self._core = _moira.Core(text, is_path, self._settings)
        self.history_: Optional[History] = None
        # The epoch model selection kept in the last fit (``fit(select_by=...)``).
        self.selected_epoch_: Optional[int] = None

    @classmethod
    def _loaded(cls, path: StrPath, settings: Dict[str, Any]) -> "Recommender":
        self = cls.__new__(cls)
        self._settings = settings
        self._core = _moira.Core.load(os.fspath(path), settings)
        self.history_ = None
        self.selected_epoch_ = None
        return self

    def __repr__(self) -> str:
        state = f"trained {self.epochs_trained} epochs" if self.fitted else "not fitted"
        shown = ", ".join(f"{k}={v!r}" for k, v in self._settings.items())
        return f"Recommender({shown}; {state})"

    @property
    def fitted(self) -> bool:
        """Whether the Recommender holds a model (after ``fit``, or from :func:`load`)."""
        return bool(self._core.fitted)

    @property
    def epochs_trained(self) -> int:
        """Epochs trained in all (0 before ``fit``, or for a loaded final network)."""
        return int(self._core.epochs_trained)

    def _check_fitted(self) -> None:
        if not self._core.fitted:
            raise NotFittedError("this Recommender is not fitted yet: call fit(X) or moira.load(path)")

    def fit(
        self,
        X: Any,
        y: Any = None,
        validation: Any = None,
        *,
        epochs: Optional[int] = None,
        validation_k: Union[int, Sequence[int]] = (20,),
        validate_every: int = 1,
        select_by: Optional[str] = None,
        patience: Optional[int] = None,
        verbose: int = 1,
    ) -> History:
        """Trains ``epochs`` epochs (default: the constructor's) on the rows of ``X``.

        ``X``: the input rows, a SciPy sparse matrix or anything ``scipy.sparse.csr_matrix``
        accepts (rows = examples, columns = the input layer's units), or a dict ``{DataSet
        name: matrix}`` for a network with several Input layers. ``y``: the targets, row-aligned
        with ``X``; ``None`` for an autoencoder (``X`` is its own target). Values that are all
        1 train as DSSTNE's boolean data; each row's entries are summed in the order given
        (the converter's order gives ``trainer``'s bits); the matrices are copied once into the
        engine's own arrays. ``validation``: held-out items per row of ``X`` (as
        wide as the output); after every ``validate_every`` epochs (and the last) the output is
        ranked without each row's own input items and P/Recall/NDCG@``validation_k`` recorded.

        ``select_by`` (``"ndcg@20"``, ``"recall@20"``, ``"recall_full@20"``, ``"precision@10"``;
        its K among ``validation_k``; needs ``validation``): model selection, as ``trainer
        --select-by``: after the call the Recommender holds the weights of this call's epoch
        with the best validation value (the earliest on a tie), ``selected_epoch_`` says which,
        and ``patience`` (epochs without improvement) stops training early. When an earlier
        epoch than the last is kept, the later epochs' training state is dropped: a later
        ``fit`` starts from the kept weights with a fresh optimizer state, and ``save`` writes
        them (as Keras' ``EarlyStopping(restore_best_weights=True)``).

        The first ``fit`` starts from the seed's initialisation; a later one continues the
        training (weights, optimizer state, epoch count: two fits equal one of both lengths);
        after :func:`load` it continues a checkpoint's training state, or starts from a final
        network's weights with a fresh optimizer state.

        Runs without the GIL. ``verbose``: 0 silent, 1 a progress bar and a line per epoch (on
        stderr), 2 a line per epoch. Ctrl-C stops it after the current minibatch with
        ``KeyboardInterrupt``, and the Recommender keeps the model it had before the call (as
        it does on any error). Returns the :class:`History` (also in ``history_``).

        Raises ``ValueError`` for data that does not fit the network (naming both shapes),
        ``TypeError`` for something that is not a matrix of real numbers, ``RuntimeError``
        when training diverges (NaN or infinite loss)."""
        x = _arrays.named(X, "X")
        targets = None if y is None else _arrays.named(y, "y")
        held = None if validation is None else _arrays.parts(validation, "validation")
        run = int(self._settings["epochs"] if epochs is None else epochs)
        progress = Progress(verbose, self.epochs_trained + run)
        try:
            reports, differences, selected = self._core.fit(
                x,
                targets,
                held,
                _ks(validation_k),
                int(validate_every),
                run,
                progress,
                None if select_by is None else str(select_by),
                None if patience is None else int(patience),
            )
        finally:
            progress.close()
        for d in differences:
            warnings.warn(
                f"continuing a checkpoint with other settings ({d}): the result differs from "
                "that of an uninterrupted run",
                RuntimeWarning,
                stacklevel=2,
            )
        self.history_ = History([dict(r) for r in reports])
        self.selected_epoch_ = None if selected is None else int(selected)
        return self.history_

    def recommend(
        self,
        X: Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        filter: Any = None,
        filter_mode: str = "exclude",
        n_items: Optional[int] = None,
        batch: int = 1024,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The top ``k`` items of each row of ``X``: ``(items int32[n, k], scores float32[n,
        k])``, best first, ties to the lower item; items are output-layer unit indices.

        Exact top-K as ``predictor`` ranks: without each row's own input items
        (``exclude_seen``), and without the items of the row's ``filter`` row (a matrix
        row-aligned with ``X``, as wide as the output); ``filter_mode="multiply"`` multiplies
        each filtered item's score by its value instead (value 0 excludes it), DSSTNE's mode.
        ``n_items``: only the first ``n_items`` units are candidates (the rest being padding of
        a width rounded up, as DSSTNE's converter writes). Rows with fewer than ``k`` eligible
        items end with item -1 and score -inf. Runs without the GIL; Ctrl-C stops it."""
        self._check_fitted()
        f = None if filter is None else _arrays.parts(filter, "filter", keep_zeros=True)
        items, scores = self._core.recommend(
            _arrays.named(X, "X"), int(k), bool(exclude_seen), f, str(filter_mode),
            None if n_items is None else int(n_items), int(batch),
        )  # fmt: skip
        return items, scores

    def embed(self, X: Any, layer: str = "Hidden", *, batch: int = 1024) -> np.ndarray:
        """The activations of ``layer`` for each row of ``X``: ``float32[n, units]`` (a hidden
        layer's code: user embeddings; the output layer's: every item's score). No dropout or
        denoising. Raises ``ValueError`` for an unknown layer (listing the layers) or a sparse
        input layer."""
        self._check_fitted()
        return self._core.embed(_arrays.named(X, "X"), str(layer), int(batch))

    def evaluate(
        self,
        X: Any,
        heldout: Any,
        k: Union[int, Sequence[int]] = (10, 20),
        *,
        exclude_seen: bool = True,
        n_items: Optional[int] = None,
        batch: int = 1024,
    ) -> Dict[str, float]:
        """Ranking quality against ``heldout`` (held-out items per row of ``X``, as wide as the
        output): ``{"precision@K": …, "recall@K": …, "ndcg@K": …}`` for each K and ``"users"``
        (the rows evaluated), means over the rows with held-out items (``nan`` when there
        is none), ranked without their own input items. Recall@K = hits / min(K,
        |held-out|); NDCG with binary gains (the repository's EVALUATION.md); the same numbers
        as ``predictor --evaluate``."""
        self._check_fitted()
        return dict(
            self._core.evaluate(
                _arrays.named(X, "X"), _arrays.parts(heldout, "heldout"), _ks(k),
                bool(exclude_seen), None if n_items is None else int(n_items), int(batch),
            )
        )  # fmt: skip

    def save(self, path: StrPath, *, include_optimizer: bool = False) -> None:
        """Writes the model to ``path`` in DSSTNE's NetCDF model schema (atomically): the
        weights, as ``trainer -n`` writes them (``predictor -n`` and DSSTNE load it); with
        ``include_optimizer`` also the training state, a Moira checkpoint that
        ``trainer --resume`` and ``moira.load(path).fit(...)`` continue."""
        self._check_fitted()
        self._core.save(os.fspath(path), bool(include_optimizer))

    def get_weights(self) -> Dict[str, Tuple[Optional[np.ndarray], np.ndarray]]:
        """Copies of the weights: ``{"In->Out": (W float32[in, out] or None for an edge that
        uses a shared weight, bias float32[out])}``, one entry per edge."""
        self._check_fitted()
        return dict(self._core.get_weights())

    def summary(self) -> str:
        """The layer table of the model (names, kinds, units, activations, sources)."""
        self._check_fitted()
        return str(self._core.summary())


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
) -> Recommender:
    """A fitted :class:`Recommender` from a model file in DSSTNE's schema (``trainer``'s,
    a checkpoint, DSSTNE's own, or one ``Recommender.save`` wrote). The settings are those
    of :class:`Recommender`, for predicting and for training on (continuing a checkpoint
    needs the settings it was trained with). Raises ``FileNotFoundError`` for a missing
    file and ``OSError`` for one that is not a model file (naming what is wrong)."""
    settings = _settings(
        epochs=epochs, batch=batch, optimizer=optimizer, alpha=alpha, l2=l2, l1=l1, mu=mu,
        mu1=mu1, alpha_interval=alpha_interval, alpha_multiplier=alpha_multiplier, seed=seed,
        brake=brake, device=device, precision=precision, threads=threads,
        exact_chunk=exact_chunk,
    )  # fmt: skip
    return Recommender._loaded(path, settings)
