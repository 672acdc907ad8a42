"""After a tracked run's verdict: start the Job that writes it to MLflow, and report how
that Job ended.

Thin: the decision is :func:`perennial.core.tracking.finalize_request`, the object is
:func:`perennial.k8s.builders.tracking_job.build_finalize_job`. Never fails the
reconcile: tracking is a report, a failure to start it is a Warning event. When the Job
ends (its conditions change; it carries the ``perennial.dev/tracked-run`` label), the run
gets an event, and ``TrackingFailed=True`` (reason ``FinalizeFailed``) if it failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from perennial.api.run import TrainingRun
from perennial.controllers import clock
from perennial.controllers.indexes import state_of
from perennial.core.run_verdict import RunVerdict
from perennial.core.tracking import (
    TRACKING_FAILED,
    finalize_conditions,
    finalize_outcome,
    finalize_request,
)
from perennial.k8s.builders.tracking_job import LABEL_TRACKED_RUN, build_finalize_job
from perennial.k8s.builders.training_job import mlflow_config
from perennial.k8s.client import JOBS, RUN_STATUS
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.events import report_event

logger = logging.getLogger("perennial.controllers.tracking")

Event = Callable[..., None]


def start_finalize(
    state: ClusterState,
    body: Mapping[str, Any],
    run: TrainingRun,
    verdict: RunVerdict,
    event: Event,
) -> None:
    """Create the finalize Job of a finished, tracked run (idempotent by name)."""
    namespace = body["metadata"].get("namespace") or ""
    config = mlflow_config(run, namespace or None)
    if config is None:
        return
    request = finalize_request(
        config,
        verdict.status,
        verdict=verdict.phase.value if not verdict.blessed else "Blessed",
        reason=verdict.message,
        gates=verdict.gates,
        blessed=verdict.blessed,
    )
    if request is None:
        return
    try:
        job, fresh = state.create_if_absent(JOBS, build_finalize_job(body, request), namespace)
    except Exception as exc:
        logger.warning("finalize Job of %s not created: %s", body["metadata"]["name"], exc)
        event(body, TRACKING_FAILED, f"cannot start the MLflow finalize Job: {exc}", "Warning")
        return
    if fresh:
        event(
            body,
            "TrackingFinalizeStarted",
            f"Job {job['metadata']['name']} writes the verdict to MLflow run "
            f"{request.mlflow_run_id}"
            + (f" and moves alias champion to version {request.alias_version}"
               if request.alias_version else ""),
        )  # fmt: skip


# An event handler (kopf keeps no state on the Job: the operator may not patch Jobs); the
# run's condition says whether the outcome was reported already.
@kopf.on.event(
    "batch", "v1", "jobs", id="tracking-finalize", labels={LABEL_TRACKED_RUN: kopf.PRESENT}
)
def finalize_ended(
    body: kopf.Body, labels: Mapping[str, str], namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    outcome = finalize_outcome(body)
    if outcome is None:
        return
    state = state_of(memo)
    run = state.run(namespace or "", labels[LABEL_TRACKED_RUN])
    if run is None:
        return
    succeeded, message = outcome
    status = run.get("status") or {}
    conditions = finalize_conditions(
        status.get("conditions") or [],
        succeeded,
        message,
        now=clock.now(),
        generation=(run.get("metadata") or {}).get("generation"),
    )
    if conditions == status.get("conditions"):
        return
    state.write_status(RUN_STATUS, run, {"conditions": conditions})
    if succeeded:
        report_event(run, "TrackingFinalized", message)
    else:
        report_event(run, TRACKING_FAILED, message, "Warning")
