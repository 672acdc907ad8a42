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
from pydantic import ValidationError

from perennial.api.run import TrainingRun
from perennial.controllers import clock
from perennial.controllers.indexes import state_of
from perennial.core.run_verdict import RunVerdict
from perennial.core.tracking import (
    TRACKING_FAILED,
    alias_request,
    finalize_conditions,
    finalize_outcome,
    finalize_request,
)
from perennial.k8s.builders.tracking_job import (
    LABEL_ALIAS_DEPLOYMENT,
    LABEL_TRACKED_RUN,
    build_alias_job,
    build_finalize_job,
)
from perennial.k8s.builders.training_job import mlflow_config
from perennial.k8s.client import JOBS, RUN_STATUS
from perennial.k8s.cluster_state import ClusterState
from perennial.k8s.events import report_event

logger = logging.getLogger("perennial.controllers.tracking")

Event = Callable[..., None]
_ALIAS_REPORTED = "perennial-alias-jobs-reported"  # memo key: alias Jobs whose end was told


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


def start_alias_move(
    state: ClusterState, md: Mapping[str, Any], run_body: Mapping[str, Any]
) -> None:
    """Start the Job that points MLflow's ``champion`` alias back at ``run_body``'s model
    version after a ``spec.rollbackTo`` rollback (idempotent by name; never fails the
    reconcile: a Warning event if it cannot be started)."""
    namespace = md["metadata"].get("namespace") or ""
    try:
        run = TrainingRun.model_validate(run_body)
    except ValidationError:
        return
    config = mlflow_config(run, namespace or None)
    if config is None:
        return
    request = alias_request(config, run_body.get("status") or {})
    if request is None:
        return
    name = run_body["metadata"]["name"]
    try:
        job, fresh = state.create_if_absent(JOBS, build_alias_job(md, run_body, request), namespace)
    except Exception as exc:
        logger.warning("alias Job for %s not created: %s", md["metadata"]["name"], exc)
        report_event(
            md, TRACKING_FAILED, f"cannot start the MLflow alias Job for {name}: {exc}", "Warning"
        )
        return
    if fresh:
        report_event(
            md,
            "TrackingAliasMoveStarted",
            f"Job {job['metadata']['name']} moves MLflow alias champion of "
            f"{config.registered_model_name} back to version {request.alias_version} ({name})",
        )


@kopf.on.event(
    "batch", "v1", "jobs", id="tracking-alias", labels={LABEL_ALIAS_DEPLOYMENT: kopf.PRESENT}
)
def alias_move_ended(
    body: kopf.Body,
    labels: Mapping[str, str],
    namespace: str | None,
    memo: kopf.Memo,
    type: str | None,
    **_: Any,
) -> None:
    """Report the end of an alias Job on its ModelDeployment, once per operator: an ending
    seen in the initial listing (before this operator started) was reported already."""
    if type in (None, "DELETED"):  # None: the initial listing
        return
    outcome = finalize_outcome(body)
    reported: set[str] = memo.setdefault(_ALIAS_REPORTED, set())
    uid = body["metadata"].get("uid") or ""
    if outcome is None or uid in reported:
        return
    reported.add(uid)
    md = state_of(memo).deployment(namespace or "", labels[LABEL_ALIAS_DEPLOYMENT])
    if md is None:
        return
    succeeded = outcome[0]
    job_name = body["metadata"]["name"]
    if succeeded:
        report_event(md, "TrackingAliasMoved", f"Job {job_name} moved MLflow alias champion")
    else:
        report_event(
            md,
            TRACKING_FAILED,
            f"Job {job_name} failed to move MLflow alias champion; the rollback stands",
            "Warning",
        )


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
