"""``perennial local``: the continuous-training loop on one machine, no cluster.

A development and evaluation tool ("try your pipeline before you commit it"); the operator
stays the production path. :class:`Runner` reads the TrainingPipeline and ModelDeployment
manifests a user would ``kubectl apply`` (again whenever a file changes: editing a file is
``kubectl apply``, and the ``perennial.dev/retrain`` annotation starts a run), keeps their
objects and status in a state directory, and on every :meth:`Runner.tick`:

1. scrapes each deployment's model server into ``status.monitoring`` (when due);
2. reconciles each pipeline: its active runs (trainer processes), then its triggers
   (schedule, new data, drift, decay, spec change, manual) -> new runs, champion, history;
3. reconciles each deployment: the champion is rolled out behind the deployment's stable
   endpoint (a reverse proxy on a fixed loopback port), or rolled back.

Every decision comes from :mod:`perennial.core`, the operator's own pure functions. The
clock is injected (tests and the demo run faster than the wall clock). Stop it and start
it again with the same ``--state-dir``: it carries on where it was (no run is started
twice, a trainer still running is waited for, the servers come back).
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_PIPELINE
from perennial.api.deployment import ModelDeployment
from perennial.api.pipeline import TrainingPipeline
from perennial.core.conditions import timestamp
from perennial.local import deployments, pipelines
from perennial.local.clock import Clock, SystemClock
from perennial.local.context import Context, Listener
from perennial.local.jobs import LocalJobs
from perennial.local.manifests import ManifestError, Manifests, load_manifests, manifest_files
from perennial.local.store import StateStore

log = logging.getLogger("perennial.local.runner")

DEFAULT_PORT = 8765
DEFAULT_STATE_DIR = Path(".local-state")
DEFAULT_INTERVAL = 2.0


def _meta_changes(existing: dict[str, Any], obj: TrainingPipeline | ModelDeployment) -> bool:
    meta = existing.setdefault("metadata", {})
    changed = False
    for key, value in (
        ("labels", dict(obj.metadata.labels)),
        ("annotations", dict(obj.metadata.annotations)),
    ):
        if (meta.get(key) or {}) != value:
            meta[key] = value
            changed = True
    return changed


class Runner:
    """The local control loop over one state directory."""

    def __init__(
        self,
        manifests: Sequence[Path],
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        clock: Clock | None = None,
        port: int = DEFAULT_PORT,
        listeners: Sequence[Listener] = (),
        server_env: Mapping[str, str] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in manifests]
        self.store = StateStore(Path(state_dir))
        self.clock = clock or SystemClock()
        self.base_port = port
        self.ctx = Context(
            store=self.store,
            clock=self.clock,
            jobs=LocalJobs(self.store, self.clock),
            listeners=list(listeners),
            server_env=dict(server_env or {}),
        )
        self.manifests = Manifests()
        self._mtimes: dict[Path, float] = {}
        self._manifest_error: str | None = None
        self._started = False
        self.ticks = 0

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Runner:
        """Lock the state directory and read the manifests (errors raise ManifestError)."""
        self.manifests = load_manifests(self.paths)  # fail fast on a bad manifest
        self._mtimes = self._current_mtimes()
        self.store.lock()
        self._started = True
        for note in self.manifests.skipped:
            log.info("skipped (not a Perennial object): %s", note)
        self._apply()
        return self

    def close(self) -> None:
        """Stop the servers, the endpoints and the trainers; release the state directory."""
        if not self._started:
            return
        for serving in self.ctx.servings.values():
            serving.shutdown()
        for endpoint in self.ctx.endpoints.values():
            endpoint.stop()
        self.ctx.servings.clear()
        self.ctx.endpoints.clear()
        self.ctx.jobs.shutdown()
        self.store.unlock()
        self._started = False

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- manifests -----------------------------------------------------------------------

    def _current_mtimes(self) -> dict[Path, float]:
        out: dict[Path, float] = {}
        try:
            files = manifest_files(self.paths)
        except ManifestError:
            return {}
        for path in files:
            try:
                out[path] = path.stat().st_mtime
            except OSError:
                continue
        return out

    def _reload_if_changed(self) -> None:
        mtimes = self._current_mtimes()
        if mtimes == self._mtimes:
            return
        self._mtimes = mtimes
        try:
            self.manifests = load_manifests(self.paths)
        except ManifestError as exc:
            if str(exc) != self._manifest_error:
                log.error("manifests not applied (the last good ones stay): %s", exc)
            self._manifest_error = str(exc)
            return
        self._manifest_error = None
        self._apply()

    def _apply(self) -> None:
        """Create or update the stored objects from the manifests (``kubectl apply``)."""
        now = timestamp(self.clock.now())
        for kind, table in (
            (TRAINING_PIPELINE, self.manifests.pipelines),
            (MODEL_DEPLOYMENT, self.manifests.deployments),
        ):
            for (namespace, name), obj in table.items():
                spec = obj.spec.to_dict()
                existing = self.store.get(kind, namespace, name)
                if existing is None:
                    body: dict[str, Any] = {
                        "apiVersion": obj.api_version,
                        "kind": kind,
                        "metadata": {
                            "name": name,
                            "namespace": namespace,
                            "uid": str(uuid.uuid4()),
                            "generation": 1,
                            "creationTimestamp": now,
                            "labels": dict(obj.metadata.labels),
                            "annotations": dict(obj.metadata.annotations),
                        },
                        "spec": spec,
                        "status": {},
                    }
                    self.store.save(body)
                    continue
                changed = _meta_changes(existing, obj)
                if existing.get("spec") != spec:
                    existing["spec"] = spec
                    meta = existing["metadata"]
                    meta["generation"] = int(meta.get("generation") or 1) + 1
                    changed = True
                if changed:
                    self.store.save(existing)

    # --- the loop ------------------------------------------------------------------------

    def port_for(self, namespace: str, name: str) -> int:
        """The stable endpoint's port: ``--port`` for the first deployment (by name), the
        next ports for the others; 0 picks free ports."""
        if not self.base_port:
            return 0
        keys = sorted(self.manifests.deployments)
        index = keys.index((namespace, name)) if (namespace, name) in keys else len(keys)
        return self.base_port + index

    def tick(self) -> None:
        """One pass of every controller."""
        if not self._started:
            raise RuntimeError("call start() first")
        self._reload_if_changed()
        self.ticks += 1
        for namespace, name in sorted(self.manifests.deployments):
            deployments.scrape_deployment(self.ctx, namespace, name)
        for namespace, name in sorted(self.manifests.pipelines):
            pipelines.reconcile_pipeline(self.ctx, namespace, name)
        for namespace, name in sorted(self.manifests.deployments):
            deployments.reconcile_deployment(
                self.ctx, namespace, name, port=self.port_for(namespace, name)
            )

    def run_forever(
        self,
        interval: float = DEFAULT_INTERVAL,
        stop: threading.Event | None = None,
        on_tick: Callable[[Runner], None] | None = None,
    ) -> None:
        """Tick every ``interval`` real seconds until ``stop`` is set or SIGTERM/SIGINT."""
        stop = stop or threading.Event()
        previous: dict[signal.Signals, Any] = {}

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, _stop)
        try:
            while not stop.is_set():
                self.tick()
                if on_tick is not None:
                    on_tick(self)
                stop.wait(interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # --- reading -------------------------------------------------------------------------

    def endpoint_url(self, name: str, namespace: str = "default") -> str | None:
        endpoint = self.ctx.endpoints.get((namespace, name))
        return endpoint.url if endpoint else None
