"""A TrainingRun's trainer, observed -> what its status and events become. Pure.

Shared by the operator's run reconciler (a Job and its Pods) and the local runner (a
process read back in the Job/Pod shape): both observe the trainer with
:func:`perennial.core.job_state.observe`, then call :func:`judge` for a trainer that
finished, and write :func:`progress_status` / :func:`finish_status` and post
:func:`verdict_events`. Only the reading and writing differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from perennial.api.enums import RunPhase
from perennial.core import run_verdict
from perennial.core.conditions import kstatus, timestamp
from perennial.core.job_state import JobObservation, JobState
from perennial.core.naming import job_name
from perennial.core.run_verdict import (
    GateConfig,
    RunVerdict,
    failure,
    gate_status,
    parse_result,
    verdict_conditions,
)
from perennial.core.tracking import TRACKING_FAILED, tracking_warning

# After the trainer finished, how long to wait for its Pod to be listed before giving up
# (the result is then lost: ResultMissing). A listed Pod without a readable result is
# ResultMissing at once: the Job controller counts a Pod as succeeded only once its
# containers have terminated, so their termination messages are final.
RESULT_GRACE_SECONDS: Final = 120.0


def awaiting_result(seen: JobObservation, *, pods_listed: bool, now: datetime) -> bool:
    """The trainer succeeded but its result is not readable because its Pod is not listed
    (yet), or is listed but not yet seen terminated (the Pod watch lags behind the Job
    watch: separate streams), within :data:`RESULT_GRACE_SECONDS` of the end: wait, do not
    judge."""
    if seen.state is not JobState.SUCCEEDED:
        return False
    if parse_result(seen.result_text) is not None:
        return False
    if pods_listed and seen.exit_code is not None:
        return False  # the trainer's end is seen: its result is what it is
    waited = (now - (seen.finished or now)).total_seconds()
    return waited < RESULT_GRACE_SECONDS


def judge(seen: JobObservation, config: GateConfig, *, had_champion: bool) -> RunVerdict:
    """The verdict on a trainer that finished (``seen.state`` SUCCEEDED or FAILED).

    The trainer's own result (its termination message) decides; a failed trainer's own
    report wins over the Job controller's reason; without a result, the Job's reason and
    the trainer's last output are the message.
    """
    result = parse_result(seen.result_text)
    if seen.state is JobState.SUCCEEDED:
        if result is None:
            tail = f": {seen.result_text[-300:]}" if seen.result_text else ""
            return failure(
                "ResultMissing",
                f"the trainer finished but left no readable TrainResult in its termination "
                f"message{tail}",
            )
        return run_verdict.verdict_from_result(result, config, had_champion=had_champion)
    if result is not None and result.status == "Failed":
        return run_verdict.verdict_from_result(result, config, had_champion=had_champion)
    message = seen.message
    if seen.result_text and result is None:
        message = f"{message}; last output: {seen.result_text.strip()[-400:]}"
    return failure(seen.reason, message)


def progress_status(
    body: Mapping[str, Any],
    phase: RunPhase,
    reason: str,
    message: str,
    *,
    now: datetime,
    started: datetime | None = None,
) -> dict[str, Any]:
    """The status fields of a run that is not finished (Pending, Training, Evaluating)."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    changes: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase.value,
        "jobName": job_name(body["metadata"]["name"]),
        "reason": reason,
        "message": message,
        "conditions": kstatus(
            status.get("conditions"),
            state="reconciling",
            reason=reason,
            message=message,
            now=now,
            generation=generation,
        ),
    }
    if phase is not RunPhase.PENDING and not status.get("startTime"):
        changes["startTime"] = timestamp(started or now)
    return changes


def finish_status(
    body: Mapping[str, Any],
    verdict: RunVerdict,
    seen: JobObservation | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """The status fields of a run that reached its final phase with ``verdict``.

    ``completionTime`` is when the trainer ended (else now); ``startTime`` is set if the
    trainer was seen starting and the status has none yet.
    """
    meta = body["metadata"]
    status = body.get("status") or {}
    generation = meta.get("generation")
    changes: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": verdict.phase.value,
        "jobName": job_name(meta["name"]),
        "reason": verdict.reason,
        "message": verdict.message,
        "completionTime": timestamp(seen.finished if seen and seen.finished else now),
        "conditions": verdict_conditions(
            verdict, status.get("conditions"), now=now, generation=generation
        ),
        **verdict.status,
    }
    if verdict.gates:
        changes["gates"] = [gate_status(g) for g in verdict.gates]
    if not status.get("startTime") and seen is not None and seen.started is not None:
        changes["startTime"] = timestamp(seen.started)
    return changes


@dataclass(frozen=True)
class EventNote:
    """An event to post about the run."""

    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


def verdict_events(verdict: RunVerdict) -> list[EventNote]:
    """The events of a run that just reached its final phase: one per gate, then the
    verdict (``ModelBlessed``, ``ModelRejected`` or ``TrainingFailed``)."""
    notes: list[EventNote] = []
    for gate in verdict.gates:
        if gate.skipped:
            notes.append(EventNote("GateSkipped", gate.message))
        elif gate.passed:
            notes.append(EventNote("GatePassed", gate.message))
        else:
            notes.append(EventNote("GateFailed", gate.message, "Warning"))
    if verdict.phase is RunPhase.SUCCEEDED:
        notes.append(EventNote("ModelBlessed", verdict.message))
    elif verdict.phase is RunPhase.REJECTED:
        notes.append(EventNote("ModelRejected", verdict.message, "Warning"))
    else:
        notes.append(EventNote("TrainingFailed", f"{verdict.reason}: {verdict.message}", "Warning"))
    if (warning := tracking_warning(verdict.status)) is not None:
        notes.append(EventNote(TRACKING_FAILED, warning, "Warning"))
    return notes
