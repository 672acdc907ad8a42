"""Canary analysis input from the servers' monitoring snapshots, status.monitoring, and the
Pod/Deployment reading that feeds the state machine."""

from __future__ import annotations

from typing import Any

import pytest

from perennial.api.deployment import DeploymentMonitoringStatus
from perennial.core.analysis import (
    SnapshotError,
    analysis_sample,
    monitoring_status,
    parse_snapshot,
    prediction_shift,
    psi,
    scrape_message,
)
from perennial.core.workload import crash_reason, workload_state
from perennial_runtime.contract import EarlierModelFeedback, MonitoringSnapshot


def snap(**kw: Any) -> MonitoringSnapshot:
    return MonitoringSnapshot(model="iris", **kw)


def test_parse_snapshot_ignores_fields_of_newer_servers() -> None:
    parsed = parse_snapshot({"model": "iris", "requests": 3, "someNewField": 1})
    assert parsed.requests == 3
    with pytest.raises(SnapshotError, match="JSON object"):
        parse_snapshot([1, 2])
    with pytest.raises(SnapshotError, match="monitoring snapshot"):
        parse_snapshot({"requests": "many"})


def test_psi_is_zero_for_equal_and_large_for_different_distributions() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.25


def test_classifier_prediction_shift() -> None:
    stable = {"0": 0.3, "1": 0.7}
    assert prediction_shift(stable, {"0": 0.31, "1": 0.69}) == pytest.approx(0.0, abs=0.01)
    assert prediction_shift(stable, {"0": 0.9, "1": 0.1}) > 0.25  # type: ignore[operator]
    # A class the stable model never predicts counts too.
    assert prediction_shift(stable, {"0": 0.3, "1": 0.4, "2": 0.3}) > 0.25  # type: ignore[operator]
    assert prediction_shift({}, stable) is None


def test_regressor_prediction_shift_from_quantiles() -> None:
    stable = {"mean": 10.0, "std": 2.0, "p10": 7.4, "p50": 10.0, "p90": 12.6}
    assert prediction_shift(stable, dict(stable)) == pytest.approx(0.0, abs=1e-6)
    shifted = {"mean": 14.0, "std": 2.0, "p10": 11.4, "p50": 14.0, "p90": 16.6}
    assert prediction_shift(stable, shifted) > 0.25  # type: ignore[operator]
    wider = {"mean": 10.0, "std": 6.0, "p10": 2.3, "p50": 10.0, "p90": 17.7}
    assert prediction_shift(stable, wider) > 0.25  # type: ignore[operator]
    constant = {"mean": 10.0, "std": 0.0, "p10": 10.0, "p50": 10.0, "p90": 10.0}
    value = prediction_shift(stable, constant)
    assert value is not None and value > 0.25


def test_analysis_sample_sums_pods_and_compares_with_stable() -> None:
    canary = [
        snap(
            requests=40,
            errors=1,
            latency_p99_ms=5.0,
            rows_predicted=40,
            prediction_distribution={"0": 0.5, "1": 0.5},
        ),
        snap(
            requests=60,
            errors=0,
            latency_p99_ms=9.0,
            rows_predicted=60,
            prediction_distribution={"0": 0.5, "1": 0.5},
        ),
    ]
    stable = [snap(requests=500, rows_predicted=500, prediction_distribution={"0": 0.5, "1": 0.5})]
    sample = analysis_sample(canary, stable)
    assert sample is not None
    assert (sample.requests, sample.errors, sample.p99_latency_ms) == (100, 1, 9.0)
    assert sample.prediction_shift == pytest.approx(0.0)
    assert analysis_sample([], stable) is None
    alone = analysis_sample(canary, [])
    assert alone is not None and alone.prediction_shift is None


def test_scrape_message_names_the_model() -> None:
    text = scrape_message(
        snap(run="iris-00002", requests=7, max_drift_score=0.31234, drift_samples=150)
    )
    assert text == "iris-00002: 7 requests, max drift 0.312 over 150 rows, 0 feedback rows"
    assert scrape_message(snap()).startswith("a model that does not name its run: 0 requests")


def test_monitoring_status_has_the_fields_the_pipeline_triggers_read() -> None:
    out = monitoring_status(
        snap(
            requests=250,
            errors=5,
            error_rate=0.02,
            drift_samples=200,
            drift_scores={"petal length (cm)": 0.41234567, "sepal width (cm)": 0.02},
            max_drift_score=0.41234567,
            feedback_samples=120,
            live_accuracy=0.875,
            latency_p99_ms=4.2,
            run="iris-00002",
            sha256="c" * 64,
        ),
        scraped_at="2026-06-01T12:00:00Z",
    )
    assert out == {
        "run": "iris-00002",
        "sha256": "c" * 64,
        "driftScores": {"petal length (cm)": 0.412346, "sepal width (cm)": 0.02},
        "driftSamples": 200,
        "maxDriftScore": 0.412346,
        "errorRate": 0.02,
        "requests": 250,
        "feedbackSamples": 120,
        "liveAccuracy": 0.875,
        "latencyP99Ms": 4.2,
        "lastScrapeTime": "2026-06-01T12:00:00Z",
        "reachable": True,
    }


def test_monitoring_status_reports_late_labels_of_earlier_models_apart() -> None:
    earlier = EarlierModelFeedback(
        sha256_prefix="9c04e1b2",
        feedback_samples=300,
        live_accuracy=0.81234567,
        oldest_prediction="2026-06-01T09:00:00.000Z",
        newest_prediction="2026-06-01T11:00:00.000Z",
    )
    out = monitoring_status(
        snap(feedback_samples=0, run="iris-00003", sha256="d" * 64, earlier_models=[earlier]),
        scraped_at="2026-06-01T12:00:00Z",
    )
    assert out["feedbackSamples"] == 0 and "liveAccuracy" not in out
    assert out["earlierModels"] == [
        {
            "sha256Prefix": "9c04e1b2",
            "feedbackSamples": 300,
            "liveAccuracy": 0.812346,
            "oldestPrediction": "2026-06-01T09:00:00.000Z",
            "newestPrediction": "2026-06-01T11:00:00.000Z",
        }
    ]
    status = DeploymentMonitoringStatus.model_validate(out)  # what write_status checks
    assert status.earlier_models[0].live_accuracy == 0.812346
    # A snapshot of an older server (no earlierModels) still parses, with none.
    old = MonitoringSnapshot.model_validate_json('{"model": "iris", "feedbackSamples": 3}')
    assert old.earlier_models == []


# --- reading Deployments and Pods ----------------------------------------------------------


def pod(
    run: str, waiting: str | None = None, restarts: int = 0, message: str = ""
) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": f"{run}-x", "labels": {"perennial.dev/run": run}},
        "status": {
            "containerStatuses": [
                {
                    "name": "server",
                    "restartCount": restarts,
                    "state": state,
                    "lastState": {"terminated": {"exitCode": 1, "message": message}}
                    if message
                    else {},
                }
            ]
        },
    }


def test_crash_reason() -> None:
    assert crash_reason(pod("r", "CrashLoopBackOff", 4, "sha256 mismatch")) == (
        "CrashLoopBackOff: sha256 mismatch"
    )
    assert crash_reason(pod("r", "ImagePullBackOff")) == "ImagePullBackOff"
    assert crash_reason(pod("r", None, restarts=3)) == "3 restarts"
    assert crash_reason(pod("r", "ContainerCreating")) is None
    assert crash_reason(pod("r")) is None


def test_workload_state_from_a_deployment_and_its_pods() -> None:
    deployment = {
        "metadata": {"name": "iris-serving", "generation": 4},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"annotations": {"perennial.dev/model-sha256": "b" * 64}}},
        },
        "status": {
            "observedGeneration": 4,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "unavailableReplicas": 1,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ],
        },
    }
    pods = [
        pod("iris-00002", "CrashLoopBackOff", 5, "model failed its smoke test"),
        pod("iris-00001", "CrashLoopBackOff", 5),
    ]
    state = workload_state(deployment, pods, run="iris-00002")
    assert state.model_sha256 == "b" * 64 and state.desired_replicas == 2
    assert (state.generation, state.observed_generation) == (4, 4)
    assert state.progress_deadline_exceeded
    assert state.crash_looping_pods == 1  # the old model's Pod is not counted
    assert state.crash_reason == "CrashLoopBackOff: model failed its smoke test"
    assert not state.rolled_out("b" * 64)
    assert workload_state(deployment).total_replicas == 0  # not reported yet


def test_workload_state_counts_old_replicas_of_a_surge() -> None:
    deployment = {
        "metadata": {"name": "iris-serving", "generation": 2},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"annotations": {"perennial.dev/model-sha256": "b" * 64}}},
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        },
    }
    state = workload_state(deployment)
    assert state.total_replicas == 2 and state.unavailable_replicas == 0
    assert not state.rolled_out("b" * 64)
    deployment["status"]["replicas"] = 1  # type: ignore[index]
    assert workload_state(deployment).rolled_out("b" * 64)


def test_workload_state_of_a_missing_deployment() -> None:
    missing = workload_state(None)
    assert not missing.exists and missing.desired_replicas == 0
