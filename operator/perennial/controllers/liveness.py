"""Liveness that reflects whether the operator can still see the cluster.

kopf serves ``--liveness`` itself and answers with the results of the ``@kopf.on.probe``
handlers; a probe that raises turns the answer into HTTP 500 and the kubelet restarts the pod.
A probe that always succeeds (kopf's default) keeps a pod "alive" that lost its API
connection hours ago (dask-kubernetes #620, kopf #614/#698). Ours lists one TrainingPipeline
in the watched scope, with a short timeout, and fails once no such call has succeeded for
:data:`STALE_AFTER` seconds: long enough to ride out an API server restart, short enough that
a wedged operator is replaced within minutes. kopf caches probe results for 10 s, so the
kubelet's probes cost at most one small request per 10 s.

The verdict itself is the pure :func:`assess_liveness`; the I/O is in :func:`check_api`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Final

import kopf

from perennial.k8s import client as k8s_client

__all__ = [
    "HEARTBEAT",
    "STALE_AFTER",
    "ApiHeartbeat",
    "LivenessVerdict",
    "assess_liveness",
    "check_api",
    "probe_api",
]

STALE_AFTER: Final = 180.0
"""Seconds without a successful API call before the operator reports itself dead."""
REQUEST_TIMEOUT: Final = 5.0

# Listing pipelines needs exactly the permission the operator's main watch needs.
PROBE_GROUP: Final = "perennial.dev"
PROBE_VERSION: Final = "v1alpha1"
PROBE_PLURAL: Final = "trainingpipelines"


@dataclasses.dataclass(frozen=True)
class LivenessVerdict:
    healthy: bool
    reason: str
    seconds_since_success: float | None


def assess_liveness(
    *,
    now: float,
    started_at: float,
    last_success: float | None,
    last_error: str | None,
    stale_after: float = STALE_AFTER,
) -> LivenessVerdict:
    """Healthy while an API call succeeded within ``stale_after`` seconds (or since start-up)."""
    if last_success is not None:
        age = max(0.0, now - last_success)
        if age <= stale_after:
            return LivenessVerdict(True, "API reachable", age)
        return LivenessVerdict(
            False,
            f"no successful API call for {age:.0f}s (limit {stale_after:.0f}s); "
            f"last error: {last_error or 'none recorded'}",
            age,
        )
    waited = max(0.0, now - started_at)
    if waited <= stale_after:
        return LivenessVerdict(True, "starting: no API call has succeeded yet", None)
    return LivenessVerdict(
        False,
        f"no API call has succeeded since start-up {waited:.0f}s ago; "
        f"last error: {last_error or 'none recorded'}",
        None,
    )


@dataclasses.dataclass
class ApiHeartbeat:
    """When the operator last talked to the API server successfully (monotonic seconds).

    Controllers may call :meth:`record_success` after any successful API call too; the probe
    then has fresh evidence without making its own request.
    """

    started_at: float = dataclasses.field(default_factory=time.monotonic)
    last_success: float | None = None
    last_error: str | None = None

    def record_success(self, now: float | None = None) -> None:
        self.last_success = time.monotonic() if now is None else now

    def record_failure(self, error: str) -> None:
        self.last_error = error

    def verdict(
        self, now: float | None = None, stale_after: float = STALE_AFTER
    ) -> LivenessVerdict:
        return assess_liveness(
            now=time.monotonic() if now is None else now,
            started_at=self.started_at,
            last_success=self.last_success,
            last_error=self.last_error,
            stale_after=stale_after,
        )


HEARTBEAT = ApiHeartbeat()


def _list_one_pipeline(api_client: Any, namespace: str | None) -> None:
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)
    if namespace is None:
        api.list_cluster_custom_object(
            PROBE_GROUP, PROBE_VERSION, PROBE_PLURAL, limit=1, _request_timeout=REQUEST_TIMEOUT
        )
    else:
        api.list_namespaced_custom_object(
            PROBE_GROUP,
            PROBE_VERSION,
            namespace,
            PROBE_PLURAL,
            limit=1,
            _request_timeout=REQUEST_TIMEOUT,
        )


async def check_api(
    heartbeat: ApiHeartbeat, namespaces: Sequence[str], api_client: Any = None
) -> None:
    """List one TrainingPipeline in the watched scope; record the outcome in ``heartbeat``.

    Cluster-wide when ``namespaces`` is empty, else in the first watched namespace.
    """
    try:
        if api_client is None:
            # The operator's one shared client: same configuration, same credentials.
            api_client = await asyncio.to_thread(k8s_client.api_client)
        namespace = namespaces[0] if namespaces else None
        await asyncio.to_thread(_list_one_pipeline, api_client, namespace)
    except Exception as exc:
        status = getattr(exc, "status", None)
        hint = " (is the perennial.dev CRD installed?)" if status == 404 else ""
        heartbeat.record_failure(f"{type(exc).__name__}: {exc}".strip()[:300] + hint)
    else:
        heartbeat.record_success()


@kopf.on.probe(id="api", errors=kopf.ErrorsMode.PERMANENT, timeout=2 * REQUEST_TIMEOUT)
async def probe_api(memo: Any, **_: Any) -> dict[str, Any]:
    """kopf probe handler: fresh API evidence, then the verdict (raises when unhealthy)."""
    namespaces: Sequence[str] = tuple(memo.get("namespaces", ()))
    await check_api(HEARTBEAT, namespaces)
    verdict = HEARTBEAT.verdict()
    if not verdict.healthy:
        raise kopf.PermanentError(verdict.reason)
    return {
        "healthy": True,
        "reason": verdict.reason,
        "secondsSinceSuccess": verdict.seconds_since_success,
        "scope": list(namespaces) or "cluster",
    }
