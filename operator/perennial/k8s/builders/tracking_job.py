"""TrainingRun + verdict -> the short ``batch/v1`` Job that writes it to MLflow (pure).

The operator cannot read the MLflow credentials (it has no access to Secrets), so the
verdict, the gates and the ``champion`` alias are written by
``python -m perennial_runtime.tracking finalize`` in the run's own image, with the
credentials from the Secret by reference, like the training Pod. Named after the run
(``<run>-mlflow``) and owned by it: a restarted operator finds it instead of a duplicate.
It carries no ``perennial.dev/run`` label, so it never stands for the training Job.

The same command, with a request that only moves the ``champion`` alias, runs in the alias
Job of a ``spec.rollbackTo`` rollback (:func:`build_alias_job`): owned by the
ModelDeployment, named after the rollback, labelled apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from perennial.api.run import TrainingRun
from perennial.core.naming import alias_job_name, tracking_job_name
from perennial.core.tracking import alias_job_request_id
from perennial.k8s.builders.training_job import (
    MANAGED_BY,
    RUNTIME_UID,
    TMP_SIZE_LIMIT,
    TMP_VOLUME,
    mlflow_credentials_env,
    restricted_container_security,
)
from perennial.k8s.client import owner_reference
from perennial_runtime.contract import TRACKING_FINALIZE_ENV, TrackingFinalize

COMPONENT_TRACKING: Final = "tracking"
LABEL_TRACKED_RUN: Final = "perennial.dev/tracked-run"
# On the alias Job of a spec.rollbackTo rollback: the ModelDeployment it reports to.
LABEL_ALIAS_DEPLOYMENT: Final = "perennial.dev/tracking-alias-of"
FINALIZE_COMMAND: Final = ("python", "-m", "perennial_runtime.tracking", "finalize")
FINALIZE_BACKOFF_LIMIT: Final = 3
FINALIZE_DEADLINE_SECONDS: Final = 600
FINALIZE_TTL_SECONDS: Final = 3600


def build_finalize_job(run_body: Mapping[str, Any], request: TrackingFinalize) -> dict[str, Any]:
    name = run_body["metadata"]["name"]
    return _tracking_job(
        run_body,
        request,
        name=tracking_job_name(name),
        labels={LABEL_TRACKED_RUN: name},
        owner=run_body,
    )


def build_alias_job(
    deployment_body: Mapping[str, Any], run_body: Mapping[str, Any], request: TrackingFinalize
) -> dict[str, Any]:
    """The Job that points MLflow's ``champion`` alias back at ``run_body``'s model version
    after ``spec.rollbackTo`` put it in service again: in the run's image with the run's
    credentials, owned by the ModelDeployment, named after this rollback."""
    meta = deployment_body["metadata"]
    request_id = alias_job_request_id(
        meta.get("uid") or "", meta.get("generation"), run_body["metadata"]["name"]
    )
    return _tracking_job(
        run_body,
        request,
        name=alias_job_name(meta["name"], request_id),
        labels={LABEL_ALIAS_DEPLOYMENT: meta["name"]},
        owner=deployment_body,
    )


def _tracking_job(
    run_body: Mapping[str, Any],
    request: TrackingFinalize,
    *,
    name: str,
    labels: Mapping[str, str],
    owner: Mapping[str, Any],
) -> dict[str, Any]:
    run = TrainingRun.model_validate(run_body)
    template = run.spec.pipeline_spec.run_template
    labels = {
        **MANAGED_BY,
        "app.kubernetes.io/name": "perennial-runtime",
        "app.kubernetes.io/component": COMPONENT_TRACKING,
        **labels,
    }
    container: dict[str, Any] = {
        "name": "finalize",
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "command": list(FINALIZE_COMMAND),
        "env": [
            {"name": TRACKING_FINALIZE_ENV, "value": request.to_json()},
            {"name": "HOME", "value": "/tmp"},
            {"name": "TMPDIR", "value": "/tmp"},
            *mlflow_credentials_env(run),
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}],
    }
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod["tolerations"] = [t.to_dict() for t in template.tolerations]
    metadata: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "ownerReferences": [owner_reference(dict(owner))],
    }
    if run.metadata.namespace:
        metadata["namespace"] = run.metadata.namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": FINALIZE_BACKOFF_LIMIT,
            "activeDeadlineSeconds": FINALIZE_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": FINALIZE_TTL_SECONDS,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
