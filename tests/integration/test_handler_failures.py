"""A handler that gives up on an object says so: Stalled=True and a Warning event.

Each kind is made to fail permanently the way a real API server can refuse a request:
the emulator answers the operator's create request with 422 (Invalid), which no retry can
fix. The object must then carry ``Stalled=True`` (reason and message, via the status
subresource) and a Warning event, never silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perennial.controllers import kit

from .deployment_helpers import MD, SERVICES, Serving, serving
from .harness import wait_for
from .training_helpers import JOBS, TP, TR, Training, pipeline_body, training

__all__ = ["serving", "training"]

REFUSAL = "spec.template: Invalid value: refused by the test"


def _stalled(status: Mapping[str, Any]) -> dict[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return dict(cond)
    return None


async def _wait_stalled(api: Any, resource: str, name: str, namespace: str) -> dict[str, Any]:
    async def stalled() -> dict[str, Any] | None:
        body = await api.get_or_none(resource, name, namespace)
        return body if body and _stalled(body.get("status") or {}) else None

    found: dict[str, Any] = await wait_for(stalled, what=f"{resource}/{name} Stalled")
    return found


def _assert_stalled_by_refusal(body: Mapping[str, Any]) -> None:
    cond = _stalled(body["status"])
    assert cond is not None
    assert cond["reason"] == kit.REASON_REFUSED
    assert REFUSAL in cond["message"]
    assert cond["observedGeneration"] == body["metadata"]["generation"]
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"


async def _warnings(api: Any, body: Mapping[str, Any]) -> list[Any]:
    async def posted() -> list[Any]:
        return [
            e
            for e in await api.events_for(body)
            if e.reason == kit.REASON_REFUSED and e.type == "Warning"
        ]

    found: list[Any] = await wait_for(posted, what="a Warning event")
    return found


async def test_pipeline_whose_run_is_refused_is_stalled_with_a_warning(
    training: Training,
) -> None:
    training.emulator.fail_requests("POST", TR, status=422, message=REFUSAL)
    await training.create_pipeline("iris")

    body = await _wait_stalled(training.api, TP, "iris", "ml")
    _assert_stalled_by_refusal(body)
    (warning,) = await _warnings(training.api, body)
    assert REFUSAL in warning.message
    assert await training.runs() == []


async def test_run_whose_job_is_refused_is_stalled_with_a_warning(training: Training) -> None:
    training.emulator.fail_requests("POST", JOBS, status=422, message=REFUSAL)
    spec = pipeline_body("adhoc", "ml")["spec"]
    await training.api.create(
        {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": "adhoc-1", "namespace": "ml"},
            "spec": {"pipelineSpec": spec},
        }
    )

    body = await _wait_stalled(training.api, TR, "adhoc-1", "ml")
    _assert_stalled_by_refusal(body)
    await _warnings(training.api, body)
    assert await training.jobs() == []


async def test_deployment_whose_service_is_refused_is_stalled_with_a_warning(
    serving: Serving,
) -> None:
    serving.training.runner.expect_problem("failed permanently")
    await serving.publish_run("iris-00001", pipeline=None)
    # Every attempt is refused (the create handler's and the deployment loop's alike).
    serving.training.emulator.fail_requests(
        "POST", SERVICES, status=422, message=REFUSAL, times=1_000
    )
    await serving.create_md("iris", run="iris-00001")

    body = await _wait_stalled(serving.api, MD, "iris", "ml")
    _assert_stalled_by_refusal(body)
    await _warnings(serving.api, body)
