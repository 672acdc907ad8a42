"""Reconcile one ModelDeployment: source -> desired model -> rollout step -> serving
objects, status, events, metrics; and scrape its model server into status.monitoring.

:func:`reconcile_deployment` reads (the ModelDeployment, its source pipeline or pinned
run: from the watch-fed :class:`~perennial.k8s.cluster_state.ClusterState`; the serving
Deployments and their Pods, the canary's metrics when an analysis is due), decides with the
pure core (:mod:`perennial.core.model_source`, :mod:`perennial.core.rollout`,
:mod:`perennial.core.deployment_status`; time from :mod:`perennial.controllers.clock`) and
writes (serving objects, the whole status through the status subresource, events,
metrics). It holds the deployment's lock (in the per-operator :class:`DeploymentMemory`),
so the handlers, the loop and the watchers of :mod:`perennial.controllers.model_deployment`
never interleave; it is idempotent, so any of them may call it at any time.

:func:`scrape_deployment` reads ``/v2/models/{name}/monitoring`` through the Service
(:func:`perennial.k8s.serving_client.get_resolver` says where) every
``spec.monitoring.scrapeIntervalSeconds`` of the operator's clock; an unreachable server
keeps the last numbers, sets ``reachable: false`` and ``MetricsAvailable=False``. The
numbers name the run and sha256 the server measured; when another model becomes current
the status drops the old numbers (:func:`~perennial.core.deployment_status.next_status`),
so the next scrape is due at once.

An invalid spec (one that slipped past the CRD schema) marks the deployment ``Stalled``
with a message naming the field; nothing is raised, so there is no retry loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from perennial.api.constants import ROLLBACK_ANNOTATION
from perennial.api.deployment import ModelDeploymentSpec
from perennial.controllers import clock
from perennial.controllers.keyed_locks import KeyedLocks
from perennial.core import conditions as cond
from perennial.core.analysis import analysis_sample, monitoring_status, scrape_message
from perennial.core.deployment_status import (
    METRICS_AVAILABLE,
    next_status,
    parse_time,
    read_state,
    with_monitoring,
)
from perennial.core.model_source import (
    Notice,
    SourceModel,
    champion_source,
    desired_model,
    pinned_source,
)
from perennial.core.naming import serving_name
from perennial.core.rollout import AnalysisSample, analysis_due, plan
from perennial.core.strategy import strategy_of
from perennial.core.workload import workload_state
from perennial.k8s import client, metrics
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.events import post_event
from perennial.k8s.serving import (
    CANARY,
    STABLE,
    endpoint,
    monitoring_path,
)
from perennial.k8s.serving_client import (
    ScrapeError,
    Workloads,
    apply_serving,
    fetch_snapshot,
    get_resolver,
    read_workloads,
    write_status,
)

logger = logging.getLogger("perennial.controllers.deployment")

DEFAULT_TICK_SECONDS: Final = 5.0  # between two turns while a rollout is in progress
# Real seconds after which a reconcile ensures the Service and PDB again (a deleted one is
# recreated at the next reconcile after that; reconciles come from watch events).
RESYNC_SECONDS: Final = 60.0
SCRAPE_TIMEOUT_SECONDS: Final = 5.0


# --- the loop's tick ---------------------------------------------------------------------


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


# --- reading -----------------------------------------------------------------------------


def read_source(state: ClusterState, namespace: str, spec: ModelDeploymentSpec) -> SourceModel:
    """The model the source offers: the pipeline's champion or the pinned run's model."""
    if spec.source.pipeline_ref is not None:
        name = spec.source.pipeline_ref.name
        pipeline = state.pipeline(namespace, name)
        champion = ((pipeline or {}).get("status") or {}).get("champion") or {}
        run = state.run(namespace, champion["run"]) if champion.get("run") else None
        return champion_source(name, pipeline, run)
    assert spec.source.run_ref is not None
    name = spec.source.run_ref.name
    return pinned_source(name, state.run(namespace, name))


def _snapshots(namespace: str, name: str, port: int, track: str, workloads: Workloads) -> list[Any]:
    resolver = get_resolver()
    found = []
    for url in resolver.pod_urls(namespace, name, track, workloads.track_pods(track), port):
        try:
            found.append(
                fetch_snapshot(url + monitoring_path(name), timeout=SCRAPE_TIMEOUT_SECONDS)
            )
        except ScrapeError as exc:
            logger.warning("canary analysis of %s/%s: %s", namespace, name, exc)
    return found


def analyse_canary(
    namespace: str, name: str, spec: ModelDeploymentSpec, workloads: Workloads
) -> AnalysisSample | None:
    """The candidate Pods' metrics, compared with the stable Pods' predictions."""
    return analysis_sample(
        _snapshots(namespace, name, spec.port, CANARY, workloads),
        _snapshots(namespace, name, spec.port, STABLE, workloads),
    )


# --- writing -----------------------------------------------------------------------------


def _event(md: Mapping[str, Any], notice: Notice) -> None:
    try:
        post_event(
            md, notice.reason, notice.message, "Warning" if notice.type == "Warning" else "Normal"
        )
    except Exception as exc:  # outside an operator (CLI, tests): the event is a report only
        logger.debug("event %s not posted: %s", notice.reason, exc)


def _write_if_changed(
    state: ClusterState, md: Mapping[str, Any], status: Mapping[str, Any]
) -> bool:
    if dict(md.get("status") or {}) == dict(status):
        return False
    meta = md["metadata"]
    state.remember(
        client.MODEL_DEPLOYMENTS_RESOURCE,
        write_status(meta.get("namespace") or "", meta["name"], status),
    )
    return True


def _invalid_spec(state: ClusterState, md: Mapping[str, Any], exc: ValidationError) -> None:
    problems = "; ".join(
        f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    message = f"invalid spec: {problems}"
    old = dict(md.get("status") or {})
    generation = md["metadata"].get("generation")
    status = dict(old)
    status["conditions"] = cond.kstatus(
        old.get("conditions"),
        state="stalled",
        reason="InvalidSpec",
        message=message,
        now=clock.now(),
        generation=generation,
    )
    status.update(phase="Degraded", message=message)
    if generation is not None:
        status["observedGeneration"] = generation
    ready = cond.get(old.get("conditions"), cond.READY) or {}
    if _write_if_changed(state, md, status) and ready.get("reason") != "InvalidSpec":
        _event(md, Notice("Warning", "InvalidSpec", message))


# --- reconcile ---------------------------------------------------------------------------


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


def _next_scrape(status: Mapping[str, Any], spec: ModelDeploymentSpec) -> datetime | None:
    """When the server is next due for a scrape (None: monitoring off or nothing serves)."""
    if not spec.monitoring.enabled or not status.get("currentModel"):
        return None
    last = parse_time((status.get("monitoring") or {}).get("lastScrapeTime"))
    if last is None:
        return clock.now()
    return last + timedelta(seconds=spec.monitoring.scrape_interval_seconds)


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
        _reconcile(state, memory, md)


def _reconcile(cluster: ClusterState, memory: DeploymentMemory, md: dict[str, Any]) -> None:
    meta = md["metadata"]
    namespace, name = meta.get("namespace") or "", meta["name"]
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError as exc:
        _invalid_spec(cluster, md, exc)
        memory.put(namespace, name, None)
        return
    now = clock.now()
    known = memory.get(namespace, name)
    children = (str(meta.get("uid") or ""), meta.get("generation"))
    ensure_children = known is None or known.children != children or _stale(known.children_at)
    old = dict(md.get("status") or {})
    state = read_state(old)
    desired = desired_model(
        source=read_source(cluster, namespace, spec),
        rollback_to=spec.rollback_to,
        annotation=(meta.get("annotations") or {}).get(ROLLBACK_ANNOTATION),
        last_token=state.last_token,
        pin=state.pin,
        current=state.current,
        history=state.history,
        now=now,
    )
    strategy = strategy_of(spec)
    workloads = read_workloads(namespace, name)
    stable = workload_state(workloads.stable, workloads.track_pods(STABLE))
    canary = (
        workload_state(workloads.canary, workloads.track_pods(CANARY))
        if workloads.canary is not None
        else None
    )
    analysis = None
    if analysis_due(
        state.rollout, strategy=strategy, replicas=spec.replicas, canary=canary, now=now
    ):
        analysis = analyse_canary(namespace, name, spec, workloads)
    decision = plan(
        desired=desired.model,
        current=state.current.ref if state.current else None,
        rollout=state.rollout,
        strategy=strategy,
        replicas=spec.replicas,
        stable=stable,
        canary=canary,
        analysis=analysis,
        rolled_back=state.rolled_back,
        now=now,
        manual=desired.manual,
    )
    update = next_status(
        old=old,
        generation=meta.get("generation"),
        desired=desired,
        decision=decision,
        stable=stable,
        canary=canary,
        history_limit=spec.revision_history_limit,
        endpoint=endpoint(name, namespace, spec.port),
        strategy=strategy,
        replicas=spec.replicas,
        now=now,
    )
    assert update.layout is not None
    apply_serving(
        md,
        spec,
        update.layout,
        workloads,
        ensure_service=ensure_children,
    )
    _write_if_changed(cluster, md, update.status)
    moment = time.monotonic()
    memory.put(
        namespace,
        name,
        _Facts(
            reconciled_at=moment,
            rolling_out=update.rollout is not None,
            children=children,
            children_at=moment if ensure_children or known is None else known.children_at,
            scrape_after=_next_scrape(update.status, spec),
        ),
    )
    logger.debug(
        "%s/%s: %s (%s) %s", namespace, name, decision.action, decision.reason, decision.message
    )
    for notice in update.events:
        _event(md, notice)
    if update.rollout_result is not None:
        metrics.ROLLOUTS.labels(namespace, name, update.rollout_result).inc()
    if update.rollback_reason is not None:
        metrics.ROLLBACKS.labels(namespace, name, update.rollback_reason).inc()


# --- monitoring --------------------------------------------------------------------------


def scrape_deployment(
    state: ClusterState, memory: DeploymentMemory, namespace: str, name: str
) -> None:
    """Read the server's monitoring snapshot through the Service into status.monitoring
    (when monitoring is on and a model serves)."""
    md = state.deployment(namespace, name)
    if md is None:
        return
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError:
        return  # the reconcile reports it
    if not spec.monitoring.enabled or not (md.get("status") or {}).get("currentModel"):
        return
    url = get_resolver().service_url(namespace, serving_name(name), spec.port) + monitoring_path(
        name
    )
    now = clock.now()
    try:
        snapshot = fetch_snapshot(url, timeout=SCRAPE_TIMEOUT_SECONDS)
    except ScrapeError as exc:
        monitoring, reachable, message = None, False, str(exc)
    else:
        monitoring = monitoring_status(snapshot, scraped_at=cond.timestamp(now))
        reachable = True
        drift = snapshot.max_drift_score
        message = scrape_message(snapshot)
        if drift is not None:
            metrics.DEPLOYMENT_DRIFT_SCORE.labels(namespace, name).set(drift)
        if snapshot.live_accuracy is not None:
            metrics.DEPLOYMENT_LIVE_ACCURACY.labels(namespace, name).set(snapshot.live_accuracy)
    with memory.locks.hold(namespace, name):
        fresh = state.deployment(namespace, name)
        if fresh is None:
            return
        old = dict(fresh.get("status") or {})
        before = cond.get(old.get("conditions"), METRICS_AVAILABLE)
        status = with_monitoring(
            old,
            monitoring,
            reachable=reachable,
            message=message,
            now=now,
            generation=fresh["metadata"].get("generation"),
        )
        _write_if_changed(state, fresh, status)
        known = memory.get(namespace, name)
        if known is not None:
            interval = timedelta(seconds=spec.monitoring.scrape_interval_seconds)
            memory.put(namespace, name, replace(known, scrape_after=now + interval))
    was_reachable = before is None or before.get("status") == "True"
    if was_reachable and not reachable:
        _event(
            fresh,
            Notice("Warning", "MetricsUnavailable", f"cannot read the model server: {message}"),
        )
    elif before is not None and before.get("status") == "False" and reachable:
        _event(
            fresh,
            Notice("Normal", "MetricsAvailable", f"the model server answers again: {message}"),
        )


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
