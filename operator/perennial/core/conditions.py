"""metav1.Condition lists with kstatus semantics (Ready, Reconciling, Stalled).

``lastTransitionTime`` changes only when a condition's status changes, as the API
conventions require. Conditions are plain dicts in the wire shape.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    (cannot make progress without a change). Abnormal-true: Reconciling and Stalled are
    True only while the resource is in that state."""
    if state not in {"ready", "reconciling", "stalled"}:
        raise ValueError(f"unknown kstatus state {state!r}")
    out = set_condition(
        conditions, READY, state == "ready", reason, message, now=now, generation=generation
    )
    out = set_condition(
        out,
        RECONCILING,
        state == "reconciling",
        reason if state == "reconciling" else "Idle",
        message if state == "reconciling" else "",
        now=now,
        generation=generation,
    )
    return set_condition(
        out,
        STALLED,
        state == "stalled",
        reason if state == "stalled" else "Healthy",
        message if state == "stalled" else "",
        now=now,
        generation=generation,
    )
