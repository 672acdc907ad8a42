"""The operator's clock, replaceable in tests.

Handlers never call ``datetime.now()``: they call :func:`now`, and pass the result into the
pure core. Nothing ticks: a timer computes when something is next due (the core says) and
sleeps until then, or until a watch event or a jump of the clock wakes it
(:func:`on_change`). Tests install a :class:`ManualClock` with :func:`set_clock` and move
it forward; every sleeper wakes and looks again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["ManualClock", "now", "on_change", "reset", "seconds_until", "set_clock"]

Listener = Callable[[], None]


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def _system_now() -> datetime:
    return datetime.now(UTC)


class _Installed:
    clock: Clock = _system_now


def now() -> datetime:
    """The current time (timezone-aware UTC), from the installed clock."""
    return _Installed.clock()


def seconds_until(moment: datetime) -> float:
    """Seconds from now to ``moment`` on the installed clock (0 when it has passed)."""
    return max(0.0, (moment - now()).total_seconds())


def set_clock(clock: Clock) -> None:
    _Installed.clock = clock


def reset() -> None:
    """The system clock again."""
    _Installed.clock = _system_now


def on_change(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` whenever the installed clock jumps (a :class:`ManualClock` moved
    by a test; the system clock never jumps). Returns the function that unsubscribes."""
    clock = _Installed.clock
    if isinstance(clock, ManualClock):
        return clock.subscribe(listener)
    return lambda: None


class ManualClock:
    """A clock that moves only when told to (thread-safe); every move calls the listeners
    (the operator's sleeping timers wake and recompute what is due)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _moved(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            moment = self._now
        self._moved()
        return moment

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment
        self._moved()
