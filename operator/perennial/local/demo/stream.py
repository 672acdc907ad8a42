"""A drifting data stream, generated (nothing is downloaded).

Four numeric features and a binary label. Each :class:`Regime` is a world: where the
inputs lie (``mean``: a covariate shift, which the server's PSI sees) and which rule makes
the label (``weights``, ``bias``: a concept change, which only ground truth reveals). A
model trained in one regime is good there and poor in the next one:

========  ==========================  =================================================
regime    inputs                      label
========  ==========================  =================================================
``A``     centred                     ``f1 + f2 - 0.5 f3 > 0``
``B``     ``f1`` +1.5, ``f4`` -0.5    ``f1 - f2 + 0.8 f4 > 1.2``
``C``     ``f1`` -1, ``f2`` +1.5, ...  ``0.5 f1 + 0.5 f2 + f3 - f4 > 0.3``
========  ==========================  =================================================

(plus Gaussian noise on the rule, so no model is perfect). The stream serves two purposes:
traffic rows (:meth:`DriftingStream.sample`) and labelled windows of training data
(:meth:`DriftingStream.window`, written as CSV by :func:`publish`), optionally with
corrupted labels.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURES: tuple[str, ...] = ("f1", "f2", "f3", "f4")
TARGET = "label"


@dataclass(frozen=True)
class Regime:
    name: str
    mean: tuple[float, float, float, float]
    weights: tuple[float, float, float, float]
    bias: float
    noise: float = 0.35
    description: str = ""


REGIMES: dict[str, Regime] = {
    "A": Regime("A", (0.0, 0.0, 0.0, 0.0), (1.0, 1.0, -0.5, 0.0), 0.0, description="baseline"),
    "B": Regime(
        "B",
        (1.5, 0.0, 0.0, -0.5),
        (1.0, -1.0, 0.0, 0.8),
        1.2,
        description="inputs shift and the rule changes",
    ),
    "C": Regime(
        "C",
        (-1.0, 1.5, 0.5, 1.0),
        (0.5, 0.5, 1.0, -1.0),
        0.3,
        description="a second shift",
    ),
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class DriftingStream:
    """Rows from the current regime; thread-safe (traffic and data drops share it)."""

    def __init__(self, seed: int = 7, regime: str = "A") -> None:
        self._lock = threading.Lock()
        self._traffic = np.random.default_rng(seed)
        self._data = np.random.default_rng(seed + 1)
        self._regime = REGIMES[regime]

    @property
    def regime(self) -> Regime:
        with self._lock:
            return self._regime

    def set_regime(self, name: str) -> Regime:
        with self._lock:
            self._regime = REGIMES[name]
            return self._regime

    @staticmethod
    def _draw(rng: np.random.Generator, regime: Regime, rows: int) -> tuple[FloatArray, IntArray]:
        x = rng.normal(size=(rows, len(FEATURES))) + np.asarray(regime.mean)
        score = x @ np.asarray(regime.weights) - regime.bias
        score = score + regime.noise * rng.normal(size=rows)
        return np.round(x, 4), (score > 0).astype(np.int64)

    def sample(self, rows: int) -> tuple[FloatArray, IntArray]:
        """Traffic: ``rows`` inputs of the current regime and their true labels."""
        with self._lock:
            return self._draw(self._traffic, self._regime, rows)

    def window(self, rows: int, regime: str | None = None, corrupt: float = 0.0) -> Any:
        """A labelled training window (a pandas DataFrame); ``corrupt`` is the share of
        labels flipped at random (a labelling bug)."""
        import pandas as pd

        with self._lock:
            chosen = REGIMES[regime] if regime else self._regime
            x, y = self._draw(self._data, chosen, rows)
            if corrupt > 0:
                flip = self._data.random(rows) < corrupt
                y = np.where(flip, 1 - y, y)
        frame = pd.DataFrame(x, columns=list(FEATURES))
        frame[TARGET] = y
        return frame


def publish(frame: Any, path: Path) -> None:
    """Write the window as CSV in one step (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            frame.to_csv(fh, index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
