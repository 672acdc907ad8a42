"""I/O of the ModelDeployment controller: serving objects, status, model-server scrapes.

- :func:`apply_serving` makes the Service, PodDisruptionBudget and Deployments match a
  :class:`~perennial.core.rollout.Layout` (create, or patch only what differs), given the
  :class:`Workloads` the watches hold (the two serving Deployments and their Pods);
- :func:`write_status` replaces the whole status through the status subresource;
- :func:`fetch_snapshot` reads a server's ``/v2/models/{name}/monitoring``.

Where a server is reached is decided by an :class:`EndpointResolver`: in a cluster the
Service's DNS name (monitoring) and the Pods' IPs (canary analysis); tests and local runs
install their own with :func:`set_resolver` (e.g. a real server on 127.0.0.1).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from perennial.api.deployment import ModelDeploymentSpec
from perennial.core.analysis import SnapshotError, parse_snapshot
from perennial.core.rollout import Layout
from perennial.k8s import client
from perennial.k8s.serving import (
    CANARY,
    STABLE,
    TRACK_LABEL,
    build_deployment,
    build_pdb,
    build_service,
    deployment_patch,
    object_patch,
    workload_name,
)
from perennial_runtime.contract import MonitoringSnapshot

__all__ = [
    "ClusterResolver",
    "EndpointResolver",
    "ScrapeError",
    "Workloads",
    "apply_serving",
    "fetch_snapshot",
    "get_resolver",
    "set_resolver",
    "write_status",
    "written_by_us",
]

logger = logging.getLogger("perennial.k8s.serving_client")

MAX_SNAPSHOT_BYTES: Final = 1 << 20


class EndpointResolver(Protocol):
    """Where the model servers of a ModelDeployment are reached."""

    def service_url(self, namespace: str, service: str, port: int) -> str:
        """Base URL of the Service in front of every serving Pod."""
        ...

    def pod_urls(
        self,
        namespace: str,
        deployment: str,
        track: str,
        pods: Sequence[Mapping[str, Any]],
        port: int,
    ) -> list[str]:
        """Base URLs of the ready Pods of one track (``stable`` or ``canary``)."""
        ...


def pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


class ClusterResolver:
    """In a cluster: ``http://SERVICE.NAMESPACE.svc:PORT`` and ``http://POD_IP:PORT``."""

    def service_url(self, namespace: str, service: str, port: int) -> str:
        return f"http://{service}.{namespace}.svc:{port}"

    def pod_urls(
        self,
        namespace: str,
        deployment: str,
        track: str,
        pods: Sequence[Mapping[str, Any]],
        port: int,
    ) -> list[str]:
        urls = []
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            ip = (pod.get("status") or {}).get("podIP")
            if labels.get(TRACK_LABEL) == track and ip and pod_ready(pod):
                host = f"[{ip}]" if ":" in ip else ip
                urls.append(f"http://{host}:{port}")
        return urls


class _Resolver:
    lock = threading.Lock()
    current: EndpointResolver = ClusterResolver()


def set_resolver(resolver: EndpointResolver | None) -> None:
    """Use ``resolver`` from now on (None: back to :class:`ClusterResolver`)."""
    with _Resolver.lock:
        _Resolver.current = resolver if resolver is not None else ClusterResolver()


def get_resolver() -> EndpointResolver:
    with _Resolver.lock:
        return _Resolver.current


# --- scraping ----------------------------------------------------------------------------


class ScrapeError(Exception):
    """A model server could not be read; the message says which URL and why."""


def fetch_snapshot(url: str, *, timeout: float) -> MonitoringSnapshot:
    """GET ``url`` (a monitoring endpoint) and parse the snapshot."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_SNAPSHOT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode(errors="replace").strip()
        raise ScrapeError(f"GET {url}: HTTP {exc.code} {detail}".strip()) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"GET {url}: {reason}") from exc
    if len(body) > MAX_SNAPSHOT_BYTES:
        raise ScrapeError(f"GET {url}: answer larger than {MAX_SNAPSHOT_BYTES} bytes")
    try:
        return parse_snapshot(json.loads(body))
    except (ValueError, SnapshotError) as exc:
        raise ScrapeError(f"GET {url}: {exc}") from exc


# --- serving objects ---------------------------------------------------------------------


@dataclass(frozen=True)
class Workloads:
    stable: dict[str, Any] | None
    canary: dict[str, Any] | None
    pods: list[dict[str, Any]]

    def track_pods(self, track: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods
            if ((p.get("metadata") or {}).get("labels") or {}).get(TRACK_LABEL) == track
        ]


def _ensure(resource: client.Resource, desired: Mapping[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    existing = client.get_or_none(resource, meta["name"], meta.get("namespace"))
    if existing is None:
        logger.info("creating %s %s/%s", resource.kind, meta.get("namespace"), meta["name"])
        return client.create(resource, desired)
    changes = object_patch(existing, desired)
    if changes is None:
        return existing
    logger.info("updating %s %s/%s", resource.kind, meta.get("namespace"), meta["name"])
    return client.patch(resource, meta["name"], meta.get("namespace"), changes)


class _OwnWrites:
    """The resourceVersion of our last write of each serving Deployment: the watch event
    of our own write need not trigger another reconcile."""

    lock = threading.Lock()
    versions: dict[tuple[str, str], str] = {}

    @classmethod
    def record(cls, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            with cls.lock:
                cls.versions[(meta.get("namespace") or "", meta.get("name") or "")] = meta[
                    "resourceVersion"
                ]
        return dict(obj)


def written_by_us(deployment: Mapping[str, Any]) -> bool:
    """Whether ``deployment`` (from a watch event) is exactly what our last write left."""
    meta = deployment.get("metadata") or {}
    with _OwnWrites.lock:
        mine = _OwnWrites.versions.get((meta.get("namespace") or "", meta.get("name") or ""))
    return mine is not None and mine == meta.get("resourceVersion")


def _ensure_deployment(
    existing: Mapping[str, Any] | None, desired: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Create or patch one serving Deployment; the answer, or None when nothing changed."""
    meta = desired["metadata"]
    if existing is None:
        logger.info("creating Deployment %s/%s", meta.get("namespace"), meta["name"])
        return _OwnWrites.record(client.create(client.DEPLOYMENTS, desired))
    changes = deployment_patch(existing, desired)
    if changes is None:
        return None
    logger.info("updating Deployment %s/%s", meta.get("namespace"), meta["name"])
    return _OwnWrites.record(
        client.patch(client.DEPLOYMENTS, meta["name"], meta.get("namespace"), changes)
    )


def _scale_to_zero(existing: Mapping[str, Any]) -> dict[str, Any] | None:
    meta = existing["metadata"]
    if ((existing.get("spec") or {}).get("replicas") or 0) <= 0:
        return None
    logger.info("scaling Deployment %s/%s to zero", meta.get("namespace"), meta["name"])
    return _OwnWrites.record(
        client.patch(
            client.DEPLOYMENTS, meta["name"], meta.get("namespace"), {"spec": {"replicas": 0}}
        )
    )


def apply_serving(
    md: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    layout: Layout,
    workloads: Workloads,
    *,
    ensure_service: bool = True,
) -> list[dict[str, Any]]:
    """Make the serving objects match ``layout``. The stable Deployment is left alone while
    nothing is known to serve; a canary no longer needed is scaled to zero (kept, so its
    last template can still be inspected). The Service and PodDisruptionBudget are checked
    only with ``ensure_service`` (they depend on the spec, not on the rollout). Returns the
    answers of the Deployment writes made (none when nothing changed)."""
    if ensure_service:
        _ensure_service_and_pdb(md, spec)
    written: list[dict[str, Any] | None] = []
    if layout.stable is not None:
        written.append(
            _ensure_deployment(
                workloads.stable,
                build_deployment(
                    md, spec, layout.stable, track=STABLE, replicas=layout.stable_replicas
                ),
            )
        )
    if layout.canary is not None:
        written.append(
            _ensure_deployment(
                workloads.canary,
                build_deployment(
                    md, spec, layout.canary, track=CANARY, replicas=layout.canary_replicas
                ),
            )
        )
    elif workloads.canary is not None:
        written.append(_scale_to_zero(workloads.canary))
    return [body for body in written if body is not None]


def _ensure_service_and_pdb(md: Mapping[str, Any], spec: ModelDeploymentSpec) -> None:
    namespace = md["metadata"].get("namespace")
    _ensure(client.SERVICES, build_service(md, spec))
    pdb = build_pdb(md, spec)
    if pdb is not None:
        _ensure(client.POD_DISRUPTION_BUDGETS, pdb)
        return
    name = workload_name(md["metadata"]["name"], STABLE)
    existing = client.get_or_none(client.POD_DISRUPTION_BUDGETS, name, namespace)
    if existing is not None and _owned_by(existing, md):
        client.delete(client.POD_DISRUPTION_BUDGETS, name, namespace)


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = (owner.get("metadata") or {}).get("uid")
    return any(
        ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def write_status(namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the whole status (validated against the kind's status model) through the
    status subresource: keys the new status does not have are removed."""
    client.DEPLOYMENT_STATUS.check(status)
    return client.patch(
        client.MODEL_DEPLOYMENTS_RESOURCE,
        name,
        namespace,
        [{"op": "add", "path": "/status", "value": dict(status)}],
        subresource="status",
    )
