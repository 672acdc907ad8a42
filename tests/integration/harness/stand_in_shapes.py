"""What the stand-in controllers write: shapes shared by the Job, Deployment and GC parts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from .emulator import ApiServerEmulator
from .kube_api import KubeApi
from .metadata import timestamp

__all__ = [
    "DEFAULT_POD_SPEC",
    "DEPLOYMENTS",
    "JOBS",
    "PODS",
    "REPLICASETS",
    "TERMINATION_MESSAGE_LIMIT",
    "StandIn",
    "condition",
    "container_status",
    "controller_ref",
    "template_hash",
    "timestamp",
    "truncate_message",
]

TERMINATION_MESSAGE_LIMIT: Final = 4096
"""The kubelet keeps at most this many bytes of a container's termination message."""

JOBS: Final = "batch/v1/jobs"
PODS: Final = "v1/pods"
DEPLOYMENTS: Final = "apps/v1/deployments"
REPLICASETS: Final = "apps/v1/replicasets"

DEFAULT_POD_SPEC: Final[dict[str, Any]] = {
    "containers": [{"name": "main", "image": "example.invalid/image:latest"}],
    "restartPolicy": "Never",
}
HASH_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def controller_ref(owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def truncate_message(message: str) -> str:
    return message.encode()[:TERMINATION_MESSAGE_LIMIT].decode(errors="ignore")


def template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(HASH_ALPHABET[byte % len(HASH_ALPHABET)] for byte in digest[:10])


def container_status(
    container: Mapping[str, Any],
    state: dict[str, Any],
    *,
    ready: bool = False,
    restart_count: int = 0,
    last_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # Every field the kubelet always sets (the kubernetes client refuses a status without
    # image, imageID, name, ready and restartCount).
    image = str(container.get("image") or "example.invalid/image:latest")
    digest = hashlib.sha256(image.encode()).hexdigest()
    return {
        "name": container["name"],
        "image": image,
        "imageID": f"{image.rsplit(':', 1)[0]}@sha256:{digest}",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restart_count,
        "state": state,
        "lastState": last_state or {},
    }


def condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    now = timestamp()
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


class StandIn:
    """Base of the stand-in controllers: they act through the API, and read the emulator."""

    def __init__(self, api: KubeApi, emulator: ApiServerEmulator) -> None:
        self._api = api
        self._emulator = emulator
