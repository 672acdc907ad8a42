"""The operator's shipped RBAC, enforced by the emulator as a real API server would.

kmock answers every request; a real API server answers the operator's only where its
ClusterRole (``manifests/base/rbac.yaml``) grants the verb on the resource, and says
``403 Forbidden`` otherwise. The emulator tells the operator's requests by their User-Agent:
kopf's (``kopf/<version>``) and the operator's own client (``perennial/<version>``, see
``perennial.k8s.client.USER_AGENT``); the tests' own client, kubectl and the stand-in
controllers act as cluster admins. Every access the operator made is recorded
(:attr:`RbacCheck.used`), so a test can also show that a grant is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import kmock
import yaml

from perennial.k8s.client import USER_AGENT

ROLE_FILE: Final = Path(__file__).resolve().parents[3] / "manifests" / "base" / "rbac.yaml"
OPERATOR_AGENTS: Final = ("kopf/", USER_AGENT.split("/")[0] + "/")
OPERATOR_USER: Final = "system:serviceaccount:perennial-system:perennial-operator"


@dataclass(frozen=True)
class Access:
    """One (API group, resource[/subresource], verb) as RBAC rules name them."""

    group: str
    resource: str
    verb: str


def _verb(request: kmock.Request) -> str:
    method = request.method.value
    if method == "GET":
        if request.name is not None:
            return "get"
        return "watch" if request.action == kmock.action.WATCH else "list"
    if method == "DELETE":
        return "delete" if request.name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]


def access_of(request: kmock.Request) -> Access:
    resource = request.resource
    assert resource is not None
    plural = resource.plural
    if request.subresource:
        plural = f"{plural}/{request.subresource}"
    return Access(resource.group or "", plural, _verb(request))


def is_resource_request(request: kmock.Request) -> bool:
    """A request on a resource; discovery (``/api/v1``, ``/apis/apps/v1``: no plural) is
    open to every authenticated user (the system:discovery role)."""
    return request.resource is not None and bool(request.resource.plural)


def user_agent(request: kmock.Request) -> str:
    """The request's User-Agent header ("" without one), whatever its case."""
    return next((v for k, v in request.headers.items() if k.lower() == "user-agent"), "")


def is_operator(request: kmock.Request) -> bool:
    return user_agent(request).startswith(OPERATOR_AGENTS)


def granted(rules: Iterable[Mapping[str, Any]]) -> frozenset[Access]:
    """Every access the rules allow (the shipped role has no wildcards: a test checks)."""
    return frozenset(
        Access(group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    )


def shipped_cluster_role(path: Path = ROLE_FILE) -> frozenset[Access]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    return granted(role["rules"])


@dataclass
class RbacCheck:
    """The grants the operator's requests are held to, and what it used of them."""

    grants: frozenset[Access] = field(default_factory=shipped_cluster_role)
    used: set[Access] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)

    def grant(self, group: str, resources: Iterable[str], verbs: Iterable[str]) -> None:
        """Allow more (a test operator that is not Perennial, with kinds of its own)."""
        self.grants = self.grants | {Access(group, r, v) for r in resources for v in verbs}

    def forbidden(self, request: kmock.Request) -> str | None:
        """None if the operator may make this request, else the real server's message."""
        access = access_of(request)
        self.used.add(access)
        if access in self.grants:
            return None
        what = request.resource
        assert what is not None
        named = f"{what.plural}.{what.group}" if what.group else what.plural
        target = f' "{request.name}"' if request.name else ""
        scope = (
            f' in the namespace "{request.namespace}"'
            if request.namespace
            else " at the cluster scope"
        )
        message = (
            f'{named}{target} is forbidden: User "{OPERATOR_USER}" cannot {access.verb} '
            f'resource "{access.resource}" in API group "{access.group}"{scope} '
            "(the emulator enforces manifests/base/rbac.yaml, as a real API server would)"
        )
        self.refused.append(message)
        return message
