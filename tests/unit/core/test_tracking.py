"""MLflow tracking as the operator sees it: status, condition, event, finalize request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from perennial.api.run import TrainingRunStatus
from perennial.core.conditions import get
from perennial.core.gates import BeatChampion, MetricGate
from perennial.core.run_status import verdict_events
from perennial.core.run_verdict import GateConfig, verdict_conditions, verdict_from_result
from perennial.core.tracking import (
    TRACKING_FAILED,
    alias_request,
    finalize_request,
    rolled_back_to,
)
from perennial_runtime.contract import ArtifactRef, MlflowConfig, TrackingResult, TrainResult

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = GateConfig(
    primary_metric="accuracy",
    metric_gates=(MetricGate("accuracy", threshold=0.9),),
    beat_champion=BeatChampion("accuracy"),
    top_features=2,
)
ARTIFACT = ArtifactRef(
    uri="file:///a/r1", model_uri="file:///a/r1/model.skops", sha256="a" * 64, size=1
)
MLFLOW = MlflowConfig(
    tracking_uri="http://mlflow:5000", experiment_name="ns/p", registered_model_name="p"
)


def result(accuracy: float, tracking: TrackingResult | None) -> TrainResult:
    return TrainResult(
        status="Succeeded", metrics={"accuracy": accuracy}, artifact=ARTIFACT, tracking=tracking
    )


def test_a_tracked_run_records_its_mlflow_ids_in_status() -> None:
    verdict = verdict_from_result(
        result(0.95, TrackingResult(mlflow_run_id="abc", model_version="3")),
        CONFIG,
        had_champion=False,
    )
    assert verdict.status["tracking"] == {"mlflowRunId": "abc", "modelVersion": "3"}
    TrainingRunStatus.model_validate({"tracking": verdict.status["tracking"]})
    conditions = verdict_conditions(verdict, [], now=NOW, generation=1)
    condition = get(conditions, TRACKING_FAILED)
    assert condition is not None and condition["status"] == "False"
    assert condition["reason"] == "Tracked"
    assert TRACKING_FAILED not in [n.reason for n in verdict_events(verdict)]
    request = finalize_request(
        MLFLOW,
        verdict.status,
        verdict=verdict.reason,
        reason=verdict.message,
        gates=verdict.gates,
        blessed=verdict.blessed,
    )
    assert request is not None
    assert (request.verdict, request.alias_version) == ("Blessed", "3")
    assert [g.name for g in request.gates] == [g.name for g in verdict.gates]


def test_a_rejected_run_does_not_move_the_alias() -> None:
    verdict = verdict_from_result(
        result(0.5, TrackingResult(mlflow_run_id="abc", model_version="4")),
        CONFIG,
        had_champion=False,
    )
    request = finalize_request(
        MLFLOW, verdict.status, verdict="Rejected", reason=verdict.message,
        gates=verdict.gates, blessed=verdict.blessed,
    )  # fmt: skip
    assert request is not None
    assert request.verdict == "Rejected" and request.alias_version is None
    assert any(not g.passed for g in request.gates)


def test_a_tracking_failure_is_a_warning_never_a_failed_run() -> None:
    warning = "MLflow run logging failed: ConnectionError: refused"
    verdict = verdict_from_result(
        result(0.95, TrackingResult(warning=warning)), CONFIG, had_champion=False
    )
    assert verdict.blessed
    condition = get(verdict_conditions(verdict, [], now=NOW, generation=1), TRACKING_FAILED)
    assert condition is not None and condition["status"] == "True"
    assert (condition["reason"], condition["message"]) == ("MlflowUnavailable", warning)
    notes = [n for n in verdict_events(verdict) if n.reason == TRACKING_FAILED]
    assert [(n.type, n.message) for n in notes] == [("Warning", warning)]
    assert (
        finalize_request(
            MLFLOW, verdict.status, verdict="Blessed", reason="", gates=(), blessed=True
        )
        is None
    )


def test_an_untracked_run_has_no_tracking_condition() -> None:
    verdict = verdict_from_result(result(0.95, None), CONFIG, had_champion=False)
    assert "tracking" not in verdict.status
    assert get(verdict_conditions(verdict, [], now=NOW, generation=1), TRACKING_FAILED) is None


def test_the_finalize_jobs_outcome_and_its_condition() -> None:
    from datetime import UTC, datetime

    from perennial.core.tracking import finalize_conditions, finalize_outcome

    job: dict[str, Any] = {"metadata": {"name": "r-mlflow"}, "status": {}}
    assert finalize_outcome(job) is None  # still running
    job["status"]["conditions"] = [{"type": "Failed", "status": "True", "message": "backoff"}]
    assert finalize_outcome(job) == (False, "the MLflow finalize Job r-mlflow failed: backoff")
    now = datetime(2026, 12, 5, tzinfo=UTC)
    failed = finalize_conditions([], False, "boom", now=now, generation=1)
    assert (failed[0]["type"], failed[0]["status"], failed[0]["reason"]) == (
        "TrackingFailed",
        "True",
        "FinalizeFailed",
    )
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    ok, message = finalize_outcome(job) or (False, "")
    assert ok
    done = finalize_conditions(failed, True, message, now=now, generation=1)
    assert (done[0]["status"], done[0]["reason"]) == ("False", "Finalized")


def test_a_rollback_to_is_seen_once_when_it_starts_serving() -> None:
    serving_2 = {"currentModel": {"run": "iris-00002"}}
    serving_1 = {"currentModel": {"run": "iris-00001"}}
    assert rolled_back_to(serving_2, serving_1, "iris-00001") == "iris-00001"
    assert rolled_back_to(serving_1, serving_1, "iris-00001") is None  # already served
    assert rolled_back_to(serving_2, serving_2, "iris-00001") is None  # not yet
    assert rolled_back_to(serving_2, serving_1, None) is None  # not a spec.rollbackTo
    assert rolled_back_to({}, serving_1, "iris-00001") == "iris-00001"


def test_the_alias_request_only_moves_the_alias_to_the_runs_version() -> None:
    mlflow = MlflowConfig(
        tracking_uri="http://mlflow:5000", experiment_name="ml/iris", registered_model_name="iris"
    )
    request = alias_request(mlflow, {"tracking": {"mlflowRunId": "r1", "modelVersion": "1"}})
    assert request is not None
    assert (request.alias_version, request.verdict, request.mlflow_run_id) == ("1", None, None)
    assert alias_request(mlflow, {"tracking": {"warning": "MLflow was down"}}) is None
    assert alias_request(mlflow, {}) is None
