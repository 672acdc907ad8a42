"""``make rollouts``: rollouts under load and a server soak, through ``perennial local``.

1. **Rollouts under load**: the local runner (real trainer and model-server processes, the
   stable endpoint as a reverse proxy on loopback) serves a breast_cancer model while
   ``loadgen.py`` (its own process) sends ``--rate`` requests per second, open loop, a
   share of them batches, to the stable endpoint. Meanwhile the manifest is edited as a
   user would: a retrain rolled out with RollingUpdate, one rolled out as a canary, one
   whose model is broken after blessing (its smoke test fails: the automatic rollback on
   the progress deadline), then ``spec.rollbackTo`` (the manual rollback). Every request
   counts: any answer but 2xx, or none, is a failure.
2. **Soak**: the same endpoint, one model server, ``--soak-rate`` requests per second with
   each prediction's label fed back, for ``--soak-minutes``; the server's RSS is sampled
   every 10 s and the p99 is taken per minute.

Results: ``.bench/rollouts/result.json`` and the two sections of docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.rollouts import report, scenario
from perennial.api.constants import MODEL_DEPLOYMENT, TRAINING_RUN
from perennial.local.demo.scenario import break_smoke_test
from perennial.local.runner import Runner
from perennial.local.store import Event

REPO = Path(__file__).resolve().parent.parent.parent
DONE_RUN = ("Succeeded", "Rejected", "Failed")


@dataclass
class StageResult:
    name: str
    action: float  # unix time the manifest was changed
    events: list[tuple[float, str, str]] = field(default_factory=list)  # time, reason, msg
    window: tuple[float, float] | None = None  # the switch: first to last rollout event
    before: str | None = None
    after: str | None = None
    expected: str | None = None
    error: str | None = None


@dataclass
class SoakSample:
    seconds: float
    rss_mib: float


@dataclass
class Result:
    seed: int
    rate: float
    batch_share: float
    batch_rows: int
    stages: list[StageResult]
    requests: list[list[Any]]  # loadgen records during the rollouts
    soak_rate: float = 0.0
    soak_minutes: float = 0.0
    soak_requests: list[list[Any]] = field(default_factory=list)
    soak_rss: list[SoakSample] = field(default_factory=list)
    soak_server: str | None = None
    seconds: float = 0.0
    finished_at: str = ""  # ISO time the run ended
    load_after: float | None = None  # 1-minute load average then


class Driver:
    """The runner in a thread, the user's edits from this one."""

    def __init__(self, work: Path, canary_pause: int) -> None:
        self.work = work
        self.manifest = work / "load.yaml"
        self.canary_pause = canary_pause
        self.events: list[tuple[float, Event]] = []
        self.tamper_run: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.write(retrain=0, canary_pause=None, rollback_to=None)
        self.runner = Runner([self.manifest], work / "state", port=0, listeners=[self._event])
        self._thread = threading.Thread(
            target=self.runner.run_forever,
            kwargs={"interval": 0.25, "stop": self._stop},
            name="runner",
            daemon=True,
        )

    def write(self, *, retrain: int, canary_pause: int | None, rollback_to: str | None) -> None:
        text = scenario.manifest(
            retrain=retrain, canary_pause=canary_pause, rollback_to=rollback_to
        )
        self.manifest.write_text(text, encoding="utf-8")
        # The runner notices a change by the file's mtime: make sure it moves.
        now = time.time()
        os.utime(self.manifest, (now, now))

    def _event(self, event: Event) -> None:
        with self._lock:
            self.events.append((time.time(), event))
        blessed = event.kind == TRAINING_RUN and event.reason == "ModelBlessed"
        if blessed and event.name == self.tamper_run:
            artifact = self.status(TRAINING_RUN, event.name).get("artifact") or {}
            break_smoke_test(Path(str(artifact.get("uri", "")).removeprefix("file://")))

    def start(self) -> Driver:
        self.runner.start()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.runner.close()

    def status(self, kind: str, name: str) -> dict[str, Any]:
        body = self.runner.store.get(kind, "default", name) or {}
        status: dict[str, Any] = body.get("status") or {}
        return status

    def serving(self) -> str | None:
        run = (self.status(MODEL_DEPLOYMENT, scenario.NAME).get("currentModel") or {}).get("run")
        return str(run) if run else None

    def rollout_active(self) -> bool:
        return bool(self.status(MODEL_DEPLOYMENT, scenario.NAME).get("rollout"))

    def md_events(self, since: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [
                (t, e.reason, e.message)
                for t, e in self.events
                if t >= since and e.kind == MODEL_DEPLOYMENT
            ]

    def server_pid(self) -> tuple[str, int] | None:
        serving = self.runner.ctx.servings.get(("default", scenario.NAME))
        if serving is None:
            return None
        for server in serving.servers:
            if server.track == "stable" and server.pid:
                return server.key, server.pid
        return None


def wait(what: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def _loadgen(
    url: str, out: Path, *, rate: float, seed: int, args: argparse.Namespace, feedback: bool
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "bench.rollouts.loadgen",
        "--url",
        url,
        "--rate",
        str(rate),
        "--batch-share",
        str(args.batch_share),
        "--batch-rows",
        str(args.batch_rows),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    if feedback:
        argv.append("--feedback")
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":  # EOF: it exited before sending
        raise RuntimeError(f"the load generator did not start (exit {process.wait()})")
    return process


def _stop_loadgen(process: subprocess.Popen[bytes], out: Path) -> list[list[Any]]:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    with out.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stage(driver: Driver, stage: scenario.Stage, timeout: float) -> StageResult:
    before = driver.serving()
    driver.tamper_run = scenario.run(stage.new_run) if stage.tamper and stage.new_run else None
    action = time.time()
    result = StageResult(stage.name, action, before=before, expected=stage.expect)
    driver.write(
        retrain=stage.retrain, canary_pause=stage.canary_pause, rollback_to=stage.rollback_to
    )
    try:
        if stage.new_run is not None:
            new = scenario.run(stage.new_run)
            wait(
                f"{stage.name}: {new} to finish",
                lambda: driver.status(TRAINING_RUN, new).get("phase") in DONE_RUN,
                timeout,
            )
        wait(f"{stage.name}: a rollout to start", lambda: driver.md_events(action), timeout)
        wait(
            f"{stage.name}: the rollout to end",
            lambda: not driver.rollout_active() and driver.serving() == stage.expect,
            timeout,
        )
    except TimeoutError as exc:
        result.error = str(exc)
    time.sleep(2.0)  # traffic after the switch: the old server drains and stops
    result.events = driver.md_events(action)
    if result.events:
        result.window = (result.events[0][0], result.events[-1][0])
    result.after = driver.serving()
    return result


def run(args: argparse.Namespace) -> Result:
    started = time.monotonic()
    work = Path(args.work).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    result = Result(args.seed, args.rate, args.batch_share, args.batch_rows, [], [])
    driver = Driver(work, args.canary_pause).start()
    try:
        first = scenario.run(1)
        wait(f"{first} to serve", lambda: driver.serving() == first, args.stage_timeout)
        url = driver.runner.endpoint_url(scenario.NAME)
        assert url is not None
        wait("the first server to drain", lambda: not driver.rollout_active(), args.stage_timeout)
        out = work / "rollouts.jsonl"
        load = _loadgen(url, out, rate=args.rate, seed=args.seed, args=args, feedback=False)
        time.sleep(args.settle)
        for stage in scenario.stages(args.canary_pause)[: args.stages]:
            outcome = _stage(driver, stage, args.stage_timeout)
            result.stages.append(outcome)
            print(f"  {outcome.name}: {outcome.before} -> {outcome.after}"
                  f"{' ERROR ' + outcome.error if outcome.error else ''}", flush=True)  # fmt: skip
            if outcome.error:
                break
        time.sleep(args.settle)
        result.requests = _stop_loadgen(load, out)
        if args.soak_minutes > 0:
            _soak(driver, url, work, args, result)
    finally:
        driver.close()
    result.seconds = time.monotonic() - started
    result.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    result.load_after = os.getloadavg()[0]
    return result


def _soak(driver: Driver, url: str, work: Path, args: argparse.Namespace, result: Result) -> None:
    result.soak_rate, result.soak_minutes = args.soak_rate, args.soak_minutes
    server = driver.server_pid()
    if server is None:
        raise RuntimeError("soak: no stable server")
    result.soak_server = server[0]
    out = work / "soak.jsonl"
    load = _loadgen(url, out, rate=args.soak_rate, seed=args.seed + 1, args=args, feedback=True)
    began = time.monotonic()
    end = began + args.soak_minutes * 60
    while time.monotonic() < end:
        rss = _rss_mib(server[1])
        if rss is not None:
            result.soak_rss.append(SoakSample(time.monotonic() - began, rss))
        time.sleep(min(10.0, max(0.0, end - time.monotonic())))
    rss = _rss_mib(server[1])
    if rss is not None:
        result.soak_rss.append(SoakSample(time.monotonic() - began, rss))
    result.soak_requests = _stop_loadgen(load, out)
    if driver.server_pid() != server:
        raise RuntimeError(f"soak: the server changed during the soak ({server[0]})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rollouts", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s during rollouts")
    parser.add_argument("--batch-share", type=float, default=0.2)
    parser.add_argument("--batch-rows", type=int, default=100)
    parser.add_argument("--canary-pause", type=int, default=10, help="seconds per canary step")
    parser.add_argument("--stages", type=int, default=4, help="play only the first N")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before/after")
    parser.add_argument("--stage-timeout", type=float, default=300.0)
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--soak-rate", type=float, default=100.0, help="predictions/s")
    parser.add_argument("--work", default=".bench/rollouts")
    parser.add_argument("--output", default="docs/reliability.md")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs")
    parser.add_argument(
        "--from-result", action="store_true", help="render the docs from WORK/result.json"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    saved = Path(args.work, "result.json")
    if args.from_result:
        summary = report.summarize(json.loads(saved.read_text(encoding="utf-8")))
    else:
        result = run(args)
        saved.write_text(json.dumps(asdict(result)), encoding="utf-8")
        summary = report.summarize(result)
    print(json.dumps(summary, indent=2))
    if not args.no_docs:
        report.write(Path(args.output), summary, args)
    return 0 if report.passed(summary) else 1
