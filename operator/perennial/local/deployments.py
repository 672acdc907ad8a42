"""The local runner's side of the deployment reconciler
(:mod:`perennial.reconcile.deployments`): model server processes
(:mod:`perennial.local.serving`, one per track) behind the deployment's stable endpoint
(:mod:`perennial.local.proxy`, which splits a canary's traffic by the step's weight), the
objects in the state store, events in the event log. The servers get the spec's
``driftWindow`` and ``feedbackWindow``; the monitoring scrape reads the stable endpoint
every ``scrapeIntervalSeconds`` of the runner's clock.
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_PIPELINE, TRAINING_RUN
from perennial.api.deployment import ModelDeploymentSpec
from perennial.core import rollout
from perennial.core.analysis import SnapshotError, analysis_sample, parse_snapshot
from perennial.core.deployment_status import StatusUpdate
from perennial.core.model_source import Notice
from perennial.core.rollout import AnalysisSample, RolloutState, Strategy
from perennial.k8s.serving import monitoring_path
from perennial.local import tracking
from perennial.local.context import Context
from perennial.local.proxy import StableEndpoint
from perennial.local.serving import CANARY, STABLE, LocalServing
from perennial.local.store import read_json, write_json
from perennial.reconcile import deployments
from perennial.reconcile.deployments import Scrape, Serving, next_scrape
from perennial_runtime.contract import MonitoringSnapshot

log = logging.getLogger("perennial.local.deployments")

Body = dict[str, Any]
# One server per track locally (see perennial.local.serving): the rollout core plans for
# one replica, and the endpoint splits a canary's traffic by the step's weight.
LOCAL_REPLICAS = 1
SCRAPE_TIMEOUT_SECONDS = 5.0
ENDPOINT_FILE = "endpoint.json"


# --- the endpoint and the servers of a deployment ----------------------------------------


def serving_of(
    ctx: Context, namespace: str, name: str, spec: ModelDeploymentSpec, port: int
) -> LocalServing:
    """The deployment's servers and stable endpoint (created on first use; the endpoint
    keeps its port across restarts of the runner when it can)."""
    key = (namespace, name)
    serving = ctx.servings.get(key)
    if serving is not None:
        # An edited monitoring spec applies to the servers started from now on (in a
        # cluster the changed Pod template rolls the Pods).
        serving.drift_window = spec.monitoring.drift_window
        serving.feedback_window = spec.monitoring.feedback_window
        return serving
    folder = ctx.store.serving_dir(namespace, name)
    recorded = read_json(folder / ENDPOINT_FILE)
    wanted = int(recorded["port"]) if isinstance(recorded, dict) and recorded.get("port") else port
    try:
        endpoint = StableEndpoint(port=wanted).start()
    except OSError as exc:
        if not wanted:
            raise
        log.warning("port %d for %s/%s is taken (%s); using another", wanted, namespace, name, exc)
        endpoint = StableEndpoint(port=0).start()
    write_json(folder / ENDPOINT_FILE, {"port": endpoint.port, "url": endpoint.url})
    serving = LocalServing(
        ctx.store,
        endpoint,
        namespace=namespace,
        name=name,
        drift_window=spec.monitoring.drift_window,
        feedback_window=spec.monitoring.feedback_window,
        env=ctx.server_env,
    )
    ctx.endpoints[key] = endpoint
    ctx.servings[key] = serving
    return serving


def _get_json(url: str, timeout: float) -> Any:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise SnapshotError(f"GET {url} answered {response.status}: {raw[:200]!r}")
    return json.loads(raw)


def fetch_snapshot(url: str) -> MonitoringSnapshot:
    try:
        return parse_snapshot(_get_json(url, SCRAPE_TIMEOUT_SECONDS))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SnapshotError(f"cannot read {url}: {exc}") from exc


def _snapshots(serving: LocalServing, track: str, name: str) -> list[MonitoringSnapshot]:
    found = []
    for port in serving.track_ports(track):
        try:
            found.append(fetch_snapshot(f"http://127.0.0.1:{port}{monitoring_path(name)}"))
        except SnapshotError as exc:
            log.warning("canary analysis of %s: %s", name, exc)
    return found


def canary_weight(state: RolloutState | None, strategy: Strategy) -> int:
    """The share of traffic the canary track gets in ``state`` (0: no canary step)."""
    if state is None or state.strategy != rollout.CANARY or state.promoted:
        return 0
    return strategy.step(state.step).weight


# --- the port ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalDeployments:
    """:class:`perennial.reconcile.deployments.DeploymentPort` on the local runner."""

    ctx: Context
    port: int = 0  # the stable endpoint's port when it is first started (0: any)

    def now(self) -> datetime:
        return self.ctx.clock.now()

    def deployment(self, namespace: str, name: str) -> Body | None:
        return self.ctx.store.get(MODEL_DEPLOYMENT, namespace, name)

    def pipeline(self, namespace: str, name: str) -> Body | None:
        return self.ctx.store.get(TRAINING_PIPELINE, namespace, name)

    def run(self, namespace: str, name: str) -> Body | None:
        return self.ctx.store.get(TRAINING_RUN, namespace, name)

    def hold(self, namespace: str, name: str) -> AbstractContextManager[None]:
        return nullcontext()  # one runner thread does everything

    def _serving(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> LocalServing:
        meta = md["metadata"]
        return serving_of(self.ctx, meta.get("namespace") or "", meta["name"], spec, self.port)

    def serving(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> Serving:
        serving = self._serving(md, spec)
        serving.sync()
        return Serving(
            serving.stable_workload(),
            serving.canary_workload(),
            serving.endpoint.url,
            LOCAL_REPLICAS,
        )

    def analyse(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> AnalysisSample | None:
        serving, name = self._serving(md, spec), md["metadata"]["name"]
        return analysis_sample(_snapshots(serving, CANARY, name), _snapshots(serving, STABLE, name))

    def apply(
        self,
        md: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        update: StatusUpdate,
        strategy: Strategy,
    ) -> None:
        assert update.layout is not None
        serving = self._serving(md, spec)
        serving.apply(update.layout, canary_weight(update.rollout, strategy))
        serving.sync()

    def write_status(self, md: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        self.ctx.store.save({**md, "status": dict(status)})

    def event(self, md: Mapping[str, Any], notice: Notice) -> None:
        self.ctx.event(md, notice.reason, notice.message, notice.type)

    def move_champion_alias(self, md: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        meta = run["metadata"]
        folder = self.ctx.jobs.folder(meta.get("namespace") or "", meta["name"])
        if tracking.start_alias_move(run, folder) is not None:
            self.ctx.event(
                md,
                "TrackingAliasMoveStarted",
                f"moving MLflow alias champion back to {meta['name']}'s model version "
                f"(log: {folder / tracking.ALIAS_LOG})",
            )

    def scrape(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> Scrape:
        serving, name = self._serving(md, spec), md["metadata"]["name"]
        try:
            return Scrape(fetch_snapshot(serving.endpoint.url + monitoring_path(name)))
        except SnapshotError as exc:
            return Scrape(None, str(exc))

    def observed(
        self,
        md: Mapping[str, Any],
        update: StatusUpdate | None,
        snapshot: MonitoringSnapshot | None,
    ) -> None:
        """No metrics locally: the status and the event log say it."""


# --- entry points ------------------------------------------------------------------------


def reconcile_deployment(ctx: Context, namespace: str, name: str, *, port: int = 0) -> None:
    deployments.reconcile_deployment(LocalDeployments(ctx, port), namespace, name)


def scrape_due(md: Mapping[str, Any], spec: ModelDeploymentSpec, ctx: Context) -> bool:
    due = next_scrape(md.get("status") or {}, spec, ctx.clock.now())
    return due is not None and ctx.clock.now() >= due


def scrape_deployment(ctx: Context, namespace: str, name: str, *, force: bool = False) -> None:
    """Read the endpoint's monitoring snapshot into ``status.monitoring`` when due."""
    md = ctx.store.get(MODEL_DEPLOYMENT, namespace, name)
    if md is None or (namespace, name) not in ctx.servings:
        return
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError:
        return  # the reconcile reports it
    if force or scrape_due(md, spec, ctx):
        deployments.scrape_deployment(LocalDeployments(ctx), namespace, name)
