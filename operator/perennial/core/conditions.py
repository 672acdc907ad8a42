"""metav1.Condition lists with kstatus semantics (Ready, Reconciling, Stalled).

``lastTransitionTime`` changes only when a condition's status changes, as the API
conventions require. Conditions are plain dicts in the wire shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

Condition = dict[str, Any]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
MAX_MESSAGE = 32768


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def get(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_true(conditions: Sequence[Condition] | None, type_: str) -> bool:
    cond = get(conditions, type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: Sequence[Condition] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """A new list with ``type_`` set; other conditions are kept in order."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    old = get(conditions, type_)
    changed = old is None or old.get("status") != value
    new: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": timestamp(now)
        if changed or old is None
        else old.get("lastTransitionTime", timestamp(now)),
    }
    if generation is not None:
        new["observedGeneration"] = generation
    out = [dict(c) for c in conditions or () if c.get("type") != type_]
    out.append(new)
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    out.sort(key=lambda c: order.get(str(c.get("type")), 3))
    return out


def kstatus_flags(
    conditions: Sequence[Condition] | None,
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Set Ready/Reconciling/Stalled together. Abnormal-true: Reconciling and Stalled
    carry the reason and message only while True (else "Idle" / "Healthy")."""
    out = set_condition(conditions, READY, ready, reason, message, now=now, generation=generation)
    out = set_condition(
        out,
        RECONCILING,
        reconciling,
        reason if reconciling else "Idle",
        message if reconciling else "",
        now=now,
        generation=generation,
    )
    return set_condition(
        out,
        STALLED,
        stalled,
        reason if stalled else "Healthy",
        message if stalled else "",
        now=now,
        generation=generation,
    )


def object_kstatus(
    body: Mapping[str, Any],
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    """:func:`kstatus_flags` on an object's current conditions, stamped with its
    ``metadata.generation``."""
    return kstatus_flags(
        (body.get("status") or {}).get("conditions"),
        ready=ready,
        reconciling=reconciling,
        stalled=stalled,
        reason=reason,
        message=message,
        now=now,
        generation=body["metadata"].get("generation"),
    )


def kstatus(
    conditions: Sequence[Condition] | None,
    *,
    state: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Set Ready/Reconciling/Stalled together from one of three states:
    ``ready`` (done, healthy), ``reconciling`` (work in progress) or ``stalled``
    (cannot make progress without a change)."""
    if state not in {"ready", "reconciling", "stalled"}:
        raise ValueError(f"unknown kstatus state {state!r}")
    return kstatus_flags(
        conditions,
        ready=state == "ready",
        reconciling=state == "reconciling",
        stalled=state == "stalled",
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )


def stalled_status(
    body: Mapping[str, Any], reason: str, message: str, *, now: datetime
) -> dict[str, Any]:
    """The status changes that mark an object ``Stalled=True`` (and not Ready) with
    ``reason`` and ``message``: what a handler that gave up on it leaves behind."""
    return {
        "observedGeneration": body["metadata"].get("generation"),
        "message": message,
        "conditions": object_kstatus(
            body,
            ready=False,
            reconciling=False,
            stalled=True,
            reason=reason,
            message=message,
            now=now,
        ),
    }
