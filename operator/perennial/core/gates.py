"""Validation gates: may this candidate become the champion?

Pure functions over plain data. The semantics follow MLflow's ``MetricThreshold``:
per metric an absolute ``threshold`` (a floor for higher-is-better metrics, a ceiling
for lower-is-better ones), ``min_absolute_change`` (candidate must be at least that much
better than the champion) and ``min_relative_change`` (at least that fraction better).
The champion's metrics come from re-scoring it on the candidate's holdout. Beat-the-champion
is an absolute change with ``min_delta``, which may be negative: a tolerance for a small
holdout's noise (the candidate may be up to that much worse). A configured
metric that is missing fails its gate; with no champion (the first run) every change
gate is skipped, and the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from perennial_runtime.contract import metric_higher_is_better

DATA_VALIDATION_GATE = "dataValidation"
NO_CHAMPION_YET = "no champion yet"


@dataclass(frozen=True)
class MetricGate:
    metric: str
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None


@dataclass(frozen=True)
class BeatChampion:
    """The candidate must be at least ``min_delta`` better than the champion on ``metric``;
    a negative ``min_delta`` is a tolerance (the candidate may be up to that much worse)."""

    metric: str
    min_delta: float = 0.0
    enabled: bool = True


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    message: str
    metric: str | None = None
    observed: float | None = None
    threshold: float | None = None
    skipped: bool = False


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    results: tuple[GateResult, ...] = field(default_factory=tuple)
    skipped_because: str = NO_CHAMPION_YET

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def summary(self) -> str:
        if self.passed:
            skipped = [r.name for r in self.results if r.skipped]
            note = f" ({len(skipped)} skipped: {self.skipped_because})" if skipped else ""
            return f"all {len(self.results)} gates passed{note}"
        return "; ".join(r.message for r in self.failed)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _better_or_equal(metric: str, observed: float, limit: float) -> bool:
    # A limit computed as champion * (1 + change) carries float rounding; a value equal
    # to the limit up to that rounding meets it.
    if math.isclose(observed, limit, rel_tol=1e-9, abs_tol=1e-12):
        return True
    if metric_higher_is_better(metric):
        return observed >= limit
    return observed <= limit


def _missing(metric: str, name: str, where: str) -> GateResult:
    return GateResult(
        name=name,
        passed=False,
        metric=metric,
        message=f"{name}: metric {metric!r} is missing from the {where} metrics",
    )


def _valid(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def threshold_gate(gate: MetricGate, candidate: Mapping[str, float]) -> GateResult:
    assert gate.threshold is not None
    name = f"{gate.metric}.threshold"
    observed = candidate.get(gate.metric)
    if observed is None or not _valid(observed):
        return _missing(gate.metric, name, "candidate")
    higher = metric_higher_is_better(gate.metric)
    passed = _better_or_equal(gate.metric, observed, gate.threshold)
    relation = ">=" if higher else "<="
    verdict = "passed" if passed else "failed"
    return GateResult(
        name=name,
        passed=passed,
        metric=gate.metric,
        observed=observed,
        threshold=gate.threshold,
        message=(
            f"{name} {verdict}: {gate.metric} {_fmt(observed)} must be {relation} "
            f"{_fmt(gate.threshold)}"
        ),
    )


def change_gate(
    name: str,
    metric: str,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    absolute: float | None = None,
    relative: float | None = None,
    skipped_because: str | None = None,
) -> GateResult:
    """Candidate vs champion on the same holdout, by an absolute or relative margin.
    Without champion metrics the gate is skipped: there is no champion yet, or
    ``skipped_because`` says why it could not be compared (a changed feature spec)."""
    if champion is None:
        why = skipped_because or f"{NO_CHAMPION_YET} (first blessed model)"
        return GateResult(
            name=name,
            passed=True,
            skipped=True,
            metric=metric,
            observed=candidate.get(metric),
            message=f"{name} skipped: {why}",
        )
    observed = candidate.get(metric)
    if observed is None or not _valid(observed):
        return _missing(metric, name, "candidate")
    base = champion.get(metric)
    if base is None or not _valid(base):
        return _missing(metric, name, "champion")
    higher = metric_higher_is_better(metric)
    sign = 1.0 if higher else -1.0
    if relative is not None:
        limit = base * (1.0 + sign * relative)
        margin = f"{relative:+.2%} relative"
    else:
        delta = absolute or 0.0
        limit = base + sign * delta
        margin = f"{delta:+.6g} absolute" if delta >= 0 else f"tolerance {-delta:.6g}"
    passed = _better_or_equal(metric, observed, limit)
    relation = ">=" if higher else "<="
    verdict = "passed" if passed else "failed"
    return GateResult(
        name=name,
        passed=passed,
        metric=metric,
        observed=observed,
        threshold=limit,
        message=(
            f"{name} {verdict}: {metric} {_fmt(observed)} must be {relation} {_fmt(limit)} "
            f"(champion {_fmt(base)}, {margin})"
        ),
    )


def data_validation_gate(passed: bool, message: str = "") -> GateResult:
    text = "data validation passed" if passed else f"data validation failed: {message}"
    return GateResult(name=DATA_VALIDATION_GATE, passed=passed, message=text.strip())


def evaluate_gates(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    metric_gates: Sequence[MetricGate] = (),
    beat_champion: BeatChampion | None = None,
    data_passed: bool = True,
    data_message: str = "",
    skipped_because: str | None = None,
) -> GateVerdict:
    """Every gate's observed value, limit and verdict; all must pass. ``skipped_because``:
    why there are no champion metrics although there is a champion (change gates skip)."""
    results: list[GateResult] = [data_validation_gate(data_passed, data_message)]
    for gate in metric_gates:
        if gate.threshold is not None:
            results.append(threshold_gate(gate, candidate))
        if gate.min_absolute_change is not None:
            results.append(
                change_gate(
                    f"{gate.metric}.minAbsoluteChange",
                    gate.metric,
                    candidate,
                    champion,
                    absolute=gate.min_absolute_change,
                    skipped_because=skipped_because,
                )
            )
        if gate.min_relative_change is not None:
            results.append(
                change_gate(
                    f"{gate.metric}.minRelativeChange",
                    gate.metric,
                    candidate,
                    champion,
                    relative=gate.min_relative_change,
                    skipped_because=skipped_because,
                )
            )
    if beat_champion is not None and beat_champion.enabled:
        results.append(
            change_gate(
                "beatChampion",
                beat_champion.metric,
                candidate,
                champion,
                absolute=beat_champion.min_delta,
                skipped_because=skipped_because,
            )
        )
    return GateVerdict(
        passed=all(r.passed for r in results),
        results=tuple(results),
        skipped_because=skipped_because or NO_CHAMPION_YET,
    )
