"""A pipeline's drift and decay triggers + the ModelDeployments they watch -> the signals
:func:`perennial.core.pipeline_plan.plan` decides from. Pure.

The operator's pipeline reconciler and the local runner read the watched ModelDeployments
(:func:`watched_deployments`) their own way and hand them in; everything else is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perennial.api.deployment import MonitoringSpec
from perennial.api.pipeline import TrainingPipelineSpec
from perennial.core.pipeline_plan import ServingModel
from perennial.core.triggers import DecaySignal, DriftSignal

Deployments = Mapping[str, Mapping[str, Any] | None]  # name -> body (None: it does not exist)


@dataclass(frozen=True)
class Signals:
    drift: DriftSignal | None = None
    decay: DecaySignal | None = None
    notes: list[str] = field(default_factory=list)  # for the pipeline's status message


def watched_deployments(spec: TrainingPipelineSpec) -> tuple[str, ...]:
    """The names of the ModelDeployments the drift and decay triggers watch (each once)."""
    names: list[str] = []
    for rule in (spec.triggers.drift, spec.triggers.performance_decay):
        if rule is not None and rule.deployment_ref.name not in names:
            names.append(rule.deployment_ref.name)
    return tuple(names)


def _holdout(md: Mapping[str, Any], metric: str) -> float | None:
    """The served model's holdout value of ``metric`` (status.currentModel.holdoutMetrics)."""
    current = (md.get("status") or {}).get("currentModel") or {}
    value = (current.get("holdoutMetrics") or {}).get(metric)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def trigger_signals(spec: TrainingPipelineSpec, deployments: Deployments) -> Signals:
    """The drift and decay signals of the watched deployments (their
    ``status.monitoring``, which model it was measured on, and which model they serve); a
    note for each that is missing."""
    triggers = spec.triggers
    notes = [
        f"ModelDeployment {name} (watched by a trigger) does not exist"
        for name in watched_deployments(spec)
        if deployments.get(name) is None
    ]
    drift: DriftSignal | None = None
    decay: DecaySignal | None = None
    if triggers.drift is not None:
        md = deployments.get(triggers.drift.deployment_ref.name)
        if md is not None:
            serving = ServingModel.of(md)
            monitoring = (md.get("status") or {}).get("monitoring") or {}
            min_samples = ((md.get("spec") or {}).get("monitoring") or {}).get("minSamples")
            drift = DriftSignal(
                score=monitoring.get("maxDriftScore"),
                samples=int(monitoring.get("driftSamples") or monitoring.get("requests") or 0),
                threshold=triggers.drift.threshold,
                min_samples=int(min_samples or MonitoringSpec().min_samples),
                cooldown_seconds=triggers.drift.cooldown_seconds,
                last_fired=None,
                deployment=serving.deployment,
                serving_run=serving.run,
                rollout_to=serving.rollout_to,
                rolled_back=serving.rolled_back,
                serving_sha256=serving.sha256,
                measured_run=serving.measured_run,
                measured_sha256=serving.measured_sha256,
            )
    if triggers.performance_decay is not None:
        rule = triggers.performance_decay
        md = deployments.get(rule.deployment_ref.name)
        metric = spec.resolved_decay_metric() or "accuracy"
        if md is not None:
            serving = ServingModel.of(md)
            monitoring = (md.get("status") or {}).get("monitoring") or {}
            holdout = _holdout(md, metric)
            if rule.max_drop is not None and holdout is None and serving.run:
                notes.append(
                    f"ModelDeployment {rule.deployment_ref.name} does not record the holdout "
                    f"{metric} of {serving.run}: performanceDecay.maxDrop has no limit until it "
                    "does (it is recorded when a model is rolled out)"
                )
            decay = DecaySignal(
                metric=metric,
                value=monitoring.get("liveAccuracy" if metric == "accuracy" else "liveRmse"),
                samples=int(monitoring.get("feedbackSamples") or 0),
                threshold=rule.threshold,
                max_drop=rule.max_drop,
                holdout=holdout,
                confidence=rule.confidence,
                min_samples=rule.min_feedback_samples,
                cooldown_seconds=rule.cooldown_seconds,
                last_fired=None,
                deployment=serving.deployment,
                serving_run=serving.run,
                rollout_to=serving.rollout_to,
                rolled_back=serving.rolled_back,
                serving_sha256=serving.sha256,
                measured_run=serving.measured_run,
                measured_sha256=serving.measured_sha256,
            )
    return Signals(drift, decay, notes)
