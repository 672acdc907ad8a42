"""The local form of the MLflow finalize Job: ``python -m perennial_runtime.tracking
finalize`` as a process, started after a tracked run's verdict (the same request as the
operator's Job, :func:`perennial.core.tracking.finalize_request`), and of the alias Job of a
``spec.rollbackTo`` rollback. Credentials come from the runner's own environment
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from perennial.api.run import TrainingRun
from perennial.core.run_verdict import RunVerdict
from perennial.core.tracking import alias_request, finalize_request
from perennial.k8s.builders.training_job import mlflow_config
from perennial.local import processes
from perennial_runtime.contract import TRACKING_FINALIZE_ENV, TrackingFinalize

FINALIZE_LOG: Final = "mlflow-finalize.log"
ALIAS_LOG: Final = "mlflow-alias.log"


def start_finalize(
    body: Mapping[str, Any], verdict: RunVerdict, folder: Path
) -> subprocess.Popen[bytes] | None:
    """Start the finalize process of a finished, tracked run (log in ``folder``)."""
    try:
        run = TrainingRun.model_validate(body)
    except ValidationError:
        return None
    config = mlflow_config(run, run.metadata.namespace)
    if config is None:
        return None
    request = finalize_request(
        config,
        {**(body.get("status") or {}), **verdict.status},
        verdict="Blessed" if verdict.blessed else verdict.phase.value,
        reason=verdict.message,
        gates=verdict.gates,
        blessed=verdict.blessed,
    )
    return _spawn(request, folder / FINALIZE_LOG)


def start_alias_move(run_body: Mapping[str, Any], folder: Path) -> subprocess.Popen[bytes] | None:
    """Point MLflow's ``champion`` alias back at the run's model version (a
    ``spec.rollbackTo`` rollback served it again): the alias Job's request, as a process
    (log in ``folder``)."""
    try:
        run = TrainingRun.model_validate(run_body)
    except ValidationError:
        return None
    config = mlflow_config(run, run.metadata.namespace)
    if config is None:
        return None
    return _spawn(alias_request(config, run_body.get("status") or {}), folder / ALIAS_LOG)


def _spawn(request: TrackingFinalize | None, log: Path) -> subprocess.Popen[bytes] | None:
    """``python -m perennial_runtime.tracking finalize`` with ``request`` (None: nothing)."""
    if request is None:
        return None
    return processes.spawn(
        [sys.executable, "-m", "perennial_runtime.tracking", "finalize"],
        log,
        env={**os.environ, TRACKING_FINALIZE_ENV: request.to_json()},
    )
