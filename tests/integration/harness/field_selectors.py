"""The selectors the emulator does apply: field selectors a real server supports, exactly.

A real API server accepts ``metadata.name`` and ``metadata.namespace`` as field selectors on
every resource, and a few more per kind (the ``involvedObject.*`` of events, the
``status.phase`` of pods). They are plain equalities, so the emulator applies them: ``kubectl
wait`` and ``kubectl get -w NAME`` send ``metadata.name=NAME``, ``kubectl describe`` lists
events with ``involvedObject.*``. Any other field selector, and every label selector, is
refused by the emulator (see ``ApiServerEmulator.answer_selectors_unfiltered``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import kmock

__all__ = ["FieldTerm", "field_terms", "matches"]

FieldTerm = tuple[tuple[str, ...], bool, str]  # (path in the object, equal?, value)

_COMMON: Final = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
}
_REFERENCE: Final = (
    "kind",
    "namespace",
    "name",
    "uid",
    "apiVersion",
    "resourceVersion",
    "fieldPath",
)
_PER_RESOURCE: Final[dict[kmock.resource, dict[str, tuple[str, ...]]]] = {
    kmock.resource("v1/events"): {
        **{f"involvedObject.{field}": ("involvedObject", field) for field in _REFERENCE},
        "reason": ("reason",),
        "type": ("type",),
        "source": ("source", "component"),
        "reportingComponent": ("reportingComponent",),
    },
    kmock.resource("events.k8s.io/v1/events"): {
        **{f"regarding.{field}": ("regarding", field) for field in _REFERENCE},
        "reason": ("reason",),
        "type": ("type",),
        "reportingController": ("reportingController",),
    },
    kmock.resource("v1/pods"): {
        "spec.nodeName": ("spec", "nodeName"),
        "spec.restartPolicy": ("spec", "restartPolicy"),
        "spec.schedulerName": ("spec", "schedulerName"),
        "spec.serviceAccountName": ("spec", "serviceAccountName"),
        "status.phase": ("status", "phase"),
        "status.podIP": ("status", "podIP"),
        "status.nominatedNodeName": ("status", "nominatedNodeName"),
    },
}


def field_terms(selector: str, resource: kmock.resource) -> list[FieldTerm] | None:
    """Parse ``a=x,b!=y``; ``None`` if a field is not one a real server supports for
    ``resource`` (it would answer 400 for a field it does not know either)."""
    supported = _COMMON | _PER_RESOURCE.get(resource, {})
    terms: list[FieldTerm] = []
    for raw in filter(None, (part.strip() for part in selector.split(","))):
        operator = next((op for op in ("!=", "==", "=") if op in raw), None)
        if operator is None:
            return None
        field, _, value = raw.partition(operator)
        if field.strip() not in supported:
            return None
        terms.append((supported[field.strip()], operator != "!=", value.strip()))
    return terms


def _value(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def matches(obj: Mapping[str, Any], terms: list[FieldTerm]) -> bool:
    """Whether ``obj`` satisfies every term."""
    return all((_value(obj, path) == value) == equal for path, equal, value in terms)
