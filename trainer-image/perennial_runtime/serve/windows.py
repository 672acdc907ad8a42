"""Bounded, incrementally updated windows over recent traffic (numpy, no I/O, no locks).

- :class:`BinnedWindow`: the last ``size`` rows stored as bin indices in a ring buffer,
  with per-bin counts kept up to date on every insert (old rows' bins are decremented
  as they fall out), so a PSI score reads counts instead of re-binning the window.
- :class:`ScoreWindow`: the last ``size`` feedback outcomes (1/0 hits or squared errors).
- :class:`TimeOrderedScores`: feedback outcomes of the most recent predictions, ordered
  by when the prediction was made.

All three are mutated from the server's event-loop thread only.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from perennial_runtime import drift
from perennial_runtime.contract import FeatureReference
from perennial_runtime.training.preprocessing import category_label

IntMatrix = npt.NDArray[np.int32]
MISSING = -1


class NumericBinner:
    """Values -> reference bin index (right-closed bins, as ``drift.numeric_counts``)."""

    def __init__(self, reference: FeatureReference) -> None:
        self.reference = reference
        self.edges = np.asarray(reference.edges, dtype=np.float64)
        self.bins = len(reference.edges) + 1

    def __call__(self, values: Any) -> npt.NDArray[np.int32]:
        arr = np.asarray(values, dtype=np.float64)
        idx = np.searchsorted(self.edges, arr, side="left").astype(np.int32)
        idx[np.isnan(arr)] = MISSING
        return idx


class LabelBinner:
    """Labels -> category index, unseen labels -> the last ("other") bucket."""

    def __init__(self, reference: FeatureReference) -> None:
        self.reference = reference
        self.index = {c: i for i, c in enumerate(reference.categories)}
        self.other = len(reference.categories)
        self.bins = self.other + 1

    def __call__(self, values: Any) -> npt.NDArray[np.int32]:
        index, other = self.index, self.other
        return np.fromiter(
            (MISSING if v is None else index.get(v, other) for v in values),
            dtype=np.int32,
            count=len(values),
        )


class PredictionLabelBinner(LabelBinner):
    """Class predictions (numbers or strings) -> the trainer's category labels."""

    def __init__(self, reference: FeatureReference) -> None:
        super().__init__(reference)
        self._memo: dict[Any, int] = {}  # prediction value -> bin (a model has few classes)

    def __call__(self, values: Any) -> npt.NDArray[np.int32]:
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
        memo = self._memo
        for v in set(items) - memo.keys():
            label = category_label(v)
            memo[v] = MISSING if label is None else self.index.get(label, self.other)
        return np.fromiter((memo[v] for v in items), dtype=np.int32, count=len(items))


Binner = NumericBinner | LabelBinner


class BinnedWindow:
    """The last ``size`` rows of ``len(bins)`` columns, as bin counts per column."""

    def __init__(self, bins: Sequence[int], size: int) -> None:
        self.size = size
        self.bins = list(bins)
        self.offsets = np.concatenate([[0], np.cumsum(self.bins)]).astype(np.int64)
        self.total_bins = int(self.offsets[-1])
        self.ring = np.full((size, len(self.bins)), MISSING, dtype=np.int64)
        self.counts = np.zeros(self.total_bins, dtype=np.int64)
        self.pos = 0
        self.filled = 0

    def add(self, local: npt.NDArray[np.integer[Any]]) -> None:
        """Append rows of per-column bin indices (``MISSING`` = not counted)."""
        if local.shape[0] == 0:
            return
        if local.shape[0] > self.size:
            local = local[-self.size :]
        k = local.shape[0]
        glob = np.where(local >= 0, local + self.offsets[:-1], MISSING)
        slots = (self.pos + np.arange(k)) % self.size
        old = self.ring[slots].ravel()
        self.counts -= np.bincount(old[old >= 0], minlength=self.total_bins)
        new = glob.ravel()
        self.counts += np.bincount(new[new >= 0], minlength=self.total_bins)
        self.ring[slots] = glob
        self.pos = int((self.pos + k) % self.size)
        self.filled = min(self.size, self.filled + k)

    def column_counts(self, column: int) -> npt.NDArray[np.int64]:
        return self.counts[self.offsets[column] : self.offsets[column + 1]]


def psi_of(window: BinnedWindow, column: int, reference: FeatureReference) -> tuple[float, int]:
    """PSI of one column vs its reference, and how many observations it rests on."""
    counts = window.column_counts(column)
    return drift.psi(reference.fractions, counts), int(counts.sum())


class ScoreWindow:
    """Mean of the last ``size`` values (hits for accuracy, squared errors for rmse)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = np.zeros(size, dtype=np.float64)
        self.pos = 0
        self.filled = 0

    def add(self, values: npt.NDArray[np.float64]) -> None:
        if len(values) > self.size:
            values = values[-self.size :]
        k = len(values)
        slots = (self.pos + np.arange(k)) % self.size
        self.values[slots] = values
        self.pos = int((self.pos + k) % self.size)
        self.filled = min(self.size, self.filled + k)

    def mean(self) -> float | None:
        if self.filled == 0:
            return None
        return float(self.values[: self.filled].mean())


class TimeOrderedScores:
    """The outcomes of the ``size`` most recent predictions that received feedback, by
    when the prediction was made (not when its label arrived).

    A label that arrives late for a recent prediction displaces the oldest prediction's
    outcome; a label for a prediction older than all ``size`` in a full window is
    ``"stale"`` and not counted. The window also remembers which predictions it holds, so
    a replayed id is a ``"duplicate"``; a replay of one that has left the window is older
    than everything in it, hence stale: nothing is counted twice, with no memory beyond
    the window. Entries are ordered by ``(made_ms, seq, row, id)``.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[int, int, int, str, float]] = []
        self._ids: set[str] = set()
        self._sum = 0.0
        self._replaced = 0
        self.newest_ms: int | None = None

    @property
    def filled(self) -> int:
        return len(self._heap)

    @property
    def oldest_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def add(self, made_ms: int, seq: int, row: int, uid: str, outcome: float) -> str:
        """``"ok"``, ``"duplicate"`` or ``"stale"``."""
        if uid in self._ids:
            return "duplicate"
        entry = (made_ms, seq, row, uid, outcome)
        heap = self._heap
        if len(heap) >= self.size:
            if entry[:4] < heap[0][:4]:
                return "stale"
            old = heapq.heapreplace(heap, entry)
            self._ids.discard(old[3])
            self._sum -= old[4]
            self._replaced += 1
        else:
            heapq.heappush(heap, entry)
        self._ids.add(uid)
        self._sum += outcome
        if self._replaced >= self.size:  # keep the running sum exact
            self._replaced = 0
            self._sum = math.fsum(e[4] for e in heap)
        if self.newest_ms is None or made_ms > self.newest_ms:
            self.newest_ms = made_ms
        return "ok"

    def mean(self) -> float | None:
        if not self._heap:
            return None
        return max(0.0, self._sum / len(self._heap))
