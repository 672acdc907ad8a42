"""A ModelDeployment's spec -> the rollout :class:`~perennial.core.rollout.Strategy` the
core plans with. Pure; shared by the operator and the local runner."""

from __future__ import annotations

from perennial.api.deployment import ModelDeploymentSpec
from perennial.core.rollout import AnalysisLimits, CanaryStep, Strategy


def strategy_of(spec: ModelDeploymentSpec) -> Strategy:
    canary = spec.strategy.canary
    return Strategy(
        type=spec.strategy.type.value,
        steps=tuple(CanaryStep(s.weight, s.pause_seconds) for s in canary.steps) if canary else (),
        analysis=AnalysisLimits(
            max_error_rate=canary.analysis.max_error_rate,
            max_p99_latency_ms=canary.analysis.max_p99_latency_ms,
            max_prediction_shift=canary.analysis.max_prediction_shift,
            min_requests=canary.analysis.min_requests,
        )
        if canary
        else AnalysisLimits(),
        progress_deadline_seconds=spec.progress_deadline_seconds,
        automatic_rollback=spec.rollback.automatic,
        rollback_on_analysis_failure=spec.rollback.on_analysis_failure,
    )
