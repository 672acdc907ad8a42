"""``make chaos``: the operator killed with SIGKILL at seeded random instants while a
scenario plays, and what must hold after every restart (issue #13, part 1).

A reference round plays the scenario (:mod:`bench.chaos.scenario`) undisturbed and records
its final state and how many writes the operator sent. Then chaos rounds play it again,
each on a fresh emulator with a fresh operator process, while :class:`KillPlan` kills the
operator at its k-th write since its start (k uniform in 1..spread, spread from the
reference so that the kills spread over about four rounds; before or after the write is
applied, at random) and a supervisor starts it again at once. After every kill: no Job or
run created twice, no run the scenario's triggers do not explain, no serving Deployment
ever given a model that was not blessed. At the end of every round: the same final state
as the reference (every run, its trigger and verdict, each pipeline's champion and run
sequence, each deployment's model, phase, history and rollbacks) - so no run was lost or
left stuck, within a stage deadline.

Results: .bench/reliability/chaos.json and the "Kill anywhere" section of
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
from tests.integration.harness import StandInControllers
from tests.integration.harness.metadata import set_cluster_clock

from bench.chaos import report
from bench.chaos.cluster import REPO, KillPlan, OperatorProcess, write_clock
from bench.chaos.failover import FailoverResult, failover_round
from bench.chaos.faults import READ_TIMEOUT, FaultEmulator, FaultPlan
from bench.chaos.invariants import violations
from bench.chaos.scenario import Round, StageTimeoutError, World

CRDS = sorted((REPO / "crds").glob("*.perennial.dev.yaml"))
RESULTS = REPO / ".bench" / "reliability"


@dataclass
class RoundResult:
    namespace: str
    seconds: float
    kills: int
    operator_writes: int
    converged: bool
    stages: list[tuple[str, float]]
    violations: list[str]
    kill_points: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    early_retries: list[str] = field(default_factory=list)
    retry_waits: list[float] = field(default_factory=list)  # 429 -> its retry, seconds
    difference: dict[str, Any] | None = None


@dataclass
class ChaosResult:
    seed: int
    kills_planned: int
    reference_seconds: float = 0.0
    reference_writes: int = 0
    spread: int = 0
    rounds: list[RoundResult] = field(default_factory=list)
    fault_seed: int = 0
    fault_rate: float = 0.0
    fault_rounds: list[RoundResult] = field(default_factory=list)
    failover: FailoverResult | None = None
    kills: dict[str, int] = field(default_factory=dict)
    restart_to_first_request: list[float] = field(default_factory=list)
    unexpected_exits: list[int] = field(default_factory=list)
    world_errors: int = 0
    seconds: float = 0.0


async def _supervise(
    emulator: FaultEmulator, operator: OperatorProcess, namespace: str, result: ChaosResult
) -> None:
    """Start the operator; after each planned kill check the invariants and start it again;
    an exit nobody planned is recorded (and the operator started again)."""
    while True:
        emulator.killed.clear()
        operator.start()
        dead = asyncio.ensure_future(operator.wait_dead())
        killed = asyncio.ensure_future(emulator.killed.wait())
        try:
            await asyncio.wait({dead, killed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            dead.cancel()
            killed.cancel()
            raise
        if not killed.done():
            killed.cancel()
            code = operator.process.returncode if operator.process else None
            result.unexpected_exits.append(code if code is not None else -1)
        await dead
        if operator.first_request_at is not None:
            result.restart_to_first_request.append(operator.first_request_at - operator.started_at)
        for problem in violations(emulator, namespace):
            emulator.problems.add(problem)


async def _round(
    namespace: str,
    *,
    plan: KillPlan | None,
    stage_timeout: float,
    result: ChaosResult,
    results: Path,
    faults: FaultPlan | None = None,
) -> tuple[RoundResult, dict[str, Any]]:
    async with FaultEmulator() as emulator, kmock.Server(emulator):
        await emulator.load_crds(CRDS, skip_other_kinds=True)
        emulator.answer_selectors_unfiltered()

        api = emulator.kube_api(timeout=60.0)
        controllers = StandInControllers(api, emulator)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            clock_file = work / "clock"
            start = datetime.now(UTC).replace(second=0, microsecond=0)
            write_clock(clock_file, start)
            env = {"PERENNIAL_CHAOS_READ_TIMEOUT": str(READ_TIMEOUT)} if faults else {}
            operator = OperatorProcess(work, emulator.base_url, clock_file, env)
            emulator.operator = operator
            emulator.plan = plan
            emulator.faults = faults
            faults_before = collections.Counter(faults.injected) if faults else None
            kills_before = sum(plan.done.values()) if plan else 0
            world = World(emulator, controllers, namespace)
            play = Round(
                api, emulator, namespace, clock_file, start, work / "data.csv", stage_timeout
            )
            # The emulator and the stand-ins stamp times (Job ends, conditions) on the
            # scenario's clock, as a cluster's nodes agree with the operator's.
            set_cluster_clock(lambda: play.start)
            began = time.monotonic()
            supervisor = asyncio.create_task(_supervise(emulator, operator, namespace, result))
            reactor = asyncio.create_task(world.run_forever())
            converged = True
            try:
                await play.play()
            except StageTimeoutError as exc:
                converged = False
                emulator.problems.add(f"stuck: {exc}")
            finally:
                emulator.plan = None  # no kill while the round is judged and torn down
                emulator.faults = None
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
                await operator.stop()
                reactor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reactor
                await api.aclose()
                set_cluster_clock(None)
            final = play.final_state()
            # For the reader of a failed round: every write, and where everything stood.
            with (results / f"writes-{namespace}.txt").open("w") as out:
                for request in emulator.writes:
                    agent = request.headers.get("User-Agent", "")[:12]
                    body = json.dumps(request.data, default=str)[:600]
                    out.write(f"{agent} {request.method.value} {request.url.path} {body}\n")
            (results / f"objects-{namespace}.json").write_text(
                json.dumps(emulator.live_objects(), indent=1, default=str)
            )
            emulator.problems.update(violations(emulator, namespace))
            result.world_errors += len(world.errors)
            if operator.log.exists():
                (results / f"operator-{namespace}.log").write_text(operator.log.read_text())
            return (
                RoundResult(
                    namespace=namespace,
                    seconds=time.monotonic() - began,
                    kills=(sum(plan.done.values()) if plan else 0) - kills_before,
                    operator_writes=emulator.operator_writes,
                    converged=converged,
                    stages=play.stages,
                    violations=sorted(emulator.problems),
                    kill_points=emulator.kill_points,
                    faults=dict(faults.injected - faults_before)
                    if faults and faults_before is not None
                    else {},
                    early_retries=emulator.early_retries,
                    retry_waits=emulator.retries_after_429,
                ),
                final,
            )


def _compare(outcome: Any, final: dict[str, Any], expected: dict[str, Any]) -> None:
    """A round (kill, fault or failover) converged only to the reference round's state."""
    if final != expected:
        outcome.converged = False
        outcome.difference = _difference(expected, final)


def _difference(expected: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("pipelines", "deployments"):
        for name in sorted(set(expected[kind]) | set(found[kind])):
            if expected[kind].get(name) != found[kind].get(name):
                out[f"{kind}/{name}"] = {
                    "expected": expected[kind].get(name),
                    "found": found[kind].get(name),
                }
    return out


async def chaos(
    *,
    seed: int,
    kills: int,
    max_rounds: int,
    stage_timeout: float,
    results: Path = RESULTS,
    spread_over: int = 4,
    fault_rounds: int = 0,
    fault_rate: float = 0.1,
    failover: bool = False,
) -> ChaosResult:
    """The reference round, then chaos rounds until ``kills`` kills are done (at most
    ``max_rounds``), spread over about ``spread_over`` rounds. Each round's operator log,
    writes and final objects go to ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    result = ChaosResult(seed=seed, kills_planned=kills)
    began = time.monotonic()
    reference, expected = await _round(
        "reference", plan=None, stage_timeout=stage_timeout, result=result, results=results
    )
    if not reference.converged or reference.violations:
        raise SystemExit(f"the undisturbed scenario failed: {reference.violations}")
    result.reference_seconds = reference.seconds
    result.reference_writes = reference.operator_writes
    per_round = max(1, -(-kills // spread_over))
    result.spread = max(2, round(2 * reference.operator_writes / per_round))
    plan = KillPlan(seed=seed, total=kills, spread=result.spread)
    for number in range(1, max_rounds + 1):
        if plan.remaining <= 0:
            break
        print(f"round {number}: {plan.remaining} kills to go", flush=True)
        outcome, final = await _round(
            f"chaos-{number}",
            plan=plan,
            stage_timeout=stage_timeout,
            result=result,
            results=results,
        )
        _compare(outcome, final, expected)
        result.rounds.append(outcome)
        print(
            f"round {number}: {outcome.kills} kills, converged={outcome.converged}, "
            f"{len(outcome.violations)} violations, {outcome.seconds:.0f}s",
            flush=True,
        )
    result.kills = dict(plan.done)
    # Watch requests are few (one per resource and restart): they get faults more often.
    faults = FaultPlan(seed=seed, rate=fault_rate, watch_rate=min(1.0, 3 * fault_rate))
    result.fault_seed, result.fault_rate = seed, fault_rate
    for number in range(1, fault_rounds + 1):
        print(f"fault round {number} (rate {fault_rate:g})", flush=True)
        outcome, final = await _round(
            f"faults-{number}",
            plan=None,
            stage_timeout=stage_timeout,
            result=result,
            results=results,
            faults=faults,
        )
        _compare(outcome, final, expected)
        if outcome.early_retries:
            outcome.violations.append(
                f"{len(outcome.early_retries)} retries sooner than Retry-After"
            )
        result.fault_rounds.append(outcome)
        print(
            f"fault round {number}: {outcome.faults}, converged={outcome.converged}, "
            f"{len(outcome.violations)} violations, {outcome.seconds:.0f}s",
            flush=True,
        )
    if failover:
        print("failover: primary and standby, the primary killed twice", flush=True)
        outcome_fo, final = await failover_round("failover", stage_timeout, results)
        _compare(outcome_fo, final, expected)
        result.failover = outcome_fo
        print(
            f"failover: takeovers {[round(t, 1) for t in outcome_fo.takeovers]} s, "
            f"handbacks {[round(t, 1) for t in outcome_fo.handbacks]} s, overlap writes "
            f"{outcome_fo.overlap_writes}, converged={outcome_fo.converged}, "
            f"{len(outcome_fo.violations)} violations",
            flush=True,
        )
    result.seconds = time.monotonic() - began
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--max-rounds", type=int, default=12)
    parser.add_argument(
        "--fault-rounds", type=int, default=3, help="scenario plays under API faults"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.1,
        help="fraction of the operator's requests (and watches) given a fault",
    )
    parser.add_argument(
        "--stage-timeout",
        type=float,
        default=120.0 * float(os.environ.get("PERENNIAL_TEST_TIMEOUT_FACTOR", "1")),
        help="seconds a stage of the scenario may take before the round counts as stuck",
    )
    parser.add_argument(
        "--no-failover", action="store_true", help="skip the primary/standby failover part"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/reliability.md")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (REPO / ".bench" / ".gitignore").write_text("*\n")
    result = asyncio.run(
        chaos(
            seed=args.seed,
            kills=args.kills,
            max_rounds=args.max_rounds,
            stage_timeout=args.stage_timeout,
            fault_rounds=args.fault_rounds,
            fault_rate=args.fault_rate,
            failover=not args.no_failover,
        )
    )
    (RESULTS / "chaos.json").write_text(json.dumps(asdict(result), indent=1))
    if not args.no_docs:
        report.write_chaos(REPO / "docs" / "reliability.md", result, args)
    failed = [r for r in result.rounds + result.fault_rounds if not r.converged or r.violations]
    kills_done = sum(result.kills.values())
    print(
        f"{kills_done} kills in {len(result.rounds)} rounds, "
        f"{len(failed)} rounds failed, {result.seconds:.0f}s",
        flush=True,
    )
    return 1 if failed or kills_done < args.kills else 0


__all__ = ["ChaosResult", "RoundResult", "chaos", "main"]
