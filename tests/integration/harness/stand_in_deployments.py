"""The Deployment and ReplicaSet controllers and the kubelet, played by the test."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .stand_in_shapes import (
    DEFAULT_POD_SPEC,
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    StandIn,
    condition,
    container_status,
    controller_ref,
    template_hash,
    timestamp,
    truncate_message,
)

__all__ = ["DeploymentStandIn"]


class DeploymentStandIn(StandIn):
    """``set_deployment_ready`` / ``crashloop_pod``: rollout status and failing Pods."""

    async def _replicaset(self, deployment: Mapping[str, Any]) -> dict[str, Any]:
        meta = deployment["metadata"]
        template = deployment.get("spec", {}).get("template", {})
        pod_template_hash = template_hash(template)
        rs_name = f"{meta['name']}-{pod_template_hash}"
        existing = await self._api.get_or_none(REPLICASETS, rs_name, meta["namespace"])
        if existing is not None:
            found: dict[str, Any] = existing
            return found
        labels = dict(template.get("metadata", {}).get("labels", {}))
        labels["pod-template-hash"] = pod_template_hash
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
                    "ownerReferences": [controller_ref(deployment)],
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
        old_replicas: int = 0,
    ) -> dict[str, Any]:
        """The Deployment rolled out (``ready=True``) or has no available Pods; with
        ``progress_deadline_exceeded`` its Progressing condition is False with reason
        ``ProgressDeadlineExceeded``. ``observedGeneration`` is the current generation.

        ``old_replicas``: ready Pods of the previous ReplicaSet that are still running (a
        surge rolling update). They count in ``replicas``, ``readyReplicas`` and
        ``availableReplicas`` but not in ``updatedReplicas``; with ``ready=False`` the
        Deployment stays Available on them while its new Pods are not ready."""
        if ready and progress_deadline_exceeded:
            raise ValueError(
                "set_deployment_ready: a ready Deployment has not exceeded its progress "
                "deadline; pass ready=False with progress_deadline_exceeded=True"
            )
        if old_replicas < 0:
            raise ValueError(
                f"set_deployment_ready: old_replicas must be 0 or more, got {old_replicas}"
            )
        deployment = await self._api.get(DEPLOYMENTS, name, namespace)
        rs = await self._replicaset(deployment)
        rs_name = rs["metadata"]["name"]
        replicas = int(deployment.get("spec", {}).get("replicas", 1))
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas + old_replicas,
            "updatedReplicas": replicas,
        }
        if ready:
            status |= {
                "readyReplicas": replicas + old_replicas,
                "availableReplicas": replicas + old_replicas,
                "unavailableReplicas": None,
                "conditions": [
                    condition(
                        "Available",
                        True,
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                    ),
                    condition(
                        "Progressing",
                        True,
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                    ),
                ],
            }
        elif old_replicas:
            # The old Pods carry the Deployment while the new ones start (maxUnavailable 0).
            status |= {
                "readyReplicas": old_replicas,
                "availableReplicas": old_replicas,
                "unavailableReplicas": max(0, replicas - old_replicas) or None,
                "conditions": [
                    condition(
                        "Available",
                        True,
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                    ),
                    condition(
                        "Progressing",
                        True,
                        "ReplicaSetUpdated",
                        f'ReplicaSet "{rs_name}" is progressing.',
                    ),
                ],
            }
        else:
            progressing = (
                condition(
                    "Progressing",
                    False,
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                )
                if progress_deadline_exceeded
                else condition(
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
                    condition(
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
                    "ownerReferences": [controller_ref(rs)],
                },
                "spec": copy.deepcopy(template.get("spec") or DEFAULT_POD_SPEC),
            }
        )
        pod_name, now = pod["metadata"]["name"], timestamp()
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
                last["message"] = truncate_message(termination_message)
            waiting = {
                "reason": "CrashLoopBackOff",
                "message": (
                    f"back-off 5m0s restarting failed container={container['name']} "
                    f"pod={pod_name}_{namespace}({pod['metadata']['uid']})"
                ),
            }
            statuses.append(
                container_status(
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
                    condition(
                        "Ready", False, "ContainersNotReady", "containers with unready status"
                    ),
                ],
                "containerStatuses": statuses,
            },
        )
        return result
