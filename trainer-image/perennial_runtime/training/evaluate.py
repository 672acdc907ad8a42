"""Held-out split and metrics: the same code scores the candidate and the champion.

Classification: accuracy, precision, recall, f1 (binary for two classes with the second
sorted class as positive, macro otherwise), roc_auc (one-vs-rest for multiclass) and
log_loss, from the model's ``predict_proba`` aligned to the candidate's classes.
Regression: rmse, mae, r2. A metric that cannot be computed (no probabilities, a class
missing from the holdout) is left out with a warning: gates treat a missing metric as a
failure, never as a pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from perennial_runtime.contract import Task, Violation
from perennial_runtime.failures import DataValidationError
from perennial_runtime.training.data import frame_sha256
from perennial_runtime.training.preprocessing import category_label


@dataclass(frozen=True)
class Split:
    """Row positions of the training and held-out parts of the raw frame."""

    train: npt.NDArray[np.intp]
    test: npt.NDArray[np.intp]


def prepare_target(series: pd.Series[Any], task: Task) -> pd.Series[Any]:
    """Regression: float64. Classification: integral floats become ints, text is object."""
    if task is Task.REGRESSION:
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_integer_dtype(series.dtype):
        return series
    if pd.api.types.is_float_dtype(series.dtype):
        present = series.dropna()
        if bool((present == present.round()).all()):
            return series.astype("int64")
        return series
    return series.astype(object)


def split(y: pd.Series[Any], task: Task, test_size: float, seed: int) -> Split:
    """A seeded split of row positions, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(y))
    stratify = y.to_numpy() if task is Task.CLASSIFICATION else None
    try:
        train, test = train_test_split(
            positions, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        violation = Violation(
            rule="stratifiedSplit",
            column=str(y.name),
            observed=float(len(y)),
            limit=test_size,
            message=f"cannot split {len(y)} rows with testSize {test_size}: {exc}",
        )
        raise DataValidationError(
            f"data validation failed: {violation.message} [stratifiedSplit]", [violation]
        ) from exc
    return Split(train=np.asarray(train), test=np.asarray(test))


def holdout_sha256(holdout: pd.DataFrame) -> str:
    """Content hash of the held-out rows (all columns, in split order)."""
    return frame_sha256(holdout.reset_index(drop=True))


def class_labels(y: pd.Series[Any]) -> list[Any]:
    """The sorted classes, as scikit-learn orders ``classes_``."""
    return list(np.unique(y.to_numpy()))


def score(
    model: Any, x: pd.DataFrame, y: pd.Series[Any], task: Task, classes: Sequence[Any]
) -> tuple[dict[str, float], list[str]]:
    """Metrics of ``model`` on ``(x, y)``, plus warnings for metrics left out."""
    if task is Task.REGRESSION:
        metrics = regression_metrics(y.to_numpy(dtype=float), model.predict(x))
        warnings: list[str] = []
    else:
        metrics, warnings = classification_metrics(model, x, y, classes)
    for name in [n for n, v in metrics.items() if not math.isfinite(v)]:
        del metrics[name]
        warnings.append(f"metric {name} not computed: not a finite number on this holdout")
    return metrics, warnings


def regression_metrics(
    y_true: npt.NDArray[np.float64], y_pred: npt.NDArray[Any]
) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": math.sqrt(float(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def classification_metrics(
    model: Any, x: pd.DataFrame, y: pd.Series[Any], classes: Sequence[Any]
) -> tuple[dict[str, float], list[str]]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = y.to_numpy()
    y_pred = model.predict(x)
    labels = list(classes)
    binary = len(labels) == 2
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": labels[1]}
        if binary
        else {"average": "macro", "labels": labels}
    )
    metrics: dict[str, float] = {}
    warnings: list[str] = []

    def attempt(name: str, compute: Callable[[], Any]) -> None:
        try:
            value = float(compute())
        except (ValueError, TypeError, IndexError) as exc:
            warnings.append(f"metric {name} not computed: {exc}")
            return
        if math.isfinite(value):
            metrics[name] = value
        else:
            warnings.append(f"metric {name} not computed: not a finite number")

    attempt("accuracy", lambda: accuracy_score(y_true, y_pred))
    attempt("precision", lambda: precision_score(y_true, y_pred, zero_division=0, **averaging))
    attempt("recall", lambda: recall_score(y_true, y_pred, zero_division=0, **averaging))
    attempt("f1", lambda: f1_score(y_true, y_pred, zero_division=0, **averaging))
    proba = aligned_proba(model, x, labels)
    if proba is not None:
        if binary:
            positive = (y_true == labels[1]).astype(int)
            attempt("roc_auc", lambda: roc_auc_score(positive, proba[:, 1]))
        else:
            attempt(
                "roc_auc",
                lambda: roc_auc_score(y_true, proba, multi_class="ovr", labels=labels),
            )
        attempt("log_loss", lambda: log_loss(y_true, proba, labels=labels))
    else:
        decision = _binary_decision(model, x, labels) if binary else None
        if decision is not None:
            positive = (y_true == labels[1]).astype(int)
            attempt("roc_auc", lambda: roc_auc_score(positive, decision))
        else:
            warnings.append("metric roc_auc not computed: the estimator has no predict_proba")
        warnings.append("metric log_loss not computed: the estimator has no predict_proba")
    return metrics, warnings


def aligned_proba(model: Any, x: pd.DataFrame, classes: Sequence[Any]) -> Any:
    """``predict_proba`` with one column per entry of ``classes`` (rows sum to 1)."""
    if not hasattr(model, "predict_proba"):
        return None
    try:
        proba = np.asarray(model.predict_proba(x), dtype=float)
    except AttributeError:  # e.g. SVC(probability=False) exposes the method but refuses
        return None
    model_classes = [category_label(c) for c in model.classes_]
    wanted = [category_label(c) for c in classes]
    if model_classes == wanted:
        return proba
    aligned = np.zeros((proba.shape[0], len(wanted)))
    for j, label in enumerate(wanted):
        if label in model_classes:
            aligned[:, j] = proba[:, model_classes.index(label)]
    totals = aligned.sum(axis=1, keepdims=True)
    uniform = np.full_like(aligned, 1.0 / len(wanted))
    return np.where(totals > 0, aligned / np.where(totals > 0, totals, 1.0), uniform)


def _binary_decision(model: Any, x: pd.DataFrame, classes: Sequence[Any]) -> Any:
    if not hasattr(model, "decision_function"):
        return None
    model_classes = [category_label(c) for c in model.classes_]
    if model_classes != [category_label(c) for c in classes]:
        return None
    return np.asarray(model.decision_function(x), dtype=float)
