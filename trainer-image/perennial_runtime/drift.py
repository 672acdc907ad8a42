"""Population Stability Index (PSI) over recorded reference distributions.

The trainer records a ``FeatureReference`` per feature (quantile bin edges for numeric
features, category frequencies for categorical ones); the trainer (new data vs the
champion's reference) and the server (a window of live inputs vs the model's reference)
both score drift with the same functions here. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from perennial_runtime import contract
from perennial_runtime.contract import (
    PSI_ALERT,
    PSI_WARN,
    FeatureReference,
)

DEFAULT_BINS = 10
# Defined in the contract, where the API (the smallest drift window) reads it too.
MIN_DRIFT_SAMPLES = contract.MIN_DRIFT_SAMPLES
_EPS = 1e-4


def numeric_reference(values: npt.ArrayLike, bins: int = DEFAULT_BINS) -> FeatureReference:
    """Quantile bins of the (non-missing) values; duplicate edges are collapsed."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return FeatureReference(kind="numeric", edges=[], fractions=[1.0], count=0)
    quantiles = np.quantile(arr, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    counts = numeric_counts(edges, arr)
    return FeatureReference(
        kind="numeric",
        edges=[float(e) for e in edges],
        fractions=_fractions(counts),
        count=int(arr.size),
    )


def categorical_reference(values: Sequence[Any], max_categories: int = 50) -> FeatureReference:
    """Frequencies of the most common categories; the rest share an "other" bucket."""
    labels = [str(v) for v in values if not _is_missing(v)]
    uniq, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:max_categories]
    categories = [str(uniq[i]) for i in order]
    kept = np.asarray([counts[i] for i in order] + [int(counts.sum() - counts[order].sum())])
    return FeatureReference(
        kind="categorical",
        categories=categories,
        fractions=_fractions(kept),
        count=len(labels),
    )


def numeric_counts(edges: Sequence[float] | npt.NDArray[np.float64], values: Any) -> Any:
    """Counts per bin (len(edges) + 1 bins, right-closed), NaNs ignored."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    idx = np.searchsorted(np.asarray(edges, dtype=float), arr, side="left")
    return np.bincount(idx, minlength=len(edges) + 1)


def categorical_counts(categories: Sequence[str], values: Sequence[Any]) -> Any:
    """Counts per category plus a last bucket for categories not seen in training."""
    index = {c: i for i, c in enumerate(categories)}
    counts = np.zeros(len(categories) + 1, dtype=np.int64)
    for v in values:
        if _is_missing(v):
            continue
        counts[index.get(str(v), len(categories))] += 1
    return counts


def counts_for(ref: FeatureReference, values: Any) -> Any:
    if ref.kind == "numeric":
        return numeric_counts(ref.edges, values)
    return categorical_counts(ref.categories, list(values))


def psi(expected_fractions: Sequence[float], actual_counts: Any) -> float:
    """PSI = sum((a - e) * ln(a / e)) with both sides floored at a small epsilon."""
    expected = np.clip(np.asarray(expected_fractions, dtype=float), _EPS, None)
    counts = np.asarray(actual_counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        return 0.0
    actual = np.clip(counts / total, _EPS, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_for(ref: FeatureReference, values: Any) -> float:
    return psi(ref.fractions, counts_for(ref, values))


def psi_band(score: float) -> str:
    """ "stable" below 0.1, "moderate" below 0.25, "significant" above."""
    if score >= PSI_ALERT:
        return "significant"
    if score >= PSI_WARN:
        return "moderate"
    return "stable"


def _fractions(counts: Any) -> list[float]:
    total = float(np.sum(counts))
    if total <= 0:
        return [0.0 for _ in counts]
    return [float(c) / total for c in counts]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # noqa: PLR0124  (NaN is the only value unequal to itself)
    except (TypeError, ValueError):
        return False
