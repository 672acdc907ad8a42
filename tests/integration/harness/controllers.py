"""The test plays the parts of Kubernetes the emulator does not have.

The emulator stores objects and nothing acts on them: no Job controller, no kubelet, no
Deployment controller, no garbage collector. :class:`StandInControllers` does what each of
them would write, through the API (so the operator sees ordinary watch events), when the test
says so::

    await controllers.complete_job("run-1", "ns", termination_message='{"accuracy": 0.9}')
    await controllers.complete_job("run-1", "ns", succeeded=False, reason="BackoffLimitExceeded")
    await controllers.set_deployment_ready("model", "ns", ready=False)
    await controllers.crashloop_pod("model", "ns")
    await controllers.cascade_delete(pipeline)   # delete, then collect the orphans
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from .emulator import ApiServerEmulator
from .kube_api import ApiError, KubeApi

__all__ = ["TERMINATION_MESSAGE_LIMIT", "StandInControllers"]

TERMINATION_MESSAGE_LIMIT: Final = 4096
"""The kubelet keeps at most this many bytes of a container's termination message."""

JOBS: Final = "batch/v1/jobs"
PODS: Final = "v1/pods"
DEPLOYMENTS: Final = "apps/v1/deployments"
REPLICASETS: Final = "apps/v1/replicasets"

_JOB_FAILURE_MESSAGES: Final = {
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "DeadlineExceeded": "Job was active longer than specified deadline",
}
_DEFAULT_POD_SPEC: Final[dict[str, Any]] = {
    "containers": [{"name": "main", "image": "example.invalid/image:latest"}],
    "restartPolicy": "Never",
}
_HASH_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _controller_ref(owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _truncate(message: str) -> str:
    return message.encode()[:TERMINATION_MESSAGE_LIMIT].decode(errors="ignore")


def _template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_ALPHABET[byte % len(_HASH_ALPHABET)] for byte in digest[:10])


def _container_status(
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


def _condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    now = _now()
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


class StandInControllers:
    """Job controller + kubelet, Deployment controller and garbage collector, on demand."""

    def __init__(self, api: KubeApi, emulator: ApiServerEmulator) -> None:
        self._api = api
        self._emulator = emulator

    # ----------------------------------------------------------------------------------
    # Jobs (the Job controller and the kubelet)

    async def job_pods(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The Pods owned by Job ``name`` (by owner uid, as a real client should filter)."""
        job = await self._api.get(JOBS, name, namespace)
        return [
            pod
            for pod in await self._api.list(PODS, namespace)
            if any(
                ref.get("uid") == job["metadata"]["uid"]
                for ref in pod["metadata"].get("ownerReferences", [])
            )
        ]

    async def _job_pod(self, job: Mapping[str, Any]) -> dict[str, Any]:
        meta = job["metadata"]
        pods = await self.job_pods(meta["name"], meta["namespace"])
        if pods:
            return pods[-1]
        template = job.get("spec", {}).get("template", {})
        labels = dict(template.get("metadata", {}).get("labels", {}))
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": meta["uid"],
                "batch.kubernetes.io/job-name": meta["name"],
                "controller-uid": meta["uid"],
                "job-name": meta["name"],
            }
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [_controller_ref(job)],
            },
            "spec": copy.deepcopy(template.get("spec") or _DEFAULT_POD_SPEC),
        }
        created: dict[str, Any] = await self._api.create(pod)
        return created

    async def start_job(self, name: str, namespace: str) -> dict[str, Any]:
        """The Job's Pod is running: Pod phase Running, Job ``active: 1``."""
        job = await self._api.get(JOBS, name, namespace)
        pod = await self._job_pod(job)
        now = _now()
        statuses = [
            _container_status(container, {"running": {"startedAt": now}}, ready=True)
            for container in pod["spec"].get("containers", [])
        ]
        await self._api.patch_status(
            PODS,
            pod["metadata"]["name"],
            namespace,
            {"phase": "Running", "startTime": now, "containerStatuses": statuses},
        )
        status: dict[str, Any] = {
            "startTime": job.get("status", {}).get("startTime") or now,
            "active": 1,
            "ready": 1,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        result: dict[str, Any] = await self._api.patch_status(JOBS, name, namespace, status)
        return result

    async def complete_job(
        self,
        name: str,
        namespace: str,
        *,
        termination_message: str | None = None,
        succeeded: bool = True,
        reason: str | None = None,
        message: str | None = None,
        exit_code: int | None = None,
        container: str | None = None,
    ) -> dict[str, Any]:
        """The Job finished: its Pod terminated (with the termination message), its status
        carries ``Complete`` or ``Failed`` (``reason`` e.g. ``BackoffLimitExceeded``,
        ``DeadlineExceeded``). The message is cut to 4096 bytes, as the kubelet does."""
        if succeeded and reason is not None:
            raise ValueError(
                "complete_job: `reason` is for failures; drop it or pass succeeded=False"
            )
        reason = reason or ("CompletionsReached" if succeeded else "BackoffLimitExceeded")
        message = message or (
            "Reached expected number of succeeded pods"
            if succeeded
            else _JOB_FAILURE_MESSAGES.get(reason, f"Job failed: {reason}")
        )
        exit_code = exit_code if exit_code is not None else (0 if succeeded else 1)
        job = await self._api.get(JOBS, name, namespace)
        pod = await self._job_pod(job)
        specs = pod["spec"].get("containers") or _DEFAULT_POD_SPEC["containers"]
        containers = [c["name"] for c in specs]
        main = container or containers[0]
        if main not in containers:
            raise ValueError(
                f"complete_job: container {main!r} is not in the Pod (has {containers}); "
                "pass one of those as container="
            )
        now = _now()
        started = job.get("status", {}).get("startTime") or now
        statuses = []
        for index, spec in enumerate(specs):
            is_main = spec["name"] == main
            terminated: dict[str, Any] = {
                "exitCode": exit_code if is_main else 0,
                "reason": "Error" if is_main and exit_code != 0 else "Completed",
                "startedAt": started,
                "finishedAt": now,
                "containerID": f"containerd://{pod['metadata']['uid'].replace('-', '')}{index}",
            }
            if is_main and termination_message is not None:
                terminated["message"] = _truncate(termination_message)
            statuses.append(_container_status(spec, {"terminated": terminated}))
        await self._api.patch_status(
            PODS,
            pod["metadata"]["name"],
            namespace,
            {
                "phase": "Succeeded" if succeeded else "Failed",
                "startTime": started,
                "containerStatuses": statuses,
            },
        )
        status: dict[str, Any] = {
            "startTime": started,
            "active": 0,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        if succeeded:
            status |= {
                "succeeded": 1,
                "completionTime": now,
                "conditions": [
                    _condition("SuccessCriteriaMet", True, reason, message),
                    _condition("Complete", True, reason, message),
                ],
            }
        else:
            status |= {
                "failed": 1,
                "conditions": [
                    _condition("FailureTarget", True, reason, message),
                    _condition("Failed", True, reason, message),
                ],
            }
        result: dict[str, Any] = await self._api.patch_status(JOBS, name, namespace, status)
        return result

    # ----------------------------------------------------------------------------------
    # Deployments (the Deployment controller, the ReplicaSet controller, the kubelet)

    async def _replicaset(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        meta = deployment["metadata"]
        template = deployment.get("spec", {}).get("template", {})
        template_hash = _template_hash(template)
        rs_name = f"{meta['name']}-{template_hash}"
        existing = await self._api.get_or_none(REPLICASETS, rs_name, meta["namespace"])
        if existing is not None:
            found: dict[str, Any] = existing
            return found
        labels = dict(template.get("metadata", {}).get("labels", {}))
        labels["pod-template-hash"] = template_hash
        spec = copy.deepcopy(dict(deployment.get("spec", {})))
        spec["template"] = copy.deepcopy(dict(template))
        spec["template"].setdefault("metadata", {})["labels"] = labels
        created: dict[str, Any] = await self._api.create(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": meta["namespace"],
                    "labels": labels,
                    "ownerReferences": [_controller_ref(deployment)],
                },
                "spec": spec,
            }
        )
        return created

    async def set_deployment_ready(
        self,
        name: str,
        namespace: str,
        *,
        ready: bool = True,
        progress_deadline_exceeded: bool = False,
    ) -> dict[str, Any]:
        """The Deployment rolled out (``ready=True``) or has no available Pods; with
        ``progress_deadline_exceeded`` its Progressing condition is False with reason
        ``ProgressDeadlineExceeded``. ``observedGeneration`` is the current generation."""
        if ready and progress_deadline_exceeded:
            raise ValueError(
                "set_deployment_ready: a ready Deployment has not exceeded its progress "
                "deadline; pass ready=False with progress_deadline_exceeded=True"
            )
        deployment = await self._api.get(DEPLOYMENTS, name, namespace)
        rs = await self._replicaset(deployment)
        rs_name = rs["metadata"]["name"]
        replicas = int(deployment.get("spec", {}).get("replicas", 1))
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
        }
        if ready:
            status |= {
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "unavailableReplicas": None,
                "conditions": [
                    _condition(
                        "Available",
                        True,
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                    ),
                    _condition(
                        "Progressing",
                        True,
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                    ),
                ],
            }
        else:
            progressing = (
                _condition(
                    "Progressing",
                    False,
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                )
                if progress_deadline_exceeded
                else _condition(
                    "Progressing",
                    True,
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                )
            )
            status |= {
                "readyReplicas": None,
                "availableReplicas": None,
                "unavailableReplicas": replicas,
                "conditions": [
                    _condition(
                        "Available",
                        False,
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                    ),
                    progressing,
                ],
            }
        await self._api.patch_status(
            REPLICASETS,
            rs_name,
            namespace,
            {
                "replicas": replicas,
                "readyReplicas": replicas if ready else None,
                "availableReplicas": replicas if ready else None,
                "observedGeneration": rs["metadata"]["generation"],
            },
        )
        result: dict[str, Any] = await self._api.patch_status(DEPLOYMENTS, name, namespace, status)
        return result

    async def crashloop_pod(
        self,
        deployment: str,
        namespace: str,
        *,
        restart_count: int = 5,
        exit_code: int = 1,
        termination_message: str | None = None,
    ) -> dict[str, Any]:
        """A Pod of the Deployment (via its ReplicaSet) whose first container is in
        ``CrashLoopBackOff``, with its last termination in ``lastState``."""
        owner = await self._api.get(DEPLOYMENTS, deployment, namespace)
        rs = await self._replicaset(owner)
        template = rs["spec"]["template"]
        pod = await self._api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{rs['metadata']['name']}-",
                    "namespace": namespace,
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [_controller_ref(rs)],
                },
                "spec": copy.deepcopy(template.get("spec") or _DEFAULT_POD_SPEC),
            }
        )
        pod_name, now = pod["metadata"]["name"], _now()
        statuses = []
        for index, container in enumerate(pod["spec"].get("containers", [])):
            crashing = index == 0
            last: dict[str, Any] = {
                "exitCode": exit_code,
                "reason": "Error",
                "startedAt": now,
                "finishedAt": now,
            }
            if termination_message is not None:
                last["message"] = _truncate(termination_message)
            waiting = {
                "reason": "CrashLoopBackOff",
                "message": (
                    f"back-off 5m0s restarting failed container={container['name']} "
                    f"pod={pod_name}_{namespace}({pod['metadata']['uid']})"
                ),
            }
            statuses.append(
                _container_status(
                    container,
                    {"waiting": waiting} if crashing else {"running": {"startedAt": now}},
                    ready=not crashing,
                    restart_count=restart_count if crashing else 0,
                    last_state={"terminated": last} if crashing else None,
                )
            )
        result: dict[str, Any] = await self._api.patch_status(
            PODS,
            pod_name,
            namespace,
            {
                "phase": "Running",
                "startTime": now,
                "conditions": [
                    _condition(
                        "Ready", False, "ContainersNotReady", "containers with unready status"
                    ),
                ],
                "containerStatuses": statuses,
            },
        )
        return result

    # ----------------------------------------------------------------------------------
    # The garbage collector

    async def collect_garbage(self) -> list[str]:
        """Delete every object whose owners are all gone, until none is left (background
        propagation). Returns ``resource/namespace/name`` of what was deleted."""
        deleted: list[str] = []
        while True:
            objects = self._emulator.live_objects()
            uids = {obj["metadata"]["uid"] for obj in objects}
            orphans = [
                obj
                for obj in objects
                if obj["metadata"].get("ownerReferences")
                and not obj["metadata"].get("deletionTimestamp")
                and all(ref.get("uid") not in uids for ref in obj["metadata"]["ownerReferences"])
            ]
            if not orphans:
                return deleted
            for obj in orphans:
                resource = self._api.resource_of(obj)
                meta = obj["metadata"]
                try:
                    await self._api.delete(resource, meta["name"], meta.get("namespace"))
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                deleted.append(f"{resource}/{meta.get('namespace') or ''}/{meta['name']}")

    async def cascade_delete(self, obj: Mapping[str, Any]) -> list[str]:
        """Delete ``obj``, then :meth:`collect_garbage` (its dependents go once it is gone;
        while finalizers hold it, they stay, as with background propagation)."""
        meta = obj["metadata"]
        await self._api.delete(self._api.resource_of(obj), meta["name"], meta.get("namespace"))
        return await self.collect_garbage()
