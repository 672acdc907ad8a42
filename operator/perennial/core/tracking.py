"""MLflow tracking as the operator sees it (pure): status fields, the condition and the
event of a run's tracking outcome, the finalize request after the verdict, and the alias
move back when a ModelDeployment is rolled back through ``spec.rollbackTo``.

The trainer logs to MLflow (it holds the credentials, from a Secret by reference); a
tracking server that failed leaves a warning in the TrainResult, never a failed run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from perennial.core.conditions import Condition, set_condition
from perennial.core.gates import GateResult
from perennial_runtime.contract import (
    GateOutcome,
    MlflowConfig,
    TrackingFinalize,
    TrainResult,
)

TRACKING_FAILED: Final = "TrackingFailed"  # abnormal-true condition type and event reason


def tracking_status(result: TrainResult) -> dict[str, Any]:
    """``status.tracking`` from the result (nothing when tracking is off)."""
    if result.tracking is None:
        return {}
    return {"tracking": result.tracking.to_dict()}


def tracking_warning(status: Mapping[str, Any]) -> str | None:
    tracking = status.get("tracking") or {}
    warning = tracking.get("warning")
    return str(warning) if warning else None


def tracking_conditions(
    conditions: Sequence[Condition],
    status: Mapping[str, Any],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """``TrackingFailed`` (abnormal-true) when the run was tracked; untouched otherwise."""
    if "tracking" not in status:
        return list(conditions)
    warning = tracking_warning(status)
    if warning is not None:
        return set_condition(
            conditions, TRACKING_FAILED, True, "MlflowUnavailable", warning,
            now=now, generation=generation,
        )  # fmt: skip
    run_id = (status.get("tracking") or {}).get("mlflowRunId", "")
    return set_condition(
        conditions, TRACKING_FAILED, False, "Tracked", f"MLflow run {run_id}",
        now=now, generation=generation,
    )  # fmt: skip


def finalize_request(
    mlflow: MlflowConfig,
    status: Mapping[str, Any],
    *,
    verdict: str,
    reason: str,
    gates: Sequence[GateResult],
    blessed: bool,
) -> TrackingFinalize | None:
    """What the finalize Job must write after the verdict, or None when the run left
    nothing in MLflow (tracking off or the server was down)."""
    tracking = status.get("tracking") or {}
    run_id = tracking.get("mlflowRunId")
    if not run_id:
        return None
    version = tracking.get("modelVersion")
    return TrackingFinalize(
        mlflow=mlflow,
        mlflow_run_id=run_id,
        model_version=version,
        verdict="Blessed" if blessed else verdict,
        reason=reason,
        gates=[
            GateOutcome(
                name=g.name,
                passed=g.passed,
                skipped=g.skipped,
                observed=g.observed,
                threshold=g.threshold,
                message=g.message,
            )
            for g in gates
        ],
        alias_version=version if blessed else None,
    )


def rolled_back_to(
    old: Mapping[str, Any], new: Mapping[str, Any], rollback_to: str | None
) -> str | None:
    """The run a ``spec.rollbackTo`` rollback has just put in service: once, in the
    reconcile whose new status serves it while the old one did not (None otherwise)."""
    if not rollback_to:
        return None
    before = (old.get("currentModel") or {}).get("run")
    after = (new.get("currentModel") or {}).get("run")
    return rollback_to if after == rollback_to and before != rollback_to else None


def alias_request(mlflow: MlflowConfig, run_status: Mapping[str, Any]) -> TrackingFinalize | None:
    """Point the registered model's ``champion`` alias at the run's model version again
    (no verdict is written), or None when the run registered no version."""
    version = (run_status.get("tracking") or {}).get("modelVersion")
    if not version:
        return None
    return TrackingFinalize(mlflow=mlflow, alias_version=str(version))


def alias_job_request_id(deployment_uid: str, generation: int | None, run: str) -> str:
    """A short stable id of one rollback (the deployment, the spec generation that asked for
    it, the run): the alias Job's name, so a restarted operator finds it again."""
    digest = hashlib.sha256(f"{deployment_uid}/{generation}/{run}".encode()).hexdigest()
    return digest[:8]


FINALIZE_FAILED: Final = "FinalizeFailed"  # reason of TrackingFailed when the Job failed
FINALIZED: Final = "Finalized"  # reason of TrackingFailed=False once the Job succeeded


def finalize_outcome(job: Mapping[str, Any]) -> tuple[bool, str] | None:
    """How the finalize Job ended: (succeeded, message), or None while it runs."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True, "the verdict was written to MLflow"
        if condition.get("type") == "Failed":
            why = condition.get("message") or condition.get("reason") or "the Job failed"
            return False, f"the MLflow finalize Job {job['metadata']['name']} failed: {why}"
    return None


def finalize_conditions(
    conditions: Sequence[Condition],
    succeeded: bool,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """``TrackingFailed`` after the finalize Job: False (``Finalized``) when the verdict is
    in MLflow, abnormal-true (``FinalizeFailed``) when it is not; the run's own phase and
    verdict are untouched (tracking is a report, not a step)."""
    if succeeded:
        return set_condition(
            conditions, TRACKING_FAILED, False, FINALIZED, message, now=now, generation=generation
        )
    text = f"{message}; the verdict and alias are not in MLflow (the run itself is unaffected)"
    return set_condition(
        conditions, TRACKING_FAILED, True, FINALIZE_FAILED, text, now=now, generation=generation
    )
