"""Time for the local runner: every decision reads this clock, never ``datetime.now()``.

``SystemClock`` is the wall clock (``perennial local``). ``ScaledClock`` runs faster than
the wall clock (the demo: one real second is a simulated minute, so cool-downs, poll
intervals and schedules written in minutes pass in seconds). ``ManualClock`` only moves
when told to (tests).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time (timezone-aware, UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """``start + (wall time elapsed) * speed``: monotonic, shared safely between threads."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self.start = start or datetime.now(UTC)
        self._origin = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._origin) * self.speed + self._offset
        return self.start + timedelta(seconds=elapsed)

    def jump(self, seconds: float) -> datetime:
        """Move the clock ``seconds`` ahead at once ("an hour later ...")."""
        with self._lock:
            self._offset += seconds
        return self.now()

    def elapsed_seconds(self) -> float:
        return (self.now() - self.start).total_seconds()


class ManualClock:
    """A clock that moves only when :meth:`advance` is called."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now
