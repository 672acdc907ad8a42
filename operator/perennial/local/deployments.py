"""The local ModelDeployment controller: desired model -> rollout step -> servers, status.

The same read-decide-write as the operator's deployment reconciler: what should serve
(:func:`perennial.core.model_source.desired_model` over the pipeline's champion or the
pinned run, with ``rollbackTo`` and the rollback annotation), the next rollout step
(:func:`perennial.core.rollout.plan`, with the canary analysis of
:func:`perennial.core.analysis.analysis_sample` when :func:`~perennial.core.rollout.
analysis_due`), the whole new status and its events
(:func:`perennial.core.deployment_status.next_status`), and the serving layout it
computes (:func:`perennial.core.rollout.layout`), carried out by local server processes
(:mod:`perennial.local.serving`) behind the deployment's stable endpoint. The rollout
strategy comes from the core's ``strategy_of``, as the operator's.

Monitoring: every ``scrapeIntervalSeconds`` (on the runner's clock) the endpoint's
``/v2/models/{name}/monitoring`` goes into ``status.monitoring``
(:func:`~perennial.core.analysis.monitoring_status`, :func:`~perennial.core.
deployment_status.with_monitoring`), where the pipeline's drift and decay triggers read it,
with the run and sha256 the server says it measured. A rollout drops the replaced model's
numbers (``next_status``), so the next tick scrapes the new server at once. The servers
get the spec's ``driftWindow`` and ``feedbackWindow``.
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from perennial.api.constants import (
    MODEL_DEPLOYMENT,
    ROLLBACK_ANNOTATION,
    TRAINING_PIPELINE,
    TRAINING_RUN,
)
from perennial.api.deployment import ModelDeploymentSpec
from perennial.core import conditions as cond
from perennial.core import deployment_status, model_source, rollout
from perennial.core.analysis import (
    SnapshotError,
    analysis_sample,
    monitoring_status,
    parse_snapshot,
    scrape_message,
)
from perennial.core.deployment_status import (
    METRICS_AVAILABLE,
    parse_time,
    read_state,
    with_monitoring,
)
from perennial.core.model_source import SourceModel, champion_source, pinned_source
from perennial.core.rollout import RolloutState, Strategy
from perennial.core.strategy import strategy_of
from perennial.k8s.serving import monitoring_path
from perennial.local.context import Context
from perennial.local.proxy import StableEndpoint
from perennial.local.serving import CANARY, STABLE, LocalServing
from perennial.local.store import read_json, write_json
from perennial_runtime.contract import MonitoringSnapshot

log = logging.getLogger("perennial.local.deployments")

Body = dict[str, Any]
# One server per track locally (see perennial.local.serving): the rollout core plans for
# one replica, and the endpoint splits a canary's traffic by the step's weight.
LOCAL_REPLICAS = 1
SCRAPE_TIMEOUT_SECONDS = 5.0
ENDPOINT_FILE = "endpoint.json"


def read_source(ctx: Context, namespace: str, spec: ModelDeploymentSpec) -> SourceModel:
    if spec.source.pipeline_ref is not None:
        name = spec.source.pipeline_ref.name
        pipeline = ctx.store.get(TRAINING_PIPELINE, namespace, name)
        champion = ((pipeline or {}).get("status") or {}).get("champion") or {}
        run = (
            ctx.store.get(TRAINING_RUN, namespace, champion["run"]) if champion.get("run") else None
        )
        return champion_source(name, pipeline, run)
    assert spec.source.run_ref is not None
    name = spec.source.run_ref.name
    return pinned_source(name, ctx.store.get(TRAINING_RUN, namespace, name))


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


# --- reconcile ---------------------------------------------------------------------------


def reconcile_deployment(ctx: Context, namespace: str, name: str, *, port: int = 0) -> None:
    md = ctx.store.get(MODEL_DEPLOYMENT, namespace, name)
    if md is None:
        return
    spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    meta = md["metadata"]
    now = ctx.clock.now()
    old = dict(md.get("status") or {})
    state = read_state(old)
    desired = model_source.desired_model(
        source=read_source(ctx, namespace, spec),
        rollback_to=spec.rollback_to,
        annotation=(meta.get("annotations") or {}).get(ROLLBACK_ANNOTATION),
        last_token=state.last_token,
        pin=state.pin,
        current=state.current,
        history=state.history,
        now=now,
    )
    strategy = strategy_of(spec)
    serving = serving_of(ctx, namespace, name, spec, port)
    serving.sync()
    stable = serving.stable_workload()
    canary = serving.canary_workload()
    analysis = None
    if rollout.analysis_due(
        state.rollout, strategy=strategy, replicas=LOCAL_REPLICAS, canary=canary, now=now
    ):
        analysis = analysis_sample(
            _snapshots(serving, CANARY, name), _snapshots(serving, STABLE, name)
        )
    decision = rollout.plan(
        desired=desired.model,
        current=state.current.ref if state.current else None,
        rollout=state.rollout,
        strategy=strategy,
        replicas=LOCAL_REPLICAS,
        stable=stable,
        canary=canary,
        analysis=analysis,
        rolled_back=state.rolled_back,
        now=now,
        manual=desired.manual,
    )
    update = deployment_status.next_status(
        old=old,
        generation=meta.get("generation"),
        desired=desired,
        decision=decision,
        stable=stable,
        canary=canary,
        history_limit=spec.revision_history_limit,
        endpoint=serving.endpoint.url,
        strategy=strategy,
        replicas=LOCAL_REPLICAS,
        now=now,
    )
    assert update.layout is not None
    serving.apply(update.layout, canary_weight(update.rollout, strategy))
    serving.sync()
    if update.status != old:
        ctx.store.save({**md, "status": update.status})
    for notice in update.events:
        ctx.event(md, notice.reason, notice.message, notice.type)


# --- monitoring --------------------------------------------------------------------------


def scrape_due(md: Mapping[str, Any], spec: ModelDeploymentSpec, ctx: Context) -> bool:
    status = md.get("status") or {}
    if not spec.monitoring.enabled or not status.get("currentModel"):
        return False
    last = parse_time((status.get("monitoring") or {}).get("lastScrapeTime"))
    if last is None:
        return True
    return (ctx.clock.now() - last).total_seconds() >= spec.monitoring.scrape_interval_seconds


def scrape_deployment(ctx: Context, namespace: str, name: str, *, force: bool = False) -> None:
    """Read the endpoint's monitoring snapshot into ``status.monitoring`` when due."""
    md = ctx.store.get(MODEL_DEPLOYMENT, namespace, name)
    serving = ctx.servings.get((namespace, name))
    if md is None or serving is None:
        return
    spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    if not force and not scrape_due(md, spec, ctx):
        return
    now = ctx.clock.now()
    url = serving.endpoint.url + monitoring_path(name)
    try:
        snapshot = fetch_snapshot(url)
    except SnapshotError as exc:
        monitoring, reachable, message = None, False, str(exc)
    else:
        monitoring = monitoring_status(snapshot, scraped_at=cond.timestamp(now))
        reachable = True
        message = scrape_message(snapshot)
    old = dict(md.get("status") or {})
    before = cond.get(old.get("conditions"), METRICS_AVAILABLE)
    status = with_monitoring(
        old,
        monitoring,
        reachable=reachable,
        message=message,
        now=now,
        generation=md["metadata"].get("generation"),
    )
    if status != old:
        ctx.store.save({**md, "status": status})
    was_reachable = before is None or before.get("status") == "True"
    if was_reachable and not reachable:
        ctx.event(md, "MetricsUnavailable", f"cannot read the model server: {message}", "Warning")
    elif before is not None and before.get("status") == "False" and reachable:
        ctx.event(md, "MetricsAvailable", f"the model server answers again: {message}")
