"""Errors the emulator answers with, shaped like a real API server's ``Status`` objects."""

from __future__ import annotations

from typing import Final

import kmock

__all__ = ["api_error", "describe"]

_REASONS: Final = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def api_error(status: int, message: str, *, reason: str | None = None) -> kmock.KubernetesError:
    """An error kmock renders as a Kubernetes ``Status`` with this code and reason."""
    return kmock.KubernetesError(
        status=status,
        reason=reason or _REASONS.get(status, "Unknown"),
        message=message,
        details={"emulator": "tests/integration/harness"},
    )


def describe(resource: kmock.resource) -> str:
    """``jobs.batch`` / ``pods``: how a real server names a resource in its messages."""
    return f"{resource.plural}.{resource.group}" if resource.group else f"{resource.plural}"
