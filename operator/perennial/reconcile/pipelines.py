"""Reconcile one TrainingPipeline: triggers -> runs, champion, history, status, events.

Read (the pipeline, its runs, the ModelDeployments its drift/decay triggers watch, through
the :class:`PipelinePort`; the data's fingerprint when a poll is due), decide
(:func:`perennial.core.pipeline_plan.plan`), write (cancel, create, prune runs; the status,
only what changed). Idempotent, so change handlers, the trigger timer and run watchers may
all call it; a reconcile that changes nothing writes nothing.

An invalid spec (one that slipped past the CRD schema, or a cron the schema could not
check) marks the pipeline ``Stalled`` with a message naming the field; nothing raises, so
there is no retry loop, and other pipelines are not affected.

The operator's adapter is :mod:`perennial.controllers.pipeline_reconciler`; the local
runner's :mod:`perennial.local.pipelines`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from perennial.api.constants import RETRAIN_ANNOTATION
from perennial.api.enums import TriggerType
from perennial.api.pipeline import TrainingPipeline, TrainingPipelineStatus
from perennial.core import pipeline_plan
from perennial.core.monitoring_signals import trigger_signals, watched_deployments
from perennial.core.naming import run_name
from perennial.core.pipeline_plan import (
    ChampionRecord,
    Memory,
    NewRun,
    PipelineFacts,
    PipelinePlan,
    deployment_references,
    summarize_run,
    watch_list,
)
from perennial.core.pipeline_status import stalled_changes, status_changes
from perennial.core.schedule import ScheduleDecision, ScheduleError, decide
from perennial.core.spec_hash import spec_hash
from perennial.core.timers import DataCheck, data_poll_due
from perennial.reconcile.kit import explain_invalid, status_delta

Body = dict[str, Any]

MAX_NAME_COLLISIONS: Final = 5


class PipelinePort(Protocol):
    """What the pipeline reconciler needs from where it runs (cluster or local runner)."""

    def now(self) -> datetime: ...

    def pipeline(self, namespace: str, name: str) -> Body | None: ...

    def runs(self, namespace: str, pipeline: str) -> list[Body]:
        """The runs labelled with the pipeline's name (ownership is checked here)."""

    def deployment(self, namespace: str, name: str) -> Body | None: ...

    def deployments(self, namespace: str) -> list[Body]: ...

    def check_data(self, uri: str, now: datetime) -> DataCheck:
        """Fingerprint the data at ``uri`` (an error is reported, never raised)."""

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
        """Create the run unless one of that name exists: (the run, created now)."""

    def start_run(self, namespace: str, name: str) -> None:
        """Reconcile a run just created (its Job now, not at its watch event)."""

    def cancel_run(self, namespace: str, name: str, *, replaced_by: str) -> None: ...

    def delete_run(self, namespace: str, name: str) -> None:
        """Delete a finished run and its Job."""

    def write_status(self, body: Mapping[str, Any], delta: Mapping[str, Any]) -> None:
        """Write these status fields (a None value removes the field)."""

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None: ...

    def run_started(self, body: Mapping[str, Any], trigger: TriggerType) -> None:
        """Count a run created (a metric where there are metrics)."""

    def champion_held(self, body: Mapping[str, Any], champion: ChampionRecord) -> None:
        """Show the champion's metric (a gauge where there are metrics)."""


def owned(run: Mapping[str, Any], pipeline_uid: str | None) -> bool:
    refs = (run.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == pipeline_uid and ref.get("controller") for ref in refs)


def poll_data_if_due(port: PipelinePort, body: Mapping[str, Any]) -> DataCheck | None:
    """Fingerprint the data when the dataChange trigger's poll interval has passed."""
    try:
        pipeline = TrainingPipeline.model_validate(body)
    except ValidationError:
        return None  # the reconcile marks it Stalled
    now = port.now()
    if not data_poll_due(pipeline.spec, pipeline.status, now):
        return None
    return port.check_data(pipeline.spec.data.uri, now)


def reconcile_pipeline(
    port: PipelinePort, namespace: str, name: str, *, data: DataCheck | None = None
) -> PipelinePlan | None:
    """One reconcile of the pipeline; its plan as carried out (None: nothing to plan)."""
    body = port.pipeline(namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    now = port.now()
    try:
        pipeline = TrainingPipeline.model_validate(body)
    except ValidationError as exc:
        message = explain_invalid(exc, "fix the pipeline: kubectl edit tp")
        _stall(port, body, "InvalidSpec", message, now=now)
        return None
    spec = pipeline.spec
    uid = body["metadata"].get("uid")
    runs = [r for r in port.runs(namespace, name) if owned(r, uid)]
    summaries = tuple(summarize_run(r) for r in runs)
    memory = memory_of(pipeline.status)
    schedule: ScheduleDecision | None = None
    if spec.triggers.schedule is not None:
        created = pipeline.metadata.creation_timestamp or now
        try:
            schedule = decide(
                spec.triggers.schedule.cron,
                now,
                # The status may not have recorded the last slot yet (the operator died
                # between creating its run and writing the status): the runs' own record
                # of what they consumed counts too, or the slot would be run twice.
                last_scheduled=pipeline_plan.recover(memory, summaries).schedule_time,
                created=min(created, now),
                time_zone=spec.triggers.schedule.time_zone,
                starting_deadline_seconds=spec.triggers.schedule.starting_deadline_seconds,
            )
        except ScheduleError as exc:
            _stall(port, body, "InvalidSchedule", str(exc), now=now)
            return None

    notes: list[str] = []
    watched = {ref: port.deployment(namespace, ref) for ref in watched_deployments(spec)}
    signals = trigger_signals(spec, watched)
    notes.extend(signals.notes)
    finished = [s for s in summaries if not s.active]
    protected: frozenset[str] = frozenset()
    if len(finished) > min(spec.successful_runs_history_limit, spec.failed_runs_history_limit):
        protected = deployment_references(port.deployments(namespace))

    facts = PipelineFacts(
        pipeline=name,
        now=now,
        spec_hash=spec_hash(spec.to_dict()),
        memory=memory,
        runs=summaries,
        suspend=spec.suspend,
        policy=spec.concurrency_policy,
        on_spec_change=spec.triggers.on_spec_change,
        manual_token=pipeline.metadata.annotations.get(RETRAIN_ANNOTATION) or None,
        schedule=schedule,
        data_fingerprint=data.fingerprint if data else None,
        drift=signals.drift,
        decay=signals.decay,
        successful_limit=spec.successful_runs_history_limit,
        failed_limit=spec.failed_runs_history_limit,
        protected=protected,
        watching=watch_list(spec, schedule.next_time if schedule else None),
    )
    decision = _carry_out(port, body, pipeline, pipeline_plan.plan(facts), runs, now=now)
    if data is not None and data.error:
        notes.append(f"Data check failed: {data.error}")
        previous = (body.get("status") or {}).get("message") or ""
        if data.error not in previous:
            port.event(body, "DataCheckFailed", data.error, "Warning")
    changes = status_changes(
        body,
        decision,
        next_schedule=schedule.next_time if schedule else None,
        data_checked=data.time if data else None,
        notes=notes,
        now=now,
    )
    _patch_status(port, body, changes)
    return decision


def memory_of(status: TrainingPipelineStatus) -> Memory:
    """What the pipeline's status remembers, in the core's terms."""
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
    port: PipelinePort,
    body: Mapping[str, Any],
    pipeline: TrainingPipeline,
    decision: PipelinePlan,
    runs: list[Body],
    *,
    now: datetime,
) -> PipelinePlan:
    """Cancel, create and prune runs; announce a new champion. The plan as carried out."""
    namespace = body["metadata"].get("namespace") or ""
    held = decision.memory.champion
    if held is not None and held.metric and held.value is not None:
        port.champion_held(body, held)
    if decision.champion_changed and held is not None:
        score = (
            f" ({held.metric} {held.value:.4f})" if held.metric and held.value is not None else ""
        )
        port.event(body, "ChampionUpdated", f"run {held.run} is the new champion{score}")
    if decision.create is not None:
        for old in decision.cancel:
            port.cancel_run(namespace, old, replaced_by=decision.create.name)
        decision = _start_run(port, body, pipeline, decision, runs, now=now)
    if decision.prune:
        for old in decision.prune:
            port.delete_run(namespace, old)
        port.event(
            body,
            "RunsPruned",
            f"deleted {len(decision.prune)} finished run(s) beyond the history limits: "
            + ", ".join(decision.prune),
        )
    return decision


def _start_run(
    port: PipelinePort,
    body: Mapping[str, Any],
    pipeline: TrainingPipeline,
    decision: PipelinePlan,
    runs: list[Body],
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
    new = decision.create
    for _ in range(MAX_NAME_COLLISIONS):
        created, fresh = port.create_run(
            body, pipeline, new, champion_run=champion_run, champion=champion, now=now
        )
        if owned(created, body["metadata"].get("uid")):
            break  # new, or created before a crash and recovered by the plan
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
        what = f"{trigger.type.value}: {new.reason}"
        port.event(body, "RunCreated", f"created run {new.name}: {what}")
        port.event(created, "RunCreated", what)
        port.run_started(body, trigger.type)
    memory = replace(decision.memory, run_sequence=max(decision.memory.run_sequence, new.sequence))
    port.start_run(namespace, new.name)
    return replace(decision, create=new, memory=memory)


def _patch_status(port: PipelinePort, body: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
    delta = status_delta(body, changes)
    if delta:
        port.write_status(body, delta)


def _stall(
    port: PipelinePort, body: Mapping[str, Any], reason: str, message: str, *, now: datetime
) -> None:
    previous = (body.get("status") or {}).get("message")
    _patch_status(port, body, stalled_changes(body, reason, message, now=now))
    if previous != message:
        port.event(body, reason, message, "Warning")
