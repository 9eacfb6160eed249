"""Training progress for ``Recommender.fit``: the per-epoch history, and a progress bar."""

from __future__ import annotations

import math
import sys
from typing import Any, Dict, Iterator, List, Optional, TextIO


class History:
    """What ``Recommender.fit`` measured, epoch by epoch (Keras's ``History``).

    ``history`` maps each measure to its list of per-epoch values: ``loss`` (mean training
    loss per example, measured before each update), ``time`` (seconds of training),
    ``examples_per_second``, ``learning_rate`` (at the end of the epoch), and after a
    validation ``val_precision@K``, ``val_recall@K``, ``val_ndcg@K`` (``nan`` in epochs without
    one). ``epoch`` lists the epoch numbers (0-based, counting earlier fits); ``epochs`` holds
    one dict per epoch with the same keys."""

    def __init__(self, epochs: List[Dict[str, float]]) -> None:
        self.epochs = epochs
        self.epoch: List[int] = [int(e["epoch"]) for e in epochs]
        keys: List[str] = []
        for e in epochs:
            keys += [k for k in e if k != "epoch" and k not in keys]
        self.history: Dict[str, List[float]] = {
            k: [float(e.get(k, math.nan)) for e in epochs] for k in keys
        }

    def __getitem__(self, key: str) -> List[float]:
        return self.history[key]

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[Dict[str, float]]:
        return iter(self.epochs)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs: {', '.join(self.history)})"


def _line(report: Dict[str, Any], epochs: int) -> str:
    """One epoch as a log line."""
    out = (
        f"epoch {report['epoch'] + 1}/{epochs}: loss {report['loss']:.6f}, "
        f"{report['time']:.2f} s ({report['examples_per_second']:,.0f} examples/s)"
    )
    extra = [f"{k} {v:.4f}" for k, v in report.items() if k.startswith("val_")]
    return out + ("; " + ", ".join(extra) if extra else "")


class Progress:
    """The callback ``fit`` hands to the engine: ``("batch", epoch, done, total, loss)`` after
    minibatches (at most every 0.1 s) and ``("epoch", report)`` after each epoch.

    ``verbose``: 0 silent; 1 a progress bar (on a terminal) and a line per epoch; 2 a line per
    epoch; ``last`` is the number of the run's last epoch (1-based), for "epoch 3/20"."""

    def __init__(self, verbose: int, last: int, stream: Optional[TextIO] = None):
        self.verbose = verbose
        self.last = last
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.bar = verbose == 1 and bool(isatty and isatty())

    def __call__(self, event: str, *args: Any) -> None:
        if event == "batch":
            if self.bar:
                epoch, done, total, loss = args
                width = 30
                filled = int(width * done / max(total, 1))
                arrow = ">" if filled < width else ""
                bar = "=" * filled + arrow + " " * (width - filled - len(arrow))
                self.stream.write(
                    f"\repoch {epoch + 1}/{self.last} [{bar}] {done}/{total} loss {loss:.5f}"
                )
                self.stream.flush()
        elif event == "epoch":
            (report,) = args
            if self.bar:
                self.stream.write("\r\x1b[2K")
            if self.verbose:
                self.stream.write(_line(report, self.last) + "\n")
                self.stream.flush()

    def close(self) -> None:
        """Clears a progress bar left by an interrupted epoch."""
        if self.bar:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
