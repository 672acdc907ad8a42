"""The local TrainingPipeline controller: triggers -> runs, champion, history, status.

The same read-decide-write as the operator's pipeline reconciler
(:mod:`perennial.controllers.pipeline_reconciler`): the facts (spec hash, schedule
decision, data fingerprint, the watched deployments' drift and live metric, the runs) go
into :func:`perennial.core.pipeline_plan.plan`, and its plan is carried out on the local
store: runs created with the operator's own builder
(:func:`perennial.k8s.builders.training_run.build_run`, which records what the run
consumed, so a runner killed between creating a run and writing the pipeline's status
never starts it twice), cancelled, pruned; the status written with the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from perennial.api.constants import (
    MODEL_DEPLOYMENT,
    RETRAIN_ANNOTATION,
    TRAINING_PIPELINE,
    TRAINING_RUN,
)
from perennial.api.pipeline import TrainingPipeline, TrainingPipelineStatus
from perennial.core import pipeline_plan
from perennial.core import schedule as schedules
from perennial.core.conditions import timestamp
from perennial.core.job_state import parse_time
from perennial.core.monitoring_signals import trigger_signals, watched_deployments
from perennial.core.naming import run_name
from perennial.core.pipeline_plan import (
    ChampionRecord,
    Memory,
    PipelineFacts,
    PipelinePlan,
    deployment_references,
    summarize_run,
    watch_list,
)
from perennial.core.pipeline_status import stalled_changes, status_changes
from perennial.core.schedule import ScheduleDecision, ScheduleError
from perennial.core.spec_hash import spec_hash
from perennial.k8s.builders.training_run import build_run, champion_ref
from perennial.k8s.data_fingerprint import DataCheckError, fingerprint
from perennial.local import runs as local_runs
from perennial.local.context import Context

Body = dict[str, Any]


@dataclass(frozen=True)
class DataCheck:
    time: datetime
    fingerprint: str | None = None
    error: str | None = None


def poll_data_if_due(body: Mapping[str, Any], now: datetime) -> DataCheck | None:
    """Fingerprint the data when the dataChange trigger's poll interval has passed."""
    spec = body.get("spec") or {}
    change = (spec.get("triggers") or {}).get("dataChange") or {}
    uri = (spec.get("data") or {}).get("uri")
    if not change.get("enabled") or not isinstance(uri, str):
        return None
    interval = float(change.get("pollIntervalSeconds") or 300)
    last = parse_time((body.get("status") or {}).get("lastDataCheckTime"))
    if last is not None and (now - last).total_seconds() < interval:
        return None
    try:
        return DataCheck(time=now, fingerprint=fingerprint(uri))
    except DataCheckError as exc:
        return DataCheck(time=now, error=str(exc))


def _owned(run: Mapping[str, Any], uid: str | None) -> bool:
    refs = (run.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def runs_of(ctx: Context, namespace: str, name: str, uid: str | None) -> list[Body]:
    found = ctx.store.list_objects(TRAINING_RUN, namespace)
    return [
        r
        for r in found
        if (r["metadata"].get("labels") or {}).get(pipeline_plan.LABEL_PIPELINE) == name
        and _owned(r, uid)
    ]


def memory_of(status: TrainingPipelineStatus) -> Memory:
    champion = status.champion
    return Memory(
        run_sequence=status.run_sequence,
        spec_hash=status.spec_hash,
        retrain_token=status.last_retrain_token,
        schedule_time=status.last_schedule_time,
        data_fingerprint=status.last_data_fingerprint,
        last_triggers=dict(status.last_triggers),
        champion=ChampionRecord(
            run=champion.run,
            model_uri=champion.model_uri,
            sha256=champion.sha256,
            metric=champion.metric,
            value=champion.value,
            blessed_at=champion.blessed_at,
        )
        if champion is not None
        else None,
    )


def reconcile_pipeline(ctx: Context, namespace: str, name: str) -> PipelinePlan | None:
    """One reconcile of the pipeline: its active runs, its triggers, its status."""
    body = ctx.store.get(TRAINING_PIPELINE, namespace, name)
    if body is None:
        return None
    now = ctx.clock.now()
    data = poll_data_if_due(body, now)
    pipeline = TrainingPipeline.model_validate(body)
    spec = pipeline.spec
    schedule: ScheduleDecision | None = None
    if spec.triggers.schedule is not None:
        created = pipeline.metadata.creation_timestamp or now
        try:
            schedule = schedules.decide(
                spec.triggers.schedule.cron,
                now,
                last_scheduled=pipeline.status.last_schedule_time,
                created=min(created, now),
                time_zone=spec.triggers.schedule.time_zone,
                starting_deadline_seconds=spec.triggers.schedule.starting_deadline_seconds,
            )
        except ScheduleError as exc:
            _stall(ctx, body, "InvalidSchedule", str(exc), now=now)
            return None

    uid = body["metadata"].get("uid")
    runs = runs_of(ctx, namespace, name, uid)
    active = [r for r in runs if summarize_run(r).active]
    if active:
        for run in active:
            local_runs.reconcile_run(ctx, namespace, run["metadata"]["name"])
        runs = runs_of(ctx, namespace, name, uid)
    summaries = tuple(summarize_run(r) for r in runs)

    notes: list[str] = []
    watched = {
        ref: ctx.store.get(MODEL_DEPLOYMENT, namespace, ref)
        for ref in watched_deployments(pipeline.spec)
    }
    signals = trigger_signals(pipeline.spec, watched)
    notes.extend(signals.notes)
    drift, decay = signals.drift, signals.decay
    protected = deployment_references(ctx.store.list_objects(MODEL_DEPLOYMENT, namespace))
    facts = PipelineFacts(
        pipeline=name,
        now=now,
        spec_hash=spec_hash(body.get("spec") or {}),
        memory=memory_of(pipeline.status),
        runs=summaries,
        suspend=spec.suspend,
        policy=spec.concurrency_policy,
        on_spec_change=spec.triggers.on_spec_change,
        manual_token=pipeline.metadata.annotations.get(RETRAIN_ANNOTATION) or None,
        schedule=schedule,
        data_fingerprint=data.fingerprint if data else None,
        drift=drift,
        decay=decay,
        successful_limit=spec.successful_runs_history_limit,
        failed_limit=spec.failed_runs_history_limit,
        protected=protected,
        watching=watch_list(spec, schedule.next_time if schedule else None),
    )
    decision = pipeline_plan.plan(facts)
    decision = _carry_out(ctx, body, pipeline, decision, runs, now=now)
    if data is not None and data.error:
        notes.append(f"Data check failed: {data.error}")
        previous = (body.get("status") or {}).get("message") or ""
        if data.error not in previous:
            ctx.event(body, "DataCheckFailed", data.error, "Warning")
    _write_status(
        ctx,
        namespace=namespace,
        name=name,
        decision=decision,
        schedule=schedule,
        data=data,
        notes=notes,
        now=now,
    )
    return decision


def _carry_out(
    ctx: Context,
    body: Body,
    pipeline: TrainingPipeline,
    decision: PipelinePlan,
    runs: list[Body],
    *,
    now: datetime,
) -> PipelinePlan:
    namespace = body["metadata"]["namespace"]
    if decision.champion_changed and decision.memory.champion is not None:
        champion = decision.memory.champion
        score = (
            f" ({champion.metric} {champion.value:.4f})"
            if champion.metric and champion.value is not None
            else ""
        )
        ctx.event(body, "ChampionUpdated", f"run {champion.run} is the new champion{score}")
    if decision.create is not None:
        for old in decision.cancel:
            local_runs.cancel_run(ctx, namespace, old, replaced_by=decision.create.name)
        decision = _start_run(ctx, body, pipeline, decision, runs, now=now)
    if decision.prune:
        for old in decision.prune:
            ctx.store.delete(TRAINING_RUN, namespace, old)
            ctx.jobs.delete(namespace, old)
        ctx.event(
            body,
            "RunsPruned",
            f"deleted {len(decision.prune)} finished run(s) beyond the history limits: "
            + ", ".join(decision.prune),
        )
    return decision


def _start_run(
    ctx: Context,
    body: Body,
    pipeline: TrainingPipeline,
    decision: PipelinePlan,
    runs: list[Body],
    *,
    now: datetime,
) -> PipelinePlan:
    assert decision.create is not None
    namespace = body["metadata"]["namespace"]
    champion = decision.memory.champion
    champion_run = None
    if champion is not None:
        champion_run = next((r for r in runs if r["metadata"]["name"] == champion.run), None)
    ref = champion_ref(
        champion_run, fallback=champion.to_status() if champion else None, spec=pipeline.spec
    )
    new = decision.create
    while ctx.store.get(TRAINING_RUN, namespace, new.name) is not None:
        existing = ctx.store.get(TRAINING_RUN, namespace, new.name) or {}
        if _owned(existing, body["metadata"].get("uid")):
            break  # created before a crash: the plan recovered it; nothing new to create
        sequence = new.sequence + 1
        new = replace(new, sequence=sequence, name=run_name(pipeline.metadata.name or "", sequence))
    else:
        run_body = build_run(body, new, champion=ref, now=now)
        run_body["metadata"]["namespace"] = namespace
        run_body["metadata"]["generation"] = 1
        run_body["metadata"]["creationTimestamp"] = timestamp(now)
        created = ctx.store.save(run_body)
        trigger = new.trigger
        ctx.event(body, "RunCreated", f"created run {new.name}: {trigger.type.value}: {new.reason}")
        ctx.event(created, "RunCreated", f"{trigger.type.value}: {new.reason}")
    memory = replace(decision.memory, run_sequence=max(decision.memory.run_sequence, new.sequence))
    local_runs.reconcile_run(ctx, namespace, new.name)
    return replace(decision, create=new, memory=memory)


def _patch_status(ctx: Context, body: Body, changes: Mapping[str, Any]) -> None:
    status = dict(body.get("status") or {})
    if all(status.get(k) == v for k, v in changes.items()):
        return
    for key, value in changes.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    ctx.store.save({**body, "status": status})


def _stall(ctx: Context, body: Body, reason: str, message: str, *, now: datetime) -> None:
    previous = (body.get("status") or {}).get("message")
    _patch_status(ctx, body, stalled_changes(body, reason, message, now=now))
    if previous != message:
        ctx.event(body, reason, message, "Warning")


def _write_status(
    ctx: Context,
    *,
    namespace: str,
    name: str,
    decision: PipelinePlan,
    schedule: ScheduleDecision | None,
    data: DataCheck | None,
    notes: list[str],
    now: datetime,
) -> None:
    body = ctx.store.get(TRAINING_PIPELINE, namespace, name)
    if body is None:
        return
    changes = status_changes(
        body,
        decision,
        next_schedule=schedule.next_time if schedule else None,
        data_checked=data.time if data else None,
        notes=notes,
        now=now,
    )
    _patch_status(ctx, body, changes)
