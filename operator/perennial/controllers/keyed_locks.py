"""One lock per object, so the handlers, timers and watchers of one object never interleave.

kopf runs the handlers of one object one after another, but a pipeline's trigger loop, its
change handlers and the run watchers that report back to it run concurrently. Every
reconcile of an object holds that object's lock. Lock order: pipeline before run, never the
other way round, so two reconciles cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.RLock] = {}

    @contextmanager
    def hold(self, *key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:
            yield

    def forget(self, *key: str) -> None:
        """Drop the lock of a deleted object (a later reconcile makes a new one)."""
        with self._guard:
            self._locks.pop(key, None)
