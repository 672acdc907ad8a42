"""Polling a condition from blocking code: the only kind of waiting the tests do.

:func:`wait_until` returns as soon as the condition holds and fails only after one generous
deadline (:func:`~.deadlines.deadline`, or ``timeout`` seconds for a wait known to be
longer, e.g. a subprocess that trains), always scaled by ``$PERENNIAL_TEST_TIMEOUT_FACTOR``.
Polls start fast and slow down, so a condition that holds soon is seen at once and a long
wait does not take CPU time from the code it waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .deadlines import deadline, scaled

__all__ = ["MAX_INTERVAL", "wait_until"]

MAX_INTERVAL = 0.1  # the slowest poll (seconds)

T = TypeVar("T")


def wait_until(
    done: Callable[[], T],
    *,
    what: str | None = None,
    timeout: float | None = None,
    ignoring: tuple[type[BaseException], ...] = (),
    interval: float = 0.01,
    max_interval: float = MAX_INTERVAL,
) -> T:
    """Call ``done`` until it returns something truthy; return that.

    ``timeout``: seconds before the factor (default: the one :func:`~.deadlines.deadline`).
    ``ignoring``: exceptions that mean "not yet" (e.g. a connection refused while a server
    starts); any other exception propagates at once. Polls every ``interval`` seconds at
    first, growing to ``max_interval``. Raises :class:`AssertionError` naming
    ``what`` and the last value (or exception) after the deadline.
    """
    limit = deadline() if timeout is None else scaled(timeout)
    ends = time.monotonic() + limit
    while True:
        try:
            value = done()
        except ignoring as exc:
            value = exc  # type: ignore[assignment]
            ok = False
        else:
            ok = bool(value)
        if ok:
            return value
        if time.monotonic() >= ends:
            described = what or getattr(done, "__name__", repr(done))
            raise AssertionError(f"{described}: still {value!r} after {limit:g} s")
        time.sleep(interval)
        interval = min(interval * 1.5, max(max_interval, interval))
