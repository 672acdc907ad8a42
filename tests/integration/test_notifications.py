"""CloudEvents from the whole operator to real HTTP sinks on loopback.

The continuous-training loop runs against the emulator (a real trained model, a real
model server whose drift starts a retraining run) while the operator sends notifications
to three sinks: one that answers, one on a closed port, and one that accepts the request
and never answers until the end of the test. The loop is not slowed by the two bad ones;
the events are parsed with the cloudevents SDK."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

import perennial.controllers.notifier  # noqa: F401 - registers the notifier's handlers
from perennial.core import notifications as types
from perennial.k8s import metrics, notifications

from .deployment_helpers import (
    Serving,
    env_of,
    full_operator,
    iris_rows,
    model_server,
    train_iris,
)
from .harness import wait_for

__all__ = ["full_operator"]

NS = "notify"


@dataclass
class Sink:
    hold: asyncio.Event | None = None
    requests: int = 0
    events: list[BaseCloudEvent] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        self.events.append(from_http(HTTPMessage(headers, body), JSONFormat()))
        return web.Response(status=202)

    def types(self) -> list[str]:
        return [e.get_type() for e in self.events]


@dataclass
class Sinks:
    good: Sink
    slow: Sink
    down: str


@contextlib.asynccontextmanager
async def _serve(sink: Sink) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_post("/", sink.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sink.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        yield
    finally:
        if sink.hold is not None:
            sink.hold.set()
        await runner.cleanup()


@pytest.fixture
async def sinks(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sinks]:
    """Three sinks, configured through the environment before the operator starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    good, slow = Sink(), Sink(hold=asyncio.Event())
    async with _serve(good), _serve(slow):
        monkeypatch.setenv("PERENNIAL_NOTIFY_SINKS", f"{good.url},{down},{slow.url}")
        monkeypatch.setenv("PERENNIAL_NOTIFY_MODE", "structured")
        monkeypatch.setenv("PERENNIAL_NOTIFY_RETRIES", "0")
        monkeypatch.setenv("PERENNIAL_NOTIFY_TIMEOUT", "60")
        yield Sinks(good, slow, down)


async def test_the_loop_notifies_and_bad_sinks_block_nothing(
    sinks: Sinks, full_operator: Serving, tmp_path: Path
) -> None:
    serving = full_operator
    serving.namespace = NS
    model = train_iris(tmp_path, "iris-00001")
    await serving.create_pipeline(
        "iris",
        triggers={
            "drift": {"deploymentRef": {"name": "iris"}, "threshold": 0.25, "cooldownSeconds": 0}
        },
    )
    md = await serving.create_md(
        "iris", pipeline="iris", replicas=1, monitoring={"scrapeIntervalSeconds": 30}
    )
    await serving.training.wait_run("iris-00001")
    await serving.bless("iris-00001", message=model.result.to_json())
    deployment = await serving.wait_serving("iris-serving", "iris-00001")
    env = env_of(deployment)
    with model_server(
        env["PERENNIAL_MODEL_URI"], env["PERENNIAL_MODEL_SHA256"], env["PERENNIAL_MODEL_NAME"]
    ) as server:
        serving.resolver.service = server.url
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            answer = await http.post(
                "/predict", json={"instances": iris_rows(300, scale=2.5, shift=3.0)}
            )
            assert answer.status_code == 200, answer.text
        await serving.ready("iris-serving")
        drift_run = await serving.training.wait_run("iris-00002", timeout=10)
    assert drift_run["spec"]["trigger"]["type"] == "Drift"
    failed = await serving.training.finish(
        "iris-00002", None, succeeded=False, reason="BackoffLimitExceeded"
    )
    assert failed["status"]["phase"] == "Failed"
    await serving.wait_events(md, "RolloutSucceeded")

    expected = {
        (types.RUN_BLESSED, "iris-00001"),
        (types.CHAMPION_CHANGED, "iris"),
        (types.ROLLOUT_SUCCEEDED, "iris"),
        (types.TRIGGER_DRIFT, "iris-00002"),
        (types.RUN_FAILED, "iris-00002"),
    }

    def received(sink: Sink) -> set[tuple[str, str | None]]:
        return {(e.get_type(), e.get_subject()) for e in sink.events}

    await wait_for(lambda: expected <= received(sinks.good), what=f"notifications {expected}")
    # All of that happened while the slow sink held its first request unanswered.
    assert sinks.slow.requests == 1 and sinks.slow.events == []

    # Nothing is notified twice. (The failed drift run leaves the drift in place: the
    # trigger may fire again, for the next run.)
    pairs = [(e.get_type(), e.get_subject()) for e in sinks.good.events]
    assert len(pairs) == len(set(pairs)), pairs
    assert {t for t, _ in pairs} == {t for t, _ in expected}, pairs
    by_type = {e.get_type(): e for e in reversed(sinks.good.events)}  # the first of each
    blessed = by_type[types.RUN_BLESSED]
    assert blessed.get_source() == f"/apis/perennial.dev/v1alpha1/namespaces/{NS}/trainingruns"
    assert blessed.get_data() == {
        **blessed.get_data(),  # type: ignore[dict-item]
        "kind": "TrainingRun",
        "namespace": NS,
        "name": "iris-00001",
        "pipeline": "iris",
        "verdict": "Blessed",
        "reason": "ModelBlessed",
    }
    champion = by_type[types.CHAMPION_CHANGED].get_data()
    assert isinstance(champion, dict) and champion["champion"] == "iris-00001"
    rollout = by_type[types.ROLLOUT_SUCCEEDED].get_data()
    assert isinstance(rollout, dict) and rollout["run"] == "iris-00001"
    drift = by_type[types.TRIGGER_DRIFT].get_data()
    assert isinstance(drift, dict) and "drift score" in drift["trigger"]["reason"]
    failure = by_type[types.RUN_FAILED].get_data()
    assert isinstance(failure, dict) and failure["eventType"] == "Warning"

    down = notifications.sink_label(sinks.down)
    assert (
        metrics.REGISTRY.get_sample_value(
            "perennial_notifications_total", {"sink": down, "result": "failed"}
        )
        or 0
    ) >= len(expected)

    # Released, the slow sink gets everything, in the same order.
    sent = [e.get_id() for e in sinks.good.events]
    assert sinks.slow.hold is not None
    sinks.slow.hold.set()
    await wait_for(lambda: len(sinks.slow.events) >= len(sent), what="the slow sink catches up")
    assert [e.get_id() for e in sinks.slow.events][: len(sent)] == sent
