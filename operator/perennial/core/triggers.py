"""Which triggers are due for a pipeline right now?

``TriggerType`` is the API's enum (re-exported here), so a run records exactly the
value the decision produced.

Pure: every input (the clock, the polled data fingerprint, the deployment's monitoring
numbers, the annotation's value) is passed in. A trigger is "consumed" only when the
caller records that a run started for it (new spec hash, manual token, schedule time,
fingerprint, fire time), so a trigger that arrives while a run is active under the
``Forbid`` policy fires again once the run has finished instead of being lost.

Drift and decay signals are taken as given here; whether they were measured on the
pipeline's champion, serving (and so may count at all), is decided by ``pipeline_plan``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from perennial.api.enums import TriggerType
from perennial.core import decay
from perennial.core.schedule import ScheduleDecision

# When several triggers are due at once, one run is started for the first of these and
# the others are recorded as coalesced into it.
PRIORITY: tuple[TriggerType, ...] = (
    TriggerType.MANUAL,
    TriggerType.INITIAL,
    TriggerType.SPEC_CHANGE,
    TriggerType.DRIFT,
    TriggerType.PERFORMANCE_DECAY,
    TriggerType.DATA_CHANGE,
    TriggerType.SCHEDULE,
)


@dataclass(frozen=True)
class Trigger:
    type: TriggerType
    reason: str


@dataclass(frozen=True)
class DriftSignal:
    """The referenced ModelDeployment's observed drift and the pipeline's rule."""

    score: float | None
    samples: int
    threshold: float
    min_samples: int
    cooldown_seconds: int
    last_fired: datetime | None
    # Which model the numbers describe: the ModelDeployment's name, the model it serves
    # (status.currentModel run and sha256), the run a rollout in progress moves to
    # (status.rollout.toRun) and the model the server said it measured
    # (status.monitoring run and sha256). The pipeline counts them only when they were
    # measured on its champion, rolled out (or on the model the deployment went back to
    # when it rolled the champion back).
    deployment: str = ""
    serving_run: str | None = None
    rollout_to: str | None = None
    rolled_back: tuple[str, ...] = ()  # status.rolledBackRuns: runs it will not serve again
    serving_sha256: str | None = None
    measured_run: str | None = None
    measured_sha256: str | None = None
    # Retrains this rule started that the gates rejected, newest first, in a row (see
    # backoff_cooldown).
    rejected_in_a_row: int = 0


@dataclass(frozen=True)
class DecaySignal:
    """The referenced ModelDeployment's live metric and the pipeline's rule."""

    metric: str
    value: float | None
    samples: int
    threshold: float | None
    min_samples: int
    cooldown_seconds: int
    last_fired: datetime | None
    max_drop: float | None = None  # relative limit: below the served model's holdout score
    holdout: float | None = None  # the served model's holdout value of ``metric``
    confidence: float | None = None  # compare a one-sided bound, not the value
    # Which model the numbers describe: the ModelDeployment's name, the model it serves
    # (status.currentModel run and sha256), the run a rollout in progress moves to
    # (status.rollout.toRun) and the model the server said it measured
    # (status.monitoring run and sha256). The pipeline counts them only when they were
    # measured on its champion, rolled out (or on the model the deployment went back to
    # when it rolled the champion back).
    deployment: str = ""
    serving_run: str | None = None
    rollout_to: str | None = None
    rolled_back: tuple[str, ...] = ()  # status.rolledBackRuns: runs it will not serve again
    serving_sha256: str | None = None
    measured_run: str | None = None
    measured_sha256: str | None = None
    # Retrains this rule started that the gates rejected, newest first, in a row (see
    # backoff_cooldown).
    rejected_in_a_row: int = 0


@dataclass(frozen=True)
class TriggerInputs:
    now: datetime
    spec_hash: str
    last_spec_hash: str | None
    run_count: int
    on_spec_change: bool = True
    manual_token: str | None = None
    last_manual_token: str | None = None
    schedule: ScheduleDecision | None = None
    data_fingerprint: str | None = None
    last_data_fingerprint: str | None = None
    drift: DriftSignal | None = None
    decay: DecaySignal | None = None


# A drift or decay rule whose retrains the gates keep rejecting would otherwise retrain on
# every cool-down for as long as the signal lasts, usually on the same data with the same
# result: each rejection in a row doubles its cool-down, up to 2**MAX_BACKOFF_DOUBLINGS.
MAX_BACKOFF_DOUBLINGS = 4


def backoff_cooldown(cooldown: int, rejected_in_a_row: int) -> int:
    """The rule's cool-down after ``rejected_in_a_row`` rejected retrains in a row."""
    doublings: int = min(max(rejected_in_a_row, 0), MAX_BACKOFF_DOUBLINGS)
    return cooldown * (1 << doublings)


def _cooling(now: datetime, last: datetime | None, cooldown: int) -> float | None:
    """Seconds of cool-down left, or None when the rule may fire."""
    if last is None:
        return None
    left = cooldown - (now - last).total_seconds()
    return left if left > 0 else None


def _signal_cooling(now: datetime, sig: DriftSignal | DecaySignal) -> float | None:
    cooldown = backoff_cooldown(sig.cooldown_seconds, sig.rejected_in_a_row)
    return _cooling(now, sig.last_fired, cooldown)


def backoff_notes(inputs: TriggerInputs) -> tuple[str, ...]:
    """A sentence for each drift / decay rule that would fire now but for its backed-off
    cool-down (its plain cool-down is over)."""
    notes = []
    drift, decay = inputs.drift, inputs.decay
    held: list[tuple[str, DriftSignal | DecaySignal, bool]] = []
    if drift is not None:
        free = replace(inputs, drift=replace(drift, last_fired=None))
        held.append(("Drift", drift, drift_trigger(free) is not None))
    if decay is not None:
        free = replace(inputs, decay=replace(decay, last_fired=None))
        held.append(("Performance decay", decay, decay_trigger(free) is not None))
    for name, sig, would_fire in held:
        if not (would_fire and sig.rejected_in_a_row and sig.last_fired is not None):
            continue
        if _cooling(inputs.now, sig.last_fired, sig.cooldown_seconds) is not None:
            continue  # the plain cool-down: not the backoff's doing
        if _signal_cooling(inputs.now, sig) is None:
            continue  # the backed-off cool-down is over too
        cooldown = backoff_cooldown(sig.cooldown_seconds, sig.rejected_in_a_row)
        due = sig.last_fired + timedelta(seconds=cooldown)
        notes.append(
            f"{name} held until {due.isoformat(timespec='seconds')}: the last "
            f"{sig.rejected_in_a_row} retrain(s) it started were rejected by the gates, so "
            f"its cool-down is {cooldown} s, not {sig.cooldown_seconds} s (it doubles with "
            "each rejection in a row; a run that is not rejected resets it)."
        )
    return tuple(notes)


def spec_trigger(inputs: TriggerInputs) -> Trigger | None:
    if inputs.run_count == 0 and inputs.last_spec_hash is None:
        return Trigger(TriggerType.INITIAL, "first run of a new pipeline")
    if inputs.on_spec_change and inputs.spec_hash != inputs.last_spec_hash:
        old = (inputs.last_spec_hash or "none")[:12]
        return Trigger(
            TriggerType.SPEC_CHANGE,
            f"training spec changed (hash {old} -> {inputs.spec_hash[:12]})",
        )
    return None


def manual_trigger(inputs: TriggerInputs) -> Trigger | None:
    token = inputs.manual_token
    if token and token != inputs.last_manual_token:
        return Trigger(TriggerType.MANUAL, f"annotation perennial.dev/retrain={token!r}")
    return None


def schedule_trigger(inputs: TriggerInputs) -> Trigger | None:
    decision = inputs.schedule
    if decision is not None and decision.due:
        return Trigger(TriggerType.SCHEDULE, decision.reason)
    return None


def data_trigger(inputs: TriggerInputs) -> Trigger | None:
    new, old = inputs.data_fingerprint, inputs.last_data_fingerprint
    if new and old and new != old:
        return Trigger(TriggerType.DATA_CHANGE, f"data changed (fingerprint {old} -> {new})")
    return None


def drift_trigger(inputs: TriggerInputs) -> Trigger | None:
    sig = inputs.drift
    if sig is None or sig.score is None or sig.samples < sig.min_samples:
        return None
    if sig.score < sig.threshold:
        return None
    if _signal_cooling(inputs.now, sig) is not None:
        return None
    return Trigger(
        TriggerType.DRIFT,
        f"serving drift score {sig.score:.3f} >= threshold {sig.threshold:.3f} "
        f"over {sig.samples} samples",
    )


def decay_trigger(inputs: TriggerInputs) -> Trigger | None:
    sig = inputs.decay
    if sig is None or sig.value is None or sig.samples < sig.min_samples:
        return None
    verdict = decay.judge(
        metric=sig.metric,
        value=sig.value,
        samples=sig.samples,
        threshold=sig.threshold,
        max_drop=sig.max_drop,
        holdout=sig.holdout,
        confidence=sig.confidence,
    )
    if not verdict.decayed:
        return None
    if _signal_cooling(inputs.now, sig) is not None:
        return None
    return Trigger(TriggerType.PERFORMANCE_DECAY, verdict.text)


def due_triggers(inputs: TriggerInputs) -> list[Trigger]:
    """All triggers due now, most important first (see ``PRIORITY``)."""
    found = [
        t
        for t in (
            manual_trigger(inputs),
            spec_trigger(inputs),
            drift_trigger(inputs),
            decay_trigger(inputs),
            data_trigger(inputs),
            schedule_trigger(inputs),
        )
        if t is not None
    ]
    return sorted(found, key=lambda t: PRIORITY.index(t.type))
