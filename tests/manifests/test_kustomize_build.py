"""Every kustomization builds, and every built-in object validates against Kubernetes 1.32."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32"
BUILDS = ["base", "overlays/namespaced", "overlays/ha", "argocd", "monitoring"]
# Kinds with an official schema in kubernetes-validate; everything else is a custom resource.
BUILT_IN = {
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Deployment",
    "Service",
    "ConfigMap",
    "CustomResourceDefinition",
}
CUSTOM = {
    ("kopf.dev/v1", "ClusterKopfPeering"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

Build = Callable[[str], list[dict[str, Any]]]


@pytest.mark.parametrize("path", BUILDS)
def test_builds_and_validates_against_the_official_schemas(kustomize: Build, path: str) -> None:
    objects = kustomize(path)
    assert objects
    for obj in objects:
        kind = obj["kind"]
        if kind in BUILT_IN:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        else:
            assert (obj["apiVersion"], kind) in CUSTOM, f"unexpected object {kind} in {path}"
            assert obj["metadata"]["name"]


def test_the_validator_is_not_vacuous(kustomize: Build) -> None:
    (deployment,) = [o for o in kustomize("base") if o["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = 1  # a typo strict validation must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_full_install_with_the_crds(kustomize: Build) -> None:
    if not (REPO / "crds" / "kustomization.yaml").exists():
        pytest.skip("crds/kustomization.yaml does not exist yet")
    objects = kustomize(".")
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {
        "trainingpipelines.perennial.dev",
        "trainingruns.perennial.dev",
        "modeldeployments.perennial.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    } <= crds
    for obj in objects:
        if obj["kind"] in BUILT_IN:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_everything_in_base_lives_in_perennial_system(kustomize: Build) -> None:
    for obj in kustomize("base"):
        if (
            obj["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}
            or obj["kind"] == "CustomResourceDefinition"
        ):
            continue
        assert obj["metadata"]["namespace"] == "perennial-system", obj["metadata"]["name"]


def test_peering_crds_are_the_ones_kopf_looks_for(kustomize: Build) -> None:
    crds = {
        o["metadata"]["name"]: o
        for o in kustomize("base")
        if o["kind"] == "CustomResourceDefinition"
    }
    cluster = crds["clusterkopfpeerings.kopf.dev"]["spec"]
    namespaced = crds["kopfpeerings.kopf.dev"]["spec"]
    assert (cluster["group"], cluster["scope"], cluster["names"]["kind"]) == (
        "kopf.dev",
        "Cluster",
        "ClusterKopfPeering",
    )
    assert (namespaced["group"], namespaced["scope"], namespaced["names"]["kind"]) == (
        "kopf.dev",
        "Namespaced",
        "KopfPeering",
    )
    for spec in (cluster, namespaced):
        (version,) = spec["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True
