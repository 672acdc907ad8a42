"""Polling until something becomes true: the only kind of waiting the tests do.

The deadline is :func:`~.deadlines.deadline` (one generous deadline, scaled by
``$PERENNIAL_TEST_TIMEOUT_FACTOR``); a test never sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from .deadlines import deadline, scaled

__all__ = ["WaitTimeoutError", "wait_for"]

# Polls start every ``interval`` seconds and slow down to this: a condition that holds
# soon is seen at once, a long wait does not take CPU time from the operator it waits for.
MAX_INTERVAL = 0.1

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The predicate stayed falsy; the message says what was awaited and the last value."""


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float | None = ...,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float | None = ...,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float | None = None,
    interval: float = 0.02,
    what: str | None = None,
) -> Any:
    """Call ``predicate`` (sync or async) until it returns something truthy; return that.

    Exceptions from the predicate propagate at once (use e.g. ``kube_api.get_or_none`` for
    objects that do not exist yet). Raises :class:`WaitTimeoutError` once the deadline has
    passed: :func:`~.deadlines.deadline` by default; ``timeout`` (seconds, scaled by the same
    factor) only for a test of the waiting itself.
    """
    limit = deadline() if timeout is None else scaled(timeout)
    loop = asyncio.get_running_loop()
    ends = loop.time() + limit
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= ends:
            described = what or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeoutError(f"{described}: still {value!r} after {limit:g} s")
        await asyncio.sleep(interval)
        interval = max(interval, min(interval * 1.25, MAX_INTERVAL))
