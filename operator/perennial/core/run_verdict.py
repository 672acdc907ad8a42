"""A finished training Job -> the run's verdict: phase, reason, message, gates, status.

Pure. The inputs are the trainer's ``TrainResult`` (from the Pod's termination message)
and the run's training spec; the output says what the TrainingRun's status becomes.

- The trainer succeeded: every gate is evaluated (:func:`perennial.core.gates.evaluate_gates`:
  data validation, absolute thresholds, change gates against the champion re-scored on
  the same holdout, must-beat-champion). All pass -> ``Succeeded`` (blessed); any fails ->
  ``Rejected`` with the failing gates in the message.
- The trainer reported ``DataValidationFailed``: the data gate blocked the candidate
  before training. That is a verdict, not a crash: the run is ``Rejected`` with the
  ``dataValidation`` gate failing and the violations in its message (TFX users complain
  that ExampleValidator never blocks; ours blocks, and says why).
- Any other failure (the trainer's reason, or the Kubernetes reason when there is no
  result: ``DeadlineExceeded``, ``BackoffLimitExceeded``, ``ImagePullBackOff``, ...) ->
  ``Failed`` with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from perennial.api.enums import RunPhase
from perennial.api.run import RunDataStatus
from perennial.api.training import TrainingSpec
from perennial.core.conditions import Condition, set_condition
from perennial.core.display import display_value
from perennial.core.gates import (
    DATA_VALIDATION_GATE,
    BeatChampion,
    GateResult,
    MetricGate,
    evaluate_gates,
)
from perennial.core.tracking import tracking_conditions, tracking_status
from perennial_runtime.contract import FailureReason, TrainResult

BLESSED = "Blessed"
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class GateConfig:
    """The gates of a training spec, in the core's terms."""

    primary_metric: str
    metric_gates: tuple[MetricGate, ...] = ()
    beat_champion: BeatChampion | None = None
    top_features: int = 10

    @classmethod
    def from_spec(cls, spec: TrainingSpec) -> GateConfig:
        beat = spec.gates.beat_champion
        return cls(
            primary_metric=spec.resolved_primary_metric(),
            metric_gates=tuple(
                MetricGate(
                    metric=g.metric,
                    threshold=g.threshold,
                    min_absolute_change=g.min_absolute_change,
                    min_relative_change=g.min_relative_change,
                )
                for g in spec.gates.metrics
            ),
            beat_champion=BeatChampion(
                metric=spec.resolved_beat_champion_metric(),
                min_delta=beat.min_delta,
                enabled=beat.enabled,
            ),
            top_features=spec.evaluation.top_features,
        )


@dataclass(frozen=True)
class RunVerdict:
    phase: RunPhase
    reason: str  # CamelCase: ModelBlessed, GateFailed, DataValidationFailed, <failure reason>
    message: str
    blessed: bool
    gates: tuple[GateResult, ...] = ()
    status: dict[str, Any] = field(default_factory=dict)  # result fields, wire form

    @property
    def failed_gates(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)


def parse_result(text: str | None) -> TrainResult | None:
    """The TrainResult in a termination message, or None (empty, a log tail, bad JSON)."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        return TrainResult.model_validate_json(text)
    except (ValidationError, ValueError):
        return None


def gate_status(gate: GateResult) -> dict[str, Any]:
    """One entry of ``status.gates`` (the GateStatus wire shape)."""
    out: dict[str, Any] = {"name": gate.name, "passed": gate.passed, "message": gate.message}
    if gate.metric is not None:
        out["metric"] = gate.metric
    if gate.observed is not None:
        out["observed"] = gate.observed
    if gate.threshold is not None:
        out["threshold"] = gate.threshold
    if gate.skipped:
        out["skipped"] = True
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else display_value(value)


def _cap(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 6] + " [...]"


def _violations_text(result: TrainResult) -> str:
    data = result.data
    if data is not None and data.violations:
        return "; ".join(v.message for v in data.violations)
    return result.message or "the data did not pass validation"


def _result_status(result: TrainResult, config: GateConfig) -> dict[str, Any]:
    """The status fields a result fills in (whatever it carries)."""
    out: dict[str, Any] = {"metrics": dict(result.metrics)}
    if result.champion_metrics is not None:
        out["championMetrics"] = dict(result.champion_metrics)
    if result.holdout_sha256:
        out["holdoutSha256"] = result.holdout_sha256
    if result.holdout_rows is not None:
        out["holdoutRows"] = result.holdout_rows
    primary = config.primary_metric
    if primary in result.metrics or result.champion_metrics:
        metric: dict[str, Any] = {"name": primary}
        if primary in result.metrics:
            metric["candidate"] = result.metrics[primary]
            metric["candidateDisplay"] = display_value(result.metrics[primary])
        champion = (result.champion_metrics or {}).get(primary)
        if champion is not None:
            metric["champion"] = champion
            metric["championDisplay"] = display_value(champion)
        out["primaryMetric"] = metric
    if result.artifact is not None:
        out["artifact"] = result.artifact.to_dict()
    if result.data is not None:
        out["data"] = RunDataStatus.model_validate(result.data.to_dict()).to_dict()
    if result.feature_importance:
        top = sorted(result.feature_importance, key=lambda f: f.importance, reverse=True)
        out["featureImportance"] = [f.to_dict() for f in top[: config.top_features]]
    out.update(tracking_status(result))
    return out


def verdict_from_result(
    result: TrainResult, config: GateConfig, *, had_champion: bool
) -> RunVerdict:
    """The verdict on a run whose trainer wrote a result (succeeded or not)."""
    status = _result_status(result, config)
    if result.status == "Failed":
        if result.reason == FailureReason.DATA_VALIDATION_FAILED.value:
            gate = GateResult(
                name=DATA_VALIDATION_GATE,
                passed=False,
                message=f"data validation failed: {_violations_text(result)}",
            )
            message = _cap(f"rejected before training: {gate.message}")
            return RunVerdict(
                RunPhase.REJECTED,
                FailureReason.DATA_VALIDATION_FAILED.value,
                message,
                blessed=False,
                gates=(gate,),
                status=status,
            )
        return failure(
            result.reason or "TrainingFailed", result.message or "training failed", status
        )
    if result.artifact is None:
        return failure(
            "ResultInvalid",
            "the trainer reported success but no model artifact; the run cannot be blessed",
            status,
        )
    champion_metrics: Mapping[str, float] | None = result.champion_metrics
    skipped_because = _cap(result.champion_not_compared) if result.champion_not_compared else None
    if had_champion and champion_metrics is None and skipped_because is None:
        # The run was made to be compared with a champion: a missing comparison is a
        # failing change gate ("missing from the champion metrics"), never a skipped one.
        champion_metrics = {}
    data_passed = result.data.validation_passed if result.data is not None else True
    verdict = evaluate_gates(
        result.metrics,
        champion_metrics,
        metric_gates=config.metric_gates,
        beat_champion=config.beat_champion,
        data_passed=data_passed,
        data_message=_violations_text(result) if not data_passed else "",
        skipped_because=skipped_because,
    )
    primary = config.primary_metric
    candidate = result.metrics.get(primary)
    versus = (
        f" vs champion {_fmt(champion_metrics.get(primary))}"
        if champion_metrics is not None
        else " (first model: no champion to compare)"
    )
    score = f"{primary} {_fmt(candidate)}{versus}"
    if verdict.passed:
        return RunVerdict(
            RunPhase.SUCCEEDED,
            "ModelBlessed",
            _cap(f"blessed: {score}; {verdict.summary}"),
            blessed=True,
            gates=verdict.results,
            status=status,
        )
    failed = verdict.failed
    return RunVerdict(
        RunPhase.REJECTED,
        "GateFailed",
        _cap(f"rejected: {len(failed)} gate(s) failed: {verdict.summary} ({score})"),
        blessed=False,
        gates=verdict.results,
        status=status,
    )


def failure(reason: str, message: str, status: Mapping[str, Any] | None = None) -> RunVerdict:
    """A run that produced no verdict-worthy result: phase Failed with ``reason``."""
    return RunVerdict(
        RunPhase.FAILED,
        _camel(reason),
        _cap(message),
        blessed=False,
        status=dict(status or {}),
    )


def _camel(reason: str) -> str:
    """A condition reason (CamelCase, letters and digits)."""
    cleaned = "".join(ch for ch in reason if ch.isalnum())[:128]
    return cleaned if cleaned and cleaned[0].isalpha() else "TrainingFailed"


def verdict_conditions(
    verdict: RunVerdict,
    conditions: Sequence[Condition] | None,
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """kstatus conditions of a finished run plus ``Blessed``.

    Ready is True only for a blessed run (the run delivered a model that may serve);
    Rejected and Failed runs are finished too, so Reconciling and Stalled are False.
    """
    out = set_condition(
        conditions,
        "Ready",
        verdict.blessed,
        verdict.reason,
        verdict.message,
        now=now,
        generation=generation,
    )
    out = set_condition(out, "Reconciling", False, "Finished", "", now=now, generation=generation)
    out = set_condition(out, "Stalled", False, "Finished", "", now=now, generation=generation)
    if verdict.phase is RunPhase.FAILED:
        blessed_reason = "TrainingFailed"
    elif verdict.blessed:
        blessed_reason = "ModelBlessed"
    else:
        blessed_reason = verdict.reason
    out = set_condition(
        out,
        BLESSED,
        verdict.blessed,
        blessed_reason,
        verdict.message,
        now=now,
        generation=generation,
    )
    return tracking_conditions(out, verdict.status, now=now, generation=generation)
