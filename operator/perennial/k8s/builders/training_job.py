"""TrainingRun -> the ``batch/v1`` Job that trains it (pure).

The Job runs ``perennial-runtime train`` in the run template's image with the run's
``TrainConfig`` as JSON in ``PERENNIAL_TRAIN_CONFIG``; the trainer writes its
``TrainResult`` to ``/dev/termination-log``, which the operator reads from the Pod status
(``FallbackToLogsOnError``: a crash leaves the log's tail there instead). The Pod meets the
``restricted`` Pod Security Standard: non-root, no privilege escalation, every capability
dropped, seccomp ``RuntimeDefault``, read-only root filesystem with an ``emptyDir`` on
``/tmp`` for everything that writes. Credentials come from the referenced Secrets as
environment variables (the kubelet resolves them; the operator never reads a Secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from perennial.api.run import TrainingRun
from perennial.core.job_state import TRAINER_CONTAINER
from perennial.core.naming import job_name
from perennial.core.pipeline_plan import LABEL_PIPELINE, LABEL_RUN
from perennial.k8s.client import owner_reference
from perennial_runtime.contract import (
    TRAIN_CONFIG_ENV,
    ExitCode,
    MlflowConfig,
    TrainConfig,
)

RUNTIME_COMMAND: Final = ("perennial-runtime",)
RUNTIME_ARGS: Final = ("train",)
RUNTIME_UID: Final = 65532  # the runtime image's USER
TMP_VOLUME: Final = "tmp"
ARTIFACTS_VOLUME: Final = "artifacts"
TMP_SIZE_LIMIT: Final = "2Gi"
TERMINATION_LOG: Final = "/dev/termination-log"


def restricted_container_security() -> dict[str, Any]:
    """A container's securityContext under the restricted Pod Security Standard (a fresh
    dict per call: the Job bodies are mutated by the client)."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


MLFLOW_CREDENTIAL_KEYS: Final = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)

MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "perennial"}
COMPONENT_TRAINING: Final = "training"

# Exit codes of failures that a retry of the same Pod cannot fix: the Job fails at once
# even with backoffLimit > 0 (a podFailurePolicy). Data or artifact storage that is
# unreachable (3, 7) may recover, and so does an unexpected error (1): those are retried.
NON_RETRYABLE_EXIT_CODES: Final = (
    int(ExitCode.INVALID_CONFIG),
    int(ExitCode.DATA_VALIDATION_FAILED),
    int(ExitCode.TRAINING_ERROR),
    int(ExitCode.CHAMPION_UNAVAILABLE),
)


def train_config(run: TrainingRun, namespace: str | None) -> TrainConfig:
    """What the trainer is told: the run's snapshot in the contract's terms."""
    spec = run.spec.pipeline_spec
    return TrainConfig(
        run_name=run.metadata.name or "",
        pipeline_name=run.spec.pipeline_ref.name if run.spec.pipeline_ref else None,
        namespace=namespace,
        data=spec.contract_data_source(),
        model=spec.contract_model(),
        evaluation=spec.contract_evaluation(),
        validation=spec.contract_validation_limits(),
        champion=run.spec.champion.to_contract() if run.spec.champion else None,
        artifact_uri=spec.artifacts.uri,
        image=spec.run_template.image,
        result_path=TERMINATION_LOG,
        mlflow=mlflow_config(run, namespace),
    )


def mlflow_config(run: TrainingRun, namespace: str | None) -> MlflowConfig | None:
    """The run's MLflow settings with defaults resolved, or None when tracking is off."""
    tracking = run.spec.pipeline_spec.tracking
    if tracking is None or tracking.mlflow is None:
        return None
    pipeline = run.spec.pipeline_ref.name if run.spec.pipeline_ref else run.metadata.name
    return tracking.mlflow.contract(namespace, pipeline, run.spec.spec_hash)


def mlflow_credentials_env(run: TrainingRun) -> list[dict[str, Any]]:
    """MLflow's credential variables from the referenced Secret, each optional (basic
    auth or a token): the kubelet resolves them, the operator never reads the Secret."""
    tracking = run.spec.pipeline_spec.tracking
    if (
        tracking is None
        or tracking.mlflow is None
        or tracking.mlflow.credentials_secret_ref is None
    ):
        return []
    secret = tracking.mlflow.credentials_secret_ref.name
    return [
        {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}},
        }
        for key in MLFLOW_CREDENTIAL_KEYS
    ]


def job_labels(run: TrainingRun) -> dict[str, str]:
    """Labels linking the Job and its Pods to their run (and pipeline)."""
    labels = {
        **MANAGED_BY,
        "app.kubernetes.io/name": "perennial-runtime",
        "app.kubernetes.io/component": COMPONENT_TRAINING,
        LABEL_RUN: run.metadata.name or "",
    }
    if run.spec.pipeline_ref is not None:
        labels[LABEL_PIPELINE] = run.spec.pipeline_ref.name
    return labels


def _env_from(run: TrainingRun) -> list[dict[str, Any]]:
    spec = run.spec.pipeline_spec
    names: list[str] = []
    for ref in (spec.data.secret_ref, spec.artifacts.secret_ref):
        if ref is not None and ref.name not in names:
            names.append(ref.name)
    return [{"secretRef": {"name": name}} for name in names]


def _container(run: TrainingRun, config: TrainConfig) -> dict[str, Any]:
    spec = run.spec.pipeline_spec
    template = spec.run_template
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]
    if spec.artifacts.volume is not None:
        mounts.append({"name": ARTIFACTS_VOLUME, "mountPath": spec.artifacts.volume.mount_path})
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "command": list(RUNTIME_COMMAND),
        "args": list(RUNTIME_ARGS),
        "env": [
            {"name": TRAIN_CONFIG_ENV, "value": config.to_json()},
            {"name": "HOME", "value": "/tmp"},
            {"name": "TMPDIR", "value": "/tmp"},
            *mlflow_credentials_env(run),
        ],
        "resources": template.resources.to_dict(),
        "securityContext": restricted_container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    env_from = _env_from(run)
    if env_from:
        container["envFrom"] = env_from
    return container


def _pod_spec(run: TrainingRun, config: TrainConfig) -> dict[str, Any]:
    spec = run.spec.pipeline_spec
    template = spec.run_template
    volumes: list[dict[str, Any]] = [
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}
    ]
    if spec.artifacts.volume is not None:
        volumes.append(
            {
                "name": ARTIFACTS_VOLUME,
                "persistentVolumeClaim": {"claimName": spec.artifacts.volume.claim_name},
            }
        )
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(run, config)],
        "volumes": volumes,
    }
    if template.service_account_name:
        pod["serviceAccountName"] = template.service_account_name
    else:
        # The trainer needs no Kubernetes credentials; without an identity to assume
        # (workload identity for s3:// or gs://) no token is mounted at all.
        pod["automountServiceAccountToken"] = False
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod["tolerations"] = [t.to_dict() for t in template.tolerations]
    return pod


def build_job(run_body: Mapping[str, Any]) -> dict[str, Any]:
    """The training Job of a TrainingRun body as read from the API server (it needs the
    run's ``metadata.uid`` for the owner reference: deleting the run deletes the Job)."""
    run = TrainingRun.model_validate(run_body)
    namespace = run.metadata.namespace
    name = job_name(run.metadata.name or "")
    template = run.spec.pipeline_spec.run_template
    config = train_config(run, namespace)
    labels = job_labels(run)
    pod_labels = {**(template.pod_labels or {}), **labels}
    pod_meta: dict[str, Any] = {"labels": pod_labels}
    if template.pod_annotations:
        pod_meta["annotations"] = dict(template.pod_annotations)
    metadata: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "annotations": {"perennial.dev/trigger": run.spec.trigger.type.value},
        "ownerReferences": [owner_reference(dict(run_body))],
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": template.backoff_limit,
            "activeDeadlineSeconds": template.active_deadline_seconds,
            "ttlSecondsAfterFinished": template.ttl_seconds_after_finished,
            "completions": 1,
            "parallelism": 1,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": TRAINER_CONTAINER,
                            "operator": "In",
                            "values": list(NON_RETRYABLE_EXIT_CODES),
                        },
                    },
                    {
                        # A Pod evicted or preempted is not the trainer's fault.
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {"metadata": pod_meta, "spec": _pod_spec(run, config)},
        },
    }
