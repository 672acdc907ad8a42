"""MLflow tracking and registry against a real ``mlflow server`` on loopback.

Real training on iris; everything is read back through MLflow's own client.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perennial_runtime import tracking
from perennial_runtime.contract import (
    CHAMPION_ALIAS,
    TRACKING_FINALIZE_ENV,
    GateOutcome,
    MlflowConfig,
    TrackingFinalize,
    TrainConfig,
    TrainResult,
)
from perennial_runtime.training.report import size_of
from perennial_runtime.training.trainer import train, write_result
from testsupport import scaled

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def _mlflow(uri: str, model: str) -> MlflowConfig:
    return MlflowConfig(
        tracking_uri=uri,
        experiment_name=f"default/{model}",
        registered_model_name=model,
        spec_hash="0123456789abcdef",
    )


def _train(
    make_train_config: Callable[..., TrainConfig],
    tmp_path: Path,
    run_name: str,
    mlflow: MlflowConfig,
    champion: dict[str, Any] | None = None,
) -> tuple[TrainConfig, TrainResult]:
    config = make_train_config(
        run_name=run_name,
        artifact_uri=(tmp_path / "artifacts").as_uri(),
        data_uri="sklearn://iris",
        champion=champion,
    )
    config.mlflow = mlflow
    result = train(config)
    assert result.status == "Succeeded", result.message
    return config, result


def test_a_run_is_tracked_and_registered(
    mlflow_server: str, make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    mlflow = _mlflow(mlflow_server, "iris-tracked")
    config, result = _train(make_train_config, tmp_path, "iris-tracked-1", mlflow)
    assert result.tracking is not None and result.tracking.warning is None
    assert result.tracking.mlflow_run_id and result.tracking.model_version == "1"
    assert result.artifact is not None

    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.tracking.mlflow_run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "default/iris-tracked"
    assert run.info.run_name == "iris-tracked-1" and run.info.status == "FINISHED"
    assert run.data.params["estimator"] == "RandomForestClassifier"
    assert run.data.params["seed"] == "42"
    assert run.data.params["model.n_estimators"] == "20"
    tags = run.data.tags
    assert tags["perennial.run"] == "iris-tracked-1"
    assert tags["perennial.pipeline"] == "test-pipeline"
    assert tags["perennial.specHash"] == "0123456789abcdef"
    assert tags["data.uri"] == "sklearn://iris"
    assert tags["data.fingerprint"] == result.data.fingerprint if result.data else False
    assert tags["model.uri"] == result.artifact.model_uri
    assert tags["model.sha256"] == result.artifact.sha256
    assert tags["holdout.sha256"] == result.holdout_sha256
    assert tags["image"] == "ghcr.io/perennial-dev/perennial-runtime:test"
    assert tags["library.sklearn"] and tags["library.perennial_runtime"]
    assert run.data.metrics == pytest.approx(result.metrics)  # no champion: no champion.*

    names = {a.path for a in client.list_artifacts(run.info.run_id, tracking.ARTIFACT_PATH)}
    assert names == {"perennial/metadata.json", "perennial/MODEL_CARD.md"}
    local = client.download_artifacts(run.info.run_id, "perennial/metadata.json", str(tmp_path))
    assert Path(local).read_bytes() == (Path(config.artifact_uri[7:]) / "iris-tracked-1" /
                                        "metadata.json").read_bytes()  # fmt: skip
    # Our model file is not copied into MLflow: only its URI and sha256 travel.
    assert not any(a.path.endswith(".skops") for a in client.list_artifacts(run.info.run_id))

    version = client.get_model_version("iris-tracked", "1")
    assert version.run_id == run.info.run_id
    assert version.tags["model.sha256"] == result.artifact.sha256
    assert version.tags["perennial.run"] == "iris-tracked-1"
    assert size_of(write_result(result, str(tmp_path / "termination-log"))) <= 4096


def test_a_retried_pod_reuses_its_run_and_version(
    mlflow_server: str, make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    mlflow = _mlflow(mlflow_server, "iris-retried")
    _, first = _train(make_train_config, tmp_path, "iris-retried-1", mlflow)
    _, again = _train(make_train_config, tmp_path, "iris-retried-1", mlflow)
    assert first.tracking is not None and again.tracking is not None
    assert again.tracking.warning is None
    assert again.tracking.mlflow_run_id == first.tracking.mlflow_run_id
    assert again.tracking.model_version == first.tracking.model_version == "1"
    client = MlflowClient(tracking_uri=mlflow_server)
    assert len(client.search_model_versions("name = 'iris-retried'")) == 1


def test_verdicts_and_the_champion_alias_move_and_roll_back(
    mlflow_server: str,
    make_train_config: Callable[..., TrainConfig],
    champion_block: Callable[[TrainResult], dict[str, Any]],
    tmp_path: Path,
) -> None:
    mlflow = _mlflow(mlflow_server, "iris-alias")
    client = MlflowClient(tracking_uri=mlflow_server)
    _, first = _train(make_train_config, tmp_path, "iris-alias-1", mlflow)
    assert first.tracking is not None
    tracking.finalize(
        TrackingFinalize(
            mlflow=mlflow,
            mlflow_run_id=first.tracking.mlflow_run_id,
            model_version=first.tracking.model_version,
            verdict="Blessed",
            reason="every gate passed",
            gates=[
                GateOutcome(name="accuracy.threshold", passed=True, observed=0.9, threshold=0.8),
                GateOutcome(name="beatChampion", passed=True, skipped=True, message="first run"),
            ],
            alias_version=first.tracking.model_version,
        )
    )
    assert client.get_model_version_by_alias("iris-alias", CHAMPION_ALIAS).version == "1"
    run = client.get_run(first.tracking.mlflow_run_id or "")
    assert run.data.tags["perennial.verdict"] == "Blessed"
    assert run.data.tags["gate.accuracy.threshold"] == "passed"
    assert run.data.tags["gate.beatChampion"] == "skipped"
    assert run.data.tags["gate.beatChampion.message"] == "first run"
    assert run.data.metrics["gate.accuracy.threshold.observed"] == pytest.approx(0.9)
    assert client.get_model_version("iris-alias", "1").tags["perennial.verdict"] == "Blessed"

    # The second run is scored beside the champion on the same holdout.
    _, second = _train(
        make_train_config, tmp_path, "iris-alias-2", mlflow, champion=champion_block(first)
    )
    assert second.tracking is not None and second.tracking.model_version == "2"
    run2 = client.get_run(second.tracking.mlflow_run_id or "")
    assert second.champion_metrics
    for name, value in second.champion_metrics.items():
        assert run2.data.metrics[f"champion.{name}"] == pytest.approx(value)
    assert run2.data.tags["champion.run"] == "iris-alias-1"

    tracking.finalize(
        TrackingFinalize(
            mlflow=mlflow,
            mlflow_run_id=second.tracking.mlflow_run_id,
            model_version="2",
            verdict="Blessed",
            alias_version="2",
        )
    )
    assert client.get_model_version_by_alias("iris-alias", CHAMPION_ALIAS).version == "2"
    # A rollback (ModelDeployment spec.rollbackTo) moves the alias back.
    tracking.finalize(TrackingFinalize(mlflow=mlflow, alias_version="1"))
    assert client.get_model_version_by_alias("iris-alias", CHAMPION_ALIAS).version == "1"


def test_a_rejected_run_keeps_the_alias(
    mlflow_server: str, make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    mlflow = _mlflow(mlflow_server, "iris-rejected")
    client = MlflowClient(tracking_uri=mlflow_server)
    _, first = _train(make_train_config, tmp_path, "iris-rejected-1", mlflow)
    assert first.tracking is not None
    request = TrackingFinalize(
        mlflow=mlflow,
        mlflow_run_id=first.tracking.mlflow_run_id,
        model_version=first.tracking.model_version,
        verdict="Rejected",
        gates=[GateOutcome(name="accuracy.threshold", passed=False, message="0.9 < 0.99")],
    )
    env = {TRACKING_FINALIZE_ENV: request.to_json()}
    assert tracking.main(["finalize"], env) == 0
    run = client.get_run(first.tracking.mlflow_run_id or "")
    assert run.data.tags["perennial.verdict"] == "Rejected"
    assert run.data.tags["gate.accuracy.threshold"] == "failed"
    assert client.get_registered_model("iris-rejected").aliases == {}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_a_tracking_server_that_is_down_never_fails_training(
    make_train_config: Callable[..., TrainConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow = _mlflow(f"http://127.0.0.1:{_closed_port()}", "iris-down")
    _, result = _train(make_train_config, tmp_path, "iris-down-1", mlflow)
    assert result.artifact is not None and result.metrics
    assert result.tracking is not None
    assert result.tracking.mlflow_run_id is None and result.tracking.model_version is None
    assert result.tracking.warning and result.tracking.warning.startswith("MLflow run logging")
    assert len(result.tracking.warning) <= 300


def test_finalize_refuses_a_bad_request_and_reports_a_down_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tracking.main(["finalize"], {TRACKING_FINALIZE_ENV: "{}"}) == 2
    assert tracking.main(["log"], {}) == 2
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = TrackingFinalize(
        mlflow=_mlflow(f"http://127.0.0.1:{_closed_port()}", "m"), alias_version="1"
    )
    assert tracking.main(["finalize"], {TRACKING_FINALIZE_ENV: down.to_json()}) == 1


def test_the_local_runner_finalizes_in_a_process(
    mlflow_server: str, make_train_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    """perennial.local's finalize process: the operator's request, run for real."""
    import subprocess
    from datetime import UTC, datetime

    from perennial.api.enums import TriggerType
    from perennial.api.run import TrainingRun
    from perennial.core.pipeline_plan import Consumed, NewRun
    from perennial.core.run_verdict import GateConfig, verdict_from_result
    from perennial.core.triggers import Trigger
    from perennial.k8s.builders.training_run import build_run
    from perennial.local.tracking import FINALIZE_LOG, start_finalize

    mlflow = _mlflow(mlflow_server, "iris-local")
    _, result = _train(make_train_config, tmp_path, "iris-local-00001", mlflow)
    assert result.tracking is not None and result.tracking.model_version == "1"
    now = datetime(2026, 6, 1, tzinfo=UTC)
    pipeline = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "iris-local", "namespace": "default", "uid": "u"},
        "spec": {
            "data": {"uri": "sklearn://iris", "target": "target"},
            "model": {"task": "classification", "estimator": "RandomForestClassifier"},
            "artifacts": {"uri": (tmp_path / "artifacts").as_uri()},
            "tracking": {
                "mlflow": {"trackingUri": mlflow_server, "experimentName": "default/iris-local"}
            },
        },
    }
    new = NewRun(
        sequence=1,
        name="iris-local-00001",
        trigger=Trigger(TriggerType.MANUAL, "test"),
        coalesced=(),
        consumed=Consumed(spec_hash="h", triggers=("Manual",), time=now),
    )
    body = build_run(pipeline, new, champion=None, now=now)
    run = TrainingRun.model_validate(body)
    verdict = verdict_from_result(
        result, GateConfig.from_spec(run.spec.pipeline_spec), had_champion=False
    )
    assert verdict.blessed
    process = start_finalize(body, verdict, tmp_path / "job")
    assert process is not None
    try:
        code = process.wait(timeout=scaled(120))
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert code == 0, (tmp_path / "job" / FINALIZE_LOG).read_text()
    client = MlflowClient(tracking_uri=mlflow_server)
    assert client.get_model_version_by_alias("iris-local", CHAMPION_ALIAS).version == "1"
    tags = client.get_run(result.tracking.mlflow_run_id or "").data.tags
    assert tags["perennial.verdict"] == "Blessed"
    assert {k for k in tags if k.startswith("gate.")} >= {f"gate.{g.name}" for g in verdict.gates}
