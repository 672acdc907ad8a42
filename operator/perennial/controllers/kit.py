"""What every kopf handler of the operator shares: one guard around the reconcile call.

:func:`guarded` runs a handler's work and, when the handler gives up on the object, says
so where users look: ``Stalled=True`` (reason, message) in the object's status conditions,
written through the status subresource, and a Warning event. A handler gives up when

- the work raises :class:`kopf.PermanentError`;
- the API server refuses a request as malformed or invalid (400/422): retrying the same
  request cannot succeed, so it becomes a :class:`kopf.PermanentError`;
- any other error happens on the last attempt kopf will make (the handler's ``retries``
  or ``timeout`` would be exceeded by the next one, the same look-ahead kopf applies).

Event handlers (``kopf.on.event``) are not retried by kopf: pass ``retry=None`` and only
permanent failures mark the object; a transient error waits for the next event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final

import kopf

from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_PIPELINE, TRAINING_RUN
from perennial.controllers import clock
from perennial.controllers.settings import HANDLER_LIMITS, HandlerLimits
from perennial.core.conditions import stalled_status
from perennial.k8s import client, metrics
from perennial.k8s.client import ApiError, StatusApi
from perennial.k8s.events import post_event

__all__ = ["REFUSED_STATUSES", "give_up", "guarded", "is_last_attempt"]

logger = logging.getLogger("perennial.controllers.kit")

REFUSED_STATUSES: Final = frozenset({400, 422})
REASON_REFUSED: Final = "RequestRefused"
REASON_FAILED: Final = "ReconcileFailed"

STATUS_APIS: Final[dict[str, StatusApi[Any]]] = {
    TRAINING_PIPELINE: client.PIPELINE_STATUS,
    TRAINING_RUN: client.RUN_STATUS,
    MODEL_DEPLOYMENT: client.DEPLOYMENT_STATUS,
}


def is_last_attempt(
    retry: int | None, runtime: timedelta | None, limits: HandlerLimits = HANDLER_LIMITS
) -> bool:
    """Whether kopf will not call the handler again after this attempt fails."""
    if retry is None:
        return False
    if retry + 1 >= limits["retries"]:
        return True
    spent = runtime.total_seconds() if runtime is not None else 0.0
    return spent + limits["backoff"] >= limits["timeout"]


def give_up(kind: str, namespace: str, name: str, reason: str, message: str) -> None:
    """Mark the object ``Stalled`` and post a Warning event. Never raises: a failure
    here is logged, the handler's own error is what kopf reports."""
    status_api = STATUS_APIS[kind]
    try:
        body = client.get_or_none(status_api.resource, name, namespace)
        if body is None:  # deleted meanwhile: nothing to mark
            return
        if _already_stalled(body, reason, message):  # a loop failing again: no event storm
            return
        post_event(body, reason, message, "Warning")
        status_api.write(name, namespace, stalled_status(body, reason, message, now=clock.now()))
    except Exception as exc:
        logger.warning("cannot mark %s %s/%s Stalled: %s", kind, namespace, name, exc)


def _already_stalled(body: Mapping[str, Any], reason: str, message: str) -> bool:
    for cond in (body.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Stalled":
            return bool(
                cond.get("status") == "True"
                and cond.get("reason") == reason
                and cond.get("message") == message
            )
    return False


def guarded(
    kind: str,
    handler: str,
    call: Callable[[], None],
    *,
    namespace: str,
    name: str,
    retry: int | None = None,
    runtime: timedelta | None = None,
    limits: HandlerLimits = HANDLER_LIMITS,
) -> None:
    """Run ``call`` for the object ``kind`` ``namespace/name``: count every failure, make a
    refused request permanent, and mark the object Stalled when the handler gives up.

    ``retry`` and ``runtime`` are the kopf handler's own keyword arguments (``None`` for an
    event handler, which kopf does not retry).
    """
    try:
        call()
    except Exception as exc:
        metrics.RECONCILE_ERRORS.labels(kind, handler).inc()
        if isinstance(exc, ApiError) and exc.status in REFUSED_STATUSES:
            message = f"{handler} gave up: the API server refused a request: {exc}"
            give_up(kind, namespace, name, REASON_REFUSED, message)
            raise kopf.PermanentError(str(exc)) from exc
        if isinstance(exc, kopf.PermanentError):
            give_up(kind, namespace, name, REASON_FAILED, f"{handler} gave up: {exc}")
        elif is_last_attempt(retry, runtime, limits):
            attempts = (retry or 0) + 1
            message = f"{handler} gave up after {attempts} attempt(s): {exc}"
            give_up(kind, namespace, name, REASON_FAILED, message)
        raise
