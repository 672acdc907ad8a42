"""Reconcile one TrainingPipeline: triggers -> runs, champion, history, status, events.

Read (the pipeline, its runs, the ModelDeployments its drift/decay triggers watch, the
data's fingerprint when a poll is due), decide (:func:`perennial.core.pipeline_plan.plan`,
with the time from :mod:`perennial.controllers.clock`), write (cancel, create, prune runs;
the status through the status subresource, only what changed). Idempotent, so the change
handlers, the trigger loop and the run watchers may all call it.

An invalid spec (one that slipped past the CRD schema, or a cron the schema could not
check) marks the pipeline ``Stalled`` with a message naming the field; the handler does
not raise, so there is no retry loop, and other pipelines are not affected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from perennial.api.constants import RETRAIN_ANNOTATION
from perennial.api.pipeline import TrainingPipeline, TrainingPipelineStatus
from perennial.controllers import clock, run_reconciler
from perennial.controllers.keyed_locks import KeyedLocks
from perennial.controllers.run_reconciler import event
from perennial.core.monitoring_signals import trigger_signals, watched_deployments
from perennial.core.naming import job_name, run_name
from perennial.core.pipeline_plan import (
    LABEL_PIPELINE,
    ChampionRecord,
    Memory,
    PipelineFacts,
    PipelinePlan,
    deployment_references,
    plan,
    summarize_run,
    watch_list,
)
from perennial.core.pipeline_status import stalled_changes, status_changes
from perennial.core.schedule import ScheduleDecision, ScheduleError, decide
from perennial.k8s import client, metrics
from perennial.k8s.builders.training_run import build_run, champion_ref, pipeline_spec_hash
from perennial.k8s.client import (
    JOBS,
    MODEL_DEPLOYMENTS_RESOURCE,
    PIPELINE_STATUS,
    TRAINING_PIPELINES_RESOURCE,
    TRAINING_RUNS_RESOURCE,
)
from perennial.k8s.data_fingerprint import DataCheckError, fingerprint

logger = logging.getLogger("perennial.controllers.pipeline")

LOCKS: Final = KeyedLocks()
MAX_NAME_COLLISIONS: Final = 5


@dataclass(frozen=True)
class DataCheck:
    """The outcome of polling the data (outside the pipeline's lock: it may be slow)."""

    time: datetime
    fingerprint: str | None = None
    error: str | None = None


# --- entry points ----------------------------------------------------------------------


def reconcile_pipeline(namespace: str, name: str) -> None:
    """React to a change of the pipeline (spec, annotation) or of one of its runs."""
    with LOCKS.hold(namespace, name):
        _reconcile(namespace, name, data=None, tick=False)


def tick(namespace: str, name: str) -> None:
    """The trigger loop's periodic check: schedule, data, drift, decay, active runs."""
    body = client.get_or_none(TRAINING_PIPELINES_RESOURCE, name, namespace)
    if body is None:
        return
    data = _poll_data_if_due(body, clock.now())
    with LOCKS.hold(namespace, name):
        _reconcile(namespace, name, data=data, tick=True)


def _poll_data_if_due(body: Mapping[str, Any], now: datetime) -> DataCheck | None:
    spec = body.get("spec") or {}
    change = (spec.get("triggers") or {}).get("dataChange") or {}
    uri = (spec.get("data") or {}).get("uri")
    if not change.get("enabled") or not isinstance(uri, str):
        return None
    interval = float(change.get("pollIntervalSeconds") or 300)
    last = (body.get("status") or {}).get("lastDataCheckTime")
    last_time = datetime.fromisoformat(last.replace("Z", "+00:00")) if last else None
    if last_time is not None and (now - last_time).total_seconds() < interval:
        return None
    try:
        return DataCheck(time=now, fingerprint=fingerprint(uri))
    except DataCheckError as exc:
        return DataCheck(time=now, error=str(exc))


# --- the reconcile ---------------------------------------------------------------------


def _owned(run: Mapping[str, Any], pipeline_uid: str | None) -> bool:
    refs = (run.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == pipeline_uid and ref.get("controller") for ref in refs)


def _runs(namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
    found = client.list_objects(TRAINING_RUNS_RESOURCE, namespace, labels={LABEL_PIPELINE: name})
    return [r for r in found if _owned(r, uid)]


def _reconcile(namespace: str, name: str, *, data: DataCheck | None, tick: bool) -> None:
    body = client.get_or_none(TRAINING_PIPELINES_RESOURCE, name, namespace)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    now = clock.now()
    meta = body["metadata"]
    try:
        pipeline = TrainingPipeline.model_validate(body)
    except ValidationError as exc:
        _stall(body, "InvalidSpec", _explain(exc), now=now)
        return
    spec = pipeline.spec
    schedule: ScheduleDecision | None = None
    if spec.triggers.schedule is not None:
        created = pipeline.metadata.creation_timestamp or now
        try:
            schedule = decide(
                spec.triggers.schedule.cron,
                now,
                last_scheduled=pipeline.status.last_schedule_time,
                created=min(created, now),
                time_zone=spec.triggers.schedule.time_zone,
                starting_deadline_seconds=spec.triggers.schedule.starting_deadline_seconds,
            )
        except ScheduleError as exc:
            _stall(body, "InvalidSchedule", str(exc), now=now)
            return

    runs = _runs(namespace, name, meta.get("uid"))
    active = [r for r in runs if summarize_run(r).active]
    if tick and active:
        # A safety net for missed watch events: re-derive the active runs' state.
        for run in active:
            run_reconciler.reconcile_run(namespace, run["metadata"]["name"])
        runs = _runs(namespace, name, meta.get("uid"))
    summaries = tuple(summarize_run(r) for r in runs)

    notes: list[str] = []
    watched = {
        ref: client.get_or_none(MODEL_DEPLOYMENTS_RESOURCE, ref, namespace)
        for ref in watched_deployments(spec)
    }
    signals = trigger_signals(spec, watched)
    notes.extend(signals.notes)
    drift, decay = signals.drift, signals.decay
    finished = [s for s in summaries if not s.active]
    protected: frozenset[str] = frozenset()
    if len(finished) > min(spec.successful_runs_history_limit, spec.failed_runs_history_limit):
        protected = deployment_references(
            client.list_objects(MODEL_DEPLOYMENTS_RESOURCE, namespace)
        )

    memory = _memory(pipeline.status)
    facts = PipelineFacts(
        pipeline=name,
        now=now,
        spec_hash=pipeline_spec_hash(pipeline),
        memory=memory,
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
    decision = plan(facts)
    decision = _carry_out(body, pipeline, decision, runs, now=now)
    if data is not None and data.error:
        notes.append(f"Data check failed: {data.error}")
        previous = (body.get("status") or {}).get("message") or ""
        if data.error not in previous:
            event(body, "DataCheckFailed", data.error, "Warning")
    _write_status(body, decision, schedule, data, notes, now=now)


def _memory(status: TrainingPipelineStatus) -> Memory:
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


def _carry_out(
    body: Mapping[str, Any],
    pipeline: TrainingPipeline,
    decision: PipelinePlan,
    runs: list[dict[str, Any]],
    *,
    now: datetime,
) -> PipelinePlan:
    """Cancel, create and prune runs; announce a new champion. The plan as carried out."""
    namespace = body["metadata"].get("namespace") or ""
    held = decision.memory.champion
    if held is not None and held.metric and held.value is not None:
        metrics.CHAMPION_METRIC.labels(namespace, body["metadata"]["name"], held.metric).set(
            held.value
        )
    if decision.champion_changed and decision.memory.champion is not None:
        champion = decision.memory.champion
        score = (
            f" ({champion.metric} {champion.value:.4f})"
            if champion.metric and champion.value is not None
            else ""
        )
        event(body, "ChampionUpdated", f"run {champion.run} is the new champion{score}")
    if decision.create is not None:
        for old in decision.cancel:
            run_reconciler.cancel_run(namespace, old, replaced_by=decision.create.name)
        decision = _start_run(body, pipeline, decision, runs, now=now)
    if decision.prune:
        for old in decision.prune:
            client.delete(TRAINING_RUNS_RESOURCE, old, namespace)
            client.delete(JOBS, job_name(old), namespace)
        event(
            body,
            "RunsPruned",
            f"deleted {len(decision.prune)} finished run(s) beyond the history limits: "
            + ", ".join(decision.prune),
        )
    return decision


def _start_run(
    body: Mapping[str, Any],
    pipeline: TrainingPipeline,
    decision: PipelinePlan,
    runs: list[dict[str, Any]],
    *,
    now: datetime,
) -> PipelinePlan:
    assert decision.create is not None
    namespace = body["metadata"].get("namespace") or ""
    name = body["metadata"]["name"]
    champion = decision.memory.champion
    champion_run = None
    if champion is not None:
        champion_run = next((r for r in runs if r["metadata"]["name"] == champion.run), None)
    ref = champion_ref(
        champion_run,
        fallback=champion.to_status() if champion else None,
        spec=pipeline.spec,
    )
    new = decision.create
    for _ in range(MAX_NAME_COLLISIONS):
        created, fresh = client.create_if_absent(
            TRAINING_RUNS_RESOURCE, build_run(body, new, champion=ref, now=now), namespace
        )
        if _owned(created, body["metadata"].get("uid")):
            break
        # A run of that name exists that this pipeline does not own: take the next number.
        sequence = new.sequence + 1
        new = replace(new, sequence=sequence, name=run_name(name, sequence))
    else:
        raise RuntimeError(
            f"run names {decision.create.name}..{new.name} are all taken by runs this "
            "pipeline does not own; delete them"
        )
    if fresh:
        trigger = new.trigger
        event(body, "RunCreated", f"created run {new.name}: {trigger.type.value}: {new.reason}")
        event(created, "RunCreated", f"{trigger.type.value}: {new.reason}")
        metrics.RUNS_STARTED.labels(namespace, name, trigger.type.value).inc()
    memory = replace(decision.memory, run_sequence=max(decision.memory.run_sequence, new.sequence))
    # Create the Job right away instead of waiting for the run's watch event (which
    # retries on its own if this fails: the pipeline's status is written regardless).
    try:
        run_reconciler.reconcile_run(namespace, new.name)
    except Exception as exc:
        logger.warning("run %s/%s: first reconcile failed: %s", namespace, new.name, exc)
    return replace(decision, create=new, memory=memory)


# --- status ----------------------------------------------------------------------------


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "invalid spec: " + "; ".join(parts) + "; fix the pipeline (kubectl edit tp)"


def _patch_status(body: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    current = body.get("status") or {}
    delta = {key: value for key, value in changes.items() if current.get(key) != value}
    if delta:
        meta = body["metadata"]
        PIPELINE_STATUS.write(meta["name"], meta.get("namespace"), delta)


def _stall(body: Mapping[str, Any], reason: str, message: str, *, now: datetime) -> None:
    previous = (body.get("status") or {}).get("message")
    _patch_status(body, stalled_changes(body, reason, message, now=now))
    if previous != message:
        event(body, reason, message, "Warning")


def _write_status(
    body: Mapping[str, Any],
    decision: PipelinePlan,
    schedule: ScheduleDecision | None,
    data: DataCheck | None,
    notes: list[str],
    *,
    now: datetime,
) -> None:
    changes = status_changes(
        body,
        decision,
        next_schedule=schedule.next_time if schedule else None,
        data_checked=data.time if data else None,
        notes=notes,
        now=now,
    )
    _patch_status(body, changes)
