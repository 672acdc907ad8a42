"""The restricted Pod Security Standard check (testsupport.pod_security) catches every
control it claims: a compliant Pod passes, and each single violation is named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from testsupport.pod_security import restricted_violations

Pod = dict[str, Any]


def compliant() -> Pod:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "ports": [{"containerPort": 8080}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
        "initContainers": [
            {
                "name": "init",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
            {"name": "creds", "secret": {"secretName": "s"}},
        ],
    }


def main(pod: Pod) -> dict[str, Any]:
    sc: dict[str, Any] = pod["containers"][0]["securityContext"]
    return sc


def init(pod: Pod) -> dict[str, Any]:
    sc: dict[str, Any] = pod["initContainers"][0]["securityContext"]
    return sc


VIOLATIONS: dict[str, tuple[Callable[[Pod], None], str]] = {
    "host network": (lambda p: p.update(hostNetwork=True), "hostNetwork"),
    "host PID": (lambda p: p.update(hostPID=True), "hostPID"),
    "host IPC": (lambda p: p.update(hostIPC=True), "hostIPC"),
    "host process": (
        lambda p: p["securityContext"].update(windowsOptions={"hostProcess": True}),
        "hostProcess",
    ),
    "privileged": (lambda p: main(p).update(privileged=True), "privileged"),
    "capability added": (
        lambda p: main(p)["capabilities"].update(add=["SYS_ADMIN"]),
        "NET_BIND_SERVICE",
    ),
    "ALL not dropped": (lambda p: init(p).update(capabilities={}), "drop ALL"),
    "hostPath volume": (
        lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "hostPath",
    ),
    "restricted volume type": (
        lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
        "not allowed",
    ),
    "host port": (lambda p: p["containers"][0]["ports"][0].update(hostPort=80), "hostPort"),
    "AppArmor unconfined": (
        lambda p: main(p).update(appArmorProfile={"type": "Unconfined"}),
        "appArmorProfile",
    ),
    "SELinux type": (
        lambda p: p["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
        "seLinuxOptions.type",
    ),
    "SELinux user": (
        lambda p: main(p).update(seLinuxOptions={"user": "root"}),
        "seLinuxOptions.user",
    ),
    "proc mount": (lambda p: main(p).update(procMount="Unmasked"), "procMount"),
    "seccomp unconfined in a container": (
        lambda p: init(p).update(seccompProfile={"type": "Unconfined"}),
        "seccomp",
    ),
    "seccomp unset": (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "unsafe sysctl": (
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "sysctl",
    ),
    "privilege escalation": (
        lambda p: main(p).update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation",
    ),
    "privilege escalation unset": (
        lambda p: init(p).pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    "runAsNonRoot unset": (lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "runAsNonRoot false in a container": (
        lambda p: main(p).update(runAsNonRoot=False),
        "runAsNonRoot",
    ),
    "root user": (lambda p: init(p).update(runAsUser=0), "runAsUser"),
    "ephemeral container escalates": (
        lambda p: p.update(ephemeralContainers=[{"name": "debug", "securityContext": {}}]),
        "ephemeralContainers[debug]",
    ),
}


def test_a_compliant_pod_passes() -> None:
    assert restricted_violations(compliant()) == []


def test_container_settings_can_stand_in_for_the_pods() -> None:
    pod = compliant()
    pod["securityContext"] = {}
    for container in pod["containers"] + pod["initContainers"]:
        container["securityContext"].update(
            runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p"}
        )
    assert restricted_violations(pod) == []


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_each_violation_is_caught_and_named(case: str) -> None:
    mutate, named = VIOLATIONS[case]
    pod = copy.deepcopy(compliant())
    mutate(pod)
    problems = restricted_violations(pod)
    assert problems and any(named in p for p in problems), problems


def test_apparmor_annotations_are_checked() -> None:
    key = "container.apparmor.security.beta.kubernetes.io/main"
    assert restricted_violations(compliant(), {key: "runtime/default"}) == []
    assert restricted_violations(compliant(), {key: "unconfined"})
