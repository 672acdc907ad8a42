"""The chaos scenario: three pipelines and three ModelDeployments, one namespace per round.

- ``sched`` (hourly schedule): 00001 blessed, 00002 blessed (schedule), 00003 rejected by
  the accuracy gate (schedule). Its deployment rolls 00001 then 00002 out (RollingUpdate).
- ``fresh`` (new data, polled every 60 s): 00001 fails (the Job's backoff limit), 00002 and
  00003 blessed (each after a data file change). 00003's rollout never becomes ready (the
  Deployment exceeds its progress deadline): automatic rollback to 00002.
- ``manual``: 00001 blessed, 00002 blessed after a ``perennial.dev/retrain`` annotation,
  then ``spec.rollbackTo: manual-00001`` on its deployment (a manual rollback).

:class:`World` plays the Job controller and the Deployment controller for the whole round,
whatever the operator's state (it keeps completing Jobs while the operator is dead, as a
cluster would); :func:`play` is the user: it creates the objects, moves the clock, changes
the data, annotates, and waits for each stage's outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import kmock
from tests.integration.harness import KubeApi, StandInControllers
from tests.integration.training_helpers import pipeline_body, result_json

from bench.chaos.cluster import ChaosEmulator, write_clock

TP: Final = "perennial.dev/v1alpha1/trainingpipelines"
TR: Final = "perennial.dev/v1alpha1/trainingruns"
MD: Final = "perennial.dev/v1alpha1/modeldeployments"
JOBS: Final = "batch/v1/jobs"
DEPLOYMENTS: Final = "apps/v1/deployments"
RUN_LABEL: Final = "perennial.dev/run"
DEPLOYMENT_LABEL: Final = "perennial.dev/deployment"

# run -> accuracy the trainer reports (None: the Job fails); below 0.8 the gate rejects it.
OUTCOMES: Final[dict[str, float | None]] = {
    "sched-00001": 0.90,
    "sched-00002": 0.93,
    "sched-00003": 0.50,
    "fresh-00001": None,
    "fresh-00002": 0.91,
    "fresh-00003": 0.94,
    "manual-00001": 0.90,
    "manual-00002": 0.92,
}
BLESSED: Final = frozenset(r for r, acc in OUTCOMES.items() if acc is not None and acc >= 0.8)
NEVER_READY: Final = frozenset({"fresh-00003"})
PIPELINES: Final = ("sched", "fresh", "manual")


def _champion(run: str) -> tuple[float | None, str | None]:
    """The champion a run is compared with (the pipeline's last blessed run before it)."""
    pipeline, seq = run.rsplit("-", 1)
    for n in range(int(seq) - 1, 0, -1):
        earlier = f"{pipeline}-{n:05d}"
        if earlier in BLESSED:
            return OUTCOMES[earlier], earlier
    return None, None


@dataclass
class World:
    """The Job and Deployment controllers of one namespace (see the module docstring)."""

    emulator: ChaosEmulator
    controllers: StandInControllers
    namespace: str
    completed: set[str] = field(default_factory=set)
    rolled: dict[str, tuple[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def _stored(self, resource: str) -> list[dict[str, Any]]:
        return [
            obj.raw
            for (_, namespace, _), obj in self.emulator.stored(kmock.resource(resource))
            if namespace == self.namespace
        ]

    async def turn(self) -> None:
        for job in self._stored(JOBS):
            run = (job["metadata"].get("labels") or {}).get(RUN_LABEL)
            name = job["metadata"]["name"]
            if run is None or name in self.completed or run not in OUTCOMES:
                continue
            accuracy = OUTCOMES[run]
            if accuracy is None:
                await self.controllers.complete_job(name, self.namespace, succeeded=False)
            else:
                champion_accuracy, champion_run = _champion(run)
                message = result_json(
                    run,
                    accuracy=accuracy,
                    champion_accuracy=champion_accuracy,
                    champion_run=champion_run,
                )
                await self.controllers.complete_job(
                    name, self.namespace, termination_message=message
                )
            self.completed.add(name)
        for dep in self._stored(DEPLOYMENTS):
            meta = dep["metadata"]
            if DEPLOYMENT_LABEL not in (meta.get("labels") or {}):
                continue
            run = (dep["spec"]["template"]["metadata"].get("labels") or {}).get(RUN_LABEL, "")
            seen = (run, meta.get("generation") or 0)
            if self.rolled.get(meta["name"]) == seen or not dep["spec"].get("replicas"):
                continue
            if run in NEVER_READY:
                await self.controllers.set_deployment_ready(
                    meta["name"], self.namespace, ready=False, progress_deadline_exceeded=True
                )
            else:
                await self.controllers.set_deployment_ready(meta["name"], self.namespace)
            self.rolled[meta["name"]] = seen

    async def run_forever(self) -> None:
        while True:
            try:
                await self.turn()
            except Exception as exc:  # a race with the operator's own write: next turn
                self.errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.05)


class StageTimeoutError(Exception):
    """A stage of the scenario did not reach its outcome in time: something is stuck."""


@dataclass
class Round:
    """One play of the scenario in ``namespace``."""

    api: KubeApi
    emulator: ChaosEmulator
    namespace: str
    clock_file: Path
    start: datetime
    data_file: Path
    stage_timeout: float
    stages: list[tuple[str, float]] = field(default_factory=list)
    # Called after each stage is reached (the failover suite kills and restarts there).
    after_stage: Callable[[str], Awaitable[None]] | None = None

    def _objects(self, resource: str) -> dict[str, dict[str, Any]]:
        return {
            name: obj.raw
            for (_, namespace, name), obj in self.emulator.stored(kmock.resource(resource))
            if namespace == self.namespace
        }

    def phase(self, run: str) -> str | None:
        status = (self._objects(TR).get(run) or {}).get("status") or {}
        phase: str | None = status.get("phase")
        return phase

    def serving(self, md: str) -> tuple[str | None, str | None]:
        """(run of the current model, phase) of a ModelDeployment, once no rollout runs."""
        status = (self._objects(MD).get(md) or {}).get("status") or {}
        if status.get("rollout"):
            return None, status.get("phase")
        return (status.get("currentModel") or {}).get("run"), status.get("phase")

    async def until(self, stage: str, done: Callable[[], bool]) -> None:
        began = time.monotonic()
        while not done():
            if time.monotonic() - began > self.stage_timeout:
                raise StageTimeoutError(f"{self.namespace}: stage {stage!r} not reached")
            await asyncio.sleep(0.1)
        self.stages.append((stage, time.monotonic() - began))
        if self.after_stage is not None:
            await self.after_stage(stage)

    def move_clock(self, seconds: float) -> None:
        self.start += timedelta(seconds=seconds)
        write_clock(self.clock_file, self.start)

    def _phases(self, expected: dict[str, str]) -> Callable[[], bool]:
        return lambda: all(self.phase(run) == phase for run, phase in expected.items())

    def _served(self, expected: dict[str, str]) -> Callable[[], bool]:
        return lambda: all(self.serving(md)[0] == run for md, run in expected.items())

    async def play(self) -> None:
        ns = self.namespace
        self.data_file.write_text("a,b,target\n1,2,0\n")
        hourly = {"schedule": {"cron": "0 * * * *"}}
        fresh = {"dataChange": {"enabled": True, "pollIntervalSeconds": 60}}
        data = {"uri": f"file://{self.data_file}", "target": "target"}
        await self.api.create(pipeline_body("sched", ns, triggers=hourly))
        await self.api.create(pipeline_body("fresh", ns, data=data, triggers=fresh))
        await self.api.create(pipeline_body("manual", ns))
        for name in PIPELINES:
            await self.api.create(_md_body(name, ns))

        await self.until(
            "initial runs",
            self._phases(
                {"sched-00001": "Succeeded", "fresh-00001": "Failed", "manual-00001": "Succeeded"}
            ),
        )
        await self.until(
            "first rollouts", self._served({"sched": "sched-00001", "manual": "manual-00001"})
        )

        # The data first, then the clock: the operator's clock stands still between moves, so
        # a poll woken by the move before the file changed would not come again.
        self.data_file.write_text("a,b,target\n1,2,0\n3,4,1\n")
        self.move_clock(3600)
        await self.api.patch(
            TP, "manual", ns, {"metadata": {"annotations": {"perennial.dev/retrain": "chaos-1"}}}
        )
        await self.until(
            "second runs",
            self._phases(
                {
                    "sched-00002": "Succeeded",
                    "fresh-00002": "Succeeded",
                    "manual-00002": "Succeeded",
                }
            ),
        )
        await self.until(
            "second rollouts",
            self._served(
                {"sched": "sched-00002", "fresh": "fresh-00002", "manual": "manual-00002"}
            ),
        )

        self.data_file.write_text("a,b,target\n1,2,0\n3,4,1\n5,6,0\n")
        self.move_clock(3600)
        await self.api.patch(MD, "manual", ns, {"spec": {"rollbackTo": "manual-00001"}})
        await self.until(
            "third runs", self._phases({"sched-00003": "Rejected", "fresh-00003": "Succeeded"})
        )
        await self.until(
            "rollbacks",
            lambda: (
                self._served(
                    {"sched": "sched-00002", "fresh": "fresh-00002", "manual": "manual-00001"}
                )()
                and "fresh-00003" in self._rolled_back("fresh")
            ),
        )

    def _rolled_back(self, md: str) -> list[str]:
        status = (self._objects(MD).get(md) or {}).get("status") or {}
        return list(status.get("rolledBackRuns") or [])

    def final_state(self) -> dict[str, Any]:
        """What the round ended with, without names that differ between rounds."""
        runs = self._objects(TR)
        pipelines = {}
        for name, tp in sorted(self._objects(TP).items()):
            status = tp.get("status") or {}
            mine = sorted(r for r in runs if r.startswith(f"{name}-"))
            pipelines[name] = {
                "runs": [
                    [
                        r,
                        ((runs[r].get("spec") or {}).get("trigger") or {}).get("type"),
                        (runs[r].get("status") or {}).get("phase"),
                        (runs[r].get("status") or {}).get("reason"),
                    ]
                    for r in mine
                ],
                "champion": (status.get("champion") or {}).get("run"),
                "runSequence": status.get("runSequence"),
            }
        deployments = {}
        for name, md in sorted(self._objects(MD).items()):
            status = md.get("status") or {}
            deployments[name] = {
                "serving": (status.get("currentModel") or {}).get("run"),
                "phase": status.get("phase"),
                "history": [h.get("run") for h in status.get("history") or []],
                "rolledBackRuns": sorted(status.get("rolledBackRuns") or []),
            }
        return {"pipelines": pipelines, "deployments": deployments}


def _md_body(pipeline: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": pipeline, "namespace": namespace},
        "spec": {
            "source": {"pipelineRef": {"name": pipeline}},
            "replicas": 2,
            "progressDeadlineSeconds": 60,
        },
    }
