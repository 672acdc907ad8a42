"""The one place that posts Kubernetes events for our objects.

Handlers call :func:`post_event` with the object (a kopf body, a plain dict as read from the
API, or an object reference) and a CamelCase reason; the message is capped so that a long
error (a stack trace, a pod's termination message) never makes the API server refuse the
event. kopf queues the event and posts it in the background as a core/v1 Event, so this call
never blocks a handler and never fails it. The events that matter outside the cluster are
also queued as CloudEvents for the configured sinks (:mod:`perennial.k8s.notifications`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, cast

import kopf

from perennial.k8s import notifications

logger = logging.getLogger("perennial.k8s.events")

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "EventType",
    "event_target",
    "post_event",
    "report_event",
    "truncate_message",
]

MAX_MESSAGE_LENGTH: Final = 1024
"""Characters kept from an event message (kopf and the mysql-operator use the same cap)."""

TRUNCATION_MARKER: Final = " [...]"

# Kubernetes limits `reason` to 128 characters; the convention is UpperCamelCase.
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,127}$")

EventType = Literal["Normal", "Warning"]


def truncate_message(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Cap ``message`` at ``limit`` characters; a cut message ends with `` [...]``."""
    if limit <= len(TRUNCATION_MARKER):
        raise ValueError(f"limit must exceed {len(TRUNCATION_MARKER)} characters, got {limit}")
    if len(message) <= limit:
        return message
    return message[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


def event_target(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The body kopf needs to address an event: ``apiVersion``, ``kind``, ``metadata``.

    Accepts an object body (anything with ``metadata``) or an object reference (``kind``,
    ``name``, and optionally ``apiVersion``, ``namespace``, ``uid``, as in an ownerReference or
    ``involvedObject``).
    """
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        name, namespace, uid = metadata.get("name"), metadata.get("namespace"), metadata.get("uid")
    else:
        name, namespace, uid = obj.get("name"), obj.get("namespace"), obj.get("uid")
    kind = obj.get("kind")
    if not kind or not name:
        raise ValueError(
            "event target: needs `kind` and a name (`metadata.name` of an object body, "
            f"or `name` of an object reference); got keys {sorted(obj)}"
        )
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if uid:
        meta["uid"] = uid
    target: dict[str, Any] = {"kind": kind, "metadata": meta}
    if obj.get("apiVersion"):
        target["apiVersion"] = obj["apiVersion"]
    return target


def post_event(
    obj: Mapping[str, Any],
    reason: str,
    message: str,
    type: EventType = "Normal",
) -> None:
    """Queue a Kubernetes event about ``obj`` (must run inside the operator, i.e. a handler)."""
    if type not in ("Normal", "Warning"):
        raise ValueError(f"event type: {type!r} is not allowed; use 'Normal' or 'Warning'")
    if not _REASON.match(reason):
        raise ValueError(
            f"event reason: {reason!r} must be UpperCamelCase (letters and digits, "
            "at most 128 characters), e.g. 'TrainingStarted'"
        )
    target = event_target(obj)
    notifications.publish(obj, reason, message, type)
    body = kopf.Body(cast(kopf.RawBody, target))
    kopf.event(body, type=type, reason=reason, message=truncate_message(message))


def report_event(obj: Mapping[str, Any], reason: str, message: str, type: str = "Normal") -> None:
    """:func:`post_event` for a reconciler: an event is a report, not a step, so a failure to
    post it (outside an operator: the CLI, tests; a malformed target) is logged, never
    raised. Any ``type`` other than ``Warning`` is ``Normal``."""
    try:
        post_event(obj, reason, message, "Warning" if type == "Warning" else "Normal")
    except Exception as exc:
        logger.debug("event %s not posted: %s", reason, exc)
