"""Serving "Deployments" as local processes behind the stable endpoint.

The local stand-in for the two serving Deployments of a ModelDeployment (tracks ``stable``
and ``canary``), their Pods and the Service in front of them. The runner applies the
core's :class:`~perennial.core.rollout.Layout` (which model each track runs); :meth:`sync`
makes it so:

- a track whose model changes gets a new ``perennial-runtime serve`` process on a free
  loopback port, next to the old one (``maxUnavailable: 0``);
- the new server gets traffic only once it is ready (``/v2/health/ready``: digest
  verified, model loaded, its own smoke test passed) **and** the runner's smoke test
  through HTTP passed (the sample rows stored with the model, sent to ``/predict``, come
  back with the recorded predictions);
- then the endpoint switches to it, and the old server is stopped once the requests it
  already had are answered: no request is dropped;
- a server that refuses its model (its readiness says so, for good) or fails the smoke
  test is stopped and reported like a crash-looping Pod, with the reason as its message:
  it never receives traffic, and the rollout core rolls back;
- a server that dies is restarted with a back-off, like a container (restartCount).

Local simplification: one server per track whatever ``spec.replicas`` says; the canary's
share of traffic is the step's weight, applied by the endpoint.

:meth:`stable_workload` / :meth:`canary_workload` report the tracks as the API server
reports a Deployment and its Pods, read by the same :func:`perennial.core.workload.
workload_state` as in a cluster.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perennial.core import workload as workloads
from perennial.core.deployment_status import ref_from_wire, revision_to_wire
from perennial.core.rollout import Layout, ModelRef, WorkloadState
from perennial.core.workload import MODEL_SHA256_ANNOTATION, RUN_LABEL
from perennial.local import processes
from perennial.local.proxy import Backend, StableEndpoint
from perennial.local.store import StateStore, read_json, write_json

log = logging.getLogger("perennial.local.serving")

STABLE = "stable"
CANARY = "canary"
STATE_FILE = "workloads.json"
PROBE_TIMEOUT = 1.0
SMOKE_TIMEOUT = 10.0
DRAIN_GRACE_SECONDS = 1.0  # real seconds an old server stays reachable after the switch
RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0)
SERVER_MIN_DRIFT_WINDOW = 100
# The deployment's feedback key (signs prediction ids, so every server of the deployment,
# the next model's and a restarted one's included, scores feedback for any of them):
# created once in the deployment's folder, unless the environment names a key already.
FEEDBACK_KEY_FILE = "feedback.key"
FEEDBACK_KEY_ENVS = ("PERENNIAL_FEEDBACK_KEY", "PERENNIAL_FEEDBACK_KEY_FILE")

STARTING = "Starting"
READY = "Ready"
REFUSED = "Refused"  # final: the model will never serve (digest, trust policy, smoke test)
CRASHED = "Crashed"  # the process exited; restarted after a back-off
NOT_YET = "not ready yet"  # a smoke test that could not run yet (tried again next turn)


@dataclass
class Server:
    key: str
    track: str
    model: ModelRef
    port: int
    pid: int | None = None
    state: str = STARTING
    reason: str | None = None
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)  # real time of the last start
    routed: bool = False  # has ever received traffic
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def backend(self) -> Backend:
        return Backend(key=self.key, host="127.0.0.1", port=self.port, run=self.model.run)

    @property
    def marker(self) -> str:
        return f"--port {self.port} --host 127.0.0.1"

    def to_wire(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "track": self.track,
            "model": revision_to_wire(self.model, 1, None),
            "port": self.port,
            "pid": self.pid,
            "state": self.state,
            "reason": self.reason,
            "restarts": self.restarts,
        }


@dataclass
class TrackState:
    model: ModelRef | None = None


@dataclass
class Draining:
    server: Server
    since: float


class LocalServing:
    """The serving processes of one ModelDeployment."""

    def __init__(
        self,
        store: StateStore,
        endpoint: StableEndpoint,
        *,
        namespace: str,
        name: str,
        drift_window: int = 1000,
        feedback_window: int = 1000,
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.endpoint = endpoint
        self.namespace = namespace
        self.name = name
        self.drift_window = max(drift_window, SERVER_MIN_DRIFT_WINDOW)
        self.feedback_window = feedback_window
        self.log_level = log_level
        self.env = {**os.environ, **env} if env else None
        self.folder = store.serving_dir(namespace, name)
        self.tracks: dict[str, TrackState] = {STABLE: TrackState(), CANARY: TrackState()}
        self.servers: list[Server] = []
        self.draining: list[Draining] = []
        self.canary_weight = 0
        self._generation = 1
        self._serial = 0
        self._recover()

    # --- persistence ---------------------------------------------------------------------

    def _recover(self) -> None:
        """Load the tracks' models; stop the servers a previous runner left behind."""
        raw = read_json(self.folder / STATE_FILE)
        if not isinstance(raw, dict):
            return
        for track in (STABLE, CANARY):
            self.tracks[track].model = ref_from_wire(raw.get(track))
        self.canary_weight = int(raw.get("canaryWeight") or 0)
        self._generation = int(raw.get("generation") or 1)
        self._serial = int(raw.get("serial") or 0)
        for old in raw.get("servers") or []:
            pid, port = old.get("pid"), old.get("port")
            marker = f"--port {port} --host 127.0.0.1"
            if processes.alive(pid, marker):
                log.info("stopping server %s left by a previous runner (pid %s)", old["key"], pid)
                processes.terminate(pid, marker=marker)

    def _save(self) -> None:
        models = {track: self.tracks[track].model for track in (STABLE, CANARY)}
        payload = {
            **{t: revision_to_wire(m, 1, None) if m else None for t, m in models.items()},
            "canaryWeight": self.canary_weight,
            "generation": self._generation,
            "serial": self._serial,
            "servers": [s.to_wire() for s in self.servers]
            + [d.server.to_wire() for d in self.draining],
            "endpoint": self.endpoint.url,
        }
        write_json(self.folder / STATE_FILE, payload)

    # --- desired state -------------------------------------------------------------------

    def apply(self, layout: Layout, canary_weight: int) -> None:
        """What each track must run (``layout.stable`` None: leave the stable track)."""
        changed = False
        if layout.stable is not None and not layout.stable.same(self.tracks[STABLE].model):
            self.tracks[STABLE].model = layout.stable
            changed = True
        canary = layout.canary if layout.canary_replicas > 0 else None
        current = self.tracks[CANARY].model
        if (canary is None) != (current is None) or (
            canary is not None and not canary.same(current)
        ):
            self.tracks[CANARY].model = canary
            changed = True
        weight = canary_weight if canary is not None else 0
        if weight != self.canary_weight:
            self.canary_weight = weight
            changed = True
        if changed:
            self._generation += 1
            self._save()

    # --- the control loop ----------------------------------------------------------------

    def sync(self) -> None:
        """Converge the processes and the endpoint's routes on the tracks' models."""
        for server in self.servers:
            self._probe(server)
        for track in (STABLE, CANARY):
            self._converge(track)
        stable, canary = self._route()
        for server in list(self.servers):
            if server is stable or server is canary or self._wanted(server):
                continue
            self._retire(server)
        self._drain()
        self._save()

    def _wanted(self, server: Server) -> bool:
        """Whether ``server`` runs its track's model (a canary promoted to stable counts)."""
        wanted = self.tracks[server.track].model
        if server.track == CANARY and wanted is not None and wanted.same(self.tracks[STABLE].model):
            return False  # the stable track serves that model now
        return wanted is not None and server.model.same(wanted)

    def _converge(self, track: str) -> None:
        want = self.tracks[track].model
        if want is None:
            return
        if track == CANARY and want.same(self.tracks[STABLE].model):
            return  # a promotion: the stable track's server serves the canary's model
        current = [s for s in self.servers if s.track == track and s.model.same(want)]
        if not current:
            adopted = self._adopt(track, want)
            if adopted is None:
                self.servers.append(self._start(track, want))
            return
        for server in current:
            if server.state == CRASHED and self._backoff_over(server):
                self._restart(server)

    def _adopt(self, track: str, want: ModelRef) -> Server | None:
        """A promotion: the canary's ready server becomes the stable one (no restart)."""
        if track != STABLE:
            return None
        for server in self.servers:
            if server.track == CANARY and server.model.same(want) and server.state == READY:
                server.track = STABLE
                return server
        return None

    def _ready(self, track: str, model: ModelRef | None) -> Server | None:
        if model is None:
            return None
        for server in self.servers:
            if server.track == track and server.model.same(model) and server.state == READY:
                return server
        return None

    def _route(self) -> tuple[Server | None, Server | None]:
        """Point the endpoint at ready servers; returns (stable, canary) as routed."""
        stable_model = self.tracks[STABLE].model
        stable = self._ready(STABLE, stable_model)
        if stable is None:
            # Until the new model is ready, the server that had the traffic keeps it.
            previous, _, _ = self.endpoint.routes()
            stable = next(
                (
                    s
                    for s in self.servers
                    if previous is not None and s.key == previous.key and s.state == READY
                ),
                None,
            )
        canary_model = self.tracks[CANARY].model
        canary = None
        if canary_model is not None and not canary_model.same(stable_model):
            canary = self._ready(CANARY, canary_model)
        weight = self.canary_weight if canary is not None else 0
        self.endpoint.set_routes(
            stable.backend if stable else None, canary.backend if canary else None, weight
        )
        for server in (stable, canary):
            if server is not None:
                server.routed = True
        return stable, canary

    def _retire(self, server: Server) -> None:
        """Take a server out: drain it if it had traffic, else stop it now."""
        self.servers.remove(server)
        if server.routed and server.state == READY:
            self.draining.append(Draining(server, time.monotonic()))
        else:
            self._kill(server)

    def _drain(self) -> None:
        for item in list(self.draining):
            waited = time.monotonic() - item.since
            if waited >= DRAIN_GRACE_SECONDS and self.endpoint.inflight(item.server.key) == 0:
                self.endpoint.detach(item.server.key)
                self._kill(item.server)
                self.draining.remove(item)

    # --- processes -----------------------------------------------------------------------

    def _start(self, track: str, model: ModelRef) -> Server:
        self._serial += 1
        server = Server(
            key=f"{model.run}#{self._serial}",
            track=track,
            model=model,
            port=processes.free_port(),
        )
        self._spawn(server)
        log.info("started server %s for %s on port %d", server.key, model.run, server.port)
        return server

    def _spawn(self, server: Server) -> None:
        args = [
            *processes.RUNTIME,
            "serve",
            "--model-uri",
            server.model.model_uri,
            "--sha256",
            server.model.sha256,
            "--model-name",
            self.name,
            # One process per server: its monitoring (drift window, feedback ids) then sees
            # all of the server's traffic, as one worker per pod does in a cluster.
            "--workers",
            "1",
            "--drift-window",
            str(self.drift_window),
            "--feedback-window",
            str(self.feedback_window),
            "--log-level",
            self.log_level,
            "--port",
            str(server.port),
            "--host",
            "127.0.0.1",
        ]
        env = self.env if self.env is not None else os.environ
        if not any(env.get(name) for name in FEEDBACK_KEY_ENVS):
            args += ["--feedback-key-file", str(self._feedback_key_file())]
        server.popen = processes.spawn(args, self.log_path(server), env=self.env)
        server.pid = server.popen.pid
        server.state = STARTING
        server.reason = None
        server.started = time.monotonic()

    def _feedback_key_file(self) -> Path:
        path = self.folder / FEEDBACK_KEY_FILE
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        return path

    def log_path(self, server: Server) -> Path:
        return self.folder / f"{server.key.replace('#', '-')}.log"

    def _backoff_over(self, server: Server) -> bool:
        delays = RESTART_BACKOFF_SECONDS
        delay = delays[min(server.restarts, len(delays) - 1)]
        return time.monotonic() - server.started >= delay

    def _restart(self, server: Server) -> None:
        server.restarts += 1
        server.port = processes.free_port()
        self._spawn(server)

    def _kill(self, server: Server) -> None:
        processes.terminate(server.pid, marker=server.marker, popen=server.popen)
        server.popen = None

    def _probe(self, server: Server) -> None:
        if server.state in (REFUSED, CRASHED):
            return
        code = server.popen.poll() if server.popen is not None else None
        if code is not None or (server.popen is None and not processes.alive(server.pid)):
            server.state = CRASHED
            server.reason = f"the server exited with code {code}: {self._log_tail(server)}"
            server.started = time.monotonic()
            return
        if server.state == READY:
            return
        status, body = _get(server.port, "/v2/health/ready")
        if status == 200:
            problem = smoke_test(server.port, server.model)
            if problem is None:
                server.state = READY
                log.info("server %s ready; smoke test passed", server.key)
            elif not problem.startswith(NOT_YET):
                self._refuse(server, problem)
        elif status == 503 and isinstance(body, dict) and body.get("state") == "failed":
            self._refuse(server, str(body.get("error") or "the server refused the model"))

    def _refuse(self, server: Server, reason: str) -> None:
        server.state = REFUSED
        server.reason = reason
        log.warning("server %s refused: %s", server.key, reason)
        self._kill(server)

    def _log_tail(self, server: Server) -> str:
        try:
            lines = self.log_path(server).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " ".join(lines.strip().splitlines()[-3:])[-300:]

    def shutdown(self) -> None:
        """Stop every server (the endpoint stops with the runner)."""
        for server in self.servers + [d.server for d in self.draining]:
            self._kill(server)
        self.draining.clear()
        self._save()

    # --- what the API server would report ------------------------------------------------

    def workload(self, track: str) -> WorkloadState | None:
        """The track's Deployment and Pods, read by the core's ``workload_state``."""
        model = self.tracks[track].model
        if model is None:
            return None
        if track == CANARY and model.same(self.tracks[STABLE].model):
            mine = [s for s in self.servers if s.model.same(model) and s.track == STABLE]
            old: list[Server] = []
        else:
            mine = [s for s in self.servers if s.track == track and s.model.same(model)]
            # The previous model's server keeps the traffic until it is retired.
            old = [s for s in self.servers if s.track == track and not s.model.same(model)]
        ready = sum(1 for s in mine if s.state == READY)
        deployment = {
            "metadata": {"name": f"{self.name}-{track}", "generation": self._generation},
            "spec": {
                "replicas": 1,
                "template": {
                    "metadata": {
                        "labels": {RUN_LABEL: model.run},
                        "annotations": {MODEL_SHA256_ANNOTATION: model.sha256},
                    }
                },
            },
            "status": {
                "observedGeneration": self._generation,
                "replicas": len(mine) + len(old),
                "updatedReplicas": len(mine),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": 1 - min(ready, 1),
            },
        }
        return workloads.workload_state(deployment, [_pod(s) for s in mine])

    def stable_workload(self) -> WorkloadState:
        return self.workload(STABLE) or WorkloadState(
            exists=False, desired_replicas=0, generation=0, observed_generation=0
        )

    def canary_workload(self) -> WorkloadState | None:
        return self.workload(CANARY)

    def track_ports(self, track: str) -> list[int]:
        """Ports of the track's ready servers (for the canary analysis)."""
        model = self.tracks[track].model
        return [
            s.port
            for s in self.servers
            if s.track == track and s.state == READY and (model is None or s.model.same(model))
        ]


def _pod(server: Server) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "restartCount": server.restarts}
    if server.state == READY:
        container["state"] = {"running": {}}
        container["ready"] = True
    elif server.state == STARTING:
        container["state"] = {"running": {}}
        container["ready"] = False
    else:
        container["state"] = {
            "waiting": {"reason": "CrashLoopBackOff", "message": server.reason or ""}
        }
        container["lastState"] = {"terminated": {"message": server.reason or "", "exitCode": 1}}
    return {
        "metadata": {"name": server.key, "labels": {RUN_LABEL: server.model.run}},
        "status": {"containerStatuses": [container]},
    }


def _get(port: int, path: str) -> tuple[int | None, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException):
        return None, None
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, None


def _post(port: int, path: str, payload: Any) -> tuple[int | None, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SMOKE_TIMEOUT)
    try:
        conn.request(
            "POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc)
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw[:200]


def smoke_test(port: int, model: ModelRef) -> str | None:
    """Send the model's stored sample rows to ``/predict``; None if the answers match, a
    reason starting with :data:`NOT_YET` if the server could not answer yet."""
    from perennial_runtime import artifacts

    try:
        metadata = artifacts.read_metadata(model.model_uri.rsplit("/", 1)[0])
    except Exception as exc:
        return f"smoke test: cannot read the model's metadata.json: {exc}"
    sample = metadata.sample
    if not sample.instances:
        return "smoke test: metadata.json holds no sample rows"
    status, body = _post(port, "/predict", {"instances": sample.instances})
    if status is None or status == 503:
        return f"{NOT_YET}: /predict answered {status}: {body}"
    if status != 200 or not isinstance(body, dict):
        return f"smoke test: /predict answered {status}: {body}"
    got = body.get("predictions")
    return compare_predictions(got, sample.predictions)


def compare_predictions(got: Any, expected: Sequence[Any]) -> str | None:
    if not isinstance(got, list) or len(got) != len(expected):
        return f"smoke test: expected {len(expected)} predictions, got {got!r:.200}"
    bad = []
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if isinstance(e, float) or isinstance(g, float):
            try:
                if abs(float(g) - float(e)) <= 1e-6 * max(1.0, abs(float(e))):
                    continue
            except (TypeError, ValueError):
                pass
        elif g == e:
            continue
        bad.append(i)
    if bad:
        i = bad[0]
        return (
            f"smoke test failed: {len(bad)} of {len(expected)} sample rows differ from the "
            f"predictions recorded at training (row {i}: got {got[i]!r}, expected {expected[i]!r})"
        )
    return None
