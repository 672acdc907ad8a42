"""The operator's own "shutting down" flag, for its loops (kopf daemons).

kopf stops the daemons it knows when the operator exits. While it drains its event queues
(``settings.queueing.exit_timeout``) an event can still arrive for an object whose daemon
was just stopped, and kopf spawns that daemon again; nobody ever tells the new one to stop.
kopf waits for such leftover tasks (5 s), cancels them, then re-raises any exception a
leftover task ended with. So every loop of ours:

- sleeps with ``asyncio.sleep`` and lets kopf cancel it (kopf's advice for async daemons).
  ``await stopped.wait(n)`` runs in a helper task that ends with ``TimeoutError`` each time
  the ``n`` seconds pass; when that task is a leftover, kopf re-raises the ``TimeoutError``
  and the operator exits with an error (under load, often);
- also ends when :func:`requested` says so: kopf runs the cleanup handlers (which set the
  flag and close the :class:`~perennial.controllers.wakeups.Wakeups`, waking every sleeper
  and refusing new sleeps) before it waits for the leftovers, so a respawned loop ends at
  its next turn instead of sleeping until kopf cancels it.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Final

import kopf

from perennial.controllers.wakeups import Wakeups

__all__ = ["MEMO_KEY", "register", "requested"]

MEMO_KEY: Final = "perennial_shutdown"
_registered: weakref.WeakSet[kopf.OperatorRegistry] = weakref.WeakSet()


def operator_started(memo: kopf.Memo, **_: Any) -> None:
    memo[MEMO_KEY] = threading.Event()


def operator_stopping(memo: kopf.Memo, **_: Any) -> None:
    flag = memo.get(MEMO_KEY)
    if isinstance(flag, threading.Event):
        flag.set()
    for value in memo.values():
        if isinstance(value, Wakeups):
            value.close()  # sleeping loops end now; a respawned one does not sleep


def requested(memo: kopf.Memo) -> bool:
    """Whether the operator's cleanup has run (the operator is exiting)."""
    flag = memo.get(MEMO_KEY)
    return isinstance(flag, threading.Event) and flag.is_set()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the startup/cleanup pair that keeps the flag (once per registry)."""
    if registry in _registered:
        return
    kopf.on.startup(id="shutdown-flag-startup", registry=registry)(operator_started)
    kopf.on.cleanup(id="shutdown-flag-cleanup", registry=registry)(operator_stopping)
    _registered.add(registry)
