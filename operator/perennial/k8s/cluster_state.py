"""What the reconcilers read, from the state kopf's watches keep current; what they write,
through the API. The Kubernetes side of the reconcilers' port.

kopf already watches every kind the operator handles; its indexes (:mod:`perennial.
controllers.indexes`) keep the bodies the reconcilers need, keyed the way they look them
up (runs by pipeline, Jobs and Pods by run, ModelDeployments by name, pipelines by the
deployment they watch). Reads here send no request: an operator at rest sends nothing.

A watch delivers our own writes a moment after the API answered them; until it does, the
answer of the write (a newer body) is kept in an overlay and read instead, so a reconcile
that follows a write at once never decides from the state before it. A read drops the
overlay entry once the index holds that write (its resourceVersion) or anything after it
(checked at read time: kopf updates an index after its index function returns); a
deleted object reads as gone until the index has dropped it too.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final

from perennial.k8s import client
from perennial.k8s.client import Resource, StatusApi

# kopf hands each index to handlers as the keyword argument named by its id.
PIPELINES: Final = "perennial_pipelines"  # (namespace, name) -> body
WATCHERS: Final = "perennial_watchers"  # (namespace, deployment) -> pipeline name
RUNS: Final = "perennial_runs"  # (namespace, name) -> body
RUNS_OF: Final = "perennial_runs_of"  # (namespace, pipeline) -> run name
JOBS: Final = "perennial_jobs"  # (namespace, run) -> Job body
PODS: Final = "perennial_pods"  # (namespace, run) -> Pod body
DEPLOYMENTS: Final = "perennial_deployments"  # (namespace, name) and (namespace,) -> body
SERVING: Final = "perennial_serving"  # (namespace, name) -> serving Deployment
SERVING_PODS: Final = "perennial_serving_pods"  # (namespace, ModelDeployment) -> Pod
INDEX_IDS: Final = (
    PIPELINES,
    WATCHERS,
    RUNS,
    RUNS_OF,
    JOBS,
    PODS,
    DEPLOYMENTS,
    SERVING,
    SERVING_PODS,
)

Body = dict[str, Any]
_Key = tuple[str, str, str]  # (plural, namespace, name)


def _rv(body: Mapping[str, Any] | None) -> str | None:
    return None if body is None else (body.get("metadata") or {}).get("resourceVersion")


def caught_up(seen: Mapping[str, Any], mine: Mapping[str, Any]) -> bool:
    """Whether the watched body ``seen`` is at least as new as our write ``mine``.

    resourceVersions are opaque to clients; every API server in use (etcd's revision)
    makes them increasing integers, which is what this compares when both are digits.
    Otherwise only the very version we wrote counts."""
    a, b = _rv(seen), _rv(mine)
    if a is None or b is None:
        return False
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return a == b


class ClusterState:
    """Reads from kopf's indexes (plus the overlay of our own fresh writes); writes through
    the API, remembering each answer. Every read is a deep copy: a reconcile may change
    what it read without changing what the watches hold."""

    def __init__(self, indexes: Mapping[str, Any] | None = None) -> None:
        self._indexes: Mapping[str, Any] = indexes or {}
        self._lock = threading.Lock()
        self._overlay: dict[_Key, Body | None] = {}  # None: we deleted it

    def attach(self, indexes: Mapping[str, Any]) -> None:
        """Use kopf's indexes (handed to the startup handler)."""
        self._indexes = {key: indexes[key] for key in INDEX_IDS if key in indexes}

    # --- reads -------------------------------------------------------------------------

    def _values(self, index: str, key: tuple[str, ...]) -> list[Any]:
        found = self._indexes.get(index)
        if found is None:
            return []
        store = found.get(key)
        return list(store) if store else []

    def _one(
        self, plural: str, index: str, namespace: str, name: str, *, as_named: str | None = None
    ) -> Body | None:
        seen = self._values(index, (namespace, name))
        body: Body | None = copy.deepcopy(dict(seen[0])) if seen else None
        key = (plural, namespace, as_named or name)
        with self._lock:
            if key not in self._overlay:
                return body
            mine = self._overlay[key]
            if mine is None and body is None:  # the watch has seen our delete
                del self._overlay[key]
                return None
            if mine is not None and body is not None and caught_up(body, mine):
                del self._overlay[key]
                return body
            return None if mine is None else copy.deepcopy(mine)

    def pipeline(self, namespace: str, name: str) -> Body | None:
        return self._one("trainingpipelines", PIPELINES, namespace, name)

    def watchers(self, namespace: str, deployment: str) -> list[str]:
        """The pipelines whose drift or decay trigger watches ``deployment``."""
        return sorted(set(self._values(WATCHERS, (namespace, deployment))))

    def run(self, namespace: str, name: str) -> Body | None:
        return self._one("trainingruns", RUNS, namespace, name)

    def runs_of(self, namespace: str, pipeline: str) -> list[Body]:
        names = set(self._values(RUNS_OF, (namespace, pipeline)))
        with self._lock:
            names |= {
                key[2]
                for key, body in self._overlay.items()
                if key[0] == "trainingruns"
                and key[1] == namespace
                and body is not None
                and ((body.get("spec") or {}).get("pipelineRef") or {}).get("name") == pipeline
            }
        found = (self.run(namespace, name) for name in sorted(names))
        return [body for body in found if body is not None]

    def job(self, namespace: str, run: str, name: str) -> Body | None:
        """The Job labelled with ``run`` (named ``name``), or the one we just created."""
        return self._one("jobs", JOBS, namespace, run, as_named=name)

    def pods_of(self, namespace: str, run: str) -> list[Body]:
        return [copy.deepcopy(dict(pod)) for pod in self._values(PODS, (namespace, run))]

    def deployment(self, namespace: str, name: str) -> Body | None:
        return self._one("modeldeployments", DEPLOYMENTS, namespace, name)

    def deployments(self, namespace: str) -> list[Body]:
        return [copy.deepcopy(dict(md)) for md in self._values(DEPLOYMENTS, (namespace,))]

    def serving_deployment(self, namespace: str, name: str) -> Body | None:
        """A serving Deployment (apps/v1) by its name, or the one we just wrote."""
        return self._one("deployments", SERVING, namespace, name)

    def serving_pods(self, namespace: str, deployment: str) -> list[Body]:
        """The model servers' Pods of ModelDeployment ``deployment`` (both tracks)."""
        return [
            copy.deepcopy(dict(pod)) for pod in self._values(SERVING_PODS, (namespace, deployment))
        ]

    # --- writes ------------------------------------------------------------------------

    def _remember(self, plural: str, namespace: str, name: str, body: Body | None) -> None:
        with self._lock:
            self._overlay[(plural, namespace, name)] = body

    def create_if_absent(
        self, resource: Resource, body: Mapping[str, Any], namespace: str
    ) -> tuple[Body, bool]:
        created, fresh = client.create_if_absent(resource, body, namespace)
        if fresh:
            self._remember(resource.plural, namespace, created["metadata"]["name"], created)
        return created, fresh

    def write_status(
        self,
        api: StatusApi[Any],
        body: Mapping[str, Any],
        changes: Mapping[str, Any],
        *,
        precondition: bool = False,
    ) -> Body:
        """Write ``changes`` into the status; with ``precondition``, only onto the version
        ``body`` was read at (409 Conflict if the object changed since: read again)."""
        meta = body["metadata"]
        namespace = meta.get("namespace") or ""
        version = meta.get("resourceVersion") if precondition else None
        written = api.write(meta["name"], namespace, changes, resource_version=version)
        self._remember(api.resource.plural, namespace, meta["name"], written)
        return written

    def refresh(self, resource: Resource, namespace: str, name: str) -> Body | None:
        """Read one object from the API (not the watches): after a conflict showed that
        what the watches hold is behind. The answer is remembered like a write's."""
        found = client.get_or_none(resource, name, namespace)
        self._remember(resource.plural, namespace, name, found)
        return found

    def remember(self, resource: Resource, written: Mapping[str, Any]) -> None:
        """Keep the answer of a write made elsewhere (the deployment's status)."""
        meta = written.get("metadata") or {}
        self._remember(
            resource.plural, meta.get("namespace") or "", str(meta.get("name")), dict(written)
        )

    def delete(self, resource: Resource, name: str, namespace: str) -> bool:
        gone = client.delete(resource, name, namespace)
        self._remember(resource.plural, namespace, name, None)
        return gone

    def delete_all(self, items: Iterable[tuple[Resource, str]], namespace: str) -> None:
        for resource, name in items:
            self.delete(resource, name, namespace)
