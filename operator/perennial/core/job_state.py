"""What a training Job and its Pods say about a run: pure, over plain dicts as read from
the API server.

The Job's own conditions are the source of truth for the end (``Complete`` or ``Failed``
with the Job controller's reason: ``DeadlineExceeded``, ``BackoffLimitExceeded``,
``PodFailurePolicy``). The Pods add what the Job does not say: whether the trainer is
running yet, why it is not (an image that cannot be pulled, a missing Secret, a Pod that
cannot be scheduled) and the trainer's termination message (the TrainResult JSON, or the
tail of its log under ``FallbackToLogsOnError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

TRAINER_CONTAINER = "trainer"

# Waiting reasons after which the trainer will not start without a change: the run fails
# at once instead of waiting for activeDeadlineSeconds. ErrImagePull is the first,
# possibly transient, failure; ImagePullBackOff means the kubelet already retried.
FATAL_WAITING_REASONS = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons worth reporting while the run stays Pending (they may resolve).
NOTABLE_WAITING_REASONS = frozenset(
    {"ErrImagePull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


class JobState(StrEnum):
    MISSING = "Missing"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobObservation:
    state: JobState
    reason: str  # CamelCase: PodPending, PodRunning, Complete, DeadlineExceeded, ...
    message: str
    started: datetime | None = None
    finished: datetime | None = None
    result_text: str | None = None  # the trainer's termination message, if any
    exit_code: int | None = None
    fatal: bool = False  # the operator should fail the run now (the Job will not finish)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as written by the API server (or None)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            found: Mapping[str, Any] = cond
            return found
    return None


def _trainer_status(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == container:
            found: Mapping[str, Any] = status
            return found
    return None


def _terminated(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    status = _trainer_status(pod, container)
    if status is None:
        return None
    for key in ("state", "lastState"):
        terminated = (status.get(key) or {}).get("terminated")
        if terminated:
            found: Mapping[str, Any] = terminated
            return found
    return None


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _newest_first(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=_created, reverse=True)


def _result_pod(
    pods: Sequence[Mapping[str, Any]], container: str, succeeded: bool
) -> Mapping[str, Any] | None:
    """The pod whose trainer's termination message holds the result."""
    candidates = [p for p in _newest_first(pods) if _terminated(p, container) is not None]
    if succeeded:
        ok = [p for p in candidates if (p.get("status") or {}).get("phase") == "Succeeded"]
        ok = ok or [p for p in candidates if (_terminated(p, container) or {}).get("exitCode") == 0]
        candidates = ok or candidates
    return candidates[0] if candidates else None


def _pod_problem(pods: Sequence[Mapping[str, Any]], container: str) -> tuple[str, str, bool] | None:
    """(reason, message, fatal) of a pod that cannot start the trainer, if any."""
    for pod in _newest_first(pods):
        status = _trainer_status(pod, container)
        waiting = ((status or {}).get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FATAL_WAITING_REASONS or reason in NOTABLE_WAITING_REASONS:
            image = (status or {}).get("image") or ""
            detail = waiting.get("message") or ""
            text = f"pod {(pod.get('metadata') or {}).get('name')}: {reason}"
            if image:
                text += f" for image {image}"
            if detail:
                text += f": {detail}"
            return str(reason), text, reason in FATAL_WAITING_REASONS
        for cond in (pod.get("status") or {}).get("conditions") or ():
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                why = cond.get("reason") or "Unschedulable"
                return str(why), f"pod cannot be scheduled: {cond.get('message') or why}", False
    return None


def _is_running(pods: Sequence[Mapping[str, Any]], container: str) -> bool:
    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Running":
            return True
        status = _trainer_status(pod, container)
        if ((status or {}).get("state") or {}).get("running") is not None:
            return True
    return False


def _termination_summary(terminated: Mapping[str, Any]) -> str:
    parts = []
    if terminated.get("exitCode") is not None:
        parts.append(f"exit code {terminated['exitCode']}")
    if terminated.get("reason"):
        parts.append(str(terminated["reason"]))
    return ", ".join(parts)


def observe(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    container: str = TRAINER_CONTAINER,
) -> JobObservation:
    """The state of the training Job, read from the Job and its Pods."""
    if job is None:
        return JobObservation(JobState.MISSING, "JobMissing", "the training Job does not exist")
    status = job.get("status") or {}
    started = parse_time(status.get("startTime"))
    complete = _condition(job, "Complete")
    succeeded = (status.get("succeeded") or 0) >= 1 and bool(status.get("completionTime"))
    if complete is not None or succeeded:
        finished = parse_time(status.get("completionTime")) or parse_time(
            (complete or {}).get("lastTransitionTime")
        )
        pod = _result_pod(pods, container, succeeded=True)
        terminated = _terminated(pod, container) if pod else None
        return JobObservation(
            JobState.SUCCEEDED,
            "Complete",
            "the training Job completed",
            started=started,
            finished=finished,
            result_text=(terminated or {}).get("message") or None,
            exit_code=(terminated or {}).get("exitCode"),
        )
    failed = _condition(job, "Failed")
    if failed is not None:
        reason = str(failed.get("reason") or "JobFailed")
        message = str(failed.get("message") or "the training Job failed")
        pod = _result_pod(pods, container, succeeded=False)
        terminated = _terminated(pod, container) if pod else None
        if terminated:
            summary = _termination_summary(terminated)
            if summary:
                message = f"{message} (trainer: {summary})"
        return JobObservation(
            JobState.FAILED,
            reason,
            message,
            started=started,
            finished=parse_time(failed.get("lastTransitionTime")),
            result_text=(terminated or {}).get("message") or None,
            exit_code=(terminated or {}).get("exitCode"),
        )
    problem = _pod_problem(pods, container)
    if problem is not None and problem[2]:
        reason, message, _ = problem
        return JobObservation(JobState.FAILED, reason, message, started=started, fatal=True)
    if _is_running(pods, container) or (status.get("ready") or 0) > 0:
        return JobObservation(
            JobState.RUNNING, "PodRunning", "the trainer is running", started=started
        )
    if problem is not None:
        reason, message, _ = problem
        return JobObservation(JobState.PENDING, reason, message, started=started)
    if pods:
        return JobObservation(
            JobState.PENDING, "PodPending", "waiting for the training Pod to start", started=started
        )
    return JobObservation(
        JobState.PENDING, "JobPending", "waiting for the Job to create its Pod", started=started
    )
