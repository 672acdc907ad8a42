"""Reconcile one ModelDeployment: desired model -> rollout step -> serving, status, events;
and read its server's monitoring into ``status.monitoring``.

Read (the deployment, its source: the pipeline's champion or the pinned run, the serving
workloads, through the :class:`DeploymentPort`), decide (what should serve:
:func:`perennial.core.model_source.desired_model`; the next rollout step:
:func:`perennial.core.rollout.plan`, with the canary analysis when
:func:`~perennial.core.rollout.analysis_due`; the whole new status and its events:
:func:`perennial.core.deployment_status.next_status`), write (the serving layout, the status
when it changed, events). The monitoring scrape reads the server's snapshot
(:func:`~perennial.core.analysis.monitoring_status`) into the status, where the pipeline's
drift and decay triggers read it.

The operator's adapter (:mod:`perennial.controllers.deployment_reconciler`) serves with
Deployments, a Service and a PodDisruptionBudget; the local runner's
(:mod:`perennial.local.deployments`) with model server processes behind a stable endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from perennial.api.constants import ROLLBACK_ANNOTATION
from perennial.api.deployment import ModelDeploymentSpec
from perennial.core import conditions as cond
from perennial.core import deployment_status, model_source, rollout, tracking
from perennial.core.analysis import monitoring_status, scrape_message
from perennial.core.deployment_status import (
    METRICS_AVAILABLE,
    StatusUpdate,
    parse_time,
    read_state,
    with_monitoring,
)
from perennial.core.model_source import Notice, SourceModel, champion_source, pinned_source
from perennial.core.rollout import AnalysisSample, Strategy, WorkloadState
from perennial.core.strategy import strategy_of
from perennial_runtime.contract import MonitoringSnapshot

Body = dict[str, Any]


@dataclass(frozen=True)
class Serving:
    """What serves now, as the rollout core sees it, and where users reach it."""

    stable: WorkloadState
    canary: WorkloadState | None
    endpoint: str
    replicas: int


@dataclass(frozen=True)
class Scrape:
    """A read of the server's monitoring: the snapshot, or why there is none."""

    snapshot: MonitoringSnapshot | None
    error: str = ""


class DeploymentPort(Protocol):
    """What the deployment reconciler needs from where it runs (cluster or local runner)."""

    def now(self) -> datetime: ...

    def deployment(self, namespace: str, name: str) -> Body | None: ...

    def pipeline(self, namespace: str, name: str) -> Body | None: ...

    def run(self, namespace: str, name: str) -> Body | None: ...

    def hold(self, namespace: str, name: str) -> AbstractContextManager[Any]:
        """The deployment's lock, for the status write of a scrape."""

    def serving(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> Serving: ...

    def analyse(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> AnalysisSample | None:
        """The canary's metrics compared with the stable track's (both tracks' servers)."""

    def apply(
        self,
        md: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        update: StatusUpdate,
        strategy: Strategy,
    ) -> None:
        """Make the serving layout of ``update`` so."""

    def write_status(self, md: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Write the whole status (it differs from the stored one)."""

    def event(self, md: Mapping[str, Any], notice: Notice) -> None: ...

    def move_champion_alias(self, md: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        """Point MLflow's ``champion`` alias back at ``run``'s model version (a
        ``spec.rollbackTo`` rollback put it in service again); nothing if it is not tracked.
        Idempotent: a second call for the same rollback starts nothing new."""

    def scrape(self, md: Mapping[str, Any], spec: ModelDeploymentSpec) -> Scrape:
        """Read the serving endpoint's monitoring snapshot."""

    def observed(self, md: Mapping[str, Any], update: StatusUpdate | None,
                 snapshot: MonitoringSnapshot | None) -> None:  # fmt: skip
        """Metrics of a reconcile (rollout results, rollbacks) or of a scrape (drift, live
        accuracy), where there are metrics."""


def read_source(port: DeploymentPort, namespace: str, spec: ModelDeploymentSpec) -> SourceModel:
    """The model the source offers: the pipeline's champion or the pinned run's model."""
    if spec.source.pipeline_ref is not None:
        name = spec.source.pipeline_ref.name
        pipeline = port.pipeline(namespace, name)
        champion = ((pipeline or {}).get("status") or {}).get("champion") or {}
        run = port.run(namespace, champion["run"]) if champion.get("run") else None
        return champion_source(name, pipeline, run)
    assert spec.source.run_ref is not None
    name = spec.source.run_ref.name
    return pinned_source(name, port.run(namespace, name))


def next_scrape(
    status: Mapping[str, Any], spec: ModelDeploymentSpec, now: datetime
) -> datetime | None:
    """When the server is next due for a scrape (None: monitoring off or nothing serves)."""
    if not spec.monitoring.enabled or not status.get("currentModel"):
        return None
    last = parse_time((status.get("monitoring") or {}).get("lastScrapeTime"))
    if last is None:
        return now
    return last + timedelta(seconds=spec.monitoring.scrape_interval_seconds)


def reconcile_deployment(
    port: DeploymentPort, namespace: str, name: str
) -> tuple[ModelDeploymentSpec, StatusUpdate] | None:
    """Bring the deployment one step forward (idempotent). Its spec and what the reconcile
    decided; None if the deployment is gone or its spec is invalid (then Stalled)."""
    md = port.deployment(namespace, name)
    if md is None or md["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError as exc:
        _invalid_spec(port, md, exc)
        return None
    meta = md["metadata"]
    now = port.now()
    old = dict(md.get("status") or {})
    state = read_state(old)
    desired = model_source.desired_model(
        source=read_source(port, namespace, spec),
        rollback_to=spec.rollback_to,
        annotation=(meta.get("annotations") or {}).get(ROLLBACK_ANNOTATION),
        last_token=state.last_token,
        pin=state.pin,
        current=state.current,
        history=state.history,
        now=now,
    )
    strategy = strategy_of(spec)
    serving = port.serving(md, spec)
    analysis = None
    if rollout.analysis_due(
        state.rollout, strategy=strategy, replicas=serving.replicas, canary=serving.canary, now=now
    ):
        analysis = port.analyse(md, spec)
    decision = rollout.plan(
        desired=desired.model,
        current=state.current.ref if state.current else None,
        rollout=state.rollout,
        strategy=strategy,
        replicas=serving.replicas,
        stable=serving.stable,
        canary=serving.canary,
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
        stable=serving.stable,
        canary=serving.canary,
        history_limit=spec.revision_history_limit,
        endpoint=serving.endpoint,
        strategy=strategy,
        replicas=serving.replicas,
        now=now,
    )
    port.apply(md, spec, update, strategy)
    # Before the status write: if the operator dies in between, the next reconcile sees the
    # same transition and the port finds the alias Job it already started.
    restored = tracking.rolled_back_to(old, update.status, spec.rollback_to)
    restored_run = port.run(namespace, restored) if restored else None
    if restored_run is not None:
        port.move_champion_alias(md, restored_run)
    if update.status != old:
        port.write_status(md, update.status)
    for notice in update.events:
        port.event(md, notice)
    port.observed(md, update, None)
    return spec, update


def _invalid_spec(port: DeploymentPort, md: Mapping[str, Any], exc: ValidationError) -> None:
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
        now=port.now(),
        generation=generation,
    )
    status.update(phase="Degraded", message=message)
    if generation is not None:
        status["observedGeneration"] = generation
    if status == old:
        return
    port.write_status(md, status)
    ready = cond.get(old.get("conditions"), cond.READY) or {}
    if ready.get("reason") != "InvalidSpec":
        port.event(md, Notice("Warning", "InvalidSpec", message))


def scrape_deployment(port: DeploymentPort, namespace: str, name: str) -> datetime | None:
    """Read the server's monitoring snapshot into ``status.monitoring`` (when monitoring is
    on and a model serves). When the next scrape is due (None: nothing was scraped)."""
    md = port.deployment(namespace, name)
    if md is None:
        return None
    try:
        spec = ModelDeploymentSpec.model_validate(md.get("spec") or {})
    except ValidationError:
        return None  # the reconcile reports it
    if not spec.monitoring.enabled or not (md.get("status") or {}).get("currentModel"):
        return None
    now = port.now()
    read = port.scrape(md, spec)  # outside the lock: it may take the whole timeout
    if read.snapshot is not None:
        monitoring = monitoring_status(read.snapshot, scraped_at=cond.timestamp(now))
        reachable, message = True, scrape_message(read.snapshot)
        port.observed(md, None, read.snapshot)
    else:
        monitoring, reachable, message = None, False, read.error
    with port.hold(namespace, name):
        fresh = port.deployment(namespace, name)
        if fresh is None:
            return None
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
        if status != old:
            port.write_status(fresh, status)
    was_reachable = before is None or before.get("status") == "True"
    if was_reachable and not reachable:
        text = f"cannot read the model server: {message}"
        port.event(fresh, Notice("Warning", "MetricsUnavailable", text))
    elif before is not None and before.get("status") == "False" and reachable:
        text = f"the model server answers again: {message}"
        port.event(fresh, Notice("Normal", "MetricsAvailable", text))
    return now + timedelta(seconds=spec.monitoring.scrape_interval_seconds)
