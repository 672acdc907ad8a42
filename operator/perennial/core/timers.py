"""When a pipeline's timers are next due: pure, time passed in.

A pipeline's trigger timer sleeps until the earliest of: its next scheduled time, its next
data poll, the end of a drift or decay cool-down, backed off after rejected retrains (a
signal held back by it may fire then).
Nothing else needs a clock: spec changes, the retrain annotation, finished runs and the
watched deployments' monitoring reach the pipeline as watch events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from perennial.api.enums import TriggerType
from perennial.api.pipeline import TrainingPipelineSpec, TrainingPipelineStatus
from perennial.core.triggers import backoff_cooldown


@dataclass(frozen=True)
class DataCheck:
    """The outcome of polling the data (done outside the pipeline's lock: it may be slow)."""

    time: datetime
    fingerprint: str | None = None
    error: str | None = None


def data_poll_due(
    spec: TrainingPipelineSpec, status: TrainingPipelineStatus, now: datetime
) -> bool:
    """Whether the data source is due for a fingerprint poll."""
    change = spec.triggers.data_change
    if not change.enabled:
        return False
    last = status.last_data_check_time
    return last is None or (now - last).total_seconds() >= change.poll_interval_seconds


def next_due(
    spec: TrainingPipelineSpec,
    status: TrainingPipelineStatus,
    now: datetime,
    rejected_in_a_row: Mapping[str, int] | None = None,
) -> datetime | None:
    """The earliest instant after ``now`` at which a timed trigger of the pipeline may
    fire; None when only watch events can start a run.

    ``rejected_in_a_row``: per trigger type, the retrains it started that the gates
    rejected in a row (their cool-down is backed off, see
    :func:`perennial.core.triggers.backoff_cooldown`).

    Called right after a reconcile, which consumed whatever was due: an instant that has
    passed is one the reconcile held back (a run is active, one run at a time), and the
    run's end reconciles the pipeline again, so it is no reason to wake.
    """
    if spec.suspend:
        return None
    candidates: list[datetime] = []
    triggers = spec.triggers
    if triggers.schedule is not None and status.next_schedule_time is not None:
        candidates.append(status.next_schedule_time)
    if triggers.data_change.enabled:
        last = status.last_data_check_time
        candidates.append(
            now
            if last is None
            else last + timedelta(seconds=triggers.data_change.poll_interval_seconds)
        )
    for rule, kind in (
        (triggers.drift, TriggerType.DRIFT),
        (triggers.performance_decay, TriggerType.PERFORMANCE_DECAY),
    ):
        fired = status.last_triggers.get(kind.value)
        if rule is not None and fired is not None:
            rejected = (rejected_in_a_row or {}).get(kind.value, 0)
            cooldown = backoff_cooldown(rule.cooldown_seconds, rejected)
            ends = fired + timedelta(seconds=cooldown)
            if ends > now:
                candidates.append(ends)
    future = [moment for moment in candidates if moment > now]
    return min(future) if future else None
