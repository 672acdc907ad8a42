"""Issue 17 in the local runner: a rollout is not judged on the replaced model's numbers.

With ``cooldownSeconds: 0`` the decay trigger used to start a second, identical run right
after the rollout of the run it had started: ``status.monitoring`` still held the replaced
server's live accuracy until the next scrape. Now every scrape names the run and sha256 the
server measured, a rollout drops the old numbers (the next tick scrapes the new server at
once), and the servers get the deployment's ``feedbackWindow``.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_PIPELINE, TRAINING_RUN
from perennial.local.clock import ManualClock
from perennial.local.runner import Runner

from .helpers import deadline, wait_for, write_manifests

DECAY = (
    "    performanceDecay: {deploymentRef: {name: bc}, threshold: 0.8, "
    "minFeedbackSamples: 50, cooldownSeconds: 0}"
)


def _post(url: str, path: str, body: Any) -> Any:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=deadline())
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, payload
    return payload


def _wrong_feedback(url: str, rows: int = 120, late: int = 0) -> tuple[list[str], list[int]]:
    """Rows predicted through the stable endpoint, then labels that contradict them all;
    the labels of the last ``late`` rows are returned, to be sent later."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data[: rows + late].tolist()
    answer = _post(url, "/predict", {"instances": data})
    wrong = [1 - int(p) for p in answer["predictions"]]
    _post(url, "/feedback", {"ids": answer["ids"][:rows], "targets": wrong[:rows]})
    return answer["ids"][rows:], wrong[rows:]


def _get(url: str, path: str) -> Any:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=deadline())
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        payload = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, payload
    return payload


@pytest.mark.slow
def test_no_duplicate_run_after_a_decay_retrain_is_rolled_out(
    tmp_path: Path, manifests_dir: Path
) -> None:
    manifest = write_manifests(
        manifests_dir, "bc", triggers=DECAY, monitoring=", feedbackWindow: 80"
    )
    clock = ManualClock()
    runner = Runner([manifest], tmp_path / "state", clock=clock, port=0).start()

    def md() -> dict[str, Any]:
        return runner.store.get(MODEL_DEPLOYMENT, "default", "bc") or {}

    def serving(run: str) -> bool:
        runner.tick()
        return ((md().get("status") or {}).get("currentModel") or {}).get("run") == run

    def run_of(name: str) -> dict[str, Any] | None:
        return runner.store.get(TRAINING_RUN, "default", name)

    try:
        wait_for("bc-00001 serving", lambda: serving("bc-00001"), step=0.3)
        url = runner.endpoint_url("bc")
        assert url is not None
        late_ids, late_targets = _wrong_feedback(url, late=40)
        clock.advance(10)  # the next scrape is due
        runner.tick()
        monitoring = md()["status"]["monitoring"]
        assert monitoring["run"] == "bc-00001"
        assert monitoring["feedbackSamples"] == 80  # the spec's feedbackWindow
        assert monitoring["liveAccuracy"] == 0.0
        first = run_of("bc-00002")
        assert first is not None and first["spec"]["trigger"]["type"] == "PerformanceDecay"

        # bc-00002 trains on the same data, scores as the champion did, is blessed and
        # rolled out; the runner keeps ticking on the same clock (no cool-down: 0 s).
        wait_for("bc-00002 serving", lambda: serving("bc-00002"), step=0.3)
        status = md()["status"]
        champion = runner.store.get(TRAINING_PIPELINE, "default", "bc")["status"]["champion"]
        assert champion["run"] == "bc-00002"
        assert "monitoring" not in status or status["monitoring"]["run"] == "bc-00002"

        def scraped_again() -> bool:
            runner.tick()
            return ((md().get("status") or {}).get("monitoring") or {}).get("run") == "bc-00002"

        wait_for("the new server scraped", scraped_again, step=0.2)
        for _ in range(3):
            runner.tick()
        monitoring = md()["status"]["monitoring"]
        assert monitoring["sha256"] == md()["status"]["currentModel"]["sha256"]
        assert monitoring["feedbackSamples"] == 0
        assert run_of("bc-00003") is None, run_of("bc-00003")["spec"]["trigger"]

        # Labels for bc-00001's last predictions arrive now, after the rollout, through the
        # endpoint (to bc-00002's server): they are bc-00001's, not bc-00002's decay.
        late = _post(url, "/feedback", {"ids": late_ids, "targets": late_targets})
        assert late["accepted"] == 40 and late["earlierModels"] == 40, late
        clock.advance(10)
        for _ in range(3):
            runner.tick()
        assert md()["status"]["monitoring"]["feedbackSamples"] == 0
        assert run_of("bc-00003") is None, run_of("bc-00003")["spec"]["trigger"]
        served = _get(url, "/v2/models/bc/monitoring")
        (earlier,) = served["earlierModels"]
        assert earlier["sha256Prefix"] != served["sha256"][:8]
        assert (earlier["feedbackSamples"], earlier["liveAccuracy"]) == (40, 0.0)
        pipeline = runner.store.get(TRAINING_PIPELINE, "default", "bc")["status"]
        assert pipeline["phase"] == "Idle", pipeline["message"]

        # The new model's own decay still retrains.
        _wrong_feedback(url)
        clock.advance(10)
        runner.tick()
        again = run_of("bc-00003")
        assert again is not None and again["spec"]["trigger"]["type"] == "PerformanceDecay"
    finally:
        runner.close()
