"""The TrainResult always fits the 4 KiB termination message, on wide data too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perennial_runtime.contract import (
    TERMINATION_MESSAGE_LIMIT,
    ArtifactRef,
    DataReport,
    FeatureImportance,
    TrainResult,
    Violation,
)
from perennial_runtime.training.report import compact, size_of, summary
from perennial_runtime.training.trainer import train, write_result

LIMIT = TERMINATION_MESSAGE_LIMIT


def wide_frame(rows: int = 240, columns: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, columns))
    frame = pd.DataFrame(
        values, columns=[f"sensor_reading_channel_{i:03d}" for i in range(columns)]
    )
    frame["target"] = (values[:, 0] + values[:, 1] > 0).astype(int)
    return frame


def test_digits_result_fits(
    tmp_path: Path, make_train_config: Callable[..., Any], champion_block: Callable[..., Any]
) -> None:
    def config(run_name: str, **kwargs: Any) -> Any:
        return make_train_config(
            run_name=run_name,
            artifact_uri=tmp_path.as_uri(),
            data_uri="sklearn://digits",
            estimator="LogisticRegression",
            params={"max_iter": 200},
            evaluation={"topFeatures": 50},
            result_path=str(tmp_path / f"{run_name}.json"),
            **kwargs,
        )

    first = train(config("a"))
    second = train(config("b", champion=champion_block(first)))
    assert second.status == "Succeeded", second.message
    assert second.data is not None and len(second.data.drift_scores) == 64
    written = write_result(second, str(tmp_path / "b.json"))
    assert len((tmp_path / "b.json").read_bytes()) <= LIMIT
    assert written.metrics == second.metrics
    assert written.champion_metrics == second.champion_metrics
    assert written.artifact == second.artifact
    assert written.holdout_sha256 == second.holdout_sha256
    assert written.truncated is (size_of(second) > LIMIT)


def test_wide_frame_result_fits(
    tmp_path: Path, make_train_config: Callable[..., Any], champion_block: Callable[..., Any]
) -> None:
    path = tmp_path / "wide.parquet"
    wide_frame().to_parquet(path)

    def config(run_name: str, **kwargs: Any) -> Any:
        return make_train_config(
            run_name=run_name,
            artifact_uri=(tmp_path / "artifacts").as_uri(),
            data_uri=str(path),
            estimator="LogisticRegression",
            params={},
            evaluation={"topFeatures": 50},
            **kwargs,
        )

    first = train(config("a"))
    assert first.status == "Succeeded", first.message
    second = train(config("b", champion=champion_block(first)))
    assert second.status == "Succeeded", second.message
    assert second.data is not None and len(second.data.drift_scores) == 300
    assert size_of(second) > LIMIT, "the full result is too big: this test must compact it"

    written = write_result(second, str(tmp_path / "result.json"))
    assert len((tmp_path / "result.json").read_bytes()) <= LIMIT
    assert written.truncated is True
    assert written.status == "Succeeded" and written.reason == "Trained"
    assert written.metrics == second.metrics
    assert written.champion_metrics == second.champion_metrics
    assert written.artifact == second.artifact
    assert written.holdout_sha256 == second.holdout_sha256
    assert written.data is not None and written.data.max_drift == second.data.max_drift
    # The full report stays in metadata.json.
    from perennial_runtime.artifacts import read_metadata

    assert second.artifact is not None
    assert len(read_metadata(second.artifact.uri).data.drift_scores) == 300


def test_wide_frame_validation_failure_fits(
    tmp_path: Path, make_train_config: Callable[..., Any]
) -> None:
    frame = wide_frame()
    frame.iloc[:120, :-1] = np.nan  # every feature half missing
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    result = train(
        make_train_config(
            run_name="run",
            artifact_uri=(tmp_path / "artifacts").as_uri(),
            data_uri=str(path),
        )
    )
    assert result.reason == "DataValidationFailed"
    assert result.data is not None and len(result.data.violations) == 300
    written = write_result(result, str(tmp_path / "result.json"))
    assert len((tmp_path / "result.json").read_bytes()) <= LIMIT
    assert written.truncated is True
    assert written.status == "Failed" and written.reason == "DataValidationFailed"
    assert written.data is not None
    assert 0 < len(written.data.violations) < 300
    assert written.message.startswith(f"[{300 - len(written.data.violations)} of 300 violations")


def test_compaction_order_and_guarantees() -> None:
    big = TrainResult(
        status="Failed",
        reason="DataValidationFailed",
        message="x" * 3000 + "é" * 500,
        metrics={"accuracy": 0.5},
        champion_metrics={"accuracy": 0.4},
        holdout_sha256="a" * 64,
        artifact=ArtifactRef(
            uri="file:///a/run", model_uri="file:///a/run/m", sha256="b" * 64, size=1
        ),
        data=DataReport(
            uri="s3://bucket/" + "k" * 200,
            warnings=["w" * 100] * 30,
            drift_scores={f"f{i}": 0.1 for i in range(200)},
            violations=[
                Violation(rule="maxMissingFraction", column=f"c{i}", message="m" * 80)
                for i in range(100)
            ],
        ),
        feature_importance=[FeatureImportance(feature=f"f{i}", importance=0.1) for i in range(50)],
    )
    small = compact(big)
    assert size_of(small) <= LIMIT
    assert small.truncated
    assert small.feature_importance == [] and small.data is not None
    assert small.data.drift_scores == {} and small.data.warnings == []
    assert (small.metrics, small.champion_metrics) == (big.metrics, big.champion_metrics)
    assert small.artifact == big.artifact and small.holdout_sha256 == big.holdout_sha256
    assert small.message.endswith("...")
    # Untouched when it already fits.
    tiny = TrainResult(status="Succeeded", metrics={"r2": 0.5})
    assert compact(tiny) == tiny and not compact(tiny).truncated
    assert "training Succeeded" in summary(tiny)
