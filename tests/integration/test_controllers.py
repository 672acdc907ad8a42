"""The stand-in controllers write what the real ones would, in shapes the client accepts.

Every object they produce is read back through the official ``kubernetes`` client's model
deserialiser, which refuses objects missing fields a real cluster always sets.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes.client

from .harness import TERMINATION_MESSAGE_LIMIT, ApiServerEmulator, KubeApi, StandInControllers

NS = "stand-ins"


class _Response:
    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj)


def as_model(obj: Any, model: str) -> Any:
    """Deserialise like the kubernetes client does with an API answer (strict on fields)."""
    return kubernetes.client.ApiClient().deserialize(_Response(obj), model)


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "trainer"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "train", "image": "trainer:1"},
                        {"name": "sidecar", "image": "proxy:2"},
                    ],
                },
            }
        },
    }


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "server:1"}]},
            },
        },
    }


async def test_complete_job_terminates_the_pod_with_its_message(
    kube_api: KubeApi, controllers: StandInControllers
) -> None:
    await kube_api.create(job("ok"))
    running = await controllers.start_job("ok", NS)
    assert as_model(running, "V1Job").status.active == 1
    done = await controllers.complete_job("ok", NS, termination_message='{"accuracy": 0.9}')

    status = as_model(done, "V1Job").status
    assert [(c.type, c.status) for c in status.conditions] == [
        ("SuccessCriteriaMet", "True"),
        ("Complete", "True"),
    ]
    assert status.succeeded == 1 and status.completion_time is not None
    (pod,) = await controllers.job_pods("ok", NS)  # the running Pod, now terminated
    model = as_model(pod, "V1Pod")
    assert model.status.phase == "Succeeded"
    assert model.metadata.labels["job-name"] == "ok"
    assert model.metadata.owner_references[0].uid == done["metadata"]["uid"]
    train, sidecar = model.status.container_statuses
    assert train.state.terminated.message == '{"accuracy": 0.9}'
    assert train.state.terminated.exit_code == 0
    assert sidecar.state.terminated.message is None


async def test_failed_job_carries_reason_and_a_truncated_message(
    kube_api: KubeApi, controllers: StandInControllers
) -> None:
    await kube_api.create(job("late"))
    done = await controllers.complete_job(
        "late", NS, succeeded=False, reason="DeadlineExceeded", termination_message="x" * 5000
    )
    failed = [c for c in as_model(done, "V1Job").status.conditions if c.type == "Failed"]
    assert (failed[0].status, failed[0].reason) == ("True", "DeadlineExceeded")
    assert failed[0].message == "Job was active longer than specified deadline"
    (pod,) = await controllers.job_pods("late", NS)
    terminated = as_model(pod, "V1Pod").status.container_statuses[0].state.terminated
    assert terminated.exit_code == 1 and terminated.reason == "Error"
    assert len(terminated.message) == TERMINATION_MESSAGE_LIMIT


async def test_deployment_readiness_and_progress_deadline(
    kube_api: KubeApi, controllers: StandInControllers
) -> None:
    await kube_api.create(deployment("model"))
    ready = as_model(await controllers.set_deployment_ready("model", NS), "V1Deployment")
    assert (ready.status.ready_replicas, ready.status.available_replicas) == (2, 2)
    assert ready.status.observed_generation == 1
    assert {c.type: c.reason for c in ready.status.conditions} == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }

    stuck = as_model(
        await controllers.set_deployment_ready(
            "model", NS, ready=False, progress_deadline_exceeded=True
        ),
        "V1Deployment",
    )
    assert stuck.status.ready_replicas is None and stuck.status.unavailable_replicas == 2
    assert {c.type: (c.status, c.reason) for c in stuck.status.conditions} == {
        "Available": ("False", "MinimumReplicasUnavailable"),
        "Progressing": ("False", "ProgressDeadlineExceeded"),
    }


async def test_crashloop_pod_belongs_to_the_deployment_through_its_replicaset(
    kube_api: KubeApi, controllers: StandInControllers, emulator: ApiServerEmulator
) -> None:
    created = await kube_api.create(deployment("model"))
    pod = as_model(await controllers.crashloop_pod("model", NS, restart_count=7), "V1Pod")
    (status,) = pod.status.container_statuses
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.restart_count == 7 and status.ready is False
    assert status.last_state.terminated.exit_code == 1
    assert pod.metadata.labels["app"] == "model"
    (replicaset,) = emulator.live_objects("apps/v1/replicasets")
    assert pod.metadata.owner_references[0].uid == replicaset["metadata"]["uid"]
    assert replicaset["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

    # The garbage collector, played on demand: Deployment -> ReplicaSet -> Pod.
    collected = await controllers.cascade_delete(created)
    assert [entry.split("/")[-3] for entry in collected] == ["replicasets", "pods"]
    assert {obj["kind"] for obj in emulator.live_objects()} == {"CustomResourceDefinition"}
