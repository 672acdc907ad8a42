"""Reconcile one TrainingRun: its Job, its phase, its verdict, its events and metrics.

Read (the run, its Job, the Job's Pods: from the watch-fed
:class:`~perennial.k8s.cluster_state.ClusterState`, no request), decide
(:mod:`perennial.core.job_state`, :mod:`perennial.core.run_verdict`), write (the Job if
missing; the run's status through the status subresource, only what changed). Idempotent:
calling it again with nothing new changes nothing, so every watcher of runs, Jobs and Pods
may call it.

Phases: ``Pending`` (Job created, Pod not running yet) -> ``Training`` (the trainer runs)
-> ``Evaluating`` (the Job completed; reading the result) -> ``Succeeded`` (blessed),
``Rejected`` (a gate failed) or ``Failed`` (no verdict: the trainer's or Kubernetes'
reason). A finished run is never touched again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from perennial.api.enums import RunPhase
from perennial.api.run import TrainingRun
from perennial.controllers import clock, tracking
from perennial.controllers.keyed_locks import KeyedLocks
from perennial.core.conditions import set_condition, timestamp
from perennial.core.job_state import JobObservation, JobState, observe, parse_time
from perennial.core.naming import job_name
from perennial.core.pipeline_plan import LABEL_RUN
from perennial.core.run_status import (
    awaiting_result,
    finish_status,
    judge,
    progress_status,
    verdict_events,
)
from perennial.core.run_verdict import GateConfig, RunVerdict, failure, verdict_conditions
from perennial.k8s import metrics
from perennial.k8s.builders.training_job import build_job
from perennial.k8s.client import JOBS, RUN_STATUS
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.events import EventType, post_event

logger = logging.getLogger("perennial.controllers.run")

LOCKS: Final = KeyedLocks()

_FINISHED: Final = frozenset({RunPhase.SUCCEEDED, RunPhase.REJECTED, RunPhase.FAILED})


@dataclass(frozen=True)
class RunReport:
    """What a reconcile found: the run's pipeline and phase, and whether it just ended."""

    pipeline: str | None
    phase: str | None
    finished_now: bool = False


def event(obj: Mapping[str, Any], reason: str, message: str, type: EventType = "Normal") -> None:
    """Post an event; never fails the reconcile (an event is a report, not a step)."""
    try:
        post_event(obj, reason, message, type)
    except Exception as exc:  # outside an operator (CLI, tests) or a malformed target
        logger.debug("event %s not posted: %s", reason, exc)


def _pipeline_of(body: Mapping[str, Any]) -> str | None:
    ref = ((body.get("spec") or {}).get("pipelineRef") or {}).get("name")
    return str(ref) if ref else None


def _write(
    state: ClusterState, body: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Write only the fields that differ from the current status; the new status."""
    current = dict(body.get("status") or {})
    delta = {key: value for key, value in changes.items() if current.get(key) != value}
    if delta:
        state.write_status(RUN_STATUS, body, delta)
        current.update(delta)
    return current


def reconcile_run(state: ClusterState, namespace: str, name: str) -> RunReport | None:
    """Bring the run one step forward; None if it does not exist (any more)."""
    with LOCKS.hold(namespace, name):
        return _reconcile(state, namespace, name)


def _reconcile(state: ClusterState, namespace: str, name: str) -> RunReport | None:
    body = state.run(namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    pipeline = _pipeline_of(body)
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase in _FINISHED:
        return RunReport(pipeline, phase)
    now = clock.now()
    generation = (body.get("metadata") or {}).get("generation")
    try:
        run = TrainingRun.model_validate(body)
    except ValidationError as exc:
        _stall(state, body, _explain(exc), now=now, generation=generation)
        return RunReport(pipeline, RunPhase.FAILED.value, finished_now=True)

    job = state.job(namespace, name, job_name(name))
    if job is not None and not _owned_by(job, body):
        _progress(
            state,
            body,
            RunPhase.PENDING,
            "JobNameTaken",
            f"a Job named {job_name(name)} exists that this run does not own (left over from "
            "a deleted run?); waiting for it to be deleted",
            now=now,
        )
        return RunReport(pipeline, RunPhase.PENDING.value)
    if job is None:
        if phase in (None, RunPhase.PENDING.value):
            job, fresh = state.create_if_absent(JOBS, build_job(body), namespace)
            if phase is None and fresh:
                event(
                    body,
                    "JobCreated",
                    f"created training Job {job_name(name)} (image "
                    f"{run.spec.pipeline_spec.run_template.image})",
                )
        else:
            return _finish(
                state,
                body,
                run,
                failure(
                    "JobMissing",
                    f"the training Job {job_name(name)} disappeared while the run was {phase}; "
                    "its result is lost",
                ),
                None,
                now=now,
            )

    pods = [
        pod
        for pod in state.pods_of(namespace, name)
        if (pod.get("metadata", {}).get("labels") or {}).get(LABEL_RUN) == name
        and _owned_by(pod, job)
    ]
    seen = observe(job, pods)
    if seen.state is JobState.PENDING or seen.state is JobState.MISSING:
        _progress(state, body, RunPhase.PENDING, seen.reason, seen.message, now=now)
        return RunReport(pipeline, RunPhase.PENDING.value)
    if seen.state is JobState.RUNNING:
        if phase != RunPhase.TRAINING.value:
            event(body, "TrainingStarted", f"the trainer is running in Job {job_name(name)}")
        _progress(
            state,
            body,
            RunPhase.TRAINING,
            "Training",
            f"training {run.spec.pipeline_spec.model.estimator} in Job {job_name(name)}",
            now=now,
            started=seen.started,
        )
        return RunReport(pipeline, RunPhase.TRAINING.value)
    return _judge(state, body, run, seen, now=now, pods_listed=bool(pods))


def _judge(
    state: ClusterState,
    body: Mapping[str, Any],
    run: TrainingRun,
    seen: JobObservation,
    *,
    now: datetime,
    pods_listed: bool,
) -> RunReport:
    pipeline = _pipeline_of(body)
    name = body["metadata"]["name"]
    phase = (body.get("status") or {}).get("phase")
    if seen.state is JobState.SUCCEEDED and phase != RunPhase.EVALUATING.value:
        event(body, "TrainingCompleted", f"Job {job_name(name)} completed")
    if awaiting_result(seen, pods_listed=pods_listed, now=now):
        # The Job completed but its Pod is not listed (yet): give it a moment.
        _progress(
            state,
            body,
            RunPhase.EVALUATING,
            "ReadingResult",
            "the Job completed; waiting for the trainer's result in the Pod's termination message",
            now=now,
            started=seen.started,
        )
        return RunReport(pipeline, RunPhase.EVALUATING.value)
    config = GateConfig.from_spec(run.spec.pipeline_spec)
    verdict = judge(seen, config, had_champion=run.spec.champion is not None)
    if seen.state is JobState.FAILED and seen.fatal:
        # The Job would wait for its deadline (an image that cannot be pulled): stop it.
        state.delete(JOBS, job_name(name), body["metadata"].get("namespace") or "")
    return _finish(state, body, run, verdict, seen, now=now)


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == uid for ref in refs)


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "invalid spec: " + "; ".join(parts) + " (fix the field, or create a new run)"


def _stall(
    state: ClusterState,
    body: Mapping[str, Any],
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> None:
    conditions = set_condition(
        (body.get("status") or {}).get("conditions"),
        "Ready",
        False,
        "InvalidSpec",
        message,
        now=now,
        generation=generation,
    )
    conditions = set_condition(
        conditions, "Reconciling", False, "InvalidSpec", "", now=now, generation=generation
    )
    conditions = set_condition(
        conditions, "Stalled", True, "InvalidSpec", message, now=now, generation=generation
    )
    _write(
        state,
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
    event(body, "InvalidSpec", message, "Warning")
    _count_outcome(body, RunPhase.FAILED.value)


def _progress(
    state: ClusterState,
    body: Mapping[str, Any],
    phase: RunPhase,
    reason: str,
    message: str,
    *,
    now: datetime,
    started: datetime | None = None,
) -> None:
    _write(state, body, progress_status(body, phase, reason, message, now=now, started=started))


def _finish(
    state: ClusterState,
    body: Mapping[str, Any],
    run: TrainingRun,
    verdict: RunVerdict,
    seen: JobObservation | None,
    *,
    now: datetime,
) -> RunReport:
    _write(state, body, finish_status(body, verdict, seen, now=now))
    _announce(body, run, verdict, seen, now=now)
    tracking.start_finalize(state, body, run, verdict, event)
    return RunReport(_pipeline_of(body), verdict.phase.value, finished_now=True)


def _announce(
    body: Mapping[str, Any],
    run: TrainingRun,
    verdict: RunVerdict,
    seen: JobObservation | None,
    *,
    now: datetime,
) -> None:
    """Events and metrics of a run that just reached its final phase."""
    namespace = body["metadata"].get("namespace") or ""
    pipeline = _pipeline_of(body) or ""
    for note in verdict_events(verdict):
        event(body, note.reason, note.message, note.type)
    for gate in verdict.gates:
        if not gate.skipped and not gate.passed:
            metrics.GATE_FAILURES.labels(namespace, pipeline, gate.name).inc()
    _count_outcome(body, verdict.phase.value)
    duration = _training_seconds(seen, body)
    if duration is not None:
        metrics.TRAINING_DURATION.labels(namespace, pipeline).observe(duration)
    if verdict.phase in (RunPhase.SUCCEEDED, RunPhase.REJECTED) and run.spec.trigger.time:
        waited = (now - run.spec.trigger.time).total_seconds()
        metrics.TRIGGER_TO_VERDICT.labels(namespace, pipeline).observe(max(0.0, waited))


def _training_seconds(seen: JobObservation | None, body: Mapping[str, Any]) -> float | None:
    if seen is None:
        return None
    started = seen.started or parse_time((body.get("status") or {}).get("startTime"))
    if started is None or seen.finished is None:
        return None
    return max(0.0, (seen.finished - started).total_seconds())


def _count_outcome(body: Mapping[str, Any], outcome: str) -> None:
    namespace = body["metadata"].get("namespace") or ""
    metrics.RUN_OUTCOMES.labels(namespace, _pipeline_of(body) or "", outcome).inc()


def cancel_run(state: ClusterState, namespace: str, name: str, *, replaced_by: str) -> bool:
    """Concurrency policy Replace: end an active run (Failed, reason Replaced) and delete
    its Job. False if the run had already finished or is gone."""
    with LOCKS.hold(namespace, name):
        body = state.run(namespace, name)
        if body is None:
            return False
        phase = (body.get("status") or {}).get("phase")
        if phase in _FINISHED:
            return False
        now = clock.now()
        verdict = failure(
            "Replaced",
            f"replaced by run {replaced_by} (concurrencyPolicy Replace); its Job was deleted",
        )
        generation = body["metadata"].get("generation")
        _write(
            state,
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
        state.delete(JOBS, job_name(name), namespace)
        event(body, "RunReplaced", verdict.message, "Warning")
        _count_outcome(body, verdict.phase.value)
        return True
