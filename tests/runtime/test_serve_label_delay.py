"""Delayed feedback is attributed to the model and the time that made the prediction.

Real ``perennial-runtime serve`` processes on 127.0.0.1 sharing a deployment's feedback
key: model A serves and predicts; it is replaced by model B (a new process); labels for
A's predictions that arrive at B go to A's window, not to B's live accuracy; B's own
labels go to B, ordered by when B predicted; a restarted B still scores B's ids. Ids
signed with another key, altered or truncated are never scored.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer

from perennial_runtime.contract import MonitoringSnapshot
from testsupport import deadline, wait_until

KEY = "0123456789abcdef" * 4  # the deployment's feedback key
OTHER_KEY = "fedcba9876543210" * 4  # another deployment's
WINDOW = 40


@pytest.fixture(scope="module")
def run_a(trained_run: Any) -> Any:
    return trained_run("breast_cancer", "LogisticRegression", {"max_iter": 1000})


@pytest.fixture(scope="module")
def run_b(trained_run: Any) -> Any:
    return trained_run("breast_cancer", "LogisticRegression", {"max_iter": 1000, "C": 0.01})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, run: Any, key: str | None) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERENNIAL_FEEDBACK")}
        if key is not None:
            env["PERENNIAL_FEEDBACK_KEY"] = key
        cmd = [sys.executable, "-m", "perennial_runtime", "serve", "--port", str(port)]
        cmd += ["--host", "127.0.0.1", "--model-uri", run.model_uri, "--sha256", run.sha256]
        cmd += ["--model-name", "cancer", "--workers", "1", "--feedback-window", str(WINDOW)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.client = httpx.Client(base_url=self.url, timeout=deadline())

    def wait_ready(self) -> Server:
        def ready() -> bool:
            assert self.proc.poll() is None, self.proc.communicate()[0]
            return self.client.get("/v2/health/ready").status_code == 200

        wait_until(ready, what=f"server {self.url} ready", ignoring=(httpx.TransportError,))
        return self

    def predict(self, rows: np.ndarray[Any, Any]) -> tuple[list[str], list[int]]:
        body = self.client.post("/predict", json={"instances": rows.tolist()}).json()
        return body["ids"], body["predictions"]

    def feedback(self, ids: list[str], targets: list[int]) -> dict[str, Any]:
        response = self.client.post("/feedback", json={"ids": ids, "targets": targets})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def snapshot(self) -> MonitoringSnapshot:
        return MonitoringSnapshot.model_validate(
            self.client.get("/v2/models/cancer/monitoring").json()
        )

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=deadline())
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def servers() -> Iterator[Any]:
    started: list[Server] = []

    def start(run: Any, key: str | None = KEY) -> Server:
        server = Server(run, key)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _wrong(predictions: list[int]) -> list[int]:
    return [1 - p for p in predictions]


def test_delayed_labels_go_to_the_model_and_time_that_predicted(
    run_a: Any, run_b: Any, servers: Any
) -> None:
    assert run_a.sha256 != run_b.sha256
    x = load_breast_cancer().data
    a = servers(run_a).wait_ready()
    ids_a, pred_a = a.predict(x[:100])
    # While A serves, a few labels arrive (right): they are A's live accuracy.
    assert a.feedback(ids_a[:10], pred_a[:10])["liveAccuracy"] == 1.0
    a.stop()

    # Rollout: B replaces A (a new process with the deployment's key).
    b = servers(run_b).wait_ready()
    early_ids, early_pred = b.predict(x[100:130])
    late_ids, late_pred = b.predict(x[130:160])

    # A's labels arrive late, at B, all wrong: A's window, not B's live accuracy.
    late_for_a = b.feedback(ids_a[10:], _wrong(pred_a[10:]))
    assert late_for_a["accepted"] == 90 and late_for_a["earlierModels"] == 90
    assert late_for_a["feedbackSamples"] == 0 and "liveAccuracy" not in late_for_a

    # B's labels: the later predictions' (right) arrive before the earlier ones' (wrong).
    assert b.feedback(late_ids, late_pred)["liveAccuracy"] == 1.0
    mixed = b.feedback(early_ids, _wrong(early_pred))
    # The window holds the 40 most recent predictions that have labels, by prediction
    # time: all 30 of the later request and the last 10 of the earlier one (by arrival it
    # would be the other way round: 0.25).
    assert mixed["accepted"] == 30 and mixed["feedbackSamples"] == WINDOW
    assert mixed["liveAccuracy"] == 0.75
    # A label for a prediction older than the whole window is not counted; a replay of
    # an id still in the window is a duplicate.
    again = b.feedback([early_ids[0], late_ids[0]], [early_pred[0], late_pred[0]])
    assert again["accepted"] == 0 and again["stale"] == 1 and again["duplicates"] == 1

    snapshot = b.snapshot()
    assert snapshot.sha256 == run_b.sha256
    assert (snapshot.feedback_samples, snapshot.live_accuracy) == (WINDOW, 0.75)
    assert len(snapshot.earlier_models) == 1
    earlier = snapshot.earlier_models[0]
    assert earlier.sha256_prefix == run_a.sha256[:8]
    # A's window: its 40 most recent labelled predictions, all wrong.
    assert (earlier.feedback_samples, earlier.live_accuracy, earlier.live_rmse) == (WINDOW, 0, None)
    assert earlier.oldest_prediction is not None and earlier.newest_prediction is not None
    assert earlier.oldest_prediction <= earlier.newest_prediction
    gauges = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(b.client.get("/metrics").text)
        for s in family.samples
    }
    assert gauges["perennial_live_accuracy", ()] == 0.75
    assert gauges["perennial_earlier_model_live_accuracy", (("sha256", run_a.sha256[:8]),)] == 0

    # After a restart of B, its earlier predictions' labels still count for B.
    more_ids, more_pred = b.predict(x[160:170])
    b.stop()
    restarted = servers(run_b).wait_ready()
    after = restarted.feedback(more_ids, more_pred)
    assert after["accepted"] == 10 and after["liveAccuracy"] == 1.0
    assert "earlierModels" not in after


def test_ids_that_fail_the_check_are_never_scored(run_a: Any, run_b: Any, servers: Any) -> None:
    x = load_breast_cancer().data[:5]
    other_deployment = servers(run_a, key=OTHER_KEY)
    no_key = servers(run_a, key=None)  # generates its own key
    ours = servers(run_b)
    for server in (other_deployment, no_key, ours):
        server.wait_ready()
    foreign, foreign_pred = other_deployment.predict(x)
    own_key_only, _ = no_key.predict(x)
    ids, pred = ours.predict(x)
    body, tag = ids[0].rsplit(".", 1)
    forged_tag = f"{body}.{'A' * len(tag)}"
    # The predicted class changed to inject a hit: the tag no longer matches.
    flipped = ids[1].replace(f".c{pred[1]}.", f".c{1 - pred[1]}.")
    unscorable = [*foreign, *own_key_only, forged_tag, flipped]
    response = ours.feedback(unscorable, [*foreign_pred, *foreign_pred, 1 - pred[0], 0])
    assert response["accepted"] == 0
    assert response["unknown"] == response["unverified"] == len(unscorable)
    assert "failed the authentication check" in response["hint"]
    assert ours.snapshot().feedback_samples == 0 and ours.snapshot().earlier_models == []

    truncated = ours.client.post("/feedback", json={"ids": [ids[0][:-3]], "targets": [pred[0]]})
    assert truncated.status_code == 400
    assert truncated.json()["error"].startswith("ids[0]: expects a prediction id")

    # The genuine ids still count once each.
    assert ours.feedback(ids, pred)["accepted"] == 5
