"""The emulator the chaos suite runs on, and the operator process it kills.

:class:`ChaosEmulator` is the test harness's emulator plus two things: it counts how often
each object was created (a second creation of a Job or a run is the duplicate the suite
hunts), and it kills the operator at a planned write. A kill instant is "the operator's
k-th write since it started", drawn by a seeded :class:`KillPlan`, either *before* the write
is applied (the request is lost with the process) or *after* it is stored but before the
answer reaches the operator (the write happened; the operator never learnt it). Those are
the instants a crash can hit: between any two steps of a reconcile.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import kmock
from tests.integration.harness import ApiServerEmulator, write_kubeconfig
from tests.integration.harness.api_errors import api_error
from tests.integration.harness.rbac import is_operator

REPO = Path(__file__).resolve().parents[2]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
When = Literal["before", "after"]


@dataclass
class KillPlan:
    """Seeded kill instants: after a uniform 1..``spread`` operator writes, before or
    after the write is applied; ``total`` kills in all."""

    seed: int
    total: int
    spread: int
    _random: random.Random = field(init=False)
    done: collections.Counter[str] = field(default_factory=collections.Counter)
    _next: int = 0
    _when: When = "after"

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._draw()

    def _draw(self) -> None:
        self._next = self._random.randint(1, max(1, self.spread))
        self._when = "before" if self._random.random() < 0.5 else "after"

    @property
    def remaining(self) -> int:
        return self.total - sum(self.done.values())

    def due(self, writes: int) -> When | None:
        """Whether the operator's ``writes``-th write since its start is a kill instant."""
        if self.remaining <= 0 or writes < self._next:
            return None
        when = self._when
        self.done[when] += 1
        self._draw()
        return when


class OperatorProcess:
    """``perennial run`` in its own process against the emulator, on the suite's clock
    (see :mod:`bench.chaos.operator_process`); killed with SIGKILL, started again."""

    def __init__(
        self,
        workdir: Path,
        base_url: str,
        clock_file: Path,
        env: dict[str, str] | None = None,
        *,
        args: tuple[str, ...] = (),
        token: str = "operator",
    ) -> None:
        self.env = dict(env or {})
        self.args = args
        workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = write_kubeconfig(workdir / "kubeconfig", base_url, token=token)
        self.clock_file = clock_file
        self.log = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.writes = 0  # since the current process started
        self.started_at = 0.0
        self.first_request_at: float | None = None  # of the current process

    def start(self) -> None:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "operator"), str(REPO / "trainer-image"), env.get("PYTHONPATH", "")]
        )
        with self.log.open("a") as log:
            log.write(f"--- start {self.starts + 1} at {time.time():.3f}\n")
            log.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.chaos.operator_process",
                    str(self.clock_file),
                    *self.args,
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.starts += 1
        self.writes = 0
        self.started_at = time.monotonic()
        self.first_request_at = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_dead(self) -> None:
        if self.process is not None:
            await asyncio.to_thread(self.process.wait)

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)


class ChaosEmulator(ApiServerEmulator):
    """The harness's emulator, counting creations and killing the operator as planned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.creations: collections.Counter[tuple[str, str | None, str]] = collections.Counter()
        self.operator: OperatorProcess | None = None
        self.plan: KillPlan | None = None
        self.killed = asyncio.Event()
        self.operator_writes = 0
        self.problems: set[str] = set()
        self.kill_points: list[str] = []  # "before|after METHOD path" per kill, in order

    async def _handle(self, request: kmock.Request) -> Any:
        operator = self.operator
        if operator is None or not is_operator(request):
            return await super()._handle(request)
        if operator.first_request_at is None:
            operator.first_request_at = time.monotonic()
        if request.method.value.upper() not in WRITES:
            return await super()._handle(request)
        operator.writes += 1
        self.operator_writes += 1
        when = self.plan.due(operator.writes) if self.plan is not None else None
        if when is not None:
            self.kill_points.append(
                f"{when} {request.method.value} {request.url.path} (write #{len(self.writes)})"
            )
        if when == "before":
            operator.kill()
            self.killed.set()
            raise api_error(503, "the operator was killed before this write")
        answer = await super()._handle(request)
        if when == "after":
            operator.kill()
            self.killed.set()
        return answer

    async def _store(self, key: Any, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        if event == "ADDED":
            resource, namespace, name = key
            self.creations[(resource.plural, namespace, name)] += 1
        return await super()._store(key, event, obj)


def write_clock(path: Path, moment: datetime) -> None:
    """Move the operator's clock (atomically: the follower never reads half a time)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(moment.isoformat())
    tmp.replace(path)
