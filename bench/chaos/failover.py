"""Failover (issue #13, part 3): the shipped HA overlay's two operators - primary
(``--peering=perennial --priority=100``) and standby (priority 50) - on one emulator, each in
its own process, while the scenario plays. The primary is killed with SIGKILL twice (and
started again in between); each API write is attributed to the process that sent it (each
has its own bearer token).

Measured: the takeover time (kill -> the standby's first write, with work waiting), the
handback (the primary started again -> its first write) and every write the standby sent
while the primary was acting (both acting at once). kopf peering is not leader election: a
paused operator resumes once the dead peer's keep-alive has expired (kopf's peering
lifetime, 60 s), so the takeover time is bounded by that lifetime, not by the operator.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
import yaml
from tests.integration.harness import StandInControllers
from tests.integration.harness.metadata import set_cluster_clock
from tests.integration.harness.rbac import is_operator

from bench.chaos.cluster import REPO, WRITES, ChaosEmulator, OperatorProcess, write_clock
from bench.chaos.invariants import violations
from bench.chaos.scenario import Round, StageTimeoutError, World

PEERING_CRDS = REPO / "manifests" / "base" / "peering.yaml"
PEERING_OBJECT = REPO / "manifests" / "overlays" / "ha" / "peering.yaml"
PRIMARY, STANDBY = "primary", "standby"
# Kill the primary after these stages; start it again after the one in between.
KILL_AFTER = ("first rollouts", "third runs")
RESTART_AFTER = "second rollouts"


class FailoverEmulator(ChaosEmulator):
    """Records (time, process, request) of every operator write but the peering object's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acts: list[tuple[float, str, str]] = []
        self.peering_writes: collections.Counter[str] = collections.Counter()
        self.requests: collections.Counter[str] = collections.Counter()

    async def _handle(self, request: kmock.Request) -> Any:
        resource = request.resource
        if resource is not None and is_operator(request):
            auth = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
            who = auth.removeprefix("Bearer ").strip()
            self.requests[who] += 1
            if request.method.value.upper() in WRITES:
                if resource.group == "kopf.dev":
                    self.peering_writes[who] += 1
                else:
                    what = f"{request.method.value} {request.url.path}"
                    self.acts.append((time.monotonic(), who, what))
        return await super()._handle(request)


@dataclass
class FailoverResult:
    takeovers: list[float] = field(default_factory=list)  # kill -> standby's first write
    handbacks: list[float] = field(default_factory=list)  # primary restart -> its first write
    standby_before_first_kill: int = 0  # standby writes while the primary ran (0: paused)
    overlap_writes: int = 0  # standby writes after the restarted primary's first write
    overlap_seconds: float = 0.0  # restarted primary's first write -> standby's last write
    converged: bool = False
    violations: list[str] = field(default_factory=list)
    difference: dict[str, Any] | None = None
    writes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _first(acts: list[tuple[float, str, str]], who: str, after: float) -> float | None:
    return next((t for t, w, _ in acts if w == who and t > after), None)


async def failover_round(
    namespace: str, stage_timeout: float, results: Path
) -> tuple[FailoverResult, dict[str, Any]]:
    outcome = FailoverResult()
    async with FailoverEmulator() as emulator, kmock.Server(emulator):
        crds = [*sorted((REPO / "crds").glob("*.perennial.dev.yaml")), PEERING_CRDS]
        await emulator.load_crds(crds, skip_other_kinds=True)
        emulator.answer_selectors_unfiltered()

        api = emulator.kube_api(timeout=60.0)
        peering = yaml.safe_load(PEERING_OBJECT.read_text())
        peering["metadata"].pop("annotations", None)
        await api.create(peering)
        controllers = StandInControllers(api, emulator)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            clock_file = work / "clock"
            start = datetime.now(UTC).replace(second=0, microsecond=0)
            write_clock(clock_file, start)
            primary = OperatorProcess(
                work / PRIMARY,
                emulator.base_url,
                clock_file,
                args=("--peering=perennial", "--priority=100"),
                token=PRIMARY,
            )
            standby = OperatorProcess(
                work / STANDBY,
                emulator.base_url,
                clock_file,
                args=("--peering=perennial", "--priority=50"),
                token=STANDBY,
            )
            kills: list[float] = []
            restarts: list[float] = []

            async def after_stage(stage: str) -> None:
                if stage in KILL_AFTER:
                    primary.kill()
                    await primary.wait_dead()
                    kills.append(time.monotonic())
                elif stage == RESTART_AFTER:
                    announced = emulator.peering_writes[PRIMARY]
                    primary.start()
                    restarts.append(time.monotonic())
                    # The scenario goes on once the primary is back in the peering object
                    # (its start takes seconds; the standby meanwhile keeps acting).
                    while emulator.peering_writes[PRIMARY] == announced:
                        await asyncio.sleep(0.05)

            world = World(emulator, controllers, namespace)
            play = Round(
                api,
                emulator,
                namespace,
                clock_file,
                start,
                work / "data.csv",
                stage_timeout,
                after_stage=after_stage,
            )
            set_cluster_clock(lambda: play.start)
            began = time.monotonic()
            primary.start()
            # The standby joins once the primary announced itself in the peering object.
            while not emulator.peering_writes[PRIMARY]:
                await asyncio.sleep(0.05)
            standby.start()
            while emulator.requests[STANDBY] < 5:  # its watches are open
                await asyncio.sleep(0.05)
            reactor = asyncio.create_task(world.run_forever())
            try:
                await play.play()
                outcome.converged = True
            except StageTimeoutError as exc:
                outcome.violations.append(f"stuck: {exc}")
            finally:
                reactor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reactor
                for process in (primary, standby):
                    await process.stop()
                await api.aclose()
                set_cluster_clock(None)
            acts = emulator.acts
            outcome.seconds = time.monotonic() - began
            for who in (PRIMARY, STANDBY):
                outcome.writes[who] = sum(1 for _, w, _ in acts if w == who)
            first_kill = kills[0] if kills else float("inf")
            outcome.standby_before_first_kill = sum(
                1 for t, w, _ in acts if w == STANDBY and t < first_kill
            )
            for moment in kills:
                taken = _first(acts, STANDBY, moment)
                if taken is not None:
                    outcome.takeovers.append(taken - moment)
            for moment in restarts:
                back = _first(acts, PRIMARY, moment)
                if back is None:
                    continue
                outcome.handbacks.append(back - moment)
                until = kills[1] if len(kills) > 1 else float("inf")
                overlap = [t for t, w, _ in acts if w == STANDBY and back < t < until]
                outcome.overlap_writes += len(overlap)
                if overlap:
                    outcome.overlap_seconds = max(overlap) - back
            outcome.violations += violations(emulator, namespace)
            (results / "objects-failover.json").write_text(
                json.dumps(emulator.live_objects(), indent=1, default=str)
            )
            for process, who in ((primary, PRIMARY), (standby, STANDBY)):
                if process.log.exists():
                    (results / f"operator-failover-{who}.log").write_text(process.log.read_text())
            return outcome, play.final_state()
