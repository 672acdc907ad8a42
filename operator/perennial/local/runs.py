"""The local TrainingRun controller: run -> trainer process -> verdict.

The same steps as the operator's run reconciler (:mod:`perennial.controllers.run_reconciler`)
with a local process instead of a Job: the TrainConfig comes from the same builder
(:func:`perennial.k8s.builders.training_job.train_config`), the process is read back in
the Job/Pod shape by :func:`perennial.core.job_state.observe`, and the verdict, the status
and the events come from :mod:`perennial.core.run_status` (as in the operator).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from perennial.api.constants import TRAINING_RUN
from perennial.api.enums import RunPhase
from perennial.api.run import TrainingRun
from perennial.core import job_state
from perennial.core.conditions import timestamp
from perennial.core.job_state import JobObservation, JobState
from perennial.core.naming import job_name
from perennial.core.run_status import finish_status, judge, progress_status, verdict_events
from perennial.core.run_verdict import GateConfig, RunVerdict, failure, verdict_conditions
from perennial.k8s.builders.training_job import train_config
from perennial.local import tracking
from perennial.local.context import Context

Body = dict[str, Any]
FINISHED = frozenset({RunPhase.SUCCEEDED.value, RunPhase.REJECTED.value, RunPhase.FAILED.value})


def _write(ctx: Context, body: Body, changes: Mapping[str, Any]) -> Body:
    status = dict(body.get("status") or {})
    if all(status.get(k) == v for k, v in changes.items()):
        return body
    status.update(changes)
    body = {**body, "status": status}
    return ctx.store.save(body)


def reconcile_run(ctx: Context, namespace: str, name: str) -> str | None:
    """Bring the run one step forward; its phase (None: the run does not exist)."""
    body = ctx.store.get(TRAINING_RUN, namespace, name)
    if body is None:
        return None
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase in FINISHED:
        return str(phase)
    now = ctx.clock.now()
    try:
        run = TrainingRun.model_validate(body)
    except ValidationError as exc:
        verdict = failure("InvalidSpec", f"invalid spec: {exc.errors()[0]['msg']}")
        _finish(ctx, body, verdict, None, now=now)
        return RunPhase.FAILED.value

    if not ctx.jobs.exists(namespace, name):
        if phase not in (None, RunPhase.PENDING.value):
            _finish(
                ctx,
                body,
                failure(
                    "JobMissing",
                    f"the training process of {name} disappeared while the run was {phase}; "
                    "its result is lost",
                ),
                None,
                now=now,
            )
            return RunPhase.FAILED.value
        template = run.spec.pipeline_spec.run_template
        config = train_config(run, namespace)
        config = config.model_copy(
            update={"artifact_uri": ctx.local_artifact_uri(run.spec.pipeline_spec.artifacts)}
        )
        ctx.jobs.create(
            namespace,
            name,
            config,
            backoff_limit=template.backoff_limit,
            active_deadline_seconds=template.active_deadline_seconds,
        )
        if phase is None:
            ctx.event(
                body,
                "JobCreated",
                f"started the trainer for {name} (perennial-runtime train, log "
                f"{ctx.jobs.log_path(namespace, name)})",
            )
    ctx.jobs.sync(namespace, name)
    job, pods = ctx.jobs.observe(namespace, name)
    seen = job_state.observe(job, pods)
    if seen.state in (JobState.PENDING, JobState.MISSING):
        _progress(ctx, body, RunPhase.PENDING, seen.reason, seen.message, now=now)
        return RunPhase.PENDING.value
    if seen.state is JobState.RUNNING:
        if phase != RunPhase.TRAINING.value:
            ctx.event(body, "TrainingStarted", f"the trainer is running ({job_name(name)})")
        _progress(
            ctx,
            body,
            RunPhase.TRAINING,
            "Training",
            f"training {run.spec.pipeline_spec.model.estimator} in a local process",
            now=now,
            started=seen.started,
        )
        return RunPhase.TRAINING.value
    if seen.state is JobState.SUCCEEDED:
        ctx.event(body, "TrainingCompleted", f"the trainer of {name} finished")
    gates = GateConfig.from_spec(run.spec.pipeline_spec)
    verdict = judge(seen, gates, had_champion=run.spec.champion is not None)
    _finish(ctx, body, verdict, seen, now=now)
    return verdict.phase.value


def _progress(
    ctx: Context,
    body: Body,
    phase: RunPhase,
    reason: str,
    message: str,
    *,
    now: datetime,
    started: datetime | None = None,
) -> None:
    _write(ctx, body, progress_status(body, phase, reason, message, now=now, started=started))


def _finish(
    ctx: Context,
    body: Body,
    verdict: RunVerdict,
    seen: JobObservation | None,
    *,
    now: datetime,
) -> None:
    body = _write(ctx, body, finish_status(body, verdict, seen, now=now))
    for note in verdict_events(verdict):
        ctx.event(body, note.reason, note.message, note.type)
    meta = body["metadata"]
    tracking.start_finalize(body, verdict, ctx.jobs.folder(meta.get("namespace", ""), meta["name"]))


def cancel_run(ctx: Context, namespace: str, name: str, *, replaced_by: str) -> bool:
    """concurrencyPolicy Replace: end an active run (Failed, reason Replaced)."""
    body = ctx.store.get(TRAINING_RUN, namespace, name)
    if body is None or (body.get("status") or {}).get("phase") in FINISHED:
        return False
    ctx.jobs.delete(namespace, name)
    verdict = failure(
        "Replaced", f"replaced by run {replaced_by} (concurrencyPolicy Replace); trainer stopped"
    )
    now = ctx.clock.now()
    generation = body["metadata"].get("generation")
    body = _write(
        ctx,
        body,
        {
            "observedGeneration": generation,
            "phase": verdict.phase.value,
            "reason": verdict.reason,
            "message": verdict.message,
            "completionTime": timestamp(now),
            "conditions": verdict_conditions(
                verdict,
                (body.get("status") or {}).get("conditions"),
                now=now,
                generation=generation,
            ),
        },
    )
    ctx.event(body, "RunReplaced", verdict.message, "Warning")
    return True
