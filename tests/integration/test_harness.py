"""The harness proves itself: a tiny kopf operator run against the emulator.

The operator below manages ``Widget`` objects (a CRD of this test only): on creation it
creates a Job owned by the Widget (``kopf.adopt``) with the official ``kubernetes`` client and
writes the Widget's status through ``patch.status``; when the Job completes it reads the
Pod's termination message and writes it into the Widget's status through the ``/status``
subresource; it posts events at each step. Each test builds it into a fresh
``kopf.OperatorRegistry``, so no handler leaks from one test into another.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import kmock
import kopf
import kubernetes.client
import pytest
import yaml

from .harness import (
    ApiServerEmulator,
    KubeApi,
    Kubectl,
    OperatorRunner,
    StandInControllers,
    wait_for,
)

NS = "harness"
WIDGETS = "test.perennial.dev/v1/widgets"
JOBS = "batch/v1/jobs"
GROUP, VERSION, PLURAL = "test.perennial.dev", "v1", "widgets"
FINALIZER = "test.perennial.dev/finalizer"
WIDGET_LABEL = "test.perennial.dev/widget"

WIDGET_CRD = yaml.safe_load(
    """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.perennial.dev
spec:
  group: test.perennial.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Phase, type: string, jsonPath: .status.phase}
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""
)

HANDLER_LIMITS: dict[str, Any] = {"retries": 3, "backoff": 0.2, "timeout": 10.0}


# --------------------------------------------------------------------------------------
# The tiny operator


@dataclass
class WidgetHooks:
    """What the test observes and steers in the operator."""

    create_calls: int = 0
    deleted: list[str] = field(default_factory=list)
    hold_after_job_created: threading.Event | None = None  # set: wait until it is cleared

    async def after_job_created(self) -> None:
        gate = self.hold_after_job_created
        while gate is not None and gate.is_set():
            await asyncio.sleep(0.01)


def job_for(widget: kopf.Body) -> dict[str, Any]:
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": widget.meta["name"], "labels": {WIDGET_LABEL: widget.meta["name"]}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "train",
                            "image": "example.invalid/trainer:1",
                            "terminationMessagePolicy": "File",
                        }
                    ],
                }
            },
        },
    }
    kopf.adopt(job, owner=widget)
    return job


def create_job_once(namespace: str, job: dict[str, Any]) -> bool:
    """Create the Job; False if it already exists (deterministic name: no duplicates)."""
    try:
        kubernetes.client.BatchV1Api().create_namespaced_job(namespace, job)
    except kubernetes.client.ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def build_widget_operator(registry: kopf.OperatorRegistry, hooks: WidgetHooks) -> None:
    @kopf.on.startup(registry=registry)
    def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="test.perennial.dev", v1=False
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="test.perennial.dev", v1=False
        )
        settings.posting.reporting_component = "widget-operator"

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, **HANDLER_LIMITS)
    async def create_job(
        *, body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any
    ) -> None:
        assert namespace is not None  # Widgets are namespaced
        hooks.create_calls += 1
        created = await asyncio.to_thread(create_job_once, namespace, job_for(body))
        kopf.info(
            body,
            reason="JobCreated" if created else "JobFound",
            message=f"Job {name} {'created' if created else 'already exists'}",
        )
        await hooks.after_job_created()
        patch.status["phase"] = "Running"
        patch.status["jobName"] = name
        patch.status["observedGeneration"] = body.meta["generation"]

    @kopf.on.event("batch", "v1", "jobs", registry=registry, labels={WIDGET_LABEL: kopf.PRESENT})
    def job_changed(*, body: kopf.Body, namespace: str | None, type: str, **_: Any) -> None:
        conditions = body.get("status", {}).get("conditions") or []
        finished = [c for c in conditions if c["type"] in ("Complete", "Failed")]
        if type == "DELETED" or not any(c["status"] == "True" for c in finished):
            return
        condition = next(c for c in finished if c["status"] == "True")
        owner = next(r for r in body.meta.get("ownerReferences", []) if r["kind"] == "Widget")
        objects = kubernetes.client.CustomObjectsApi()
        widget = objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, owner["name"]
        )
        if widget.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return  # already recorded: events for a finished Job keep coming
        pods = kubernetes.client.CoreV1Api().list_namespaced_pod(namespace).items
        owned = [
            pod
            for pod in pods
            if any(ref.uid == body.meta["uid"] for ref in pod.metadata.owner_references or [])
        ]
        terminated = owned[0].status.container_statuses[0].state.terminated if owned else None
        result = json.loads(terminated.message) if terminated and terminated.message else None
        phase = "Succeeded" if condition["type"] == "Complete" else "Failed"
        objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            owner["name"],
            {"status": {"phase": phase, "reason": condition["reason"], "result": result}},
        )
        event = kopf.info if phase == "Succeeded" else kopf.warn
        event(
            widget, reason=f"Job{phase}", message=f"Job {body.meta['name']}: {condition['reason']}"
        )

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, **HANDLER_LIMITS)
    def widget_deleted(*, name: str, **_: Any) -> None:
        hooks.deleted.append(name)


# --------------------------------------------------------------------------------------
# Fixtures


@dataclass
class WidgetOperator:
    runner: OperatorRunner
    registry: kopf.OperatorRegistry
    hooks: WidgetHooks

    async def start(self) -> None:
        await self.runner.start(registry=self.registry, watching=[WIDGETS, JOBS])


@pytest.fixture
async def widget_crd(emulator: ApiServerEmulator) -> dict[str, Any]:
    # The widget operator is not Perennial: its own kinds join the RBAC the emulator holds
    # operator requests to (everything else stays as manifests/base/rbac.yaml grants).
    emulator.rbac.grant(GROUP, (PLURAL, f"{PLURAL}/status"), ("get", "list", "watch", "patch"))
    return await emulator.add_crd(WIDGET_CRD)


@pytest.fixture
def widget_operator(operator_runner: OperatorRunner, widget_crd: dict[str, Any]) -> WidgetOperator:
    registry = kopf.OperatorRegistry()  # per test: handlers never leak between tests
    hooks = WidgetHooks()
    build_widget_operator(registry, hooks)
    return WidgetOperator(operator_runner, registry, hooks)


def widget(name: str, size: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"size": size},
    }


async def phase_of(api: KubeApi, name: str) -> str | None:
    obj = await api.get_or_none(WIDGETS, name, NS)
    return None if obj is None else obj.get("status", {}).get("phase")


# --------------------------------------------------------------------------------------
# The operator's lifecycle


@pytest.mark.parametrize("succeeded", [True, False], ids=["job-succeeds", "job-fails"])
async def test_widget_lifecycle(
    widget_operator: WidgetOperator,
    kube_api: KubeApi,
    controllers: StandInControllers,
    emulator: ApiServerEmulator,
    succeeded: bool,
) -> None:
    await widget_operator.start()
    created = await kube_api.create(widget("w1"))

    async def running() -> bool:
        return await phase_of(kube_api, "w1") == "Running"

    await wait_for(running)
    job = await kube_api.get(JOBS, "w1", NS)
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "name": "w1",
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    current = await kube_api.get(WIDGETS, "w1", NS)
    assert current["metadata"]["finalizers"] == [FINALIZER]
    assert current["metadata"]["generation"] == 1
    assert current["status"]["observedGeneration"] == 1

    if succeeded:
        await controllers.complete_job("w1", NS, termination_message='{"accuracy": 0.93}')
    else:
        await controllers.complete_job(
            "w1",
            NS,
            succeeded=False,
            reason="BackoffLimitExceeded",
            termination_message='{"error": "no data"}',
        )
    expected = "Succeeded" if succeeded else "Failed"

    async def finished() -> bool:
        return await phase_of(kube_api, "w1") == expected

    await wait_for(finished)
    status = (await kube_api.get(WIDGETS, "w1", NS))["status"]
    assert status["result"] == ({"accuracy": 0.93} if succeeded else {"error": "no data"})
    assert status["reason"] == ("CompletionsReached" if succeeded else "BackoffLimitExceeded")

    await wait_for(
        _has_all(kube_api, created, {"JobCreated", f"Job{expected}"}),
        what="events JobCreated and Job{expected}",
    )

    # Deletion: kopf's finalizer holds the Widget until the delete handler ran.
    await kube_api.delete(WIDGETS, "w1", NS)
    await wait_for(lambda: _gone(kube_api, WIDGETS, "w1"))
    assert widget_operator.hooks.deleted == ["w1"]
    # No garbage collector: the Job outlives its owner until the test plays the GC.
    assert await kube_api.get_or_none(JOBS, "w1", NS) is not None
    collected = await controllers.collect_garbage()
    assert sorted(collected) == [f"batch/v1/jobs/{NS}/w1", f"v1/pods/{NS}/w1-bbbbc"]
    assert emulator.live_objects(JOBS) == []
    assert widget_operator.runner.problems() == []


def _has_all(api: KubeApi, obj: dict[str, Any], wanted: set[str]) -> Any:
    async def check() -> bool:
        return wanted <= {event.reason for event in await api.events_for(obj)}

    return check


async def _gone(api: KubeApi, resource: str, name: str) -> bool:
    return await api.get_or_none(resource, name, NS) is None


# --------------------------------------------------------------------------------------
# An operator restart in the middle of a handler


async def test_restart_mid_handler_creates_no_duplicate_job(
    widget_operator: WidgetOperator,
    kube_api: KubeApi,
    controllers: StandInControllers,
    emulator: ApiServerEmulator,
) -> None:
    hooks = widget_operator.hooks
    hooks.hold_after_job_created = gate = threading.Event()
    gate.set()  # the create handler stops right after creating the Job
    await widget_operator.start()
    created = await kube_api.create(widget("w2"))
    await wait_for(lambda: kube_api.get_or_none(JOBS, "w2", NS), what="the Job")

    # The operator goes down while the handler is in flight: its outcome is never stored.
    await widget_operator.runner.stop()
    assert "status" not in await kube_api.get(WIDGETS, "w2", NS)

    gate.clear()
    await widget_operator.runner.restart()

    async def running() -> bool:
        return await phase_of(kube_api, "w2") == "Running"

    await wait_for(running)
    assert hooks.create_calls == 2  # the handler ran again after the restart ...
    job_posts = [
        request
        for request in emulator.writes
        if request.method == kmock.method.POST and request.resource == kmock.resource(JOBS)
    ]
    assert len(job_posts) == 2  # ... and tried to create the Job again, which already existed
    assert [job["metadata"]["name"] for job in emulator.live_objects(JOBS)] == ["w2"]

    await controllers.complete_job("w2", NS, termination_message='{"accuracy": 0.8}')

    async def succeeded() -> bool:
        return await phase_of(kube_api, "w2") == "Succeeded"

    await wait_for(succeeded)
    await wait_for(_has_all(kube_api, created, {"JobCreated", "JobFound", "JobSucceeded"}))
    assert widget_operator.runner.starts == 2
    # What kopf says when it is stopped in the middle of a handler is set aside (a stop is a
    # crash by design), and there is nothing else.
    assert widget_operator.runner.problems() == []
    said = widget_operator.runner.stop_messages()
    expected = ("Unprocessed streams left for", "create_job' is cancelled. Will escalate.")
    assert len(said) == 2, said
    assert all(any(text in line for line in said) for text in expected), said


# --------------------------------------------------------------------------------------
# kubectl against the emulator


async def test_kubectl_reads_what_the_operator_wrote(
    widget_operator: WidgetOperator,
    kube_api: KubeApi,
    controllers: StandInControllers,
    emulator: ApiServerEmulator,
    kubectl: Kubectl,
) -> None:
    await widget_operator.start()
    await kube_api.create(widget("w3"))
    await wait_for(lambda: _phase_is(kube_api, "w3", "Running"))
    await controllers.complete_job("w3", NS, termination_message='{"accuracy": 1.0}')
    await wait_for(lambda: _phase_is(kube_api, "w3", "Succeeded"))

    listed = yaml.safe_load(await kubectl("get", "widgets", "-n", NS, "-o", "yaml"))
    assert listed["kind"] == "List"
    (item,) = listed["items"]
    assert item["status"]["result"] == {"accuracy": 1.0}
    as_json = json.loads(await kubectl("get", "widget", "w3", "-n", NS, "-o", "json"))
    assert as_json["metadata"]["finalizers"] == [FINALIZER]
    # The CRD's printer columns, rendered server-side as on a real cluster.
    table = (await kubectl("get", "wd", "-n", NS)).splitlines()
    assert table[0].split() == ["NAME", "PHASE"] and table[1].split() == ["w3", "Succeeded"]
    assert "w3" in await kubectl("get", "jobs", "-n", NS)

    # describe lists the Widget's events (field selectors on involvedObject are applied).
    await wait_for(_has_all(kube_api, item, {"JobCreated", "JobSucceeded"}))
    described = await kubectl("describe", "widget", "w3", "-n", NS)
    assert "JobCreated" in described and "JobSucceeded" in described
    assert "involvedObject.uid" in emulator.selector_requests[-1]


async def _phase_is(api: KubeApi, name: str, phase: str) -> bool:
    return await phase_of(api, name) == phase


def test_handlers_stay_in_their_own_registry() -> None:
    # Every test above built the Widget operator into a fresh kopf.OperatorRegistry: nothing
    # of it reached kopf's default registry (where the real operator's modules register).
    default = kopf.get_default_registry()
    handlers = [
        *default._changing.get_all_handlers(),
        *default._watching.get_all_handlers(),
        *default._activities.get_all_handlers(),
    ]
    leaked = [h.id for h in handlers if "build_widget_operator" in str(h.id)]
    assert leaked == []


async def test_namespaced_operator_serves_only_its_namespaces(
    widget_operator: WidgetOperator, kube_api: KubeApi, emulator: ApiServerEmulator
) -> None:
    await widget_operator.runner.start(
        registry=widget_operator.registry, watching=[WIDGETS, JOBS], namespaces=[NS]
    )
    await kube_api.create({**widget("elsewhere"), "metadata": {"name": "w", "namespace": "other"}})
    await kube_api.create(widget("w"))
    await wait_for(lambda: _phase_is(kube_api, "w", "Running"))
    assert (await kube_api.get(WIDGETS, "w", "other")).get("status") is None
    assert [job["metadata"]["namespace"] for job in emulator.live_objects(JOBS)] == [NS]
    assert widget_operator.runner.problems() == []
