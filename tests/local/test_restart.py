"""Stop the runner at the worst moments and start it again: it carries on, and no run is
ever started twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from perennial.local import processes

from .helpers import deadline, read_object, wait_for, write_manifests


def _start(manifest: Path, state: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perennial",
            "local",
            str(manifest),
            "--state-dir",
            str(state),
            "--port",
            "0",
            "--interval",
            "0.3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(state.parent / "runner.log").open("ab"),
    )


def _phase(state: Path, plural: str, name: str) -> Any:
    body = read_object(state, plural, name) or {}
    return (body.get("status") or {}).get("phase")


def _events(state: Path) -> list[dict[str, Any]]:
    path = state / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _workloads(state: Path) -> dict[str, Any]:
    path = state / "serving" / "default" / "bc" / "workloads.json"
    return json.loads(path.read_text())


def _predict(url: str) -> Any:
    request = urllib.request.Request(
        url + "/predict",
        data=json.dumps({"instances": [[0.0] * 30]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=deadline()) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_killed_runner_resumes_without_a_duplicate_run(tmp_path: Path, manifests_dir: Path) -> None:
    manifest = write_manifests(manifests_dir)
    state = tmp_path / "state"
    runner = _start(manifest, state)
    try:
        # 1. Killed (SIGKILL: no clean-up at all) while the first run trains.
        wait_for(
            "bc-00001 to train", lambda: _phase(state, "trainingruns", "bc-00001") == "Training"
        )
        job = json.loads((state / "jobs" / "default" / "bc-00001" / "job.json").read_text())
        runner.kill()
        runner.wait(deadline())
        assert processes.alive(job["pid"]), "the trainer outlives the runner (own session)"

        # 2. Started again: it waits for the same trainer, blesses the run, serves it.
        runner = _start(manifest, state)
        wait_for("md/bc to serve", lambda: _phase(state, "modeldeployments", "bc") == "Available")
        job = json.loads((state / "jobs" / "default" / "bc-00001" / "job.json").read_text())
        assert job["attempts"] == 1  # the trainer was adopted, not started again
        endpoint = read_object(state, "modeldeployments", "bc")["status"]["endpoint"]
        assert _predict(endpoint)["run"] == "bc-00001"
        old_server = _workloads(state)["servers"][0]

        # 3. Killed while serving: the restarted runner stops the orphaned server and
        # serves again on the same endpoint.
        runner.kill()
        runner.wait(deadline())
        assert processes.alive(old_server["pid"])
        runner = _start(manifest, state)
        wait_for(
            "a new server",
            lambda: any(
                s["key"] != old_server["key"] and s["state"] == "Ready"
                for s in _workloads(state)["servers"]
            ),
        )
        assert not processes.alive(old_server["pid"])
        assert read_object(state, "modeldeployments", "bc")["status"]["endpoint"] == endpoint
        assert _predict(endpoint)["run"] == "bc-00001"

        # 4. A clean stop (SIGTERM) stops every child process.
        servers = _workloads(state)["servers"]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(deadline()) == 0
        assert not any(processes.alive(s["pid"]) for s in servers)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(deadline())

    runs = sorted(p.name for p in (state / "objects" / "trainingruns" / "default").iterdir())
    assert runs == ["bc-00001.json"]
    created = [e["name"] for e in _events(state) if e["reason"] == "RunCreated"]
    assert created == ["bc", "bc-00001"]  # the pipeline's event and the run's
    pipeline = read_object(state, "trainingpipelines", "bc")["status"]
    assert pipeline["runSequence"] == 1
    assert pipeline["champion"]["run"] == "bc-00001"
    assert os.path.exists(state / "volumes" / "models" / "bc" / "bc-00001" / "model.skops")
