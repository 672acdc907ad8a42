"""Permutation feature importance on the holdout, per original feature column.

Permuting the raw DataFrame columns that enter the pipeline gives one importance per
input feature (not per one-hot column). Rows are capped and repeats are few so that the
cost stays small next to training; wide tables get a single repeat.

When every feature is numeric, the preprocessing maps each input column to exactly one
output column through a per-column function (median imputation, then scaling), so
permuting a raw column and permuting its transformed column give the same predictions.
Then the estimator alone is scored on the transformed holdout: identical numbers,
without re-running the column transformer once per feature (a large saving on wide
tables).
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
    scored, inputs = model, x
    view = numeric_view(model, x)
    if view is not None:
        scored, inputs = view
    result = permutation_importance(
        scored, inputs, y, scoring=scoring, n_repeats=repeats, random_state=seed
    )
    means = np.asarray(result.importances_mean, dtype=float)
    order = np.argsort(-means, kind="stable")[:top_n]
    return [
        FeatureImportance(feature=str(x.columns[i]), importance=round(float(means[i]), 6))
        for i in order
    ]


def numeric_view(model: Any, x: pd.DataFrame) -> tuple[Any, Any] | None:
    """``(estimator, transformed x)`` when each input column maps to one output column."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2:
        return None
    preprocess, estimator = steps[0][1], steps[1][1]
    try:
        names = [str(n) for n in preprocess.get_feature_names_out()]
    except (AttributeError, ValueError):
        return None
    if names != [f"numeric__{c}" for c in x.columns]:
        return None
    return estimator, preprocess.transform(x)
