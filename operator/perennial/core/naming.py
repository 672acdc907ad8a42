"""Deterministic names for the objects the operator creates.

A restarted operator derives the same name again, so creating it a second time is an
"already exists" answer instead of a duplicate Job.
"""

from __future__ import annotations

import hashlib
import re

from perennial.api.object_names import CANARY_SUFFIX, RUN_SEQUENCE_DIGITS, SERVING_SUFFIX

MAX_NAME = 63  # DNS-1123 label: Job names end up in pod labels
_INVALID = re.compile(r"[^a-z0-9-]+")


def _fit(base: str, suffix: str, limit: int = MAX_NAME) -> str:
    base = _INVALID.sub("-", base.lower()).strip("-") or "x"
    room = limit - len(suffix)
    if len(base) <= room:
        return f"{base}{suffix}"
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{base[: room - 7].rstrip('-')}-{digest}{suffix}"


def run_name(pipeline: str, sequence: int) -> str:
    """``<pipeline>-<sequence>``, e.g. ``churn-00042``; always a valid DNS-1123 label."""
    if sequence < 1:
        raise ValueError("run sequence starts at 1")
    return _fit(pipeline, f"-{sequence:0{RUN_SEQUENCE_DIGITS}d}")


def job_name(run: str) -> str:
    """The training Job is named after its run."""
    return _fit(run, "")


def serving_name(deployment: str) -> str:
    """The stable serving Deployment and its Service."""
    return _fit(deployment, SERVING_SUFFIX)


def canary_name(deployment: str) -> str:
    return _fit(deployment, CANARY_SUFFIX)


def tracking_job_name(run: str) -> str:
    """The Job that writes a run's verdict to MLflow (``<run>-mlflow``)."""
    return _fit(run, "-mlflow")


def alias_job_name(deployment: str, request: str) -> str:
    """The Job that moves MLflow's ``champion`` alias back for one ``spec.rollbackTo``
    rollback of ``deployment`` (``<deployment>-mlflow-alias-<request>``; ``request`` is a
    short digest of what was rolled back to, when)."""
    return _fit(deployment, f"-mlflow-alias-{request}")
