"""CloudEvents to HTTP sinks: settings, both content modes, retries, a bounded queue, and
sinks that are down or slow. Every sink is a real HTTP server on 127.0.0.1 (aiohttp);
what it receives is parsed with the cloudevents SDK."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from perennial.core.notifications import RUN_BLESSED, Notification
from perennial.k8s import metrics, notifications
from perennial.k8s.events import post_event
from perennial.k8s.notifications import (
    NotificationSettings,
    Notifier,
    cloud_event,
    notification_settings,
)
from testsupport import deadline

FAST = NotificationSettings(backoff_base=0.001, backoff_max=0.002)


async def until(predicate: Callable[[], Any], what: str) -> None:
    """Wait for a condition (polling); fail with ``what`` if it never holds within the one
    deadline (``testsupport``)."""
    loop = asyncio.get_running_loop()
    limit = deadline()
    ends = loop.time() + limit
    while not predicate():
        if loop.time() > ends:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(0.005)


@dataclass
class Sink:
    """A CloudEvents sink on loopback: answers ``statuses`` in turn (then 202)."""

    statuses: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    events: list[BaseCloudEvent] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.read()
        self.requests.append((headers, body))
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 202
        if status < 300:
            self.events.append(from_http(HTTPMessage(headers, body), JSONFormat()))
        return web.Response(status=status)


@contextlib.asynccontextmanager
async def running(sink: Sink) -> AsyncIterator[Sink]:
    app = web.Application()
    app.router.add_post("/events", sink.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    sink.url = f"http://127.0.0.1:{port}/events"
    try:
        yield sink
    finally:
        if sink.hold is not None:
            sink.hold.set()
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens once the socket is closed


def event(n: int) -> Any:
    return cloud_event(
        Notification(
            type=RUN_BLESSED,
            source="/apis/perennial.dev/v1alpha1/namespaces/ml/trainingruns",
            subject=f"iris-{n:05d}",
            data={"name": f"iris-{n:05d}", "n": n},
        )
    )


def counted(sink: str, result: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "perennial_notifications_total", {"sink": sink, "result": result}
    )
    return value or 0.0


@contextlib.asynccontextmanager
async def notifier(settings: NotificationSettings) -> AsyncIterator[Notifier]:
    started = Notifier(settings)
    await started.start()
    try:
        yield started
    finally:
        await started.stop(grace=0)


# --- settings --------------------------------------------------------------------------------


def test_settings_default_to_no_sinks() -> None:
    settings = notification_settings({})
    assert not settings.enabled
    assert (settings.mode, settings.queue_size, settings.retries, settings.timeout) == (
        "binary",
        1000,
        5,
        5.0,
    )


def test_settings_from_the_environment_and_flags() -> None:
    env = {
        "PERENNIAL_NOTIFY_SINKS": "http://a.example/x, https://b.example:8443/ ,http://a.example/x",
        "PERENNIAL_NOTIFY_MODE": "structured",
        "PERENNIAL_NOTIFY_QUEUE_SIZE": "50",
        "PERENNIAL_NOTIFY_RETRIES": "0",
        "PERENNIAL_NOTIFY_TIMEOUT": "2.5",
    }
    settings = notification_settings(env)
    assert settings.sinks == ("http://a.example/x", "https://b.example:8443/")
    assert (settings.mode, settings.queue_size, settings.retries, settings.timeout) == (
        "structured",
        50,
        0,
        2.5,
    )
    flags = notification_settings(env, sinks=["http://c.example/"], mode="binary")
    assert flags.sinks == ("http://c.example/",) and flags.mode == "binary"


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({"PERENNIAL_NOTIFY_SINKS": "ftp://x/"}, {}, "PERENNIAL_NOTIFY_SINKS: 'ftp://x/' is not"),
        ({}, {"sinks": ["event-display"]}, "--notify-sink: 'event-display' is not an http"),
        ({}, {"sinks": ["http://x:99999/"]}, "--notify-sink: 'http://x:99999/' has an invalid"),
        ({"PERENNIAL_NOTIFY_MODE": "json"}, {}, "PERENNIAL_NOTIFY_MODE: 'json' is not a mode"),
        ({}, {"mode": "json"}, "--notify-mode: 'json' is not a mode; use 'binary'"),
        ({"PERENNIAL_NOTIFY_QUEUE_SIZE": "0"}, {}, "PERENNIAL_NOTIFY_QUEUE_SIZE: 0 is out of"),
        ({"PERENNIAL_NOTIFY_RETRIES": "many"}, {}, "PERENNIAL_NOTIFY_RETRIES: 'many' is not a"),
        ({"PERENNIAL_NOTIFY_TIMEOUT": "0"}, {}, "PERENNIAL_NOTIFY_TIMEOUT: 0 is out of range"),
    ],
)
def test_bad_settings_name_the_variable_or_flag(
    env: dict[str, str], flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        notification_settings(env, **flags)


def test_the_sink_label_hides_credentials_and_query() -> None:
    label = notifications.sink_label("https://user:secret@hooks.example:8443/p?token=abc")
    assert label == "https://hooks.example:8443/p"


# --- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_events_arrive_in_order_and_parse_with_the_sdk(mode: str) -> None:
    async with running(Sink()) as sink:
        settings = replace(FAST, sinks=(sink.url,), mode=mode)  # type: ignore[arg-type]
        async with notifier(settings) as sender:
            sent = [event(i) for i in range(5)]
            # From another thread, as kopf's sync handlers call post_event.
            thread = threading.Thread(target=lambda: [sender.publish(e) for e in sent])
            thread.start()
            thread.join()
            await until(lambda: len(sink.events) == 5, "five events")
            # The sink holds an event before the sender has read the answer and counted it.
            label = notifications.sink_label(sink.url)
            await until(lambda: counted(label, "delivered") == 5, "five deliveries counted")
        headers, _ = sink.requests[0]
        if mode == "binary":
            assert headers["ce-type"] == RUN_BLESSED and headers["ce-specversion"] == "1.0"
            assert headers["content-type"] == "application/json"
        else:
            assert "ce-type" not in headers
            assert headers["content-type"].startswith("application/cloudevents+json")
        for got, want in zip(sink.events, sent, strict=True):
            assert got.get_id() == want.get_id()
            assert got.get_type() == RUN_BLESSED
            assert got.get_source() == "/apis/perennial.dev/v1alpha1/namespaces/ml/trainingruns"
            assert got.get_subject() == want.get_subject()
            assert got.get_time() == want.get_time()
            assert got.get_data() == want.get_data()


async def test_server_errors_are_retried_with_the_same_id() -> None:
    async with running(Sink(statuses=[503, 500, 202])) as sink:
        async with notifier(replace(FAST, sinks=(sink.url,), retries=2)) as sender:
            sender.publish(event(1))
            await until(lambda: len(sink.events) == 1, "the third attempt")
            label = notifications.sink_label(sink.url)
            await until(lambda: counted(label, "delivered") == 1, "the delivery counted")
        ids = {headers["ce-id"] for headers, _ in sink.requests}
        assert len(sink.requests) == 3 and len(ids) == 1


async def test_a_client_error_is_not_retried() -> None:
    async with running(Sink(statuses=[400])) as sink:
        async with notifier(replace(FAST, sinks=(sink.url,), retries=5)) as sender:
            label = notifications.sink_label(sink.url)
            sender.publish(event(1))
            await until(lambda: counted(label, "failed") == 1, "the failure")
            sender.publish(event(2))
            await until(lambda: len(sink.events) == 1, "the next event")
        assert len(sink.requests) == 2  # one attempt each
        assert sink.events[0].get_subject() == "iris-00002"


async def test_a_sink_that_is_down_gives_up_after_the_retries_and_others_still_receive() -> None:
    down = f"http://127.0.0.1:{closed_port()}/events"
    async with running(Sink()) as up:
        sender = Notifier(replace(FAST, sinks=(down, up.url), retries=2))
        await sender.start()
        for i in range(3):
            sender.publish(event(i))
        await until(
            lambda: counted(notifications.sink_label(down), "failed") == 3, "three failures"
        )
        await until(lambda: len(up.events) == 3, "the working sink's events")
        await sender.stop(grace=0)


async def test_a_slow_sink_never_blocks_publish_and_its_queue_is_bounded() -> None:
    hold = asyncio.Event()
    async with running(Sink(hold=hold)) as sink:
        settings = replace(FAST, sinks=(sink.url,), queue_size=3)
        async with notifier(settings) as sender:
            label = notifications.sink_label(sink.url)
            dropped = counted(label, "dropped")
            sender.publish(event(0))
            await until(lambda: len(sink.requests) == 1, "the first request (held)")
            for i in range(1, 10):  # the sink answers nothing meanwhile
                sender.publish(event(i))
            assert sender.sinks[0].pending() == 3
            assert sender.sinks[0].dropped == 6
            assert counted(label, "dropped") == dropped + 6
            hold.set()
            await until(lambda: len(sink.events) == 4, "the held event and the newest three")
        assert [e.get_data()["n"] for e in sink.events] == [0, 7, 8, 9]  # type: ignore[index]


async def test_a_sink_that_does_not_answer_times_out() -> None:
    hold = asyncio.Event()
    async with running(Sink(hold=hold)) as sink:
        sender = Notifier(replace(FAST, sinks=(sink.url,), retries=0, timeout=0.2))
        await sender.start()
        sender.publish(event(1))
        await until(lambda: counted(notifications.sink_label(sink.url), "failed") == 1, "timeout")
        assert sink.events == []
        await sender.stop(grace=0)


async def test_stop_delivers_what_is_queued_within_the_grace_period() -> None:
    async with running(Sink()) as sink:
        sender = Notifier(replace(FAST, sinks=(sink.url,)))
        for i in range(3):  # queued before the worker starts
            sender.publish(event(i))
        await sender.start()
        await sender.stop(grace=10)
        assert [e.get_subject() for e in sink.events] == ["iris-00000", "iris-00001", "iris-00002"]


async def test_stop_delivers_an_event_published_just_before_it() -> None:
    async with running(Sink()) as sink:
        sender = Notifier(replace(FAST, sinks=(sink.url,)))
        await sender.start()
        await until(sender.sinks[0].idle.is_set, "the idle worker")
        sender.publish(event(7))  # the worker has not woken up yet
        await sender.stop(grace=10)
        assert [e.get_subject() for e in sink.events] == ["iris-00007"]


async def test_stop_does_not_wait_for_a_sink_that_hangs() -> None:
    hold = asyncio.Event()
    async with running(Sink(hold=hold)) as sink:
        sender = Notifier(replace(FAST, sinks=(sink.url,)))
        await sender.start()
        sender.publish(event(1))
        await until(lambda: len(sink.requests) == 1, "the held request")
        await sender.stop(grace=0.01)  # returns: the worker is cancelled
        assert sender.sinks[0].task is None


# --- the hook in post_event -----------------------------------------------------------------


async def test_post_event_queues_the_notifications_of_the_active_notifier() -> None:
    async with running(Sink()) as sink:
        async with notifier(replace(FAST, sinks=(sink.url,))) as sender:
            notifications.install(sender)
            try:
                run = {
                    "apiVersion": "perennial.dev/v1alpha1",
                    "kind": "TrainingRun",
                    "metadata": {"name": "iris-00002", "namespace": "ml", "uid": "u-2"},
                    "spec": {"pipelineRef": {"name": "iris"}, "trigger": {"type": "Manual"}},
                }
                for reason in ("TrainingStarted", "ModelBlessed"):
                    # Outside a running operator kopf cannot post the Kubernetes event.
                    with contextlib.suppress(Exception):
                        post_event(run, reason, f"{reason} happened")
                await until(lambda: len(sink.events) == 1, "the blessed notification")
            finally:
                notifications.uninstall(sender)
        (got,) = sink.events
        assert got.get_type() == RUN_BLESSED and got.get_subject() == "iris-00002"
        data = got.get_data()
        assert isinstance(data, dict)
        assert data["pipeline"] == "iris" and data["message"] == "ModelBlessed happened"
    assert notifications.active_notifier() is None
    notifications.publish(run, "ModelBlessed", "nobody listens", "Normal")  # a no-op
