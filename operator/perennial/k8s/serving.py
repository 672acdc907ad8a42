"""Pure builders of the serving objects of a ModelDeployment (plain dicts, no I/O).

For ModelDeployment ``NAME``:

- Deployment ``NAME-serving`` (track ``stable``) and, for canaries, ``NAME-canary`` (track
  ``canary``): ``perennial-runtime serve`` with the model's URI and sha256 (verified by the
  server before loading), readiness on ``/v2/health/ready`` (model loaded, digest verified,
  smoke prediction passed) and liveness on ``/v2/health/live``, the restricted Pod Security
  Standard (non-root, read-only root filesystem with an emptyDir on ``/tmp``, no privilege
  escalation, all capabilities dropped, seccomp RuntimeDefault), ``RollingUpdate`` with
  ``maxUnavailable: 0`` so the old model serves until the new one is ready.
- Service ``NAME-serving`` selecting the Pods of both tracks (traffic splits by replica
  count), port ``http``.
- PodDisruptionBudget ``NAME-serving`` when ``spec.podDisruptionBudget`` is set.

Every object carries an owner reference to the ModelDeployment (deleted with it) and the
``perennial.dev/spec-hash`` annotation: the operator patches a Deployment only when what it
would build differs from what it built before (:func:`deployment_patch`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from perennial.api.constants import DEFAULT_RUNTIME_IMAGE
from perennial.api.deployment import ModelDeploymentSpec
from perennial.core.naming import canary_name, serving_name
from perennial.core.rollout import ModelRef
from perennial.core.workload import MODEL_SHA256_ANNOTATION, RUN_LABEL
from perennial.k8s.client import owner_reference

DEPLOYMENT_LABEL: Final = "perennial.dev/deployment"
TRACK_LABEL: Final = "perennial.dev/track"
# Set on every serving object and Pod (after the user's podLabels, so it cannot be changed):
# what the operator's watches of serving Deployments and Pods select.
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "perennial-operator"}
STABLE: Final = "stable"
CANARY: Final = "canary"
SPEC_HASH_ANNOTATION: Final = "perennial.dev/spec-hash"
MODEL_URI_ANNOTATION: Final = "perennial.dev/model-uri"
CONTAINER: Final = "server"
PORT_NAME: Final = "http"
RUNTIME_UID: Final = 65532  # the runtime image's non-root user (trainer-image/Dockerfile)
TMP_SIZE_LIMIT: Final = "1Gi"
REVISION_HISTORY_LIMIT: Final = 3
MAX_LABEL_VALUE: Final = 63
READY_PATH: Final = "/v2/health/ready"
LIVE_PATH: Final = "/v2/health/live"
# The deployment's feedback key (signs prediction ids so that every server of the
# deployment, the next model's included, can score feedback): Secret NAME-feedback-key,
# key "key", created by the user; optional, so Pods start without it (each server then
# signs with a key of its own). The kubelet resolves it: the operator never reads secrets.
FEEDBACK_KEY_ENV: Final = "PERENNIAL_FEEDBACK_KEY"
FEEDBACK_KEY_SECRET_SUFFIX: Final = "-feedback-key"
FEEDBACK_KEY_SECRET_KEY: Final = "key"


def label_value(text: str) -> str:
    """``text`` as a label value (at most 63 characters: a long run name keeps its start
    and gets a digest of the whole)."""
    if len(text) <= MAX_LABEL_VALUE:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: MAX_LABEL_VALUE - 9].rstrip('-.')}-{digest}"


def selector_labels(deployment: str) -> dict[str, str]:
    """What the Service and the PodDisruptionBudget select: the Pods of both tracks."""
    return {DEPLOYMENT_LABEL: deployment}


def track_labels(deployment: str, track: str) -> dict[str, str]:
    """The (immutable) selector of one serving Deployment."""
    return {DEPLOYMENT_LABEL: deployment, TRACK_LABEL: track}


def common_labels(deployment: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "perennial-model-server",
        "app.kubernetes.io/instance": deployment,
        "app.kubernetes.io/component": "model-server",
        **MANAGED_BY,
        "app.kubernetes.io/part-of": "perennial",
        DEPLOYMENT_LABEL: deployment,
    }


def workload_name(deployment: str, track: str) -> str:
    return serving_name(deployment) if track == STABLE else canary_name(deployment)


def service_host(deployment: str, namespace: str) -> str:
    return f"{serving_name(deployment)}.{namespace}.svc"


def endpoint(deployment: str, namespace: str, port: int) -> str:
    """The in-cluster base URL of the model server (``status.endpoint``)."""
    return f"http://{service_host(deployment, namespace)}:{port}"


def model_name(deployment: str) -> str:
    """The model's name in the V2 URLs: the ModelDeployment's name (stable across models)."""
    return deployment


def feedback_key_secret(deployment: str) -> str:
    """The Secret holding the feedback key of ModelDeployment ``deployment``."""
    return f"{deployment}{FEEDBACK_KEY_SECRET_SUFFIX}"


def monitoring_path(deployment: str) -> str:
    return f"/v2/models/{model_name(deployment)}/monitoring"


def _meta(md: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    namespace = (md.get("metadata") or {}).get("namespace")
    meta: dict[str, Any] = {
        "name": name,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(md)],
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def _hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _image(spec: ModelDeploymentSpec, model: ModelRef) -> str:
    return spec.image or model.image or DEFAULT_RUNTIME_IMAGE


def pod_template(
    name: str, spec: ModelDeploymentSpec, model: ModelRef, *, track: str
) -> dict[str, Any]:
    """The pod template serving ``model`` for ModelDeployment ``name``."""
    labels = dict(spec.pod_labels or {})
    labels.update(common_labels(name))
    labels.update(track_labels(name, track))
    labels[RUN_LABEL] = label_value(model.run)
    annotations = dict(spec.pod_annotations or {})
    annotations.update(
        {
            MODEL_SHA256_ANNOTATION: model.sha256,
            MODEL_URI_ANNOTATION: model.model_uri,
            RUN_LABEL: model.run,  # the full name (the label may be shortened)
            "kubectl.kubernetes.io/default-container": CONTAINER,
        }
    )
    env = [
        {"name": "PERENNIAL_MODEL_URI", "value": model.model_uri},
        {"name": "PERENNIAL_MODEL_SHA256", "value": model.sha256},
        {"name": "PERENNIAL_MODEL_NAME", "value": model_name(name)},
        {
            "name": "PERENNIAL_DRIFT_WINDOW",
            # The server refuses windows below its minimum sample size.
            "value": str(spec.monitoring.drift_window),
        },
        {"name": "PERENNIAL_FEEDBACK_WINDOW", "value": str(spec.monitoring.feedback_window)},
        # One server process per Pod: the drift and feedback windows and feedback by id are
        # per process, so each Pod stays one consistent monitoring unit (the server's own
        # default is one process per core). Scale with replicas.
        {"name": "PERENNIAL_SERVE_WORKERS", "value": "1"},
        {
            "name": FEEDBACK_KEY_ENV,
            "valueFrom": {
                "secretKeyRef": {
                    "name": feedback_key_secret(name),
                    "key": FEEDBACK_KEY_SECRET_KEY,
                    "optional": True,
                }
            },
        },
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}]
    if model.artifact_claim:
        mounts.append(
            {
                "name": "artifacts",
                "mountPath": model.artifact_mount_path or "/artifacts",
                "readOnly": True,
            }
        )
        volumes.append(
            {
                "name": "artifacts",
                "persistentVolumeClaim": {"claimName": model.artifact_claim, "readOnly": True},
            }
        )
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": _image(spec, model),
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["perennial-runtime"],
        "args": ["serve", "--port", str(spec.port)],
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": PORT_NAME},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": spec.resources.to_dict(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if model.secret_name:
        container["envFrom"] = [{"secretRef": {"name": model.secret_name}}]
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [t.to_dict() for t in spec.tolerations]
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}


def build_deployment(
    md: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    model: ModelRef,
    *,
    track: str = STABLE,
    replicas: int,
) -> dict[str, Any]:
    """The apps/v1 Deployment of one track serving ``model`` with ``replicas`` Pods."""
    name = md["metadata"]["name"]
    body_spec: dict[str, Any] = {
        "replicas": max(0, replicas),
        "selector": {"matchLabels": track_labels(name, track)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "template": pod_template(name, spec, model, track=track),
    }
    labels = {**common_labels(name), TRACK_LABEL: track}
    meta = _meta(md, workload_name(name, track), labels)
    meta["annotations"] = {SPEC_HASH_ANNOTATION: _hash(_without_replicas(body_spec))}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body_spec}


def build_service(md: Mapping[str, Any], spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The Service in front of both tracks."""
    name = md["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(md, serving_name(name), common_labels(name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {"name": PORT_NAME, "port": spec.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def build_pdb(md: Mapping[str, Any], spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """The PodDisruptionBudget of the serving Pods, or None when not asked for."""
    if spec.pod_disruption_budget is None:
        return None
    name = md["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(md, serving_name(name), common_labels(name)),
        "spec": {
            "minAvailable": spec.pod_disruption_budget.min_available,
            "selector": {"matchLabels": selector_labels(name)},
        },
    }


def _without_replicas(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "replicas"}


def _null_diff(existing: Any, desired: Any) -> Any:
    """A JSON merge patch turning ``existing`` into ``desired`` (maps only; lists and
    scalars are replaced; keys missing from ``desired`` are removed)."""
    if not isinstance(existing, Mapping) or not isinstance(desired, Mapping):
        return copy.deepcopy(desired)
    out: dict[str, Any] = {k: None for k in existing if k not in desired}
    for key, value in desired.items():
        out[key] = _null_diff(existing.get(key), value)
    return out


def deployment_patch(
    existing: Mapping[str, Any], desired: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The merge patch that makes ``existing`` what :func:`build_deployment` built, or None
    when nothing we own differs (a Deployment is patched only on a real change)."""
    have_hash = ((existing.get("metadata") or {}).get("annotations") or {}).get(
        SPEC_HASH_ANNOTATION
    )
    want_hash = desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    have_replicas = (existing.get("spec") or {}).get("replicas")
    want_replicas = desired["spec"]["replicas"]
    template_sha = (
        (((existing.get("spec") or {}).get("template") or {}).get("metadata") or {})
        .get("annotations", {})
        .get(MODEL_SHA256_ANNOTATION)
    )
    want_sha = desired["spec"]["template"]["metadata"]["annotations"][MODEL_SHA256_ANNOTATION]
    if have_hash == want_hash and have_replicas == want_replicas and template_sha == want_sha:
        return None
    if have_hash == want_hash and template_sha == want_sha:
        return {"spec": {"replicas": want_replicas}}
    return {
        "metadata": {
            "labels": desired["metadata"]["labels"],
            "annotations": {SPEC_HASH_ANNOTATION: want_hash},
            "ownerReferences": desired["metadata"]["ownerReferences"],
        },
        "spec": _null_diff(existing.get("spec") or {}, desired["spec"]),
    }


def object_patch(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch for a Service or PodDisruptionBudget whose ``spec`` fields we set
    differ (server-filled fields such as ``clusterIP`` are left alone), or None."""
    have = existing.get("spec") or {}
    want = desired.get("spec") or {}
    if all(have.get(k) == v for k, v in want.items()):
        return None
    return {"spec": copy.deepcopy(want)}
