"""Compiled inference at training time: export, parity, and what is recorded when it fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from perennial_runtime import artifacts
from perennial_runtime.compiled.onnx_export import export, precisions_for
from perennial_runtime.compiled.onnx_layout import label_names, numeric_names
from perennial_runtime.compiled.onnx_model import OnnxModel, blocks
from perennial_runtime.compiled.parity import measure, verdict
from perennial_runtime.contract import ColumnSchema, OnnxConfig
from perennial_runtime.training.preprocessing import build_pipeline, coerce_features
from perennial_runtime.training.trainer import train


def _fitted(frame: pd.DataFrame, target: str, columns: list[ColumnSchema], estimator: Any) -> Any:
    return build_pipeline(columns, estimator).fit(coerce_features(frame, columns), frame[target])


def _onnx(pipeline: Any, columns: list[ColumnSchema], classifier: bool = True) -> OnnxModel:
    precision = precisions_for(pipeline[-1])[0]
    data = export(pipeline, columns, precision)
    return OnnxModel(data, len(numeric_names(columns)), len(label_names(columns)), classifier)


def test_parity_check_rejects_a_mismatching_onnx_model() -> None:
    """The ONNX export of another model (same features, other C) is caught on the rows."""
    frame = load_breast_cancer(as_frame=True).frame
    columns = [ColumnSchema(name=c) for c in frame.columns[:-1]]
    ours = _fitted(frame, "target", columns, LogisticRegression(max_iter=2000))
    other = _fitted(frame, "target", columns, LogisticRegression(C=0.001, max_iter=2000))
    x = coerce_features(frame, columns)
    numeric, labels = blocks(x, numeric_names(columns), [])

    same = _onnx(ours, columns).predict(numeric, labels, proba=True)
    parity = measure(True, ours.predict(x), same[0], ours.predict_proba(x), same[1])
    assert parity.label_mismatches == 0 and parity.max_abs_diff is not None
    assert parity.max_abs_diff < 1e-12  # float64 throughout
    assert verdict(parity, OnnxConfig()) is None

    wrong = _onnx(other, columns).predict(numeric, labels, proba=True)
    parity = measure(True, ours.predict(x), wrong[0], ours.predict_proba(x), wrong[1])
    assert parity.rows == len(frame) and parity.label_mismatches
    problem = verdict(parity, OnnxConfig())
    assert problem is not None and "labels differ from scikit-learn's" in problem
    # A tolerance that admits the label differences still rejects the probabilities.
    lenient = OnnxConfig(label_mismatch_fraction=1.0)
    assert "probabilities differ by up to" in (verdict(parity, lenient) or "")


def test_regression_parity_is_relative_for_large_values() -> None:
    want = np.array([1000.0, 0.5, -2.0])
    parity = measure(False, want, want + np.array([0.005, 1e-7, 0.0]))
    assert parity.max_abs_diff == pytest.approx(0.005)
    assert parity.max_rel_diff == pytest.approx(5e-6)
    assert verdict(parity, OnnxConfig()) is None
    assert "relative" in (verdict(parity, OnnxConfig(value_rel_diff=1e-6)) or "")
    nan = measure(False, want, np.array([1000.0, np.nan, -2.0]))
    assert verdict(nan, OnnxConfig()) is not None  # NaN on one side is never a match


def test_forest_takes_scikit_learns_paths_in_float32() -> None:
    """Thresholds rounded down to float32: every row ends in the same leaves (iris)."""
    frame = load_iris(as_frame=True).frame
    columns = [ColumnSchema(name=c) for c in frame.columns[:-1]]
    forest = RandomForestClassifier(n_estimators=50, random_state=0)
    pipeline = _fitted(frame, "target", columns, forest)
    x = coerce_features(frame, columns)
    numeric, labels = blocks(x, numeric_names(columns), [])
    data = export(pipeline, columns, "float32")
    got_proba = OnnxModel(data, 4, 0, True).predict(numeric, labels, proba=True)[1]
    assert got_proba is not None
    # only float32 summation error is left (a different leaf would be >= 1/50 off)
    assert np.abs(got_proba - pipeline.predict_proba(x)).max() < 1e-6
    assert (
        pipeline[-1].estimators_[0].tree_.threshold[0] == forest.estimators_[0].tree_.threshold[0]
    )


def test_labels_and_missing_values_in_the_string_input(mixed_run: Any) -> None:
    meta = mixed_run.metadata
    assert meta.onnx_export is not None and meta.onnx_export.exported
    assert meta.onnx_export.inputs == {"numeric": ["x1", "x2"], "labels": ["color", "flag"]}
    assert meta.onnx_export.missing_label == "\x00"
    model = artifacts.load_model(artifacts.fetch_verified(mixed_run.model_uri, mixed_run.sha256))
    rows = pd.DataFrame(
        {
            "x1": [0.5, np.nan, -1.0, 3.0],
            "x2": [3.0, 7.0, 0.0, 9.0],
            "color": ["red", np.nan, "never-seen", "violet"],
            "flag": ["true", "false", np.nan, "true"],
        }
    )
    onnx = OnnxModel((mixed_run.run_dir / "model.onnx").read_bytes(), 2, 2, True)
    numeric, labels = blocks(rows, ["x1", "x2"], ["color", "flag"])
    values, proba = onnx.predict(numeric, labels, proba=True)
    assert values.tolist() == model.predict(rows).tolist()
    assert proba is not None and np.abs(proba - model.predict_proba(rows)).max() < 1e-12


def test_failed_parity_keeps_only_skops_and_records_why(
    tmp_path: Path, make_train_config: Callable[..., Any]
) -> None:
    """No tolerance at all: float32 forest sums miss it, so the run keeps model.skops only."""
    config = make_train_config(
        run_name="strict",
        artifact_uri=tmp_path.as_uri(),
        data_uri="sklearn://breast_cancer",
        estimator="RandomForestClassifier",
        params={"n_estimators": 10},
    ).model_copy(update={"onnx": OnnxConfig(probability_abs_diff=0.0)})
    result = train(config)
    assert result.status == "Succeeded", result.message  # never fails the run
    report = result.onnx_export
    assert report is not None and not report.exported
    assert report.reason.startswith("parity check failed on the holdout: probabilities differ")
    assert report.parity is not None and report.parity.label_mismatches == 0
    assert report.parity.max_abs_diff is not None and report.parity.max_abs_diff > 0
    assert result.artifact is not None and result.artifact.onnx_sha256 is None
    run_dir = tmp_path / "strict"
    assert not (run_dir / "model.onnx").exists()
    meta = artifacts.read_metadata(run_dir.as_uri())
    assert meta.onnx is None and meta.onnx_export is not None
    assert meta.onnx_export.reason == report.reason
    assert meta.onnx_export.tolerance == OnnxConfig(probability_abs_diff=0.0)
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert f"No `model.onnx`: {report.reason}" in card
