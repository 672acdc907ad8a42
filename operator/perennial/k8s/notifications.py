"""Notifications as CloudEvents, sent to HTTP sinks by a background worker.

:func:`publish` is called by :func:`perennial.k8s.events.post_event` for every event the
operator posts; the events that matter outside the cluster
(:mod:`perennial.core.notifications`) become CloudEvents 1.0 (the ``cloudevents`` SDK,
HTTP binding, binary or structured content mode) and are queued for each sink.

Never in the way of reconciliation: :func:`publish` only appends to a bounded queue per
sink (thread-safe, no I/O, never raises). When a queue is full the oldest event is dropped
and counted. One asyncio task per sink, in the operator's event loop, delivers the queue
in order: a POST with a timeout, retried with exponential backoff on connection errors,
timeouts, 408, 429 and 5xx, given up (and counted) after the last retry or on any other
answer. A sink that is down or slow delays only its own queue.

Configured per operator by environment variables (or the ``run`` command's flags, which
take precedence): see :func:`notification_settings`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import aiohttp
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent

from perennial.core.notifications import Notification, notification_for
from perennial.k8s import metrics

__all__ = [
    "ENV_MODE",
    "ENV_QUEUE_SIZE",
    "ENV_RETRIES",
    "ENV_SINKS",
    "ENV_TIMEOUT",
    "Mode",
    "NotificationSettings",
    "Notifier",
    "active_notifier",
    "cloud_event",
    "install",
    "notification_settings",
    "publish",
    "uninstall",
]

logger = logging.getLogger("perennial.notifications")

Mode = Literal["binary", "structured"]
MODES: Final = ("binary", "structured")

ENV_SINKS: Final = "PERENNIAL_NOTIFY_SINKS"
ENV_MODE: Final = "PERENNIAL_NOTIFY_MODE"
ENV_QUEUE_SIZE: Final = "PERENNIAL_NOTIFY_QUEUE_SIZE"
ENV_RETRIES: Final = "PERENNIAL_NOTIFY_RETRIES"
ENV_TIMEOUT: Final = "PERENNIAL_NOTIFY_TIMEOUT"

DEFAULT_QUEUE_SIZE: Final = 1000
DEFAULT_RETRIES: Final = 5
DEFAULT_TIMEOUT: Final = 5.0
BACKOFF_BASE: Final = 1.0  # seconds before the first retry; doubles per retry
BACKOFF_MAX: Final = 60.0
STOP_GRACE: Final = 5.0  # seconds the workers get to deliver what is queued at shutdown
# Answers worth another try: the sink may recover. Anything else (a 4xx) will not change.
RETRY_STATUSES: Final = frozenset({408, 429})

USER_AGENT: Final = "perennial-operator"


@dataclass(frozen=True)
class NotificationSettings:
    """Where notifications go and how hard the operator tries."""

    sinks: tuple[str, ...] = ()
    mode: Mode = "binary"
    queue_size: int = DEFAULT_QUEUE_SIZE
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def _number(raw: str, what: str, kind: type[int] | type[float], low: float, high: float) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{what}: {raw!r} is not a number; use {low:g}..{high:g}") from None
    if not low <= value <= high:
        raise ValueError(f"{what}: {raw} is out of range; use {low:g}..{high:g}")
    return value


def notification_settings(
    environ: Mapping[str, str],
    *,
    sinks: Sequence[str] | None = None,
    mode: str | None = None,
) -> NotificationSettings:
    """Read and validate the settings (pure). ``sinks``/``mode`` (the ``run`` flags) win.

    Environment: ``PERENNIAL_NOTIFY_SINKS`` (comma-separated http(s) URLs),
    ``PERENNIAL_NOTIFY_MODE`` (binary|structured), ``PERENNIAL_NOTIFY_QUEUE_SIZE``,
    ``PERENNIAL_NOTIFY_RETRIES``, ``PERENNIAL_NOTIFY_TIMEOUT`` (seconds per request).
    Raises ValueError naming the variable or flag and the fix.
    """
    if sinks:
        where, urls = "--notify-sink", [u.strip() for u in sinks if u.strip()]
    else:
        where, urls = ENV_SINKS, _split(environ.get(ENV_SINKS, ""))
    unique: list[str] = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{where}: {url!r} is not an http:// or https:// URL with a host "
                "(e.g. http://event-display.default.svc/)"
            )
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError(f"{where}: {url!r} has an invalid port") from None
        if url not in unique:
            unique.append(url)
    chosen_mode = mode if mode is not None else environ.get(ENV_MODE, "").strip() or "binary"
    if chosen_mode not in MODES:
        what = "--notify-mode" if mode is not None else ENV_MODE
        raise ValueError(f"{what}: {chosen_mode!r} is not a mode; use 'binary' or 'structured'")
    queue_size = _number(
        environ.get(ENV_QUEUE_SIZE) or str(DEFAULT_QUEUE_SIZE), ENV_QUEUE_SIZE, int, 1, 100_000
    )
    retries = _number(environ.get(ENV_RETRIES) or str(DEFAULT_RETRIES), ENV_RETRIES, int, 0, 20)
    timeout = _number(
        environ.get(ENV_TIMEOUT) or str(DEFAULT_TIMEOUT), ENV_TIMEOUT, float, 0.1, 120.0
    )
    return NotificationSettings(
        sinks=tuple(unique),
        mode="structured" if chosen_mode == "structured" else "binary",
        queue_size=queue_size,
        retries=retries,
        timeout=timeout,
    )


def sink_label(url: str) -> str:
    """The sink as a metric label and in logs: no credentials, no query string."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def cloud_event(notification: Notification, *, now: datetime | None = None) -> CloudEvent:
    """The CloudEvent 1.0 for ``notification``, with a fresh id."""
    return CloudEvent(
        attributes={
            "type": notification.type,
            "source": notification.source,
            "subject": notification.subject,
            "id": str(uuid.uuid4()),
            "time": now or datetime.now(UTC),
            "datacontenttype": "application/json",
        },
        data=dict(notification.data),
    )


def encode(event: CloudEvent, mode: Mode) -> tuple[dict[str, str], bytes]:
    """Headers and body of the HTTP request carrying ``event``."""
    if mode == "structured":
        message = ce_http.to_structured_event(event)
    else:
        message = ce_http.to_binary_event(event)
    return dict(message.headers), message.body


class _Sink:
    """One sink's bounded queue and its delivery task."""

    def __init__(self, url: str, settings: NotificationSettings) -> None:
        self.url = url
        self.label = sink_label(url)
        self.settings = settings
        self.queue: collections.deque[CloudEvent] = collections.deque()
        self.lock = threading.Lock()
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()  # set while the worker waits with an empty queue
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self.task: asyncio.Task[None] | None = None

    def put(self, event: CloudEvent) -> bool:
        """Queue ``event``; drop the oldest one when full. True when nothing was dropped."""
        with self.lock:
            kept = len(self.queue) < self.settings.queue_size
            if not kept:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(event)
        if not kept:
            metrics.NOTIFICATIONS.labels(self.label, "dropped").inc()
        return kept

    def take(self) -> CloudEvent | None:
        with self.lock:
            return self.queue.popleft() if self.queue else None

    def pending(self) -> int:
        with self.lock:
            return len(self.queue)


class Notifier:
    """Delivers CloudEvents to the configured sinks from the event loop it is started in."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self.sinks = [_Sink(url, settings) for url in settings.sinks]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle (in the event loop) ------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            headers={"User-Agent": USER_AGENT},
        )
        for sink in self.sinks:
            sink.wakeup = asyncio.Event()
            sink.idle = asyncio.Event()
            if sink.pending():
                sink.wakeup.set()
            sink.task = asyncio.create_task(self._deliver(sink), name=f"notify {sink.label}")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Give the workers ``grace`` seconds to empty their queues, then cancel them."""
        tasks = [s.task for s in self.sinks if s.task is not None]
        if tasks and grace > 0:
            waits = [asyncio.create_task(self._drained(s)) for s in self.sinks if s.task]
            await asyncio.wait(waits, timeout=grace)
            for wait in waits:
                wait.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sink in self.sinks:
            sink.task = None
            if sink.pending():
                logger.warning(
                    "notifications: %d event(s) for %s not delivered at shutdown",
                    sink.pending(),
                    sink.label,
                )
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    async def _drained(sink: _Sink) -> None:
        """Return once the worker waits with nothing queued."""
        while True:
            await sink.idle.wait()
            if not sink.pending():
                return
            sink.wakeup.set()  # queued after the worker went idle: its wakeup is on the way
            await asyncio.sleep(0)

    # --- any thread -------------------------------------------------------------------------

    def publish(self, event: CloudEvent) -> None:
        """Queue ``event`` for every sink; never blocks, never raises."""
        for sink in self.sinks:
            if not sink.put(event):
                logger.warning("notifications: queue for %s full; dropped the oldest", sink.label)
            self._wake(sink)

    def _wake(self, sink: _Sink) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started yet: start() wakes the worker
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            sink.wakeup.set()
            return
        try:
            loop.call_soon_threadsafe(sink.wakeup.set)
        except RuntimeError:  # the loop closed meanwhile: the operator is exiting
            logger.debug("notifications: %s not woken, the event loop is closed", sink.label)

    # --- the worker -------------------------------------------------------------------------

    async def _deliver(self, sink: _Sink) -> None:
        while True:
            event = sink.take()
            if event is None:
                sink.wakeup.clear()
                if sink.pending():
                    continue
                sink.idle.set()
                await sink.wakeup.wait()
                sink.idle.clear()
                continue
            try:
                delivered = await self._send(sink, event)
            except Exception:  # a bug must not end the worker: the next events still go
                logger.exception("notifications: %s to %s failed", event.get_type(), sink.label)
                delivered = False
            result = "delivered" if delivered else "failed"
            metrics.NOTIFICATIONS.labels(sink.label, result).inc()
            if delivered:
                sink.delivered += 1
            else:
                sink.failed += 1

    async def _send(self, sink: _Sink, event: CloudEvent) -> bool:
        assert self._session is not None
        headers, body = encode(event, self.settings.mode)
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            problem: str
            retry = True
            try:
                async with self._session.post(sink.url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        return True
                    problem = f"HTTP {response.status}"
                    retry = response.status >= 500 or response.status in RETRY_STATUSES
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not retry or attempt == attempts - 1:
                logger.warning(
                    "notifications: %s %s to %s not delivered after %d attempt(s): %s",
                    event.get_type(),
                    event.get_id(),
                    sink.label,
                    attempt + 1,
                    problem,
                )
                return False
            delay = min(self.settings.backoff_base * 2**attempt, self.settings.backoff_max)
            logger.info(
                "notifications: %s to %s failed (%s); retry %d/%d in %.1f s",
                event.get_type(),
                sink.label,
                problem,
                attempt + 1,
                self.settings.retries,
                delay,
            )
            await asyncio.sleep(delay)
        return False  # pragma: no cover - the loop returns


# --- the operator's notifier (set by its startup handler) ------------------------------------


class _Active:
    lock = threading.Lock()
    notifier: Notifier | None = None


def install(notifier: Notifier) -> None:
    """Make ``notifier`` the one :func:`publish` feeds (the operator's startup handler)."""
    with _Active.lock:
        _Active.notifier = notifier


def uninstall(notifier: Notifier) -> None:
    with _Active.lock:
        if _Active.notifier is notifier:
            _Active.notifier = None


def active_notifier() -> Notifier | None:
    with _Active.lock:
        return _Active.notifier


def publish(obj: Mapping[str, Any], reason: str, message: str, event_type: str) -> None:
    """Queue the notification a Kubernetes event stands for, if any (never raises)."""
    notifier = active_notifier()
    if notifier is None:
        return
    try:
        notification = notification_for(obj, reason, message, event_type)
        if notification is not None:
            notifier.publish(cloud_event(notification))
    except Exception:  # a notification is a report: it must never fail a handler
        logger.exception("notifications: event %s not queued", reason)
