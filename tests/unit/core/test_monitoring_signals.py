"""perennial.core.monitoring_signals: watched ModelDeployments -> drift and decay signals
(shared by the operator's pipeline reconciler and the local runner)."""

from __future__ import annotations

from typing import Any

from perennial.api.pipeline import TrainingPipelineSpec
from perennial.core.monitoring_signals import trigger_signals, watched_deployments


def pipeline(**triggers: Any) -> TrainingPipelineSpec:
    return TrainingPipelineSpec.model_validate(
        {
            "data": {"uri": "s3://b/d.csv", "target": "y"},
            "model": {"task": "classification", "estimator": "LogisticRegression"},
            "artifacts": {"uri": "s3://b/m"},
            "triggers": triggers,
        }
    )


SPEC = pipeline(
    drift={"deploymentRef": {"name": "iris"}, "threshold": 0.3, "cooldownSeconds": 60},
    performanceDecay={"deploymentRef": {"name": "iris"}, "threshold": 0.8},
)


def md(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris"},
        "spec": {"monitoring": {"minSamples": 200}},
        "status": {
            "currentModel": {"run": "iris-00003", "sha256": "a" * 64},
            "rolledBackRuns": ["iris-00002"],
            "monitoring": {
                "run": "iris-00002",
                "sha256": "b" * 64,
                "maxDriftScore": 0.4,
                "driftSamples": 300,
                "liveAccuracy": 0.7,
                "feedbackSamples": 90,
            },
            **status,
        },
    }


def test_one_lookup_per_watched_deployment() -> None:
    assert watched_deployments(SPEC) == ("iris",)
    both = pipeline(
        drift={"deploymentRef": {"name": "a"}},
        performanceDecay={"deploymentRef": {"name": "b"}, "threshold": 0.8},
    )
    assert watched_deployments(both) == ("a", "b")
    assert watched_deployments(pipeline()) == ()


def test_signals_read_monitoring_and_the_served_model() -> None:
    signals = trigger_signals(SPEC, {"iris": md(rollout={"toRun": "iris-00004"})})
    assert signals.notes == []
    drift, decay = signals.drift, signals.decay
    assert drift is not None and decay is not None
    assert (drift.score, drift.samples, drift.threshold) == (0.4, 300, 0.3)
    assert (drift.min_samples, drift.cooldown_seconds) == (200, 60)
    assert (drift.deployment, drift.serving_run, drift.rollout_to) == (
        "iris",
        "iris-00003",
        "iris-00004",
    )
    assert drift.rolled_back == ("iris-00002",)
    assert (decay.metric, decay.value, decay.samples, decay.threshold) == (
        "accuracy",
        0.7,
        90,
        0.8,
    )
    assert decay.serving_run == "iris-00003" and decay.rollout_to == "iris-00004"
    # The model the numbers were measured on, next to the model serving.
    for signal in (drift, decay):
        assert (signal.serving_sha256, signal.measured_run, signal.measured_sha256) == (
            "a" * 64,
            "iris-00002",
            "b" * 64,
        )


def test_a_missing_deployment_is_noted_once_and_gives_no_signal() -> None:
    signals = trigger_signals(SPEC, {"iris": None})
    assert (signals.drift, signals.decay) == (None, None)
    assert signals.notes == ["ModelDeployment iris (watched by a trigger) does not exist"]


def test_drift_samples_fall_back_to_requests_and_min_samples_to_the_default() -> None:
    body = md(monitoring={"maxDriftScore": 0.5, "requests": 150})
    del body["spec"]
    drift = trigger_signals(SPEC, {"iris": body}).drift
    assert drift is not None and drift.samples == 150 and drift.min_samples == 100


RELATIVE = pipeline(
    performanceDecay={"deploymentRef": {"name": "iris"}, "maxDrop": 0.05, "confidence": 0.9},
)


def test_relative_decay_reads_the_served_models_holdout_score() -> None:
    current = {"run": "iris-00003", "sha256": "a" * 64, "holdoutMetrics": {"accuracy": 0.93}}
    signals = trigger_signals(RELATIVE, {"iris": md(currentModel=current)})
    decay = signals.decay
    assert decay is not None and signals.notes == []
    assert (decay.threshold, decay.max_drop, decay.holdout, decay.confidence) == (
        None,
        0.05,
        0.93,
        0.9,
    )


def test_relative_decay_without_a_recorded_holdout_says_why() -> None:
    signals = trigger_signals(RELATIVE, {"iris": md()})
    assert signals.decay is not None and signals.decay.holdout is None
    (note,) = signals.notes
    assert "holdout accuracy of iris-00003" in note and "maxDrop" in note
