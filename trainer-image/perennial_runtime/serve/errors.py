"""The one exception a request handler raises for bad input: status plus a message."""

from __future__ import annotations

from typing import Any

_MAX_SHOWN = 40


class RequestError(Exception):
    """A client error; the server answers ``status`` with ``{"error": message}``."""

    def __init__(
        self, message: str, status: int = 400, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers


def describe(value: Any) -> str:
    """A short human description of a JSON value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_SHOWN else value[: _MAX_SHOWN - 3] + "..."
        return f"string {shown!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def names_hint(names: list[str] | tuple[str, ...], limit: int = 8) -> str:
    """``'a', 'b', ... (30 in all)``: a bounded list of names for error messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names)} in all)"
    return shown
