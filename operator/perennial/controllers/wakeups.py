"""Sleeping timers that a watch event or a clock jump can wake (one per object).

A pipeline's trigger daemon and a ModelDeployment's loop sleep until the core says
something is due. A watch handler that learns something new for them (a watched
deployment's monitoring changed, a run finished) calls :meth:`Wakeups.wake`; a jump of
the operator's clock (tests) wakes every sleeper. Kept in kopf's ``memo`` (one per
operator), used from kopf's event loop (the sleepers) and from its handler threads (the
wakers), hence the thread-safe wake.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Final

MAX_SLEEP_SECONDS: Final = 3600.0  # a sleeper looks again at least hourly (clock drift)

Key = tuple[str, str, str]  # (kind, namespace, name)


class Wakeups:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._events: dict[Key, asyncio.Event] = {}
        self._closed = False

    def _event(self, key: Key) -> asyncio.Event:
        with self._lock:
            event = self._events.get(key)
            if event is None:
                event = self._events[key] = asyncio.Event()
            return event

    def wake(self, kind: str, namespace: str, name: str) -> None:
        """Wake the sleeper of one object (from any thread); a no-op when none sleeps."""
        with self._lock:
            event = self._events.get((kind, namespace, name))
        if event is not None:
            self._loop.call_soon_threadsafe(event.set)

    def wake_all(self) -> None:
        with self._lock:
            events = list(self._events.values())
        for event in events:
            self._loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        """The operator is exiting: wake every sleeper, and let no one sleep again (a loop
        kopf respawns while it drains its queues must end at once, not wait for kopf to
        cancel it after its 5 s grace)."""
        with self._lock:
            self._closed = True
        self.wake_all()

    @property
    def closed(self) -> bool:
        return self._closed

    async def sleep(
        self,
        kind: str,
        namespace: str,
        name: str,
        seconds: float | None,
        stopped: Awaitable[object],
    ) -> None:
        """Sleep ``seconds`` (None: until woken), or until woken, or until ``stopped``
        (kopf's ``stopped.wait()``) completes."""
        if self._closed:
            return
        event = self._event((kind, namespace, name))
        timeout = MAX_SLEEP_SECONDS if seconds is None else min(seconds, MAX_SLEEP_SECONDS)
        waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped)}
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        event.clear()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._events.pop((kind, namespace, name), None)
