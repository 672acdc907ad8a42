"""RBAC is least-privilege: exactly what the operator needs, nothing broad, nothing secret."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

Build = Callable[[str], list[dict[str, Any]]]
Rule = dict[str, list[str]]

CUSTOM = ("trainingpipelines", "trainingruns", "modeldeployments")
# (apiGroup, resource, verbs) the operator needs in every namespace it serves. The
# integration tests hold the operator to the shipped ClusterRole (403 otherwise) and fail
# when a grant goes unused (tests/integration/harness/rbac.py): this list is what they
# showed, kept here so a change of the role is a deliberate one.
NEEDED_NAMESPACED = [
    ("perennial.dev", "trainingpipelines", {"get", "list", "watch", "patch"}),
    ("perennial.dev", "modeldeployments", {"get", "list", "watch", "patch"}),
    ("perennial.dev", "trainingruns", {"get", "list", "watch", "create", "patch", "delete"}),
    *(("perennial.dev", f"{r}/status", {"patch"}) for r in CUSTOM),
    ("batch", "jobs", {"list", "watch", "create", "delete"}),
    ("", "pods", {"list", "watch"}),
    ("apps", "deployments", {"list", "watch", "create", "patch"}),  # read from the watch
    ("", "services", {"get", "create", "patch"}),
    ("policy", "poddisruptionbudgets", {"get", "create", "patch", "delete"}),
    ("", "events", {"create"}),
]
# What kopf needs cluster-wide: peering, CRD discovery/scanning (cluster-wide, kopf lists no
# namespaces).
NEEDED_CLUSTER = [
    ("kopf.dev", "clusterkopfpeerings", {"get", "list", "watch", "patch"}),
    ("kopf.dev", "kopfpeerings", {"get", "list", "watch", "patch"}),
    ("apiextensions.k8s.io", "customresourcedefinitions", {"list", "watch"}),
]
CLUSTER_SCOPED_RESOURCES = {"namespaces", "customresourcedefinitions", "clusterkopfpeerings"}
DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection", "update"}
FORBIDDEN_RESOURCES = {
    "secrets",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "pods/proxy",
    "nodes/proxy",
    "serviceaccounts/token",
}


def grants(rules: list[Rule]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the rules allow."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def roles(kustomize: Build) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in ("base", "overlays/namespaced", "overlays/ha"):
        for obj in kustomize(path):
            if obj["kind"] in {"ClusterRole", "Role"}:
                yield f"{path}:{obj['kind']}/{obj['metadata']['name']}", obj


def test_no_wildcards_no_secrets_no_exec(kustomize: Build) -> None:
    found = list(roles(kustomize))
    assert len(found) == 3
    for where, role in found:
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, where
            assert "resourceNames" not in rule or rule["resourceNames"], where
            for field in ("apiGroups", "resources", "verbs"):
                values = rule[field]
                assert values, (where, field)
                assert not any("*" in v for v in values), (where, rule)
            assert not DANGEROUS_VERBS & set(rule["verbs"]), (where, rule)
            assert not FORBIDDEN_RESOURCES & set(rule["resources"]), (where, rule)


def test_cluster_role_grants_exactly_what_the_operator_needs(kustomize: Build) -> None:
    (role,) = [o for o in kustomize("base") if o["kind"] == "ClusterRole"]
    expected = {
        (group, resource, verb)
        for group, resource, verbs in NEEDED_NAMESPACED + NEEDED_CLUSTER
        for verb in verbs
    }
    assert grants(role["rules"]) == expected


def test_namespaced_role_is_the_cluster_role_without_cluster_scope(kustomize: Build) -> None:
    objects = kustomize("overlays/namespaced")
    (role,) = [o for o in objects if o["kind"] == "Role"]
    expected = {(g, r, v) for g, r, verbs in NEEDED_NAMESPACED for v in verbs}
    assert grants(role["rules"]) == expected
    assert not {r for _, r, _ in grants(role["rules"])} & CLUSTER_SCOPED_RESOURCES


def test_namespaced_overlay_has_nothing_cluster_scoped(kustomize: Build) -> None:
    objects = kustomize("overlays/namespaced")
    cluster_scoped = {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ClusterKopfPeering",
    }
    assert not [o["kind"] for o in objects if o["kind"] in cluster_scoped]
    namespaces = {o["metadata"]["namespace"] for o in objects}
    assert len(namespaces) == 1
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    (subject,) = binding["subjects"]
    assert (subject["kind"], subject["name"], subject["namespace"]) == (
        "ServiceAccount",
        account["metadata"]["name"],
        account["metadata"]["namespace"],
    )
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "perennial-operator",
    }


@pytest.mark.parametrize("path", ["base", "overlays/ha"])
def test_cluster_binding_points_at_the_operator_account(kustomize: Build, path: str) -> None:
    objects = kustomize(path)
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    deployment_accounts = {
        o["spec"]["template"]["spec"]["serviceAccountName"]
        for o in objects
        if o["kind"] == "Deployment"
    }
    assert deployment_accounts == {account["metadata"]["name"]}
