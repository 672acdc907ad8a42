"""The operator's pod meets the restricted Pod Security Standard and runs as documented."""

from __future__ import annotations

import copy
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perennial._version import __version__
from testsupport.pod_security import restricted_violations

REPO = Path(__file__).resolve().parents[2]
Build = Callable[[str], list[dict[str, Any]]]


def deployments(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "Deployment"]


def all_deployments(kustomize: Build) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path}:{d['metadata']['name']}", d)
        for path in ("base", "overlays/namespaced", "overlays/ha")
        for d in deployments(kustomize(path))
    ]


def assert_restricted(pod: dict[str, Any]) -> None:
    """The `restricted` Pod Security Standard (testsupport.pod_security), and what the
    design asks beyond it: a read-only root filesystem."""
    assert restricted_violations(pod) == []
    for container in pod["containers"] + pod.get("initContainers", []):
        assert container.get("securityContext", {}).get("readOnlyRootFilesystem") is True


def test_every_operator_pod_is_restricted(kustomize: Build) -> None:
    found = all_deployments(kustomize)
    assert len(found) == 4  # base, namespaced, ha primary + standby
    for where, deployment in found:
        pod = deployment["spec"]["template"]["spec"]
        try:
            assert_restricted(pod)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_restricted_check_catches_a_violation(kustomize: Build) -> None:
    (deployment,) = deployments(copy.deepcopy(kustomize("base")))  # the builds are cached
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(AssertionError):
        assert_restricted(pod)


def test_operator_deployment_shape(kustomize: Build) -> None:
    (deployment,) = deployments(kustomize("base"))
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "perennial-operator"
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/perennial-dev/perennial-operator:{__version__}"
    assert container["args"] == [
        "run",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
    ]
    # /tmp is writable although the root filesystem is read-only.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume
    # Resources are bounded.
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_probe_and_ports_match_the_arguments(kustomize: Build) -> None:
    for where, deployment in all_deployments(kustomize):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args = container["args"]
        liveness_arg = next(a for a in args if a.startswith("--liveness="))
        liveness = urllib.parse.urlsplit(liveness_arg.split("=", 1)[1])
        metrics_port = int(next(a for a in args if a.startswith("--metrics-port=")).split("=")[1])
        probe = container["livenessProbe"]["httpGet"]
        assert probe["path"] == liveness.path == "/healthz", where
        assert ports[probe["port"]] == liveness.port == 8080, where
        assert ports["metrics"] == metrics_port == 9090, where


def test_metrics_service_reaches_the_metrics_port(kustomize: Build) -> None:
    objects = kustomize("base")
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (deployment,) = deployments(objects)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", 9090, "metrics")


def test_namespaced_overlay_watches_its_own_namespace(kustomize: Build) -> None:
    (deployment,) = deployments(kustomize("overlays/namespaced"))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--namespace=$(POD_NAMESPACE)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def _priority(container: dict[str, Any]) -> int:
    (arg,) = [a for a in container["args"] if a.startswith("--priority=")]
    return int(arg.split("=", 1)[1])


def test_ha_overlay_runs_a_standby_at_a_distinct_priority(kustomize: Build) -> None:
    objects = kustomize("overlays/ha")
    by_name = {d["metadata"]["name"]: d for d in deployments(objects)}
    assert set(by_name) == {"perennial-operator", "perennial-operator-standby"}
    primary, standby = by_name["perennial-operator"], by_name["perennial-operator-standby"]
    for deployment in (primary, standby):
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "--peering=perennial" in container["args"]
    (p_container,) = primary["spec"]["template"]["spec"]["containers"]
    (s_container,) = standby["spec"]["template"]["spec"]["containers"]
    assert _priority(p_container) > _priority(s_container)
    # The two selectors do not overlap (each Deployment owns only its own pod).
    assert primary["spec"]["selector"] != standby["spec"]["selector"]
    # The peering object they both name exists.
    peerings = [o for o in objects if o["kind"] == "ClusterKopfPeering"]
    assert [p["metadata"]["name"] for p in peerings] == ["perennial"]


def test_standby_pod_is_the_primary_pod_apart_from_priority_and_labels(kustomize: Build) -> None:
    by_name = {d["metadata"]["name"]: d for d in deployments(kustomize("overlays/ha"))}

    def normalised(deployment: dict[str, Any]) -> dict[str, Any]:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        container = {
            **container,
            "args": [a for a in container["args"] if not a.startswith("--priority=")],
        }
        return {**pod, "containers": [container]}

    assert normalised(by_name["perennial-operator"]) == normalised(
        by_name["perennial-operator-standby"]
    )


def test_image_runs_as_the_deployments_user() -> None:
    dockerfile = (REPO / "operator" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert len(stages) >= 2  # multi-stage
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert stages[-1] == "${PYTHON_IMAGE}"
    assert re.search(r"^USER 65532(:65532)?$", dockerfile, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "perennial"]' in dockerfile
    assert 'CMD ["run"]' in dockerfile
    # Only the operator extra: the operator image carries no scikit-learn.
    assert '".[operator]"' in dockerfile and "runtime]" not in dockerfile


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The Pod templates an object holds (Pod, workload templates, CronJob's Job's)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return [{"metadata": obj.get("metadata") or {}, "spec": spec}]
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"].get("spec") or {}
    template = spec.get("template")
    return [template] if isinstance(template, dict) and "spec" in template else []


def test_every_shipped_pod_template_is_restricted(kustomize: Build) -> None:
    builds = [
        str(path.parent.relative_to(REPO / "manifests"))
        for path in sorted((REPO / "manifests").rglob("kustomization.yaml"))
    ]
    found = 0
    for build in builds:
        for obj in kustomize(build):
            for template in _pod_templates(obj):
                found += 1
                annotations = (template.get("metadata") or {}).get("annotations") or {}
                problems = restricted_violations(template["spec"], annotations)
                assert problems == [], f"{build}: {obj['kind']}/{obj['metadata']['name']}"
    assert found >= 4  # the operator's Deployments, at least
