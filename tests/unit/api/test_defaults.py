"""A minimal spec gets the documented defaults, from the model and from the API server."""

from __future__ import annotations

from typing import Any

import pytest

from perennial import api
from perennial.api.base import ApiModel
from perennial_runtime.contract import DataValidationLimits

from .crd_support import apply_defaults, openapi

MINIMAL_PIPELINE: dict[str, Any] = {
    "data": {"uri": "sklearn://iris", "target": "target"},
    "model": {"task": "classification", "estimator": "LogisticRegression"},
    "artifacts": {"uri": "s3://models/iris"},
}
MINIMAL_DEPLOYMENT: dict[str, Any] = {"source": {"pipelineRef": {"name": "iris"}}}
MINIMAL_RUN: dict[str, Any] = {"pipelineSpec": MINIMAL_PIPELINE}


def test_pipeline_defaults() -> None:
    spec = api.TrainingPipelineSpec.model_validate(MINIMAL_PIPELINE)
    assert spec.data.format == "auto" and spec.data.columns is None
    assert spec.model.params == {}
    ev = spec.evaluation
    assert (ev.test_size, ev.seed, ev.primary_metric, ev.top_features) == (0.2, 42, None, 10)
    assert spec.resolved_primary_metric() == "accuracy"
    gates = spec.gates
    assert gates.metrics == []
    assert gates.beat_champion.enabled is True
    assert gates.beat_champion.min_delta == 0.0
    assert spec.resolved_beat_champion_metric() == "accuracy"
    data = gates.data
    assert (data.min_rows, data.max_missing_fraction, data.enforce_schema) == (20, 0.2, True)
    assert data.max_duplicate_fraction is None and data.min_class_fraction is None
    assert data.max_drift_psi is None
    assert spec.triggers.on_spec_change is True
    assert spec.triggers.schedule is None
    assert (spec.triggers.data_change.enabled, spec.triggers.data_change.poll_interval_seconds) == (
        False,
        300,
    )
    assert spec.triggers.drift is None and spec.triggers.performance_decay is None
    rt = spec.run_template
    assert rt.image == api.DEFAULT_RUNTIME_IMAGE
    assert rt.image.startswith("ghcr.io/perennial-dev/perennial-runtime:")
    assert rt.image_pull_policy == "IfNotPresent"
    assert rt.resources.requests == {"cpu": "500m", "memory": "512Mi"}
    assert rt.resources.limits == {"memory": "2Gi"}
    assert (rt.active_deadline_seconds, rt.backoff_limit, rt.ttl_seconds_after_finished) == (
        3600,
        0,
        86400,
    )
    assert rt.service_account_name is None and rt.tolerations is None
    assert spec.artifacts.volume is None
    assert spec.concurrency_policy is api.ConcurrencyPolicy.FORBID
    assert spec.suspend is False
    assert spec.successful_runs_history_limit == 10
    assert spec.failed_runs_history_limit == 5
    assert spec.resolved_decay_metric() is None


def test_regression_defaults_to_rmse() -> None:
    spec = api.TrainingPipelineSpec.model_validate(
        {**MINIMAL_PIPELINE, "model": {"task": "regression", "estimator": "Ridge"}}
    )
    assert spec.resolved_primary_metric() == "rmse"


def test_trigger_defaults() -> None:
    spec = api.TrainingPipelineSpec.model_validate(
        {
            **MINIMAL_PIPELINE,
            "triggers": {
                "schedule": {"cron": "@daily"},
                "drift": {"deploymentRef": {"name": "iris"}},
                "performanceDecay": {"deploymentRef": {"name": "iris"}, "threshold": 0.8},
            },
        }
    )
    drift, decay = spec.triggers.drift, spec.triggers.performance_decay
    assert drift is not None and decay is not None
    assert (drift.threshold, drift.cooldown_seconds) == (0.25, 3600)
    assert (decay.metric, decay.min_feedback_samples, decay.cooldown_seconds) == (None, 100, 3600)
    assert spec.resolved_decay_metric() == "accuracy"
    assert spec.triggers.on_spec_change is True
    schedule = spec.triggers.schedule
    assert schedule is not None and schedule.time_zone is None
    assert schedule.starting_deadline_seconds is None


def test_artifact_volume_mount_path_default() -> None:
    spec = api.ArtifactsSpec.model_validate(
        {"uri": "file:///artifacts/iris", "volume": {"claimName": "models"}}
    )
    assert spec.volume is not None and spec.volume.mount_path == "/artifacts"


def test_deployment_defaults() -> None:
    spec = api.ModelDeploymentSpec.model_validate(MINIMAL_DEPLOYMENT)
    assert spec.replicas == 1
    assert spec.image is None and spec.image_pull_policy == "IfNotPresent"
    assert spec.port == 8080
    assert spec.resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert spec.resources.limits == {"memory": "1Gi"}
    assert spec.strategy.type is api.RolloutStrategyType.ROLLING_UPDATE
    assert spec.strategy.canary is None
    assert spec.progress_deadline_seconds == 600
    assert (spec.rollback.automatic, spec.rollback.on_analysis_failure) == (True, True)
    assert spec.rollback_to is None
    mon = spec.monitoring
    assert (mon.enabled, mon.scrape_interval_seconds, mon.drift_window, mon.min_samples) == (
        True,
        60,
        1000,
        100,
    )
    assert spec.revision_history_limit == 10
    assert spec.pod_disruption_budget is None


def test_canary_defaults() -> None:
    canary = api.CanarySpec.model_validate({"steps": [{"weight": 20}, {"weight": 100}]})
    assert [s.pause_seconds for s in canary.steps] == [60, 60]
    a = canary.analysis
    assert (a.max_error_rate, a.max_p99_latency_ms, a.max_prediction_shift, a.min_requests) == (
        0.01,
        100,
        0.25,
        50,
    )
    assert api.PodDisruptionBudgetSpec().min_available == 1


def test_run_defaults() -> None:
    spec = api.TrainingRunSpec.model_validate(MINIMAL_RUN)
    assert spec.pipeline_ref is None and spec.champion is None
    assert spec.trigger.type is api.TriggerType.MANUAL
    assert spec.trigger.reason == "created by hand"
    assert spec.pipeline_spec.evaluation.test_size == 0.2


def test_data_limits_default_like_the_contract() -> None:
    spec = api.TrainingPipelineSpec.model_validate(MINIMAL_PIPELINE)
    assert spec.contract_validation_limits() == DataValidationLimits()


@pytest.mark.parametrize(
    ("kind", "model", "spec"),
    [
        ("TrainingPipeline", api.TrainingPipelineSpec, MINIMAL_PIPELINE),
        ("TrainingRun", api.TrainingRunSpec, MINIMAL_RUN),
        ("ModelDeployment", api.ModelDeploymentSpec, MINIMAL_DEPLOYMENT),
    ],
)
def test_api_server_fills_in_the_same_defaults(
    kind: str, model: type[ApiModel], spec: dict[str, Any]
) -> None:
    server_side = apply_defaults(openapi(kind)["properties"]["spec"], spec)
    assert server_side == model.model_validate(spec).to_dict()
