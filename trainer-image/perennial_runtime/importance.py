"""Permutation feature importance on the holdout, per original feature column.

Permuting the raw DataFrame columns that enter the pipeline gives one importance per
input feature (not per one-hot column). Rows are capped and repeats are few so that the
cost stays small next to training; wide tables get a single repeat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from perennial_runtime.contract import FeatureImportance, Task

MAX_ROWS = 300
MAX_REPEATS = 3
# Above this many features a single repeat is used (one prediction per feature and repeat).
WIDE_FEATURES = 40


def top_features(
    model: Any,
    x: pd.DataFrame,
    y: pd.Series[Any],
    task: Task,
    *,
    seed: int,
    top_n: int,
    max_rows: int = MAX_ROWS,
) -> list[FeatureImportance]:
    """The ``top_n`` features by mean drop in accuracy (classification) or r2 (regression)."""
    from sklearn.inspection import permutation_importance

    if top_n <= 0 or x.shape[1] == 0 or len(x) < 2:
        return []
    if len(x) > max_rows:
        picked = np.random.default_rng(seed).choice(len(x), size=max_rows, replace=False)
        picked.sort()
        x, y = x.iloc[picked], y.iloc[picked]
    repeats = MAX_REPEATS if x.shape[1] <= WIDE_FEATURES else 1
    scoring = "accuracy" if task is Task.CLASSIFICATION else "r2"
    result = permutation_importance(
        model, x, y, scoring=scoring, n_repeats=repeats, random_state=seed
    )
    means = np.asarray(result.importances_mean, dtype=float)
    order = np.argsort(-means, kind="stable")[:top_n]
    return [
        FeatureImportance(feature=str(x.columns[i]), importance=round(float(means[i]), 6))
        for i in order
    ]
