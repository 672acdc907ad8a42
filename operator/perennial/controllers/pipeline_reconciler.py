"""The operator's side of the pipeline reconciler (:mod:`perennial.reconcile.pipelines`).

Reads come from the watch-fed :class:`~perennial.k8s.cluster_state.ClusterState` (no
request), the data's fingerprint from the data source when a poll is due; writes go to the
API (runs, their Jobs, the status subresource, events), and the metrics are Prometheus'.
Each pipeline is reconciled under its own lock (lock order: pipeline, then run).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from perennial.api.enums import TriggerType
from perennial.api.pipeline import TrainingPipeline
from perennial.controllers import clock, run_reconciler
from perennial.controllers.keyed_locks import KeyedLocks
from perennial.core.naming import job_name
from perennial.core.pipeline_plan import (
    LABEL_PIPELINE,
    ChampionRecord,
    NewRun,
    rejected_in_a_row,
    summarize_run,
)
from perennial.core.timers import DataCheck, next_due
from perennial.k8s import metrics
from perennial.k8s.builders.training_run import new_run_body
from perennial.k8s.client import JOBS, PIPELINE_STATUS, TRAINING_RUNS_RESOURCE
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.data_fingerprint import check_data
from perennial.k8s.events import report_event
from perennial.reconcile import pipelines
from perennial.reconcile.pipelines import Body

logger = logging.getLogger("perennial.controllers.pipeline")

LOCKS: Final = KeyedLocks()


@dataclass(frozen=True)
class ClusterPipelines:
    """:class:`perennial.reconcile.pipelines.PipelinePort` on the cluster."""

    state: ClusterState

    def now(self) -> datetime:
        return clock.now()

    def pipeline(self, namespace: str, name: str) -> Body | None:
        return self.state.pipeline(namespace, name)

    def runs(self, namespace: str, pipeline: str) -> list[Body]:
        return [
            r
            for r in self.state.runs_of(namespace, pipeline)
            if ((r.get("metadata") or {}).get("labels") or {}).get(LABEL_PIPELINE) == pipeline
        ]

    def deployment(self, namespace: str, name: str) -> Body | None:
        return self.state.deployment(namespace, name)

    def deployments(self, namespace: str) -> list[Body]:
        return self.state.deployments(namespace)

    def check_data(self, uri: str, now: datetime) -> DataCheck:
        return check_data(uri, now)

    def create_run(
        self,
        body: Mapping[str, Any],
        pipeline: TrainingPipeline,
        new: NewRun,
        *,
        champion_run: Mapping[str, Any] | None,
        champion: ChampionRecord | None,
        now: datetime,
    ) -> tuple[Body, bool]:
        run = new_run_body(
            body, pipeline, new, champion_run=champion_run, champion=champion, now=now
        )
        namespace = body["metadata"].get("namespace") or ""
        return self.state.create_if_absent(TRAINING_RUNS_RESOURCE, run, namespace)

    def start_run(self, namespace: str, name: str) -> None:
        # The run's watch event retries on its own if this fails: the pipeline's status is
        # written regardless.
        try:
            run_reconciler.reconcile_run(self.state, namespace, name)
        except Exception as exc:
            logger.warning("run %s/%s: first reconcile failed: %s", namespace, name, exc)

    def cancel_run(self, namespace: str, name: str, *, replaced_by: str) -> None:
        run_reconciler.cancel_run(self.state, namespace, name, replaced_by=replaced_by)

    def delete_run(self, namespace: str, name: str) -> None:
        self.state.delete(TRAINING_RUNS_RESOURCE, name, namespace)
        self.state.delete(JOBS, job_name(name), namespace)

    def write_status(self, body: Mapping[str, Any], delta: Mapping[str, Any]) -> None:
        self.state.write_status(PIPELINE_STATUS, body, delta)

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None:
        report_event(body, reason, message, type)

    def run_started(self, body: Mapping[str, Any], trigger: TriggerType) -> None:
        meta = body["metadata"]
        metrics.RUNS_STARTED.labels(meta.get("namespace") or "", meta["name"], trigger.value).inc()

    def champion_held(self, body: Mapping[str, Any], champion: ChampionRecord) -> None:
        meta = body["metadata"]
        if champion.value is not None:
            labels = (meta.get("namespace") or "", meta["name"], champion.metric)
            metrics.CHAMPION_METRIC.labels(*labels).set(champion.value)


def holding(namespace: str, name: str) -> AbstractContextManager[None]:
    """The pipeline's lock (reentrant), for a caller that changes what its reconcile reads."""
    return LOCKS.hold(namespace, name)


def reconcile_pipeline(state: ClusterState, namespace: str, name: str) -> None:
    """React to a change of the pipeline (spec, annotation) or of one of its runs."""
    with LOCKS.hold(namespace, name):
        pipelines.reconcile_pipeline(ClusterPipelines(state), namespace, name)


def check_triggers(state: ClusterState, namespace: str, name: str) -> datetime | None:
    """The trigger timer's turn: poll the data if due (outside the lock: it may be slow),
    reconcile (schedule, drift, decay and cool-downs are decided there); when the timer is
    next due (None: only a watch event can start a run)."""
    port = ClusterPipelines(state)
    body = state.pipeline(namespace, name)
    if body is None:
        return None
    data = pipelines.poll_data_if_due(port, body)
    with LOCKS.hold(namespace, name):
        pipelines.reconcile_pipeline(port, namespace, name, data=data)
    fresh = state.pipeline(namespace, name)
    if fresh is None:
        return None
    try:
        after = TrainingPipeline.model_validate(fresh)
    except ValidationError:
        return None
    summaries = [summarize_run(r) for r in port.runs(namespace, name)]
    rejected = {
        kind.value: rejected_in_a_row(summaries, kind)
        for kind in (TriggerType.DRIFT, TriggerType.PERFORMANCE_DECAY)
    }
    return next_due(after.spec, after.status, clock.now(), rejected)
