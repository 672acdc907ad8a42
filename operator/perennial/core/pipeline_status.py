"""The TrainingPipeline status a plan leads to, as a dict of changed fields.

Pure: the operator writes these changes through the status subresource, the local runner
into its state directory. A ``None`` value means "remove the field"; fields that are
absent and would be ``None`` are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from perennial.core.conditions import object_kstatus, stalled_status, timestamp
from perennial.core.pipeline_plan import PipelinePlan


def stalled_changes(
    body: Mapping[str, Any], reason: str, message: str, *, now: datetime
) -> dict[str, Any]:
    """Status of a pipeline that cannot make progress until its spec changes."""
    return {"phase": "Stalled", **stalled_status(body, reason, message, now=now)}


def status_changes(
    body: Mapping[str, Any],
    decision: PipelinePlan,
    *,
    next_schedule: datetime | None,
    data_checked: datetime | None,
    notes: list[str],
    now: datetime,
) -> dict[str, Any]:
    """The status after ``decision`` (phase, conditions, what the triggers consumed)."""
    memory = decision.memory
    message = " ".join([decision.message, *notes]).strip()
    current = body.get("status") or {}
    changes: dict[str, Any] = {
        "observedGeneration": body["metadata"].get("generation"),
        "phase": decision.phase,
        "message": message,
        "conditions": object_kstatus(
            body,
            ready=decision.ready,
            reconciling=decision.reconciling,
            stalled=False,
            reason=decision.reason,
            message=message,
            now=now,
        ),
        "runSequence": memory.run_sequence,
        "lastTriggers": {k: timestamp(v) for k, v in sorted(memory.last_triggers.items())},
        "champion": memory.champion.to_status() if memory.champion else None,
        "nextScheduleTime": timestamp(next_schedule) if next_schedule else None,
    }
    for key, value in (
        ("specHash", memory.spec_hash),
        ("lastRetrainToken", memory.retrain_token),
        ("lastScheduleTime", timestamp(memory.schedule_time) if memory.schedule_time else None),
        ("lastDataFingerprint", memory.data_fingerprint),
    ):
        if value is not None:
            changes[key] = value
    if data_checked is not None:
        changes["lastDataCheckTime"] = timestamp(data_checked)
    last = last_run_status(decision, current.get("lastRun"), now=now)
    if last is not None:
        changes["lastRun"] = last
    for key in ("champion", "nextScheduleTime"):
        if changes[key] is None and current.get(key) is None:
            del changes[key]
    return changes


def last_run_status(
    decision: PipelinePlan, previous: Mapping[str, Any] | None, *, now: datetime
) -> dict[str, Any] | None:
    """``status.lastRun``: the run just created, else the latest run as the plan saw it."""
    if decision.create is not None:
        return {
            "name": decision.create.name,
            "phase": "Pending",
            "trigger": decision.create.trigger.type.value,
            "startTime": timestamp(now),
        }
    last = decision.last_run
    if last is None:
        return None
    out: dict[str, Any] = {"name": last.name}
    if last.phase:
        out["phase"] = last.phase
    if last.trigger:
        out["trigger"] = last.trigger
    if previous and previous.get("name") == last.name and previous.get("startTime"):
        out["startTime"] = previous["startTime"]
    return out
