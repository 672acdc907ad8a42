"""The operator's side of the run reconciler (:mod:`perennial.reconcile.runs`).

Reads come from the watch-fed :class:`~perennial.k8s.cluster_state.ClusterState` (no
request); writes go to the API (the Job, the run's status subresource, events). Each run is
reconciled under its own lock; the decisions are the shared shell's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, TypeVar

from perennial.api.enums import RunPhase
from perennial.api.run import TrainingRun
from perennial.controllers import clock, tracking
from perennial.controllers.keyed_locks import KeyedLocks
from perennial.core.job_state import JobObservation, parse_time
from perennial.core.naming import job_name
from perennial.core.pipeline_plan import LABEL_RUN
from perennial.core.run_verdict import RunVerdict
from perennial.k8s import client, metrics
from perennial.k8s.builders.training_job import build_job
from perennial.k8s.client import JOBS, RUN_STATUS
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.events import report_event
from perennial.reconcile import runs
from perennial.reconcile.runs import Body, JobView, RunReport, pipeline_of

logger = logging.getLogger("perennial.controllers.run")
LOCKS: Final = KeyedLocks()

__all__ = ["LOCKS", "RunReport", "cancel_run", "reconcile_run"]


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == uid for ref in refs)


@dataclass(frozen=True)
class ClusterRuns:
    """:class:`perennial.reconcile.runs.RunPort` on the cluster."""

    state: ClusterState

    def now(self) -> datetime:
        return clock.now()

    def run(self, namespace: str, name: str) -> Body | None:
        return self.state.run(namespace, name)

    def job_label(self, name: str) -> str:
        return f"Job {job_name(name)}"

    def view_job(self, body: Mapping[str, Any]) -> JobView:
        namespace, name = body["metadata"].get("namespace") or "", body["metadata"]["name"]
        job = self.state.job(namespace, name, job_name(name))
        if job is None:
            return JobView(None)
        if not _owned_by(job, body):
            return JobView(job, foreign=True)
        pods = [
            pod
            for pod in self.state.pods_of(namespace, name)
            if (pod.get("metadata", {}).get("labels") or {}).get(LABEL_RUN) == name
            and _owned_by(pod, job)
        ]
        return JobView(job, pods)

    def create_job(self, body: Mapping[str, Any], run: TrainingRun) -> str | None:
        namespace = body["metadata"].get("namespace") or ""
        _, fresh = self.state.create_if_absent(JOBS, build_job(body), namespace)
        if not fresh:
            return None
        return (
            f"created training Job {job_name(body['metadata']['name'])} (image "
            f"{run.spec.pipeline_spec.run_template.image})"
        )

    def delete_job(self, namespace: str, name: str) -> None:
        self.state.delete(JOBS, job_name(name), namespace)

    def write_status(self, body: Mapping[str, Any], delta: Mapping[str, Any]) -> Body:
        # Only onto the version the decision was made on: a run judged meanwhile (by an
        # operator that ran while this one was paused, or by this one's previous turn
        # that the watch has not delivered yet) is not overwritten by a stale view.
        try:
            written = self.state.write_status(RUN_STATUS, body, delta, precondition=True)
        except client.ApiError as exc:
            if not exc.conflict:
                raise
            # A write the server applied but whose answer was lost (a timeout, a 5xx that
            # "may still be processing") is retried by the client onto the version it
            # replaced, and refused: if the run holds exactly what this turn wrote, it was
            # this turn's write - carry on (events, the pipeline), do not decide again.
            # Otherwise the run as read here (remembered by the state) is what the next
            # turn decides on.
            meta = body["metadata"]
            fresh = self.state.refresh(
                client.TRAINING_RUNS_RESOURCE, meta.get("namespace") or "", meta["name"]
            )
            if fresh is None or not holds(fresh.get("status") or {}, delta):
                raise
            written = fresh
        # The next write of this turn goes onto the version this one made.
        version = (written.get("metadata") or {}).get("resourceVersion")
        meta = dict(body["metadata"])
        if version:
            meta["resourceVersion"] = version
        return {**body, "metadata": meta, "status": {**(body.get("status") or {}), **delta}}

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None:
        report_event(body, reason, message, type)

    def finished(
        self,
        body: Mapping[str, Any],
        run: TrainingRun | None,
        verdict: RunVerdict,
        seen: JobObservation | None,
    ) -> None:
        """Metrics of a run that just reached its final phase; its MLflow finalize Job."""
        namespace = body["metadata"].get("namespace") or ""
        pipeline = pipeline_of(body) or ""
        metrics.RUN_OUTCOMES.labels(namespace, pipeline, verdict.phase.value).inc()
        if run is None:
            return
        for gate in verdict.gates:
            if not gate.skipped and not gate.passed:
                metrics.GATE_FAILURES.labels(namespace, pipeline, gate.name).inc()
        duration = _training_seconds(seen, body)
        if duration is not None:
            metrics.TRAINING_DURATION.labels(namespace, pipeline).observe(duration)
        if verdict.phase in (RunPhase.SUCCEEDED, RunPhase.REJECTED) and run.spec.trigger.time:
            waited = (clock.now() - run.spec.trigger.time).total_seconds()
            metrics.TRIGGER_TO_VERDICT.labels(namespace, pipeline).observe(max(0.0, waited))
        tracking.start_finalize(self.state, body, run, verdict, report_event)


def _training_seconds(seen: JobObservation | None, body: Mapping[str, Any]) -> float | None:
    if seen is None:
        return None
    started = seen.started or parse_time((body.get("status") or {}).get("startTime"))
    if started is None or seen.finished is None:
        return None
    return max(0.0, (seen.finished - started).total_seconds())


def holds(status: Mapping[str, Any], delta: Mapping[str, Any]) -> bool:
    """Whether ``status`` already holds every change of the merge patch ``delta`` (a None
    removes a key; a mapping merges into the mapping there)."""
    for key, value in delta.items():
        if value is None:
            if status.get(key) is not None:
                return False
        elif isinstance(value, Mapping):
            found = status.get(key)
            if not isinstance(found, Mapping) or not holds(found, value):
                return False
        elif status.get(key) != value:
            return False
    return True


STALE_RETRIES: Final = 3
T = TypeVar("T")


def _on_fresh_state(
    state: ClusterState, namespace: str, name: str, turn: Callable[[ClusterRuns], T]
) -> T:
    """Run ``turn``; a status write refused because the run changed since it was read
    (409) runs it again on the run as read from the API (:meth:`ClusterRuns.write_status`
    has read it before raising), at most STALE_RETRIES times."""
    for attempt in range(STALE_RETRIES):
        try:
            return turn(ClusterRuns(state))
        except client.ApiError as exc:
            if not exc.conflict or attempt == STALE_RETRIES - 1:
                raise
            logger.info("run %s/%s changed while reconciled: deciding again", namespace, name)
    raise AssertionError("unreachable")  # pragma: no cover


def reconcile_run(state: ClusterState, namespace: str, name: str) -> RunReport | None:
    """Bring the run one step forward; None if it does not exist (any more)."""
    with LOCKS.hold(namespace, name):
        before = ((state.run(namespace, name) or {}).get("status") or {}).get("phase")
        report = _on_fresh_state(
            state, namespace, name, lambda port: runs.reconcile_run(port, namespace, name)
        )
    if (
        report is not None
        and not report.finished_now
        and report.phase in runs.FINISHED
        and before not in runs.FINISHED
    ):
        # Finished meanwhile, as this turn learnt from the API after a conflict (by another
        # operator, or by a write of this one whose answer was lost): the pipeline must
        # still take the verdict in.
        report = replace(report, finished_now=True)
    return report


def cancel_run(state: ClusterState, namespace: str, name: str, *, replaced_by: str) -> bool:
    """Concurrency policy Replace: end an active run (Failed, reason Replaced) and delete
    its Job. False if the run had already finished or is gone."""
    with LOCKS.hold(namespace, name):
        return _on_fresh_state(
            state,
            namespace,
            name,
            lambda port: runs.cancel_run(port, namespace, name, replaced_by=replaced_by),
        )
