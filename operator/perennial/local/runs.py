"""The local runner's side of the run reconciler (:mod:`perennial.reconcile.runs`).

The Job is a local trainer process (:mod:`perennial.local.jobs`), started from the same
TrainConfig as the operator's Job
(:func:`perennial.k8s.builders.training_job.train_config`) and read back in the Job/Pod
shape; the run lives in the state store; events go to the event log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perennial.api.constants import TRAINING_RUN
from perennial.api.run import TrainingRun
from perennial.core.job_state import JobObservation
from perennial.core.naming import job_name
from perennial.core.run_verdict import RunVerdict
from perennial.k8s.builders.training_job import train_config
from perennial.local import tracking
from perennial.local.context import Context
from perennial.reconcile import runs
from perennial.reconcile.runs import Body, JobView

__all__ = ["LocalRuns", "cancel_run", "reconcile_run"]


@dataclass(frozen=True)
class LocalRuns:
    """:class:`perennial.reconcile.runs.RunPort` on the local runner."""

    ctx: Context

    def now(self) -> datetime:
        return self.ctx.clock.now()

    def run(self, namespace: str, name: str) -> Body | None:
        return self.ctx.store.get(TRAINING_RUN, namespace, name)

    def job_label(self, name: str) -> str:
        return f"trainer process {job_name(name)}"

    def view_job(self, body: Mapping[str, Any]) -> JobView:
        namespace, name = body["metadata"].get("namespace") or "", body["metadata"]["name"]
        if not self.ctx.jobs.exists(namespace, name):
            return JobView(None)
        self.ctx.jobs.sync(namespace, name)
        job, pods = self.ctx.jobs.observe(namespace, name)
        return JobView(job, pods)

    def create_job(self, body: Mapping[str, Any], run: TrainingRun) -> str | None:
        namespace, name = run.metadata.namespace or "", run.metadata.name or ""
        if self.ctx.jobs.exists(namespace, name):
            return None
        template = run.spec.pipeline_spec.run_template
        config = train_config(run, namespace).model_copy(
            update={"artifact_uri": self.ctx.local_artifact_uri(run.spec.pipeline_spec.artifacts)}
        )
        self.ctx.jobs.create(
            namespace,
            name,
            config,
            backoff_limit=template.backoff_limit,
            active_deadline_seconds=template.active_deadline_seconds,
        )
        return (
            f"started the trainer for {name} (perennial-runtime train, log "
            f"{self.ctx.jobs.log_path(namespace, name)})"
        )

    def delete_job(self, namespace: str, name: str) -> None:
        self.ctx.jobs.delete(namespace, name)

    def write_status(self, body: Mapping[str, Any], delta: Mapping[str, Any]) -> Body:
        status = dict(body.get("status") or {})
        status.update(delta)
        return self.ctx.store.save({**body, "status": status})

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None:
        self.ctx.event(body, reason, message, type)

    def finished(
        self,
        body: Mapping[str, Any],
        run: TrainingRun | None,
        verdict: RunVerdict,
        seen: JobObservation | None,
    ) -> None:
        """Start the MLflow finalize process of a tracked run (nothing to count here)."""
        if run is None:
            return
        namespace, name = run.metadata.namespace or "", run.metadata.name or ""
        tracking.start_finalize(body, verdict, self.ctx.jobs.folder(namespace, name))


def reconcile_run(ctx: Context, namespace: str, name: str) -> str | None:
    """Bring the run one step forward; its phase (None: the run does not exist)."""
    report = runs.reconcile_run(LocalRuns(ctx), namespace, name)
    return None if report is None else report.phase


def cancel_run(ctx: Context, namespace: str, name: str, *, replaced_by: str) -> bool:
    """concurrencyPolicy Replace: end an active run (Failed, reason Replaced)."""
    return runs.cancel_run(LocalRuns(ctx), namespace, name, replaced_by=replaced_by)
