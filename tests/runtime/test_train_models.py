"""Real training on scikit-learn's bundled datasets, and the candidate vs its champion."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from perennial_runtime import artifacts
from perennial_runtime.contract import (
    CLASSIFICATION_METRICS,
    ESTIMATORS,
    REGRESSION_METRICS,
    REGRESSORS,
    ExitCode,
    FailureReason,
    ModelMetadata,
    OnnxConfig,
    Task,
    TrainConfig,
    TrainResult,
)
from perennial_runtime.training.data import load
from perennial_runtime.training.estimators import estimator_classes
from perennial_runtime.training.evaluate import holdout_sha256, split
from perennial_runtime.training.preprocessing import coerce_features
from perennial_runtime.training.trainer import exit_code, train

ConfigFactory = Callable[..., TrainConfig]


@pytest.mark.parametrize("dataset", ["iris", "breast_cancer", "wine"])
def test_classification_on_bundled_data(trained_run: Any, dataset: str) -> None:
    run = trained_run(dataset)
    result: TrainResult = run.result
    assert set(result.metrics) == set(CLASSIFICATION_METRICS)
    assert result.metrics["accuracy"] > 0.85
    assert result.metrics["roc_auc"] > 0.9
    assert result.champion_metrics is None
    assert result.holdout_sha256 and len(result.holdout_sha256) == 64
    assert 0 < len(result.feature_importance) <= 5
    assert exit_code(result) == ExitCode.OK

    assert {p.name for p in run.run_dir.iterdir()} == {
        "model.skops",
        "model.onnx",
        "metadata.json",
        "MODEL_CARD.md",
    }
    meta: ModelMetadata = run.metadata
    assert result.artifact is not None
    assert (
        meta.model.sha256
        == result.artifact.sha256
        == artifacts.sha256_hex(run.model_path.read_bytes())
    )
    onnx_bytes = (run.run_dir / "model.onnx").read_bytes()
    assert meta.onnx is not None and meta.onnx.file == "model.onnx"
    assert meta.onnx.sha256 == result.artifact.onnx_sha256 == artifacts.sha256_hex(onnx_bytes)
    assert meta.onnx.size == len(onnx_bytes)
    assert result.artifact.onnx_uri == f"{result.artifact.uri}/model.onnx"
    export = meta.onnx_export
    assert export is not None and export.exported and export.parity is not None
    assert export.parity.rows == result.holdout_rows and export.parity.label_mismatches == 0
    assert export.inputs == {"numeric": [f.name for f in meta.features]}
    assert result.onnx_export is not None and result.onnx_export.parity == export.parity
    assert result.onnx_export.inputs is None and result.onnx_export.tolerance is None
    assert {"skl2onnx", "onnxruntime"} <= set(meta.libraries)
    assert meta.model.size == result.artifact.size == run.model_path.stat().st_size
    assert meta.metrics == result.metrics
    assert meta.holdout_sha256 == result.holdout_sha256
    assert meta.data.fingerprint == load(run.config.data).fingerprint
    assert meta.task.value == "classification" and meta.classes
    assert meta.params["n_estimators"] == 20 and meta.params["random_state"] == 42
    assert {"sklearn", "numpy", "pandas", "skops", "python"} <= set(meta.libraries)
    assert meta.image == "ghcr.io/perennial-dev/perennial-runtime:test"
    assert set(meta.reference) == {f.name for f in meta.features}
    assert all(ref.kind == "numeric" and ref.count > 0 for ref in meta.reference.values())
    assert meta.prediction_reference is not None
    assert meta.prediction_reference.kind == "categorical"
    assert sorted(meta.prediction_reference.categories) == sorted(str(c) for c in meta.classes)
    assert len(meta.sample.instances) == len(meta.sample.predictions) == 20
    assert all(len(row) == len(meta.features) for row in meta.sample.instances)

    card = (run.run_dir / "MODEL_CARD.md").read_text()
    headings = (
        "## Intended use",
        "## Data",
        "## Metrics",
        "## Features",
        "## Compiled",
        "## Lineage",
    )
    for heading in headings:
        assert heading in card
    assert result.artifact.sha256 in card


def test_regression_on_diabetes(trained_run: Any) -> None:
    run = trained_run("diabetes")
    assert set(run.result.metrics) == set(REGRESSION_METRICS)
    assert run.result.metrics["r2"] > 0.3
    assert run.result.metrics["rmse"] > run.result.metrics["mae"] > 0
    meta = run.metadata
    assert meta.classes is None and meta.primary_metric == "rmse"
    assert meta.prediction_reference is not None
    assert meta.prediction_reference.kind == "numeric"


def test_stored_model_reproduces_the_sample(trained_run: Any) -> None:
    """What the server's smoke test does: load verified bytes, re-predict the sample."""
    for dataset in ("iris", "diabetes"):
        run = trained_run(dataset)
        meta = run.metadata
        model = artifacts.load_model(artifacts.fetch_verified(run.model_uri, run.sha256))
        frame = pd.DataFrame(meta.sample.instances, columns=[f.name for f in meta.features])
        predicted = model.predict(coerce_features(frame, meta.features))
        np.testing.assert_allclose(
            np.asarray(predicted, float), np.asarray(meta.sample.predictions, float)
        )


def test_estimator_allow_list_matches_the_contract() -> None:
    assert list(estimator_classes()) == list(ESTIMATORS)


# Exported to ONNX with parity on their holdout (skl2onnx 1.20, onnxruntime 1.32). Not
# here: SVC (no predict_proba by default), HistGradientBoosting* (skl2onnx 1.20 fails on
# scikit-learn 1.9's fitted trees); they keep model.skops only, with the reason recorded.
EXPORTED = frozenset(ESTIMATORS) - {
    "SVC",
    "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor",
}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_allow_listed_estimator_trains_and_stores(
    tmp_path: Path, make_train_config: ConfigFactory, estimator: str
) -> None:
    regression = estimator in REGRESSORS
    small = {"n_estimators": 10} if "Forest" in estimator or "Trees" in estimator else {}
    if estimator.startswith("GradientBoosting"):
        small = {"n_estimators": 10}
    if estimator.startswith("HistGradientBoosting"):
        small = {"max_iter": 10}
    config = make_train_config(
        run_name="run",
        artifact_uri=tmp_path.as_uri(),
        data_uri="sklearn://diabetes" if regression else "sklearn://breast_cancer",
        task="regression" if regression else "classification",
        estimator=estimator,
        params=small,
        evaluation={"topFeatures": 0},
    )
    result = train(config)
    assert result.status == "Succeeded", result.message
    # The ONNX export is best effort; either way the outcome and its reason are recorded.
    report = result.onnx_export
    assert report is not None and report.reason
    assert report.exported is (result.artifact is not None and bool(result.artifact.onnx_sha256))
    if estimator in EXPORTED:
        assert report.exported, report.reason
        assert report.parity is not None and report.parity.rows == result.holdout_rows
    # The file loads under the trust policy (the trainer read it back already).
    assert result.artifact is not None
    artifacts.load_model(
        artifacts.fetch_verified(result.artifact.model_uri, result.artifact.sha256)
    )
    if estimator == "SVC":  # calibrated probabilities, so the server can serve it
        assert "log_loss" in result.metrics and "roc_auc" in result.metrics


def test_champion_rescored_on_the_same_holdout(
    tmp_path: Path, make_train_config: ConfigFactory, champion_block: Callable[..., Any]
) -> None:
    def config(run_name: str, **kwargs: Any) -> TrainConfig:
        return make_train_config(
            run_name=run_name,
            artifact_uri=tmp_path.as_uri(),
            data_uri="sklearn://wine",
            **kwargs,
        )

    first = train(config("run-a"))
    assert first.status == "Succeeded", first.message

    # Same data, same seed: same holdout, and the champion scores what it scored itself.
    second = train(
        config(
            "run-b",
            estimator="LogisticRegression",
            params={"max_iter": 500},
            champion=champion_block(first),
        )
    )
    assert second.status == "Succeeded", second.message
    assert second.champion_run == "run-a"
    assert second.holdout_sha256 == first.holdout_sha256
    assert second.champion_metrics == first.metrics
    meta = artifacts.read_metadata(artifacts.run_dir(tmp_path.as_uri(), "run-b"))
    assert meta.champion_metrics == first.metrics and meta.champion_run == "run-a"
    assert "| candidate | champion |" in (tmp_path / "run-b" / "MODEL_CARD.md").read_text()

    # Another seed: another holdout, the champion re-scored on the candidate's rows.
    third = train(config("run-c", evaluation={"seed": 7}, champion=champion_block(first)))
    assert third.status == "Succeeded", third.message
    assert third.holdout_sha256 != first.holdout_sha256
    assert third.champion_metrics is not None
    frame = load(config("unused").data).frame
    holdout = frame.iloc[split(frame["target"], Task.CLASSIFICATION, 0.2, 7).test]
    assert holdout_sha256(holdout) == third.holdout_sha256
    assert first.artifact is not None
    champion_model = artifacts.load_model(
        artifacts.fetch_verified(first.artifact.model_uri, first.artifact.sha256)
    )
    from sklearn.metrics import accuracy_score

    expected = accuracy_score(
        holdout["target"], champion_model.predict(holdout.drop(columns=["target"]))
    )
    assert math.isclose(third.champion_metrics["accuracy"], expected)
    assert third.champion_metrics != first.metrics


def test_champion_unavailable_fails_the_run(
    tmp_path: Path, make_train_config: ConfigFactory, champion_block: Callable[..., Any]
) -> None:
    def config(run_name: str, champion: dict[str, Any] | None = None) -> TrainConfig:
        return make_train_config(
            run_name=run_name,
            artifact_uri=tmp_path.as_uri(),
            data_uri="sklearn://iris",
            estimator="DecisionTreeClassifier",
            params={},
            champion=champion,
        )

    first = train(config("run-a"))
    good = champion_block(first)

    missing = train(config("run-b", {**good, "modelUri": (tmp_path / "gone.skops").as_uri()}))
    wrong_hash = train(config("run-c", {**good, "sha256": "0" * 64}))
    no_metadata = train(config("run-d", {**good, "metadataUri": (tmp_path / "nope.json").as_uri()}))
    for result in (missing, wrong_hash, no_metadata):
        assert result.status == "Failed"
        assert result.reason == FailureReason.CHAMPION_UNAVAILABLE.value
        assert exit_code(result) == ExitCode.CHAMPION_UNAVAILABLE == 6
        assert "run-a" in result.message
        assert result.artifact is None
    assert "sha256 mismatch" in wrong_hash.message
    assert not (tmp_path / "run-b").exists()


def test_unknown_and_invalid_params_are_config_errors(
    tmp_path: Path, make_train_config: ConfigFactory
) -> None:
    def result_for(params: dict[str, Any]) -> TrainResult:
        return train(
            make_train_config(
                run_name="run",
                artifact_uri=tmp_path.as_uri(),
                data_uri=str(tmp_path / "never-read.csv"),
                estimator="RandomForestClassifier",
                params=params,
            )
        )

    unknown = result_for({"n_estimators": 10, "learning_rate": 0.1})
    assert (unknown.status, unknown.reason) == ("Failed", FailureReason.INVALID_CONFIG.value)
    assert exit_code(unknown) == ExitCode.INVALID_CONFIG == 2
    assert "model.params.learning_rate" in unknown.message
    assert "n_estimators" in unknown.message  # the valid names are listed

    bad_value = result_for({"n_estimators": "many"})
    assert bad_value.reason == FailureReason.INVALID_CONFIG.value
    assert "model.params.n_estimators" in bad_value.message


def test_wrong_primary_metric_is_a_config_error(
    tmp_path: Path, make_train_config: ConfigFactory
) -> None:
    result = train(
        make_train_config(
            run_name="run",
            artifact_uri=tmp_path.as_uri(),
            data_uri="sklearn://diabetes",
            task="regression",
            evaluation={"primaryMetric": "accuracy"},
        )
    )
    assert result.reason == FailureReason.INVALID_CONFIG.value
    assert "evaluation.primaryMetric" in result.message


def test_unreachable_data_is_data_unavailable(
    tmp_path: Path, make_train_config: ConfigFactory
) -> None:
    result = train(
        make_train_config(
            run_name="run",
            artifact_uri=tmp_path.as_uri(),
            data_uri=str(tmp_path / "missing.csv"),
        )
    )
    assert (result.status, result.reason) == ("Failed", FailureReason.DATA_UNAVAILABLE.value)
    assert exit_code(result) == ExitCode.DATA_UNAVAILABLE == 3
    assert "missing.csv" in result.message


def test_retried_run_overwrites_its_folder(
    tmp_path: Path, make_train_config: ConfigFactory
) -> None:
    config = make_train_config(
        run_name="run",
        artifact_uri=tmp_path.as_uri(),
        data_uri="sklearn://iris",
        estimator="LogisticRegression",
        params={},
    )
    first = train(config)
    second = train(config)
    assert first.status == second.status == "Succeeded"
    assert first.metrics == second.metrics
    assert second.artifact is not None
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "MODEL_CARD.md",
        "metadata.json",
        "model.onnx",
        "model.skops",
    ]
    stored = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert stored["model"]["sha256"] == second.artifact.sha256
    # A retry without an export leaves no stale model.onnx behind.
    third = train(config.model_copy(update={"onnx": OnnxConfig(enabled=False)}))
    assert third.status == "Succeeded" and third.artifact is not None
    assert third.artifact.onnx_uri is None and third.artifact.onnx_sha256 is None
    assert third.onnx_export is not None and not third.onnx_export.exported
    assert "disabled" in third.onnx_export.reason
    assert not (tmp_path / "run" / "model.onnx").exists()
    assert "onnx" not in json.loads((tmp_path / "run" / "metadata.json").read_text())


def test_mixed_types_with_missing_values(tmp_path: Path, make_train_config: ConfigFactory) -> None:
    rng = np.random.default_rng(3)
    rows = 200
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, rows),
            "rooms": rng.integers(1, 6, rows).astype(float),
            "city": rng.choice(["paris", "lyon", "nice"], rows).astype(object),
            "garden": rng.choice(["true", "false"], rows).astype(object),
        }
    )
    frame.loc[::17, "size"] = np.nan
    frame.loc[::19, "city"] = None
    frame["price"] = frame["size"].fillna(10) * 3 + (frame["city"] == "paris") * 20
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    result = train(
        make_train_config(
            run_name="run",
            artifact_uri=(tmp_path / "artifacts").as_uri(),
            data_uri=str(path),
            target="price",
            task="regression",
            estimator="Ridge",
            params={"alpha": 0.5},
        )
    )
    assert result.status == "Succeeded", result.message
    assert result.metrics["r2"] > 0.8
    assert result.artifact is not None
    meta = artifacts.read_metadata(result.artifact.uri)
    assert {f.name: f.type.value for f in meta.features} == {
        "size": "numeric",
        "rooms": "numeric",
        "city": "categorical",
        "garden": "boolean",
    }
    assert meta.reference["city"].kind == "categorical"
    assert set(meta.reference["city"].categories) == {"paris", "lyon", "nice"}
    # An unknown category and a missing value still predict (ignored / imputed).
    model = artifacts.load_model(artifacts.fetch_verified(result.artifact.model_uri, None))
    odd = pd.DataFrame({"size": [None], "rooms": [2], "city": ["berlin"], "garden": [True]})
    assert np.isfinite(model.predict(coerce_features(odd, meta.features))).all()


def test_numeric_fast_path_gives_the_same_importances(trained_run: Any) -> None:
    """Scoring the estimator on transformed numeric columns equals permuting raw columns."""
    from sklearn.inspection import permutation_importance

    from perennial_runtime.training.importance import numeric_view, top_features

    run = trained_run("wine")
    model = artifacts.load_model(artifacts.fetch_verified(run.model_uri, run.sha256))
    frame = load(run.config.data).frame
    x = coerce_features(frame, run.metadata.features).iloc[:100]
    y = frame["target"].iloc[:100]
    assert numeric_view(model, x) is not None
    fast = top_features(model, x, y, Task.CLASSIFICATION, seed=3, top_n=13)
    slow = permutation_importance(model, x, y, scoring="accuracy", n_repeats=3, random_state=3)
    expected = {
        c: round(float(m), 6) for c, m in zip(x.columns, slow.importances_mean, strict=True)
    }
    assert {f.feature: f.importance for f in fast} == expected


@pytest.mark.parametrize(
    ("estimator", "params", "expected"),
    [
        ("LogisticRegression", {"solver": "lbfgs", "dual": True}, "failed to fit"),
        ("KNeighborsClassifier", {"n_neighbors": 500}, "could not be evaluated"),
    ],
)
def test_estimator_failures_are_training_errors(
    tmp_path: Path,
    make_train_config: ConfigFactory,
    estimator: str,
    params: dict[str, Any],
    expected: str,
) -> None:
    result = train(
        make_train_config(
            run_name="run",
            artifact_uri=tmp_path.as_uri(),
            data_uri="sklearn://iris",
            estimator=estimator,
            params=params,
        )
    )
    assert (result.status, result.reason) == ("Failed", FailureReason.TRAINING_ERROR.value)
    assert exit_code(result) == ExitCode.TRAINING_ERROR == 5
    assert expected in result.message and estimator in result.message
