"""Reconcile one TrainingRun: its Job, its phase, its verdict, its events.

Read (the run, its Job and the Job's Pods, through the :class:`RunPort`), decide
(:mod:`perennial.core.job_state`, :mod:`perennial.core.run_status`), write (the Job if
missing; the run's status, only what changed). Idempotent: calling it again with nothing
new changes nothing, so every watcher of runs, Jobs and Pods may call it.

Phases: ``Pending`` (Job created, Pod not running yet) -> ``Training`` (the trainer runs)
-> ``Evaluating`` (the Job completed; reading the result) -> ``Succeeded`` (blessed),
``Rejected`` (a gate failed) or ``Failed`` (no verdict: the trainer's or Kubernetes'
reason). A finished run is never touched again.

The operator's adapter (:mod:`perennial.controllers.run_reconciler`) runs the Job in the
cluster; the local runner's (:mod:`perennial.local.runs`) runs the trainer as a process
read back in the Job/Pod shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from perennial.api.enums import RunPhase
from perennial.api.run import TrainingRun
from perennial.core import job_state
from perennial.core.conditions import set_condition, timestamp
from perennial.core.job_state import JobObservation, JobState
from perennial.core.run_status import (
    awaiting_result,
    finish_status,
    judge,
    progress_status,
    verdict_events,
)
from perennial.core.run_verdict import GateConfig, RunVerdict, failure, verdict_conditions
from perennial.reconcile.kit import explain_invalid, status_delta

Body = dict[str, Any]

FINISHED: Final = frozenset({RunPhase.SUCCEEDED, RunPhase.REJECTED, RunPhase.FAILED})


@dataclass(frozen=True)
class JobView:
    """A run's Job as the port sees it: the Job (None if absent), the Pods it owns, and
    whether a Job of that name exists that the run does not own."""

    job: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    foreign: bool = False


class RunPort(Protocol):
    """What the run reconciler needs from where it runs (cluster or local runner)."""

    def now(self) -> datetime: ...

    def run(self, namespace: str, name: str) -> Body | None:
        """The run, or None if it does not exist (any more)."""

    def job_label(self, name: str) -> str:
        """How messages name the run's Job (``Job iris-00002``, ``trainer process ...``)."""

    def view_job(self, body: Mapping[str, Any]) -> JobView: ...

    def create_job(self, body: Mapping[str, Any], run: TrainingRun) -> str | None:
        """Create the Job unless it exists; the event message if created now."""

    def delete_job(self, namespace: str, name: str) -> None: ...

    def write_status(self, body: Mapping[str, Any], delta: Mapping[str, Any]) -> Body:
        """Write these status fields (all differ from the stored ones); the new body."""

    def event(
        self, body: Mapping[str, Any], reason: str, message: str, type: str = "Normal"
    ) -> None: ...

    def finished(
        self,
        body: Mapping[str, Any],
        run: TrainingRun | None,
        verdict: RunVerdict,
        seen: JobObservation | None,
    ) -> None:
        """The run just reached its final phase: metrics, MLflow finalize (run is None
        when its spec is invalid)."""


@dataclass(frozen=True)
class RunReport:
    """What a reconcile found: the run's pipeline and phase, and whether it just ended."""

    pipeline: str | None
    phase: str | None
    finished_now: bool = False


def pipeline_of(body: Mapping[str, Any]) -> str | None:
    ref = ((body.get("spec") or {}).get("pipelineRef") or {}).get("name")
    return str(ref) if ref else None


def _write(port: RunPort, body: Mapping[str, Any], changes: Mapping[str, Any]) -> Body:
    delta = status_delta(body, changes)
    return port.write_status(body, delta) if delta else dict(body)


def reconcile_run(port: RunPort, namespace: str, name: str) -> RunReport | None:
    """Bring the run one step forward; None if it does not exist (any more)."""
    body = port.run(namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    pipeline = pipeline_of(body)
    phase = (body.get("status") or {}).get("phase")
    if phase in FINISHED:
        return RunReport(pipeline, phase)
    now = port.now()
    try:
        run = TrainingRun.model_validate(body)
    except ValidationError as exc:
        _stall(port, body, explain_invalid(exc, "fix the field, or create a new run"), now=now)
        return RunReport(pipeline, RunPhase.FAILED.value, finished_now=True)

    label = port.job_label(name)
    view = port.view_job(body)
    if view.foreign:
        _progress(
            port,
            body,
            RunPhase.PENDING,
            "JobNameTaken",
            f"a {label} exists that this run does not own (left over from a deleted run?); "
            "waiting for it to be deleted",
            now=now,
        )
        return RunReport(pipeline, RunPhase.PENDING.value)
    if view.job is None:
        if phase not in (None, RunPhase.PENDING.value):
            lost = failure(
                "JobMissing",
                f"the training {label} disappeared while the run was {phase}; its result is lost",
            )
            return _finish(port, body, run, lost, None, now=now)
        created = port.create_job(body, run)
        if phase is None and created:
            port.event(body, "JobCreated", created)
        view = port.view_job(body)

    seen = job_state.observe(view.job, view.pods)
    if seen.state in (JobState.PENDING, JobState.MISSING):
        _progress(port, body, RunPhase.PENDING, seen.reason, seen.message, now=now)
        return RunReport(pipeline, RunPhase.PENDING.value)
    estimator = run.spec.pipeline_spec.model.estimator
    if seen.state is JobState.RUNNING:
        if phase != RunPhase.TRAINING.value:
            port.event(body, "TrainingStarted", f"the trainer is running in {label}")
        _progress(
            port,
            body,
            RunPhase.TRAINING,
            "Training",
            f"training {estimator} in {label}",
            now=now,
            started=seen.started,
        )
        return RunReport(pipeline, RunPhase.TRAINING.value)
    return _judge(port, body, run, seen, now=now, pods_listed=bool(view.pods))


def _judge(
    port: RunPort,
    body: Mapping[str, Any],
    run: TrainingRun,
    seen: JobObservation,
    *,
    now: datetime,
    pods_listed: bool,
) -> RunReport:
    name = body["metadata"]["name"]
    phase = (body.get("status") or {}).get("phase")
    if seen.state is JobState.SUCCEEDED and phase != RunPhase.EVALUATING.value:
        port.event(body, "TrainingCompleted", f"{port.job_label(name)} completed")
    if awaiting_result(seen, pods_listed=pods_listed, now=now):
        # The Job completed but its Pod is not seen terminated (yet): give it a moment.
        _progress(
            port,
            body,
            RunPhase.EVALUATING,
            "ReadingResult",
            "the Job completed; waiting for the trainer's result in the Pod's termination message",
            now=now,
            started=seen.started,
        )
        return RunReport(pipeline_of(body), RunPhase.EVALUATING.value)
    config = GateConfig.from_spec(run.spec.pipeline_spec)
    verdict = judge(seen, config, had_champion=run.spec.champion is not None)
    report = _finish(port, body, run, verdict, seen, now=now)
    if seen.state is JobState.FAILED and seen.fatal:
        # The Job would wait for its deadline (an image that cannot be pulled): stop it,
        # once the verdict is stored. Deleted first, a refused verdict write (409, or a
        # crash in between) would leave a run still Pending without its Job, and the next
        # turn would create the Job again.
        port.delete_job(body["metadata"].get("namespace") or "", name)
    return report


def _stall(port: RunPort, body: Mapping[str, Any], message: str, *, now: datetime) -> None:
    generation = (body.get("metadata") or {}).get("generation")
    conditions = (body.get("status") or {}).get("conditions")
    for type_, status, text in (
        ("Ready", False, message),
        ("Reconciling", False, ""),
        ("Stalled", True, message),
    ):
        conditions = set_condition(
            conditions, type_, status, "InvalidSpec", text, now=now, generation=generation
        )
    body = _write(
        port,
        body,
        {
            "observedGeneration": generation,
            "phase": RunPhase.FAILED.value,
            "reason": "InvalidSpec",
            "message": message,
            "completionTime": timestamp(now),
            "conditions": conditions,
        },
    )
    port.event(body, "InvalidSpec", message, "Warning")
    port.finished(body, None, failure("InvalidSpec", message), None)


def _progress(
    port: RunPort,
    body: Mapping[str, Any],
    phase: RunPhase,
    reason: str,
    message: str,
    *,
    now: datetime,
    started: datetime | None = None,
) -> None:
    _write(port, body, progress_status(body, phase, reason, message, now=now, started=started))


def _finish(
    port: RunPort,
    body: Mapping[str, Any],
    run: TrainingRun,
    verdict: RunVerdict,
    seen: JobObservation | None,
    *,
    now: datetime,
) -> RunReport:
    body = _write(port, body, finish_status(body, verdict, seen, now=now))
    for note in verdict_events(verdict):
        port.event(body, note.reason, note.message, note.type)
    port.finished(body, run, verdict, seen)
    return RunReport(pipeline_of(body), verdict.phase.value, finished_now=True)


def cancel_run(port: RunPort, namespace: str, name: str, *, replaced_by: str) -> bool:
    """Concurrency policy Replace: end an active run (Failed, reason Replaced) and stop its
    Job. False if the run had already finished or is gone."""
    body = port.run(namespace, name)
    if body is None or (body.get("status") or {}).get("phase") in FINISHED:
        return False
    now = port.now()
    verdict = failure(
        "Replaced",
        f"replaced by run {replaced_by} (concurrencyPolicy Replace); "
        f"{port.job_label(name)} was deleted",
    )
    generation = body["metadata"].get("generation")
    body = _write(
        port,
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
    port.delete_job(namespace, name)
    port.event(body, "RunReplaced", verdict.message, "Warning")
    port.finished(body, None, verdict, None)
    return True
