"""Shared pieces of the TrainingPipeline / TrainingRun integration tests.

The real operator (every handler module, registered in kopf's default registry as in
production) runs against the emulator; the test plays the Job controller and the kubelet
(:class:`StandInControllers`) and owns the clock (:class:`ManualClock`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kmock
import kopf
import kubernetes_validate
import pytest

import perennial.controllers.handlers  # registers the operator's handlers
from perennial.controllers import clock
from perennial.k8s import client
from perennial_runtime.contract import ArtifactRef, DataReport, TrainResult, Violation

from .harness import ApiServerEmulator, KubeApi, OperatorRunner, StandInControllers, wait_for

assert perennial.controllers.handlers.LOADED

TP: Final = "perennial.dev/v1alpha1/trainingpipelines"
TR: Final = "perennial.dev/v1alpha1/trainingruns"
MD: Final = "perennial.dev/v1alpha1/modeldeployments"
JOBS: Final = "batch/v1/jobs"
PODS: Final = "v1/pods"
WATCHING: Final = (TP, TR, JOBS, PODS)
K8S_VERSION: Final = "1.30"
# kopf's record of the last spec/labels/annotations its update handlers ran on.
DIFFBASE: Final = "perennial.dev/last-handled-configuration"
BARRIER_LABEL: Final = "test.perennial.dev/barrier"
_barriers = itertools.count(1)


class CountingClock(clock.ManualClock):
    """The operator's manual clock, counting how often it is read.

    The operator reads the time for every decision (each trigger check, each reconcile):
    :meth:`Training.decided` moves the clock by zero (every sleeping timer wakes) and waits
    for reads, so that a test asserting that *nothing* happens first sees the operator judge
    the state as it is now.
    """

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._reads = 0
        self._reads_lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._reads_lock:
            self._reads += 1
        return super().__call__()

    @property
    def reads(self) -> int:
        with self._reads_lock:
            return self._reads


def pipeline_body(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An iris classifier pipeline; ``spec`` entries replace the defaults."""
    body: dict[str, Any] = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "data": {"uri": "sklearn://iris", "target": "target"},
            "model": {"task": "classification", "estimator": "LogisticRegression"},
            "evaluation": {"primaryMetric": "accuracy", "seed": 7},
            "gates": {"metrics": [{"metric": "accuracy", "threshold": 0.8}]},
            "artifacts": {
                "uri": "file:///artifacts/models",
                "volume": {"claimName": "models", "mountPath": "/artifacts"},
            },
            "runTemplate": {"image": "registry.example/perennial-runtime:1.0"},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def result_json(
    run: str,
    *,
    accuracy: float,
    champion_accuracy: float | None = None,
    champion_run: str | None = None,
) -> str:
    """The termination message of a trainer that succeeded."""
    sha = hashlib.sha256(run.encode()).hexdigest()
    folder = f"file:///artifacts/models/{run}"
    result = TrainResult(
        status="Succeeded",
        message=f"trained {run}",
        metrics={"accuracy": accuracy, "f1": accuracy - 0.01},
        champion_metrics=(
            {"accuracy": champion_accuracy, "f1": champion_accuracy - 0.01}
            if champion_accuracy is not None
            else None
        ),
        champion_run=champion_run,
        holdout_sha256="ab" * 32,
        holdout_rows=30,
        artifact=ArtifactRef(uri=folder, model_uri=f"{folder}/model.skops", sha256=sha, size=2048),
        data=DataReport(uri="sklearn://iris", fingerprint="f" * 16, rows=150, columns=4),
        duration_seconds=1.5,
    )
    return result.to_json()


def data_validation_failure() -> str:
    return TrainResult(
        status="Failed",
        reason="DataValidationFailed",
        message="1 data validation rule failed",
        data=DataReport(
            uri="sklearn://iris",
            rows=10,
            validation_passed=False,
            violations=[
                Violation(rule="minRows", observed=10, limit=20, message="10 rows < minRows 20")
            ],
        ),
    ).to_json()


def created_jobs(emulator: ApiServerEmulator) -> list[dict[str, Any]]:
    """The bodies of every Job creation request the emulator received."""
    jobs = kmock.resource(JOBS)
    return [
        request.data
        for request in emulator.writes
        if request.method.value == "POST" and request.resource == jobs and request.data
    ]


def validate_job(job: Mapping[str, Any]) -> None:
    """The Job against the official batch/v1 schema (unknown fields are errors)."""
    kubernetes_validate.validate(dict(job), K8S_VERSION, strict=True)


@dataclass
class Training:
    """The running operator plus what a test needs to drive it."""

    api: KubeApi
    emulator: ApiServerEmulator
    runner: OperatorRunner
    controllers: StandInControllers
    clock: CountingClock
    namespace: str = "ml"

    async def create_pipeline(self, name: str, **spec: Any) -> dict[str, Any]:
        created: dict[str, Any] = await self.api.create(pipeline_body(name, self.namespace, **spec))
        return created

    async def pipeline(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.api.get(TP, name, self.namespace)
        return found

    async def run(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.api.get_or_none(TR, name, self.namespace)
        return found

    async def runs(self, pipeline: str | None = None) -> list[dict[str, Any]]:
        items = await self.api.list(TR, self.namespace)
        if pipeline is not None:
            items = [
                r for r in items if (r["spec"].get("pipelineRef") or {}).get("name") == pipeline
            ]
        return sorted(items, key=lambda r: r["metadata"]["name"])

    async def jobs(self) -> list[dict[str, Any]]:
        return await self.api.list(JOBS, self.namespace)

    async def wait_run(self, name: str) -> dict[str, Any]:
        async def exists() -> dict[str, Any] | None:
            return await self.run(name)

        found: dict[str, Any] | None = await wait_for(exists, what=f"run {name}")
        assert found is not None
        return found

    async def wait_job(self, name: str) -> dict[str, Any]:
        async def exists() -> dict[str, Any] | None:
            job: dict[str, Any] | None = await self.api.get_or_none(JOBS, name, self.namespace)
            return job

        found: dict[str, Any] | None = await wait_for(exists, what=f"job {name}")
        assert found is not None
        return found

    async def wait_phase(self, run: str, phase: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            body = await self.run(run)
            if body is not None and (body.get("status") or {}).get("phase") == phase:
                return body
            return None

        found: dict[str, Any] | None = await wait_for(reached, what=f"run {run} in phase {phase}")
        assert found is not None
        return found

    async def wait_pipeline(self, name: str, check: Any, what: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            body = await self.pipeline(name)
            return body if check(body.get("status") or {}) else None

        found: dict[str, Any] | None = await wait_for(reached, what=what)
        assert found is not None
        return found

    async def finish(self, run: str, message: str | None, **kwargs: Any) -> dict[str, Any]:
        """Play the Job controller: the Pod runs, then terminates with ``message``."""
        await self.wait_job(run)
        await self.controllers.start_job(run, self.namespace)
        await self.wait_phase(run, "Training")
        await self.controllers.complete_job(
            run, self.namespace, termination_message=message, **kwargs
        )

        async def final() -> dict[str, Any] | None:
            body = await self.run(run)
            phase = (body or {}).get("status", {}).get("phase")
            return body if phase in ("Succeeded", "Rejected", "Failed") else None

        found: dict[str, Any] | None = await wait_for(final, what=f"run {run} finished")
        assert found is not None
        return found

    async def decided(self, rounds: int = 3) -> None:
        """Wait until the operator's timers have judged the state as it is now, ``rounds``
        times: each round moves the clock by zero seconds (a jump wakes every sleeping
        timer, which then checks its triggers and reads the clock) and waits for the read.
        A test asserting that nothing happens (no run is due yet) calls this first."""
        for round_ in range(1, rounds + 1):
            start = self.clock.reads
            self.clock.advance(0)
            await wait_for(
                lambda start=start: self.clock.reads > start,
                what=f"the operator's timers checking their triggers (round {round_})",
            )

    async def handled(self, pipeline: str) -> dict[str, Any]:
        """Wait until the operator has handled every change of ``pipeline`` made so far.

        A barrier: a new value of a test label (kopf handles an object's events in order;
        its update handler reconciles the pipeline; kopf then records the labels it handled
        in its last-handled-configuration annotation). Returns the pipeline."""
        token = str(next(_barriers))
        await self.api.patch(
            TP, pipeline, self.namespace, {"metadata": {"labels": {BARRIER_LABEL: token}}}
        )

        async def seen() -> dict[str, Any] | None:
            body = await self.pipeline(pipeline)
            handled = json.loads(body["metadata"].get("annotations", {}).get(DIFFBASE, "{}"))
            labels = (handled.get("metadata") or {}).get("labels") or {}
            return body if labels.get(BARRIER_LABEL) == token else None

        found: dict[str, Any] = await wait_for(seen, what=f"tp/{pipeline} handled")
        return found

    async def events(self, obj: Mapping[str, Any]) -> list[str]:
        return [e.reason for e in await self.api.events_for(obj)]

    async def wait_events(self, obj: Mapping[str, Any], *reasons: str) -> list[str]:
        """The event reasons about ``obj`` once all of ``reasons`` are among them (kopf
        posts events in the background, after the handler that queued them)."""

        async def posted() -> list[str]:
            found = await self.events(obj)
            return found if set(reasons) <= set(found) else []

        return await wait_for(posted, what=f"events {reasons}")


def operator_clock_start() -> datetime:
    """Where the operator's manual clock starts: the real time (the emulator stamps
    creationTimestamp with it; a clock far from it would make every schedule due at once),
    rounded down to a minute."""
    now = datetime.now(UTC)
    return now.replace(second=0, microsecond=0)


@pytest.fixture
async def training(
    emulator: ApiServerEmulator,
    kube_api: KubeApi,
    operator_runner: OperatorRunner,
    controllers: StandInControllers,
) -> AsyncIterator[Training]:
    """The operator running against the emulator with a manual clock."""
    emulator.answer_selectors_unfiltered()
    manual = CountingClock(operator_clock_start())
    clock.set_clock(manual)
    client.configure(None, retry=client.RetryPolicy(attempts=4, base=0.01, cap=0.05))
    try:
        await operator_runner.start(registry=kopf.get_default_registry(), watching=WATCHING)
        yield Training(kube_api, emulator, operator_runner, controllers, manual)
        await operator_runner.stop()
        # Every Job the operator created (even those deleted since) fits the official schema.
        for body in created_jobs(emulator):
            validate_job(body)
    finally:
        clock.reset()
        client.configure(None, retry=client.RetryPolicy())
