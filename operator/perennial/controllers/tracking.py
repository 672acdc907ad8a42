"""After a tracked run's verdict: start the Job that writes it to MLflow.

Thin: the decision is :func:`perennial.core.tracking.finalize_request`, the object is
:func:`perennial.k8s.builders.tracking_job.build_finalize_job`. Never fails the
reconcile: tracking is a report, a failure to start it is a Warning event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from perennial.api.run import TrainingRun
from perennial.core.run_verdict import RunVerdict
from perennial.core.tracking import TRACKING_FAILED, finalize_request
from perennial.k8s.builders.tracking_job import build_finalize_job
from perennial.k8s.builders.training_job import mlflow_config
from perennial.k8s.client import JOBS
from perennial.k8s.cluster_state import ClusterState

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
