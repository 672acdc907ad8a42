"""The serving objects: valid against the official Kubernetes schemas, restricted Pod
Security, probes, owner references, and patches only on real changes."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from perennial.api.deployment import ModelDeploymentSpec
from perennial.core.rollout import ModelRef
from perennial.k8s.serving import (
    CANARY,
    SPEC_HASH_ANNOTATION,
    STABLE,
    build_deployment,
    build_pdb,
    build_service,
    deployment_patch,
    endpoint,
    label_value,
    monitoring_path,
    object_patch,
)
from perennial_runtime.contract import MIN_DRIFT_SAMPLES
from testsupport.pod_security import restricted_violations

K8S_VERSION = "1.30"
MD: dict[str, Any] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "0b6c7d7e-1111-4222-8333-444455556666"},
}
PVC_MODEL = ModelRef(
    run="iris-00002",
    model_uri="file:///artifacts/iris/iris-00002/model.skops",
    sha256="b" * 64,
    image="registry.example/perennial-runtime:1.2.3",
    artifact_claim="models",
    artifact_mount_path="/artifacts",
)
S3_MODEL = ModelRef(
    run="iris-00003",
    model_uri="s3://models/iris/iris-00003/model.skops",
    sha256="c" * 64,
    image="registry.example/perennial-runtime:1.2.4",
    secret_name="s3-credentials",
)


def spec(**kw: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"source": {"pipelineRef": {"name": "iris"}}, **kw})


def valid(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("model", [PVC_MODEL, S3_MODEL])
@pytest.mark.parametrize("track", [STABLE, CANARY])
def test_deployment_is_valid_apps_v1(model: ModelRef, track: str) -> None:
    full = spec(
        replicas=3,
        podLabels={"team": "ml"},
        podAnnotations={"prometheus.io/scrape": "true"},
        nodeSelector={"pool": "cpu"},
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        serviceAccountName="model-server",
        resources={"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    )
    deployment = build_deployment(MD, full, model, track=track, replicas=2)
    valid(deployment)
    assert deployment["metadata"]["name"] == ("iris-serving" if track == STABLE else "iris-canary")
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["spec"]["replicas"] == 2


def test_deployment_runs_the_model_with_probes_and_rolling_update() -> None:
    deployment = build_deployment(
        MD, spec(progressDeadlineSeconds=120), PVC_MODEL, track=STABLE, replicas=2
    )
    body = deployment["spec"]
    assert body["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert body["progressDeadlineSeconds"] == 120
    c = container(deployment)
    assert c["image"] == "registry.example/perennial-runtime:1.2.3"
    assert c["command"] == ["perennial-runtime"] and c["args"] == ["serve", "--port", "8080"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["PERENNIAL_MODEL_URI"] == PVC_MODEL.model_uri
    assert env["PERENNIAL_MODEL_SHA256"] == PVC_MODEL.sha256
    assert env["PERENNIAL_MODEL_NAME"] == "iris"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    template = body["template"]
    assert template["metadata"]["annotations"]["perennial.dev/model-sha256"] == "b" * 64
    assert template["metadata"]["annotations"]["perennial.dev/run"] == "iris-00002"
    assert template["metadata"]["labels"]["perennial.dev/run"] == "iris-00002"
    # Same selector label app + a track label; both are in the Pods' labels.
    assert body["selector"]["matchLabels"] == {
        "perennial.dev/deployment": "iris",
        "perennial.dev/track": "stable",
    }
    assert body["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


@pytest.mark.parametrize("track", [STABLE, CANARY])
@pytest.mark.parametrize("model", [PVC_MODEL, S3_MODEL], ids=["pvc", "s3"])
@pytest.mark.parametrize(
    "options",
    [{}, {"image": "mirror.example/runtime:1", "port": 9000, "replicas": 3}],
    ids=["defaults", "options"],
)
def test_every_serving_pod_template_is_restricted(
    track: str, model: ModelRef, options: dict[str, Any]
) -> None:
    deployment = build_deployment(MD, spec(**options), model, track=track, replicas=1)
    template = deployment["spec"]["template"]
    annotations = template["metadata"].get("annotations") or {}
    assert restricted_violations(template["spec"], annotations) == []


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    deployment = build_deployment(MD, spec(), PVC_MODEL, track=STABLE, replicas=1)
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(deployment)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not any(v.get("hostPath") for v in pod["volumes"])
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable place
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]


def test_artifact_volume_is_mounted_read_only_and_s3_gets_its_secret() -> None:
    on_pvc = build_deployment(MD, spec(), PVC_MODEL, track=STABLE, replicas=1)
    mounts = {m["name"]: m for m in container(on_pvc)["volumeMounts"]}
    assert mounts["artifacts"] == {"name": "artifacts", "mountPath": "/artifacts", "readOnly": True}
    volumes = {v["name"]: v for v in on_pvc["spec"]["template"]["spec"]["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"] == {
        "claimName": "models",
        "readOnly": True,
    }
    assert "envFrom" not in container(on_pvc)
    on_s3 = build_deployment(MD, spec(), S3_MODEL, track=STABLE, replicas=1)
    assert container(on_s3)["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert "artifacts" not in {m["name"] for m in container(on_s3)["volumeMounts"]}


def test_spec_image_overrides_and_the_windows_are_passed_to_the_server() -> None:
    deployment = build_deployment(
        MD,
        spec(
            image="mirror.example/runtime:1",
            monitoring={"driftWindow": 500, "feedbackWindow": 2500},
            port=9000,
        ),
        PVC_MODEL,
        track=STABLE,
        replicas=1,
    )
    c = container(deployment)
    assert c["image"] == "mirror.example/runtime:1"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["PERENNIAL_DRIFT_WINDOW"] == "500"
    assert env["PERENNIAL_FEEDBACK_WINDOW"] == "2500"
    assert c["args"] == ["serve", "--port", "9000"]


def test_one_server_process_per_pod() -> None:
    # Monitoring windows and feedback by id are per process; the server's own default is
    # one process per core.
    for track, replicas in ((STABLE, 3), (CANARY, 1)):
        deployment = build_deployment(MD, spec(), PVC_MODEL, track=track, replicas=replicas)
        env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
        assert env["PERENNIAL_SERVE_WORKERS"] == "1"


def test_both_tracks_get_the_deployments_feedback_key_from_its_optional_secret() -> None:
    # The same key in the stable and canary Pods and across models: any of them can score
    # feedback for a prediction another one made. Optional: Pods start without the Secret.
    expected = {
        "name": "PERENNIAL_FEEDBACK_KEY",
        "valueFrom": {
            "secretKeyRef": {"name": "iris-feedback-key", "key": "key", "optional": True}
        },
    }
    for track, model in ((STABLE, PVC_MODEL), (CANARY, S3_MODEL)):
        deployment = build_deployment(MD, spec(), model, track=track, replicas=1)
        keys = [e for e in container(deployment)["env"] if e["name"] == "PERENNIAL_FEEDBACK_KEY"]
        assert keys == [expected]


def test_a_drift_window_below_the_servers_minimum_is_rejected_at_admission() -> None:
    with pytest.raises(ValidationError, match="driftWindow"):
        spec(monitoring={"driftWindow": MIN_DRIFT_SAMPLES - 1})


def test_owner_references_on_every_object() -> None:
    objects = [
        build_deployment(MD, spec(), PVC_MODEL, track=STABLE, replicas=1),
        build_deployment(MD, spec(), PVC_MODEL, track=CANARY, replicas=1),
        build_service(MD, spec()),
        build_pdb(MD, spec(replicas=2, podDisruptionBudget={"minAvailable": 1})),
    ]
    for obj in objects:
        assert obj is not None
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "iris",
            "uid": MD["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_service_selects_both_tracks() -> None:
    service = build_service(MD, spec(port=9000))
    valid(service)
    assert service["metadata"]["name"] == "iris-serving"
    assert service["spec"]["selector"] == {"perennial.dev/deployment": "iris"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}
    ]
    for track in (STABLE, CANARY):
        labels = build_deployment(MD, spec(), PVC_MODEL, track=track, replicas=1)["spec"][
            "template"
        ]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
    assert endpoint("iris", "ml", 9000) == "http://iris-serving.ml.svc:9000"
    assert monitoring_path("iris") == "/v2/models/iris/monitoring"


@pytest.mark.parametrize("min_available", [1, "50%"])
def test_pdb_is_valid_policy_v1(min_available: int | str) -> None:
    pdb = build_pdb(MD, spec(replicas=2, podDisruptionBudget={"minAvailable": min_available}))
    assert pdb is not None
    valid(pdb)
    assert pdb["spec"]["minAvailable"] == min_available
    assert pdb["spec"]["selector"] == {"matchLabels": {"perennial.dev/deployment": "iris"}}
    assert build_pdb(MD, spec()) is None


def test_invalid_objects_are_caught_by_the_schema_check() -> None:
    broken = build_deployment(MD, spec(), PVC_MODEL, track=STABLE, replicas=1)
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        valid(broken)


# --- patching only on a real change ------------------------------------------------------


def test_deployment_patch_only_on_change() -> None:
    built = build_deployment(MD, spec(), PVC_MODEL, track=STABLE, replicas=2)
    live = copy.deepcopy(built)
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"  # server default
    assert deployment_patch(live, built) is None

    scaled = build_deployment(MD, spec(), PVC_MODEL, track=STABLE, replicas=4)
    assert deployment_patch(live, scaled) == {"spec": {"replicas": 4}}

    new_model = build_deployment(MD, spec(), S3_MODEL, track=STABLE, replicas=2)
    assert (
        new_model["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        != (built["metadata"]["annotations"][SPEC_HASH_ANNOTATION])
    )
    patch = deployment_patch(live, new_model)
    assert patch is not None
    template = patch["spec"]["template"]
    assert template["metadata"]["annotations"]["perennial.dev/model-sha256"] == "c" * 64
    # Keys we no longer set are removed (merge patch null), the rest replaced.
    assert template["spec"]["dnsPolicy"] is None
    assert patch["metadata"]["annotations"] == {
        SPEC_HASH_ANNOTATION: new_model["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    }

    # Someone edited the model annotation by hand: restored even though the hash matches.
    tampered = copy.deepcopy(built)
    tampered["spec"]["template"]["metadata"]["annotations"]["perennial.dev/model-sha256"] = "x"
    assert deployment_patch(tampered, built) is not None


def test_service_patch_ignores_server_fields() -> None:
    built = build_service(MD, spec())
    live = copy.deepcopy(built)
    live["spec"]["clusterIP"] = "10.0.0.12"
    assert object_patch(live, built) is None
    changed = build_service(MD, spec(port=9000))
    assert object_patch(live, changed) == {"spec": changed["spec"]}


def test_a_long_run_name_becomes_a_valid_label_value() -> None:
    long_run = "a-very-long-hand-made-training-run-name." + "x" * 60
    model = ModelRef(long_run, "s3://m/model.skops", "d" * 64)
    deployment = build_deployment(MD, spec(), model, track=STABLE, replicas=1)
    valid(deployment)
    value = deployment["spec"]["template"]["metadata"]["labels"]["perennial.dev/run"]
    assert value == label_value(long_run) and len(value) <= 63
    assert label_value("iris-00001") == "iris-00001"
    assert label_value(long_run) != label_value(long_run + "y")
