"""The operator's side of the deployment reconciler (:mod:`perennial.reconcile.deployments`).

Reads come from the watch-fed :class:`~perennial.k8s.cluster_state.ClusterState` (the
ModelDeployment, its source pipeline or pinned run, the serving Deployments and their
Pods: no request while nothing changes); the canary analysis and the
monitoring scrape read the model servers through
:func:`perennial.k8s.serving_client.get_resolver`. Writes: serving objects, the whole
status through the status subresource, events, metrics. Each deployment is reconciled under
its lock (in the per-operator :class:`DeploymentMemory`), so the handlers, the loop and the
watchers of :mod:`perennial.controllers.model_deployment` never interleave.

:func:`scrape_deployment` runs every ``spec.monitoring.scrapeIntervalSeconds`` of the
operator's clock; an unreachable server keeps the last numbers, sets ``reachable: false``
and ``MetricsAvailable=False``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from perennial.api.deployment import ModelDeploymentSpec
from perennial.controllers import clock
from perennial.controllers.keyed_locks import KeyedLocks
from perennial.controllers.tracking import start_alias_move
from perennial.core.analysis import analysis_sample
from perennial.core.deployment_status import StatusUpdate
from perennial.core.model_source import Notice
from perennial.core.naming import serving_name
from perennial.core.rollout import AnalysisSample, Strategy
from perennial.core.workload import workload_state
from perennial.k8s import client, metrics
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.events import report_event
from perennial.k8s.serving import CANARY, STABLE, endpoint, monitoring_path, workload_name
from perennial.k8s.serving_client import (
    ScrapeError,
    Workloads,
    apply_serving,
    fetch_snapshot,
    get_resolver,
    write_status,
)
from perennial.reconcile import deployments
from perennial.reconcile.deployments import Body, Scrape, Serving, next_scrape
from perennial_runtime.contract import MonitoringSnapshot

logger = logging.getLogger("perennial.controllers.deployment")

DEFAULT_TICK_SECONDS: Final = 5.0  # between two turns while a rollout is in progress
# Real seconds after which a reconcile ensures the Service and PDB again (a deleted one is
# recreated at the next reconcile after that; reconciles come from watch events).
RESYNC_SECONDS: Final = 60.0
SCRAPE_TIMEOUT_SECONDS: Final = 5.0


def rollout_tick_seconds(environ: Mapping[str, str]) -> float:
    """Real seconds between two turns of a deployment's loop while a rollout is in progress
    (``PERENNIAL_DEPLOYMENT_TICK_SECONDS``, 5 s by default); read once, at startup."""
    raw = environ.get("PERENNIAL_DEPLOYMENT_TICK_SECONDS")
    try:
        value = float(raw) if raw else DEFAULT_TICK_SECONDS
    except ValueError as exc:
        raise ValueError(
            f"PERENNIAL_DEPLOYMENT_TICK_SECONDS={raw!r} is not a number of seconds (e.g. 5)"
        ) from exc
    if value <= 0:
        raise ValueError(f"PERENNIAL_DEPLOYMENT_TICK_SECONDS={raw!r} must be positive")
    return value


# --- what the operator remembers ---------------------------------------------------------


@dataclass
class _Facts:
    """What the last reconcile learnt about one deployment (in memory only: a restarted
    operator starts without it and reconciles everything once)."""

    reconciled_at: float  # time.monotonic()
    rolling_out: bool
    children: tuple[str, int | None]  # (uid, generation) the Service/PDB were ensured for
    children_at: float
    scrape_after: datetime | None  # on the operator's clock; None: nothing to scrape


class DeploymentMemory:
    """What the operator learnt about each deployment, and one lock per deployment (kept in
    kopf's ``memo``: one per operator; a restarted operator starts without it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._facts: dict[tuple[str, str], _Facts] = {}
        self.locks = KeyedLocks()

    def get(self, namespace: str, name: str) -> _Facts | None:
        with self._lock:
            return self._facts.get((namespace, name))

    def put(self, namespace: str, name: str, facts: _Facts | None) -> None:
        with self._lock:
            if facts is None:
                self._facts.pop((namespace, name), None)
            else:
                self._facts[(namespace, name)] = facts


def _stale(moment: float | None) -> bool:
    return moment is None or time.monotonic() - moment >= RESYNC_SECONDS


# --- the port ----------------------------------------------------------------------------


class ClusterDeployments:
    """:class:`perennial.reconcile.deployments.DeploymentPort` on the cluster, for one
    reconcile (it keeps the workloads it read for the analysis and the apply)."""

    def __init__(
        self, state: ClusterState, memory: DeploymentMemory, *, ensure_children: bool = True
    ) -> None:
        self.state = state
        self.memory = memory
        self.ensure_children = ensure_children
        self._workloads: Workloads | None = None

    def now(self) -> datetime:
        return clock.now()

    def deployment(self, namespace: str, name: str) -> Body | None:
        return self.state.deployment(namespace, name)

    def pipeline(self, namespace: str, name: str) -> Body | None:
        return self.state.pipeline(namespace, name)

    def run(self, namespace: str, name: str) -> Body | None:
        return self.state.run(namespace, name)

    def hold(self, namespace: str, name: str) -> Any:
        return self.memory.locks.hold(namespace, name)

    def _read(self, md: Mapping[str, Any]) -> Workloads:
        """The serving Deployments and their Pods, from the watches (no request)."""
        if self._workloads is None:
            meta = md["metadata"]
            namespace, name = meta.get("namespace") or "", meta["name"]
            self._workloads = Workloads(
                self.state.serving_deployment(namespace, workload_name(name, STABLE)),
                self.state.serving_deployment(namespace, workload_name(name, CANARY)),
                self.state.serving_pods(namespace, name),
            )
        return self._workloads

    def serving(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> Serving:
        workloads = self._read(md)
        stable = workload_state(workloads.stable, workloads.track_pods(STABLE))
        canary = (
            workload_state(workloads.canary, workloads.track_pods(CANARY))
            if workloads.canary is not None
            else None
        )
        meta = md["metadata"]
        url = endpoint(meta["name"], meta.get("namespace") or "", spec.port)
        return Serving(stable, canary, url, spec.replicas)

    def analyse(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> AnalysisSample | None:
        workloads = self._read(md)
        meta = md["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]

        def snapshots(track: str) -> list[MonitoringSnapshot]:
            found = []
            pods = workloads.track_pods(track)
            for url in get_resolver().pod_urls(namespace, name, track, pods, spec.port):
                try:
                    found.append(
                        fetch_snapshot(url + monitoring_path(name), timeout=SCRAPE_TIMEOUT_SECONDS)
                    )
                except ScrapeError as exc:
                    logger.warning("canary analysis of %s/%s: %s", namespace, name, exc)
            return found

        return analysis_sample(snapshots(CANARY), snapshots(STABLE))

    def apply(
        self,
        md: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        update: StatusUpdate,
        strategy: Strategy,
    ) -> None:
        assert update.layout is not None
        written = apply_serving(
            md, spec, update.layout, self._read(md), ensure_service=self.ensure_children
        )
        for deployment in written:
            self.state.remember(client.DEPLOYMENTS, deployment)

    def write_status(self, md: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        meta = md["metadata"]
        written = write_status(meta.get("namespace") or "", meta["name"], status)
        self.state.remember(client.MODEL_DEPLOYMENTS_RESOURCE, written)

    def event(self, md: Mapping[str, Any], notice: Notice) -> None:
        report_event(md, notice.reason, notice.message, notice.type)

    def move_champion_alias(self, md: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        start_alias_move(self.state, md, run)

    def scrape(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> Scrape:
        meta = md["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        url = get_resolver().service_url(namespace, serving_name(name), spec.port)
        try:
            snapshot = fetch_snapshot(url + monitoring_path(name), timeout=SCRAPE_TIMEOUT_SECONDS)
        except ScrapeError as exc:
            return Scrape(None, str(exc))
        return Scrape(snapshot)

    def observed(
        self,
        md: Mapping[str, Any],
        update: StatusUpdate | None,
        snapshot: MonitoringSnapshot | None,
    ) -> None:
        meta = md["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        if update is not None and update.rollout_result is not None:
            metrics.ROLLOUTS.labels(namespace, name, update.rollout_result).inc()
        if update is not None and update.rollback_reason is not None:
            metrics.ROLLBACKS.labels(namespace, name, update.rollback_reason).inc()
        if snapshot is not None and snapshot.max_drift_score is not None:
            metrics.DEPLOYMENT_DRIFT_SCORE.labels(namespace, name).set(snapshot.max_drift_score)
        if snapshot is not None and snapshot.live_accuracy is not None:
            metrics.DEPLOYMENT_LIVE_ACCURACY.labels(namespace, name).set(snapshot.live_accuracy)


# --- entry points ------------------------------------------------------------------------


def reconcile_deployment(
    state: ClusterState, memory: DeploymentMemory, namespace: str, name: str
) -> None:
    """Bring the deployment one step forward (idempotent)."""
    with memory.locks.hold(namespace, name):
        md = state.deployment(namespace, name)
        if md is None or md["metadata"].get("deletionTimestamp"):
            memory.locks.forget(namespace, name)
            memory.put(namespace, name, None)
            return
        meta = md["metadata"]
        known = memory.get(namespace, name)
        children = (str(meta.get("uid") or ""), meta.get("generation"))
        ensure = known is None or known.children != children or _stale(known.children_at)
        port = ClusterDeployments(state, memory, ensure_children=ensure)
        done = deployments.reconcile_deployment(port, namespace, name)
        if done is None:
            memory.put(namespace, name, None)
            return
        spec, update = done
        moment = time.monotonic()
        memory.put(
            namespace,
            name,
            _Facts(
                reconciled_at=moment,
                rolling_out=update.rollout is not None,
                children=children,
                children_at=moment if ensure or known is None else known.children_at,
                scrape_after=next_scrape(update.status, spec, clock.now()),
            ),
        )


def scrape_deployment(
    state: ClusterState, memory: DeploymentMemory, namespace: str, name: str
) -> None:
    """Read the server's monitoring snapshot through the Service into status.monitoring
    (when monitoring is on and a model serves)."""
    after = deployments.scrape_deployment(ClusterDeployments(state, memory), namespace, name)
    known = memory.get(namespace, name)
    if after is not None and known is not None:
        memory.put(namespace, name, replace(known, scrape_after=after))


def loop_turn(
    state: ClusterState, memory: DeploymentMemory, namespace: str, name: str, *, tick: float
) -> float | None:
    """One turn of a deployment's loop: reconcile while a rollout is in progress (deadlines,
    pauses, analysis) or when nothing is known of it yet; scrape the server when due. The
    real seconds until the next turn (None: until a watch event or the clock wakes it).
    An idle turn sends no request at all."""
    known = memory.get(namespace, name)
    if known is None or known.rolling_out:
        reconcile_deployment(state, memory, namespace, name)
        known = memory.get(namespace, name)
    if known is not None and known.scrape_after is not None and clock.now() >= known.scrape_after:
        scrape_deployment(state, memory, namespace, name)
        known = memory.get(namespace, name)
    if known is None:
        return None
    waits = []
    if known.rolling_out:
        waits.append(tick)
    if known.scrape_after is not None:
        waits.append(clock.seconds_until(known.scrape_after))
    return min(waits) if waits else None
