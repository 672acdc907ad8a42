"""Drive ``perennial local`` through a drifting stream, exactly as a user would.

One runner process (``python -m perennial local``) per stream serves every configuration
(one pipeline and deployment each, all reading the same data file). For each window
``i = 1 ..``:

1. its rows are sent as predictions to every deployment's stable endpoint (the answers are
   what the users were served: they are scored against the true labels here);
2. the ground truth of window ``i - delay`` goes back through ``/feedback`` by prediction
   id (pinned with the endpoint's ``x-perennial-backend`` header to the server that made
   the predictions; since signed ids, labels of a server that is gone are scored by the
   serving one into the earlier model's window, so few come back as unknown ids);
3. the data file is replaced by the newest labelled window (``i - delay``);
4. time passes: one window is ``window_seconds`` of the runner's simulated clock
   (``--speed``), then the driver waits until every pipeline and deployment has settled
   (no run in progress, no rollout in progress, the champion serving).

The state is read from the runner's state directory (the objects as ``kubectl get``
would show them). Every wait is a wait for a condition, bounded by ``timeout``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bench.ct import manifests
from bench.ct.configs import Config
from bench.ct.streams import DriftingStream, write_csv

BACKEND_HEADER = "x-perennial-backend"
FINISHED = frozenset({"Succeeded", "Rejected", "Failed"})


class DriverError(RuntimeError):
    """The runner did not do what was expected in time; the message says what."""


@dataclass(frozen=True)
class Settings:
    windows: int = 8
    rows: int = 1000
    trees: int = 60
    seed: int = 7
    speed: float = 300.0  # simulated seconds per real second
    window_seconds: float = 1800.0  # simulated seconds per window
    interval: float = 0.1  # real seconds between two passes of the runner
    batch_rows: int = 500
    timeout: float = 600.0  # real seconds any one wait may take
    steady: float = 1.0  # real seconds the runner must stay settled (10 of its passes)


@dataclass
class WindowRecord:
    config: str
    window: int
    rows: int = 0
    correct: int = 0
    runs: dict[str, int] = field(default_factory=dict)  # the model that answered -> rows
    feedback_accepted: int = 0
    feedback_unknown: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows if self.rows else float("nan")

    @property
    def served_by(self) -> str:
        return max(self.runs, key=lambda r: self.runs[r]) if self.runs else ""


@dataclass
class RunRecord:
    config: str
    name: str
    trigger: str
    phase: str
    data_window: int  # the labelled window in the data file when the run was created
    step: int  # the driver's window when the run was created


@dataclass
class StreamResult:
    stream: str
    description: str
    windows: int
    rows: int
    label_delay: int
    changes: tuple[int, ...]
    settings: Settings
    configs: list[str]
    records: list[WindowRecord] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    step_started: dict[int, float] = field(default_factory=dict)  # real s since start
    serving_since: dict[tuple[str, str], float] = field(default_factory=dict)
    wall_seconds: float = 0.0


class Endpoint:
    """A keep-alive HTTP client of one deployment's stable endpoint."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[Any, str | None]:
        body = json.dumps(payload).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(
                    "POST", path, body, {"Content-Type": "application/json", **(headers or {})}
                )
                response = self.conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if response.status != 200:
                raise DriverError(
                    f"{path} on port {self.port} answered {response.status}: {raw[:300]!r}"
                )
            return json.loads(raw), response.getheader(BACKEND_HEADER)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class StreamDriver:
    def __init__(
        self, stream: DriftingStream, configs: list[Config], settings: Settings, workdir: Path
    ) -> None:
        self.stream = stream
        self.configs = configs
        self.s = settings
        self.workdir = workdir
        self.data = workdir / "data" / "stream.csv"
        self.state = workdir / "state"
        self.manifest = workdir / "manifests" / "ct.yaml"
        self.names = {manifests.slug(c): c.name for c in configs}
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.result = StreamResult(
            stream=stream.spec.name,
            description=stream.spec.description,
            windows=stream.windows,
            rows=stream.rows,
            label_delay=stream.spec.label_delay,
            changes=stream.changes,
            settings=settings,
            configs=[c.name for c in configs],
        )
        self.endpoints: dict[str, Endpoint] = {}
        self.known_runs: set[str] = set()
        self.data_window = 0
        self._settled_since: float | None = None

    # --- the runner's state, as kubectl get would show it -----------------------------

    def _objects(self, plural: str) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.state / "objects" / plural / "default").glob("*.json")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):  # replaced while read: the next poll sees it
                continue
        return out

    def _by_name(self, plural: str) -> dict[str, dict[str, Any]]:
        return {
            o["metadata"]["name"]: o
            for o in self._objects(plural)
            if o["metadata"]["name"] in self.names
        }

    def now(self) -> float:
        return time.monotonic() - self.started

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise DriverError(
                f"perennial local exited with {self.process.returncode}:\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return "\n".join((self.workdir / "runner.log").read_text().splitlines()[-30:])
        except OSError:
            return ""

    def _observe(self) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        runs = self._objects("trainingruns")
        pipelines = self._by_name("trainingpipelines")
        deployments = self._by_name("modeldeployments")
        for name, md in deployments.items():
            current = ((md.get("status") or {}).get("currentModel") or {}).get("run")
            if current and (name, current) not in self.result.serving_since:
                self.result.serving_since[(self.names[name], current)] = self.now()
        return pipelines, deployments, runs

    def _steady(self) -> bool:
        """Settled, and still so on every look for ``steady`` seconds (the objects are
        separate files written one after another within a pass of the runner: one look
        can see a finished run before its pipeline names the new champion)."""
        if not self._settled():
            self._settled_since = None
            return False
        if self._settled_since is None:
            self._settled_since = time.monotonic()
        return time.monotonic() - self._settled_since >= self.s.steady

    def _settled(self) -> bool:
        pipelines, deployments, runs = self._observe()
        if len(pipelines) < len(self.names) or len(deployments) < len(self.names):
            return False
        for run in runs:
            owner = ((run.get("spec") or {}).get("pipelineRef") or {}).get("name")
            if owner in self.names and (run.get("status") or {}).get("phase") not in FINISHED:
                return False
        for name, pipeline in pipelines.items():
            status = deployments[name].get("status") or {}
            if status.get("rollout"):
                return False
            champion = ((pipeline.get("status") or {}).get("champion") or {}).get("run")
            current = (status.get("currentModel") or {}).get("run")
            last = (pipeline.get("status") or {}).get("lastRun") or {}
            if champion is None and last.get("phase") == "Failed":
                raise DriverError(f"the first run of {name} failed:\n{self._log_tail()}")
            if champion is None or not status.get("endpoint"):
                return False
            if current != champion and champion not in (status.get("rolledBackRuns") or []):
                return False
        return True

    def _wait(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + self.s.timeout
        while not condition():
            self._check_alive()
            if time.monotonic() > deadline:
                raise DriverError(
                    f"timed out after {self.s.timeout:.0f} s waiting for {what}\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _wait_window(self, i: int, until: float) -> None:
        self._settled_since = None
        self._wait(lambda: time.monotonic() >= until and self._steady(), f"window {i} to settle")

    def _collect_runs(self, step: int) -> None:
        for run in self._objects("trainingruns"):
            name = run["metadata"]["name"]
            owner = ((run.get("spec") or {}).get("pipelineRef") or {}).get("name")
            if owner not in self.names or name in self.known_runs:
                continue
            self.known_runs.add(name)
            trigger = ((run.get("spec") or {}).get("trigger") or {}).get("type", "")
            self.result.runs.append(
                RunRecord(self.names[owner], name, trigger, "", self.data_window, step)
            )

    def _final_phases(self) -> None:
        phases = {
            r["metadata"]["name"]: (r.get("status") or {}).get("phase") or ""
            for r in self._objects("trainingruns")
        }
        for record in self.result.runs:
            record.phase = phases.get(record.name, "")

    # --- the run -------------------------------------------------------------------------

    def start(self) -> None:
        write_csv(self.stream.window(0), self.data)
        manifests.write(
            self.manifest,
            self.configs,
            self.data,
            trees=self.s.trees,
            feedback_window=self.stream.rows,
            drift_window=min(self.stream.rows, 1000),
        )
        log = (self.workdir / "runner.log").open("wb")
        command = [
            sys.executable, "-m", "perennial", "local", str(self.manifest),
            "--state-dir", str(self.state), "--port", "0",
            "--interval", str(self.s.interval), "--speed", str(self.s.speed),
        ]  # fmt: skip
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        log.close()
        self._wait(self._steady, "the first model of every configuration to serve")
        for name, md in self._by_name("modeldeployments").items():
            self.endpoints[name] = Endpoint(md["status"]["endpoint"])
        self._collect_runs(0)

    def stop(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def run(self) -> StreamResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.start()
            pending: dict[int, dict[str, list[tuple[list[str], str | None, list[int]]]]] = {}
            for i in range(1, self.stream.windows):
                self.result.step_started[i] = self.now()
                window = self.stream.window(i)
                pending[i] = self._predict(i, window.x, window.y)
                labelled = i - self.stream.spec.label_delay
                if labelled >= 1:
                    self._feedback(i, pending.pop(labelled))
                    write_csv(self.stream.window(labelled), self.data)
                    self.data_window = labelled
                self._wait_window(i, time.monotonic() + self.s.window_seconds / self.s.speed)
                self._collect_runs(i)
                print(f"    {self.stream.spec.name}: window {i} at {self.now():.0f} s", flush=True)
            self._final_phases()
        finally:
            self.stop()
            self.result.wall_seconds = self.now()
        return self.result

    def _predict(
        self, i: int, x: Any, y: Any
    ) -> dict[str, list[tuple[list[str], str | None, list[int]]]]:
        sent: dict[str, list[tuple[list[str], str | None, list[int]]]] = {}
        for name, endpoint in self.endpoints.items():
            record = WindowRecord(self.names[name], i)
            batches = []
            for start in range(0, len(y), self.s.batch_rows):
                rows, truth = (
                    x[start : start + self.s.batch_rows],
                    y[start : start + self.s.batch_rows],
                )
                body, backend = endpoint.post("/predict", {"instances": rows.tolist()})
                predictions = np.asarray(body["predictions"])
                record.rows += len(truth)
                record.correct += int((predictions == truth).sum())
                run = str(body.get("run") or "")
                record.runs[run] = record.runs.get(run, 0) + len(truth)
                batches.append((list(body["ids"]), backend, truth.tolist()))
            self.result.records.append(record)
            sent[name] = batches
        return sent

    def _feedback(
        self, i: int, sent: dict[str, list[tuple[list[str], str | None, list[int]]]]
    ) -> None:
        for name, batches in sent.items():
            record = next(
                r
                for r in reversed(self.result.records)
                if r.config == self.names[name] and r.window == i
            )
            for ids, backend, truth in batches:
                pin = {BACKEND_HEADER: backend} if backend else None
                answer, _ = self.endpoints[name].post(
                    "/feedback", {"ids": ids, "targets": truth}, pin
                )
                record.feedback_accepted += int(answer.get("accepted", 0))
                record.feedback_unknown += int(answer.get("unknown", 0))
