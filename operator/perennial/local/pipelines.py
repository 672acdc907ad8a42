"""The local runner's side of the pipeline reconciler (:mod:`perennial.reconcile.pipelines`).

Objects live in the state store; runs are created with the operator's own builder
(:func:`perennial.k8s.builders.training_run.new_run_body`, which records what the run
consumed, so a runner killed between creating a run and writing the pipeline's status never
starts it twice). The local runner has no watch of runs: a pipeline's reconcile first
advances its active runs (:mod:`perennial.local.runs`), as the operator's run handlers do
on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_PIPELINE, TRAINING_RUN
from perennial.api.enums import TriggerType
from perennial.api.pipeline import TrainingPipeline
from perennial.core.conditions import timestamp
from perennial.core.pipeline_plan import LABEL_PIPELINE, ChampionRecord, NewRun, summarize_run
from perennial.core.timers import DataCheck
from perennial.k8s.builders.training_run import new_run_body
from perennial.k8s.data_fingerprint import check_data
from perennial.local import runs as local_runs
from perennial.local.context import Context
from perennial.reconcile import pipelines
from perennial.reconcile.pipelines import Body

__all__ = ["LocalPipelines", "reconcile_pipeline"]


@dataclass(frozen=True)
class LocalPipelines:
    """:class:`perennial.reconcile.pipelines.PipelinePort` on the local runner."""

    ctx: Context

    def now(self) -> datetime:
        return self.ctx.clock.now()

    def pipeline(self, namespace: str, name: str) -> Body | None:
        return self.ctx.store.get(TRAINING_PIPELINE, namespace, name)

    def _labelled(self, namespace: str, pipeline: str) -> list[Body]:
        return [
            r
            for r in self.ctx.store.list_objects(TRAINING_RUN, namespace)
            if (r["metadata"].get("labels") or {}).get(LABEL_PIPELINE) == pipeline
        ]

    def runs(self, namespace: str, pipeline: str) -> list[Body]:
        found = self._labelled(namespace, pipeline)
        active = [r for r in found if summarize_run(r).active]
        for run in active:
            local_runs.reconcile_run(self.ctx, namespace, run["metadata"]["name"])
        return self._labelled(namespace, pipeline) if active else found

    def deployment(self, namespace: str, name: str) -> Body | None:
        return self.ctx.store.get(MODEL_DEPLOYMENT, namespace, name)

    def deployments(self, namespace: str) -> list[Body]:
        return self.ctx.store.list_objects(MODEL_DEPLOYMENT, namespace)

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
        namespace = body["metadata"].get("namespace") or ""
        existing = self.ctx.store.get(TRAINING_RUN, namespace, new.name)
        if existing is not None:
            return existing, False
        run = new_run_body(
            body, pipeline, new, champion_run=champion_run, champion=champion, now=now
        )
        # What the API server would add.
        run["metadata"].update(namespace=namespace, generation=1, creationTimestamp=timestamp(now))
        return self.ctx.store.save(run), True

    def start_run(self, namespace: str, name: str) -> None:
        local_runs.reconcile_run(self.ctx, namespace, name)

    def cancel_run(self, namespace: str, name: str, *, replaced_by: str) -> None:
        local_runs.cancel_run(self.ctx, namespace, name, replaced_by=replaced_by)

    def delete_run(self, namespace: str, name: str) -> None:
        self.ctx.store.delete(TRAINING_RUN, namespace, name)
        self.ctx.jobs.delete(namespace, name)

    def write_status(self, body: Mapping[str, Any], delta: Mapping[str, Any]) -> None:
        # A merge patch: a None value removes the field.
        status = dict(body.get("status") or {})
        for key, value in delta.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        self.ctx.store.save({**body, "status": status})

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None:
        self.ctx.event(body, reason, message, type)

    def run_started(self, body: Mapping[str, Any], trigger: TriggerType) -> None:
        """No metrics locally: the event log says it."""

    def champion_held(self, body: Mapping[str, Any], champion: ChampionRecord) -> None:
        """No metrics locally: the pipeline's status says it."""


def reconcile_pipeline(ctx: Context, namespace: str, name: str) -> None:
    """One reconcile of the pipeline: its active runs, its triggers, its status."""
    port = LocalPipelines(ctx)
    body = port.pipeline(namespace, name)
    if body is None:
        return
    data = pipelines.poll_data_if_due(port, body)
    pipelines.reconcile_pipeline(port, namespace, name, data=data)
