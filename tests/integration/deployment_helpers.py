"""Shared pieces of the ModelDeployment integration tests.

Two ways to run the operator against the emulator:

- ``serving``: only the ModelDeployment handlers (plus the operator's settings), in a fresh
  registry; the test plays the training controllers too, writing the runs' and the
  pipeline's status (:meth:`Serving.publish_run`, :meth:`Serving.crown`). Fast and focused.
- ``full_operator``: every handler module in kopf's default registry, as in production;
  runs are blessed by the real training controllers (the test plays their Jobs,
  :meth:`Serving.bless`).

Either way the test plays the Deployment controller and the kubelet
(:class:`StandInControllers`), owns the operator's clock (:class:`ManualClock`), and
decides where the model servers are reached (:class:`LoopbackResolver`: real
``perennial-runtime serve`` instances on 127.0.0.1, or nothing listening).
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import kopf
import kubernetes_validate
import pytest

import perennial.controllers.handlers  # registers the operator's handlers
from perennial.controllers import clock, model_deployment, settings
from perennial.k8s import client, metrics, serving_client
from perennial_runtime.contract import TrainConfig, TrainResult
from perennial_runtime.serve.config import ServeConfig
from perennial_runtime.serve.embedded import EmbeddedServer

from .harness import (
    ApiServerEmulator,
    KubeApi,
    OperatorRunner,
    StandInControllers,
    WaitTimeoutError,
    wait_for,
)
from .training_helpers import (
    CountingClock,
    Training,
    operator_clock_start,
    pipeline_body,
    result_json,
)

assert "perennial.controllers.model_deployment" in perennial.controllers.handlers.LOADED

TP: Final = "perennial.dev/v1alpha1/trainingpipelines"
TR: Final = "perennial.dev/v1alpha1/trainingruns"
MD: Final = "perennial.dev/v1alpha1/modeldeployments"
DEPLOYMENTS: Final = "apps/v1/deployments"
SERVICES: Final = "v1/services"
PDBS: Final = "policy/v1/poddisruptionbudgets"
# What the deployment handlers watch: the serving Deployments and their Pods come from
# watches (kopf indexes), never from a read.
WATCHING: Final = (TP, TR, MD, DEPLOYMENTS, "v1/pods")
WATCHING_ALL: Final = (*WATCHING, "batch/v1/jobs")
K8S_VERSION: Final = "1.30"
TICK_SECONDS: Final = 0.05
# Polling the emulator less often leaves it more time for the operator's requests.
POLL: Final = 0.05
NOWHERE: Final = "http://127.0.0.1:9"  # the discard port: nothing listens


class LoopbackResolver:
    """Model servers on loopback instead of cluster DNS names and Pod IPs."""

    def __init__(self) -> None:
        self.service: str = NOWHERE
        self.tracks: dict[str, list[str]] = {}

    def service_url(self, namespace: str, service: str, port: int) -> str:
        return self.service

    def pod_urls(
        self,
        namespace: str,
        deployment: str,
        track: str,
        pods: Sequence[Mapping[str, Any]],
        port: int,
    ) -> list[str]:
        return list(self.tracks.get(track, []))


@dataclass(frozen=True)
class TrainedModel:
    """A real model trained on sklearn's iris data, stored under a local folder."""

    result: TrainResult

    @property
    def model_uri(self) -> str:
        assert self.result.artifact is not None
        return self.result.artifact.model_uri

    @property
    def sha256(self) -> str:
        assert self.result.artifact is not None
        return self.result.artifact.sha256


def train_iris(root: Path, run: str) -> TrainedModel:
    """Train for real (LogisticRegression on iris, as the pipelines of these tests say)."""
    from perennial_runtime.training.trainer import train

    config = TrainConfig.model_validate(
        {
            "runName": run,
            "pipelineName": "iris",
            "namespace": "ml",
            "data": {"uri": "sklearn://iris", "target": "target"},
            "model": {
                "task": "classification",
                "estimator": "LogisticRegression",
                "params": {"max_iter": 500},
            },
            "evaluation": {"primaryMetric": "accuracy", "seed": 7, "topFeatures": 4},
            "artifactUri": root.as_uri(),
            "image": "registry.example/perennial-runtime:1.0",
            "resultPath": str(root / f"{run}.result.json"),
        }
    )
    result = train(config)
    assert result.status == "Succeeded", f"{result.reason}: {result.message}"
    return TrainedModel(result)


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """One real model for the session (its files are never modified)."""
    return train_iris(tmp_path_factory.mktemp("md-artifacts"), "iris-00001")


@contextmanager
def model_server(model_uri: str, sha256: str, name: str = "iris") -> Iterator[EmbeddedServer]:
    """``perennial-runtime serve`` in this process, on 127.0.0.1, ready."""
    config = ServeConfig(model_uri=model_uri, sha256=sha256, model_name=name)
    with EmbeddedServer(config) as server:
        server.wait_ready()
        yield server


def iris_rows(n: int, *, scale: float = 1.0, shift: float = 0.0) -> list[list[float]]:
    """``n`` rows of iris features (cycled), optionally shifted far from the training data."""
    from sklearn.datasets import load_iris

    data = load_iris().data
    return [[float(v) * scale + shift for v in data[i % len(data)]] for i in range(n)]


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def validate(obj: Mapping[str, Any]) -> None:
    kubernetes_validate.validate(dict(obj), K8S_VERSION, strict=True)


def md_body(
    name: str, namespace: str, *, pipeline: str | None = None, run: str | None = None, **spec: Any
) -> dict[str, Any]:
    source = {"pipelineRef": {"name": pipeline}} if pipeline else {"runRef": {"name": run}}
    body: dict[str, Any] = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": source, "replicas": 2, "progressDeadlineSeconds": 60},
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def template_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def served_run(deployment: Mapping[str, Any] | None) -> str | None:
    if deployment is None:
        return None
    run: str | None = template_of(deployment)["metadata"]["labels"].get("perennial.dev/run")
    return run


def env_of(deployment: Mapping[str, Any]) -> dict[str, str]:
    (container,) = template_of(deployment)["spec"]["containers"]
    # plain values only (the feedback key is a secretKeyRef the kubelet would resolve)
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@dataclass
class Serving:
    """The running operator plus what a deployment test needs to drive it."""

    training: Training
    resolver: LoopbackResolver
    namespace: str = "ml"
    _retrains: int = field(default=0)

    @property
    def api(self) -> KubeApi:
        return self.training.api

    @property
    def controllers(self) -> StandInControllers:
        return self.training.controllers

    @property
    def clock(self) -> CountingClock:
        return self.training.clock

    def serving_reads(self) -> list[tuple[str, str]]:
        """The operator's reads of serving Deployments and Pods (the watches hold them),
        kopf's LIST that starts each watch aside."""
        return [
            (action, resource)
            for action, resource, agent in self.training.emulator.operator_reads
            if resource in (DEPLOYMENTS, "v1/pods") and not agent.startswith("kopf/")
        ]

    # --- training side: blessed runs through the real training controllers --------------

    async def create_pipeline(self, name: str, **spec: Any) -> dict[str, Any]:
        self.training.namespace = self.namespace
        return await self.training.create_pipeline(name, **spec)

    async def bless(
        self,
        run: str,
        *,
        accuracy: float = 0.9,
        message: str | None = None,
        champion_accuracy: float | None = None,
        champion_run: str | None = None,
    ) -> dict[str, Any]:
        """Play the Job of ``run`` to a successful end; the run must become Succeeded."""
        body = await self.training.finish(
            run,
            message
            or result_json(
                run,
                accuracy=accuracy,
                champion_accuracy=champion_accuracy,
                champion_run=champion_run,
            ),
        )
        assert body["status"]["phase"] == "Succeeded", body["status"]
        return body

    # --- or the test plays the training controllers --------------------------------------

    async def publish_pipeline(self, name: str, **spec: Any) -> dict[str, Any]:
        """A TrainingPipeline nobody trains (only the deployment handlers run)."""
        created: dict[str, Any] = await self.api.create(pipeline_body(name, self.namespace, **spec))
        return created

    async def publish_run(
        self,
        name: str,
        *,
        pipeline: str | None = "iris",
        phase: str = "Succeeded",
        model_uri: str | None = None,
        sha256: str | None = None,
        image: str = "registry.example/perennial-runtime:1.0",
        message: str | None = None,
    ) -> dict[str, Any]:
        """A TrainingRun with its status as the run controller would write it."""
        training_spec = pipeline_body(name, self.namespace)["spec"]
        training_spec["runTemplate"]["image"] = image
        body: dict[str, Any] = {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"pipelineSpec": training_spec},
        }
        if pipeline:
            body["spec"]["pipelineRef"] = {"name": pipeline}
        created: dict[str, Any] = await self.api.create(body)
        status: dict[str, Any] = {"phase": phase}
        if phase == "Succeeded":
            folder = f"file:///artifacts/models/{name}"
            status["artifact"] = {
                "uri": folder,
                "modelUri": model_uri or f"{folder}/model.skops",
                "sha256": sha256 or hashlib.sha256(name.encode()).hexdigest(),
                "size": 2048,
            }
        if message:
            status["message"] = message
        updated: dict[str, Any] = await self.api.patch_status(TR, name, self.namespace, status)
        return updated or created

    async def crown(self, pipeline: str, run: str) -> None:
        """The pipeline blesses ``run``: its status.champion names the run's model."""
        body = await self.api.get(TR, run, self.namespace)
        artifact = body["status"]["artifact"]
        await self.api.patch_status(
            TP,
            pipeline,
            self.namespace,
            {
                "champion": {
                    "run": run,
                    "modelUri": artifact["modelUri"],
                    "sha256": artifact["sha256"],
                    "metric": "accuracy",
                    "value": 0.9,
                }
            },
        )

    async def retrain(self, pipeline: str) -> None:
        self._retrains += 1
        await self.api.patch(
            TP,
            pipeline,
            self.namespace,
            {"metadata": {"annotations": {"perennial.dev/retrain": f"t{self._retrains}"}}},
        )

    async def champion(self, pipeline: str, run: str) -> None:
        async def blessed() -> bool:
            body = await self.api.get(TP, pipeline, self.namespace)
            return bool(((body.get("status") or {}).get("champion") or {}).get("run") == run)

        await wait_for(blessed, interval=POLL, what=f"{run} champion of {pipeline}")

    # --- serving side ----------------------------------------------------------------------

    async def create_md(self, name: str, **kw: Any) -> dict[str, Any]:
        created: dict[str, Any] = await self.api.create(md_body(name, self.namespace, **kw))
        return created

    async def md(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.api.get(MD, name, self.namespace)
        return body

    async def wait_md(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            body = await self.md(name)
            return body if check(body.get("status") or {}) else None

        found: dict[str, Any] = await wait_for(reached, interval=POLL, what=what)
        return found

    async def wait_phase(self, name: str, phase: str) -> dict[str, Any]:
        return await self.wait_md(
            name, lambda s: s.get("phase") == phase, f"md {name} in phase {phase}"
        )

    async def deployment(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.api.get_or_none(DEPLOYMENTS, name, self.namespace)
        return found

    async def wait_serving(
        self, deployment: str, run: str, replicas: int | None = None
    ) -> dict[str, Any]:
        """Wait until Deployment ``deployment`` runs ``run`` (with ``replicas``)."""

        async def runs() -> dict[str, Any] | None:
            body = await self.deployment(deployment)
            if served_run(body) != run:
                return None
            assert body is not None
            if replicas is not None and body["spec"]["replicas"] != replicas:
                return None
            return body

        try:
            found: dict[str, Any] = await wait_for(
                runs, interval=POLL, what=f"{deployment} serving {run} x{replicas}"
            )
        except WaitTimeoutError as exc:
            raise WaitTimeoutError(f"{exc}; {await self.describe_serving(deployment)}") from None
        return found

    async def describe_serving(self, deployment: str) -> str:
        """What a failed wait saw: the Deployment's model and replicas, and every
        ModelDeployment's phase, message and rollout in the namespace."""
        body = await self.deployment(deployment)
        seen = (
            "absent"
            if body is None
            else f"serves {served_run(body)} x{body['spec'].get('replicas')}, "
            f"status {body.get('status')}"
        )
        mds = await self.api.list(MD, self.namespace)
        states = [
            f"md/{md['metadata']['name']}: {(md.get('status') or {}).get('phase')} "
            f"{(md.get('status') or {}).get('message')!r} "
            f"rollout={(md.get('status') or {}).get('rollout')}"
            for md in mds
        ]
        return f"{deployment} {seen}; " + "; ".join(states)

    async def ready(self, deployment: str, **kw: Any) -> None:
        await self.controllers.set_deployment_ready(deployment, self.namespace, **kw)

    async def events(self, obj: Mapping[str, Any]) -> list[str]:
        return [e.reason for e in await self.api.events_for(obj)]

    async def wait_events(self, obj: Mapping[str, Any], *reasons: str) -> list[str]:
        """The event reasons about ``obj`` once each of ``reasons`` is among them as often
        as it is listed (kopf posts events in the background, after the status write the
        test saw)."""
        wanted = Counter(reasons)

        async def posted() -> list[str]:
            found = await self.events(obj)
            have = Counter(found)
            return found if all(have[r] >= n for r, n in wanted.items()) else []

        found: list[str] = await wait_for(posted, interval=POLL, what=f"events {reasons}")
        return found

    async def serve_first(self, md: str, pipeline: str, **md_spec: Any) -> dict[str, Any]:
        """A pipeline whose first run is its champion and a deployment serving it
        (Available); the test plays the training controllers."""
        await self.publish_pipeline(pipeline)
        await self.publish_run(f"{pipeline}-00001", pipeline=pipeline)
        await self.crown(pipeline, f"{pipeline}-00001")
        await self.create_md(md, pipeline=pipeline, **md_spec)
        await self.wait_serving(f"{md}-serving", f"{pipeline}-00001")
        await self.ready(f"{md}-serving")
        return await self.wait_phase(md, "Available")

    async def new_champion(self, pipeline: str, run: str, **kw: Any) -> None:
        await self.publish_run(run, pipeline=pipeline, **kw)
        await self.crown(pipeline, run)


@asynccontextmanager
async def _operator(
    registry: kopf.OperatorRegistry,
    watching: Sequence[str],
    emulator: ApiServerEmulator,
    kube_api: KubeApi,
    operator_runner: OperatorRunner,
    controllers: StandInControllers,
) -> AsyncIterator[Serving]:
    emulator.answer_selectors_unfiltered()
    manual = CountingClock(operator_clock_start())
    clock.set_clock(manual)
    resolver = LoopbackResolver()
    serving_client.set_resolver(resolver)
    client.configure(None, retry=client.RetryPolicy(attempts=4, base=0.01, cap=0.05))
    try:
        # The deployments' loops turn every TICK_SECONDS while a rollout is in progress.
        memo = kopf.Memo()
        memo[model_deployment.TICK] = TICK_SECONDS
        await operator_runner.start(registry=registry, watching=watching, memo=memo)
        yield Serving(Training(kube_api, emulator, operator_runner, controllers, manual), resolver)
        problems = operator_runner.problems()
        await operator_runner.stop()
        assert problems == [], f"kopf reported problems during the test: {problems}"
    finally:
        clock.reset()
        serving_client.set_resolver(None)
        client.configure(None, retry=client.RetryPolicy())


@pytest.fixture
async def serving(
    emulator: ApiServerEmulator,
    kube_api: KubeApi,
    operator_runner: OperatorRunner,
    controllers: StandInControllers,
) -> AsyncIterator[Serving]:
    """The ModelDeployment handlers alone: manual clock, short ticks, loopback servers."""
    registry = kopf.OperatorRegistry()
    kopf.on.startup(id="perennial-settings", registry=registry)(settings.configure_operator)
    model_deployment.register(registry)
    async with _operator(
        registry, WATCHING, emulator, kube_api, operator_runner, controllers
    ) as ctx:
        yield ctx


@pytest.fixture
async def full_operator(
    emulator: ApiServerEmulator,
    kube_api: KubeApi,
    operator_runner: OperatorRunner,
    controllers: StandInControllers,
) -> AsyncIterator[Serving]:
    """The whole operator (default registry), with the same test-side controls."""
    async with _operator(
        kopf.get_default_registry(), WATCHING_ALL, emulator, kube_api, operator_runner, controllers
    ) as ctx:
        yield ctx
