"""Polling until something becomes true: the only kind of waiting the tests do."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["WaitTimeoutError", "wait_for"]

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The predicate stayed falsy; the message says what was awaited and the last value."""


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str | None = ...,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str | None = None,
) -> Any:
    """Call ``predicate`` (sync or async) until it returns something truthy; return that.

    Exceptions from the predicate propagate at once (use e.g. ``kube_api.get_or_none`` for
    objects that do not exist yet). Raises :class:`WaitTimeoutError` after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            described = what or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeoutError(f"{described}: still {value!r} after {timeout} s")
        await asyncio.sleep(interval)
