"""The operator's clock and the tick of its trigger loops, both replaceable in tests.

Handlers never call ``datetime.now()``: they call :func:`now`, and pass the result into the
pure core. Tests install a controllable clock with :func:`set_clock` (and shorten the real
time between two trigger checks with :func:`set_tick`), then move time forward to make a
schedule or a data poll come due.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["ManualClock", "now", "reset", "set_clock", "set_tick", "tick_seconds"]

# Real seconds between two trigger checks of a pipeline (schedule, data poll, drift, decay).
# Schedules fire within this much of their time; PERENNIAL_TRIGGER_TICK_SECONDS overrides.
DEFAULT_TICK_SECONDS: Final = 15.0


def _system_now() -> datetime:
    return datetime.now(UTC)


def _env_tick() -> float:
    raw = os.environ.get("PERENNIAL_TRIGGER_TICK_SECONDS")
    if not raw:
        return DEFAULT_TICK_SECONDS
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(
            f"PERENNIAL_TRIGGER_TICK_SECONDS={raw!r} is not a number of seconds (e.g. 15)"
        ) from exc
    if value <= 0:
        raise ValueError(f"PERENNIAL_TRIGGER_TICK_SECONDS={raw!r} must be positive (e.g. 15)")
    return value


class _State:
    clock: Callable[[], datetime] = _system_now
    tick: float | None = None


def now() -> datetime:
    """The current time (timezone-aware UTC), from the installed clock."""
    return _State.clock()


def set_clock(clock: Callable[[], datetime]) -> None:
    _State.clock = clock


def tick_seconds() -> float:
    if _State.tick is None:
        _State.tick = _env_tick()
    return _State.tick


def set_tick(seconds: float) -> None:
    if seconds <= 0:
        raise ValueError("the trigger tick must be positive")
    _State.tick = seconds


def reset() -> None:
    """The system clock and the default tick again."""
    _State.clock = _system_now
    _State.tick = None


class ManualClock:
    """A clock that moves only when told to (thread-safe)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment
