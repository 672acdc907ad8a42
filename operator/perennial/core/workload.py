"""What a serving Deployment and its Pods report, read into a ``WorkloadState``. Pure.

The model a Deployment runs is the ``perennial.dev/model-sha256`` annotation of its pod
template; the Pods of a model carry the ``perennial.dev/run`` label, so crash-looping Pods
are attributed to the model they run (the old Pods of a rolling update are not the new
model's problem).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from perennial.core.rollout import WorkloadState

MODEL_SHA256_ANNOTATION: Final = "perennial.dev/model-sha256"
RUN_LABEL: Final = "perennial.dev/run"

# Waiting reasons that do not go away by waiting (the image or the config is wrong, or the
# container keeps dying).
CRASH_REASONS: Final = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
# Restarts after which a container counts as crash-looping even between back-offs.
MAX_RESTARTS: Final = 3


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def crash_reason(pod: Mapping[str, Any]) -> str | None:
    """Why ``pod`` is crash-looping (e.g. ``CrashLoopBackOff: sha256 mismatch``), or None."""
    status = pod.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        reason = waiting.get("reason")
        restarts = _int(container.get("restartCount"))
        if reason in CRASH_REASONS or restarts >= MAX_RESTARTS:
            detail = last.get("message") or waiting.get("message") or last.get("reason")
            label = reason or f"{restarts} restarts"
            text = f"{label}: {str(detail).strip()}" if detail else str(label)
            return text[:300]
    return None


def workload_state(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    *,
    run: str | None = None,
) -> WorkloadState:
    """The state of ``deployment`` (None: it does not exist). ``pods`` are its Pods; only
    those of ``run`` (default: the run its pod template serves) count as crash-looping."""
    if deployment is None:
        return WorkloadState(exists=False, desired_replicas=0, generation=0, observed_generation=0)
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    annotations = template_meta.get("annotations") or {}
    if run is None:
        run = (template_meta.get("labels") or {}).get(RUN_LABEL)
    deadline_exceeded = any(
        c.get("type") == "Progressing"
        and c.get("status") == "False"
        and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    crashing = 0
    first_reason: str | None = None
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if run is not None and labels.get(RUN_LABEL) != run:
            continue
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        why = crash_reason(pod)
        if why:
            crashing += 1
            first_reason = first_reason or why
    replicas = spec.get("replicas")
    return WorkloadState(
        exists=True,
        model_sha256=annotations.get(MODEL_SHA256_ANNOTATION),
        desired_replicas=1 if replicas is None else _int(replicas),
        total_replicas=_int(status.get("replicas")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        updated_replicas=_int(status.get("updatedReplicas")),
        ready_replicas=_int(status.get("readyReplicas")),
        available_replicas=_int(status.get("availableReplicas")),
        unavailable_replicas=_int(status.get("unavailableReplicas")),
        progress_deadline_exceeded=deadline_exceeded,
        crash_looping_pods=crashing,
        crash_reason=first_reason,
    )
