"""The Kubernetes Pod Security Standards, ``restricted`` profile (which includes
``baseline``), as a check of a Pod template: every control of
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.32), over the
pod-level and container-level settings with the standard's precedence, for containers,
initContainers and ephemeralContainers.

:func:`restricted_violations` lists what a real ``pod-security.kubernetes.io/enforce:
restricted`` namespace would refuse (empty: admitted). The tests apply it to every Pod
template the operator generates and every one the shipped manifests hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

__all__ = ["restricted_violations"]

# Restricted: "Volume Types".
RESTRICTED_VOLUME_TYPES: Final = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Baseline: "Sysctls", the safe set.
SAFE_SYSCTLS: Final = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
# Baseline: "SELinux", the allowed types (empty: unset).
SELINUX_TYPES: Final = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
SECCOMP_ALLOWED: Final = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION: Final = "container.apparmor.security.beta.kubernetes.io/"


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for container in pod.get(field) or ():
            yield f"{field}[{container.get('name', '?')}]", container


def _baseline(pod: Mapping[str, Any], annotations: Mapping[str, str]) -> list[str]:
    problems = []
    pod_sc = pod.get("securityContext") or {}
    # Host Namespaces.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} must be unset or false")
    # HostProcess (Windows).
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("securityContext.windowsOptions.hostProcess must be unset or false")
    # HostPath Volumes.
    for volume in pod.get("volumes") or ():
        if "hostPath" in volume:
            problems.append(f"volume {volume.get('name')}: hostPath is forbidden")
    # Sysctls.
    for sysctl in pod_sc.get("sysctls") or ():
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    # AppArmor: the pod-level field, and the annotations of older clusters.
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            problems.append(
                f"annotation {key}={value}: AppArmor must be runtime/default or localhost/*"
            )
    problems += _profiles("securityContext", pod_sc)
    for where, container in _containers(pod):
        sc = container.get("securityContext") or {}
        # Privileged Containers.
        if sc.get("privileged"):
            problems.append(f"{where}: privileged must be unset or false")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{where}: windowsOptions.hostProcess must be unset or false")
        # Host Ports.
        for port in container.get("ports") or ():
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort must be unset or 0")
        # /proc Mount Type.
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount must be unset or Default")
        problems += _profiles(f"{where}.securityContext", sc)
    return problems


def _profiles(where: str, sc: Mapping[str, Any]) -> list[str]:
    """AppArmor, SELinux and the baseline's seccomp rule on one securityContext."""
    problems = []
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in SECCOMP_ALLOWED:
        problems.append(f"{where}.appArmorProfile.type must be RuntimeDefault or Localhost")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        problems.append(f"{where}.seLinuxOptions.type {selinux.get('type')!r} is not allowed")
    for field in ("user", "role"):
        if selinux.get(field):
            problems.append(f"{where}.seLinuxOptions.{field} must be unset")
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append(f"{where}.seccompProfile.type must not be Unconfined")
    return problems


def _restricted(pod: Mapping[str, Any]) -> list[str]:
    problems = []
    pod_sc = pod.get("securityContext") or {}
    # Volume Types.
    for volume in pod.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds)} is not allowed")
    # Running as Non-root user.
    if pod_sc.get("runAsUser") == 0:
        problems.append("securityContext.runAsUser must not be 0")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    if pod_sc.get("runAsNonRoot") is False:
        problems.append("securityContext.runAsNonRoot must not be false")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for where, container in _containers(pod):
        sc = container.get("securityContext") or {}
        # Privilege Escalation.
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        # Running as Non-root: the container's setting wins over the pod's.
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            problems.append(f"{where}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser must not be 0")
        # Seccomp: set, to an allowed type, at the pod or on every container.
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in SECCOMP_ALLOWED:
            problems.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost")
        # Capabilities.
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or ()):
            problems.append(f"{where}: capabilities must drop ALL")
        extra = set(capabilities.get("add") or ()) - {"NET_BIND_SERVICE"}
        if extra:
            problems.append(
                f"{where}: capabilities may add only NET_BIND_SERVICE, not {sorted(extra)}"
            )
    return problems


def restricted_violations(
    pod: Mapping[str, Any], annotations: Mapping[str, str] | None = None
) -> list[str]:
    """Why the ``restricted`` profile would refuse this Pod spec (empty: it admits it).
    ``annotations`` are the Pod template's (AppArmor's legacy annotations)."""
    return _baseline(pod, annotations or {}) + _restricted(pod)
