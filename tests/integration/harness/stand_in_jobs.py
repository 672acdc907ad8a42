"""The Job controller and the kubelet, played by the test: Pods, termination messages,
Job conditions."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from .stand_in_shapes import (
    DEFAULT_POD_SPEC,
    JOBS,
    PODS,
    StandIn,
    condition,
    container_status,
    controller_ref,
    timestamp,
    truncate_message,
)

__all__ = ["JobStandIn"]

_JOB_FAILURE_MESSAGES: Final = {
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "DeadlineExceeded": "Job was active longer than specified deadline",
}


class JobStandIn(StandIn):
    """``start_job`` / ``complete_job``: what the Job controller and the kubelet write."""

    async def job_pods(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The Pods owned by Job ``name``: those the Job controller labels with its name,
        owned by its uid (as a real client should check)."""
        job = await self._api.get(JOBS, name, namespace)
        return [
            pod
            for pod in await self._api.list(PODS, namespace, label_selector=f"job-name={name}")
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
                "ownerReferences": [controller_ref(job)],
            },
            "spec": copy.deepcopy(template.get("spec") or DEFAULT_POD_SPEC),
        }
        created: dict[str, Any] = await self._api.create(pod)
        return created

    async def start_job(self, name: str, namespace: str) -> dict[str, Any]:
        """The Job's Pod is running: Pod phase Running, Job ``active: 1``."""
        job = await self._api.get(JOBS, name, namespace)
        pod = await self._job_pod(job)
        now = timestamp()
        statuses = [
            container_status(container, {"running": {"startedAt": now}}, ready=True)
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
        specs = pod["spec"].get("containers") or DEFAULT_POD_SPEC["containers"]
        containers = [c["name"] for c in specs]
        main = container or containers[0]
        if main not in containers:
            raise ValueError(
                f"complete_job: container {main!r} is not in the Pod (has {containers}); "
                "pass one of those as container="
            )
        now = timestamp()
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
                terminated["message"] = truncate_message(termination_message)
            statuses.append(container_status(spec, {"terminated": terminated}))
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
                    condition("SuccessCriteriaMet", True, reason, message),
                    condition("Complete", True, reason, message),
                ],
            }
        else:
            status |= {
                "failed": 1,
                "conditions": [
                    condition("FailureTarget", True, reason, message),
                    condition("Failed", True, reason, message),
                ],
            }
        result: dict[str, Any] = await self._api.patch_status(JOBS, name, namespace, status)
        return result
