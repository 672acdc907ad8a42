"""The operator at scale: N idle pipelines on the emulator, then what it costs at rest and
how fast it reacts.

For each N: the emulator (tests/integration/harness, in this process) serves the API; the
operator runs as its own process (``python -m perennial run``, kubeconfig pointing at the
emulator) so that its CPU and RSS are its own. N TrainingPipelines (a nightly schedule:
idle once trained) are created, plus ModelDeployments following the first few; the
benchmark plays the Job controller (every initial run's Job completes with a trainer
result) and the Deployment controller (every rollout becomes ready). Then:

- a steady window: every request the operator sends, by verb and resource (counted in the
  emulator), its CPU time and RSS;
- latencies, one pipeline at a time: retrain annotation -> its Job exists, and Job
  complete -> the ModelDeployment's serving Deployment runs the new model.

Results are written to a section of docs/benchmarks.md. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
from tests.integration.harness import (
    ApiServerEmulator,
    KubeApi,
    StandInControllers,
    write_kubeconfig,
)
from tests.integration.training_helpers import pipeline_body, result_json

from bench.operator.report import write_section
from bench.operator.traced import OUT_ENV
from perennial.core.naming import run_name

REPO = Path(__file__).resolve().parents[2]
CRDS = sorted((REPO / "crds").glob("*.perennial.dev.yaml"))
NS = "bench"
TP = "perennial.dev/v1alpha1/trainingpipelines"
TR = "perennial.dev/v1alpha1/trainingruns"
MD = "perennial.dev/v1alpha1/modeldeployments"
JOBS = "batch/v1/jobs"
DEPLOYMENTS = "apps/v1/deployments"
WATCHED_KINDS = 6  # tp, tr, md, jobs, pods, deployments
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class CountingEmulator(ApiServerEmulator):
    """The harness's emulator, recording (time, verb, resource, user agent) per request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[float, str, str, str]] = []

    async def _handle(self, request: kmock.Request) -> Any:
        resource = request.resource
        name = "other"
        if resource is not None:
            group = getattr(resource, "group", "") or ""
            plural = getattr(resource, "plural", "") or str(resource)
            name = f"{plural}.{group}" if group else plural
            if request.subresource:
                name += f"/{request.subresource}"
        verb = request.action.value if request.action is not None else request.method.value
        agent = request.headers.get("User-Agent", "")
        self.log.append((time.monotonic(), str(verb).upper(), name, agent))
        return await super()._handle(request)


def _log_path(n: int) -> Path:
    folder = REPO / ".bench" / "operator"
    folder.mkdir(parents=True, exist_ok=True)
    (REPO / ".bench" / ".gitignore").write_text("*\n")
    return folder / f"operator-{n}.log"


_CREATE_HANDLED = re.compile(r"\[([^\]/]+/[^\]]+)\] Handler '([\w-]+-create)' succeeded")


def _repeated_creates(log: Path) -> dict[str, int]:
    """How many objects had their create handler run more than once, by handler: kopf runs
    it again when the version it patched has not come back through the watch in time."""
    runs: collections.Counter[tuple[str, str]] = collections.Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            found = _CREATE_HANDLED.search(line)
            if found:
                runs[(found.group(2), found.group(1))] += 1
    repeated: collections.Counter[str] = collections.Counter()
    for (handler, _), times in runs.items():
        if times > 1:
            repeated[handler] += 1
    return dict(sorted(repeated.items()))


# What the measured code is: a change elsewhere (the docs being written) is not "dirty".
CODE = ("operator", "trainer-image", "bench", "tests", "pyproject.toml")


def _commit() -> str:
    """The commit measured, ``-dirty`` if the code (not the docs) has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", *CODE)
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if changed else commit


def _tracemalloc_path(n: int) -> Path:
    return _log_path(n).with_name(f"tracemalloc-{n}.txt")


async def _dump_allocations(operator: subprocess.Popen[bytes], n: int) -> None:
    """Ask the traced operator for its allocations (SIGUSR1) and wait for the file."""
    operator.send_signal(signal.SIGUSR1)
    path = _tracemalloc_path(n)
    await _wait(lambda: _async(path.exists()), 300, f"{path.name}", interval=1.0)
    print(f"N={n}: Python allocations in {path}", flush=True)


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


@dataclass
class SizeResult:
    n: int
    deployments: int
    setup_seconds: float
    window_seconds: float
    requests: dict[tuple[str, str], int]
    watches: int
    cpu_percent: float
    rss_mib: float
    trigger_to_job: list[float] = field(default_factory=list)
    job_to_rollout: list[float] = field(default_factory=list)
    settle_seconds: float = 0.0  # after setup, until the operator went quiet
    rss_start_mib: float = 0.0  # once its watches were open, before any object existed
    commit: str = ""  # the code measured (see _commit)
    # Objects whose create handler ran more than once, by handler (from the operator's log);
    # None: not counted (results from before the count).
    repeated_creates: dict[str, int] | None = None

    @property
    def requests_per_second(self) -> float:
        return sum(self.requests.values()) / self.window_seconds

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["requests"] = [[verb, res, count] for (verb, res), count in self.requests.items()]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SizeResult:
        data = dict(data)
        data["requests"] = {(verb, res): count for verb, res, count in data["requests"]}
        return cls(**data)


async def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def _objects(emulator: ApiServerEmulator, resource: str) -> list[dict[str, Any]]:
    """Stored objects of a kind, read in-process (no request, no copy: read only)."""
    return [obj.raw for _, obj in emulator.stored(kmock.resource(resource))]


def _names(emulator: ApiServerEmulator, resource: str) -> list[str]:
    """The names of the stored objects of a kind, read in-process (no request, no copy)."""
    return [name for (_, _, name), _ in emulator.stored(kmock.resource(resource))]


def _object(emulator: ApiServerEmulator, resource: str, name: str) -> dict[str, Any] | None:
    """One stored object, read in-process without a copy (no request)."""
    key = (kmock.resource(resource), NS, name)
    if key not in emulator.objects:
        return None
    found = emulator.objects[key]
    if found.deleted:
        return None
    raw: dict[str, Any] = found.raw
    return raw


async def _bench_one(
    n: int, deployments: int, window: float, samples: int, traced: bool = False
) -> SizeResult:
    async with CountingEmulator() as emulator, kmock.Server(emulator):
        await emulator.load_crds(CRDS, skip_other_kinds=True)
        emulator.answer_selectors_unfiltered()

        # The emulator shares this process with the benchmark: under load an answer may take
        # longer than the harness's 10 s.
        api = emulator.kube_api(timeout=120.0)
        controllers = StandInControllers(api, emulator)
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", emulator.base_url)
            env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
            env.pop("KUBERNETES_SERVICE_HOST", None)
            module = ["bench.operator.traced"] if traced else ["perennial"]
            if traced:
                env[OUT_ENV] = str(_tracemalloc_path(n))
                _tracemalloc_path(n).unlink(missing_ok=True)
            operator = subprocess.Popen(
                [sys.executable, "-m", *module, "run", "--liveness=", "--metrics-port=0"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(_log_path(n), "w"),  # noqa: SIM115
            )
            try:
                result = await _drive(
                    emulator,
                    api=api,
                    controllers=controllers,
                    operator=operator,
                    n=n,
                    deployments=deployments,
                    window=window,
                    samples=samples,
                )
                if traced:
                    await _dump_allocations(operator, n)
                return result
            finally:
                operator.terminate()
                try:
                    await asyncio.to_thread(operator.wait, 30)
                except subprocess.TimeoutExpired:
                    operator.kill()
                await api.aclose()


async def _drive(
    emulator: CountingEmulator,
    *,
    api: KubeApi,
    controllers: StandInControllers,
    operator: subprocess.Popen[bytes],
    n: int,
    deployments: int,
    window: float,
    samples: int,
) -> SizeResult:
    started = time.monotonic()
    await _wait(
        lambda: _async(
            sum(1 for _, verb, _, _ in emulator.log if verb == "WATCH") >= WATCHED_KINDS
        ),
        60,
        "the operator's watches",
    )
    rss_start = _proc_rss_mib(operator.pid)
    names = [f"p{i:05d}" for i in range(n)]
    schedule = {"schedule": {"cron": "0 3 * * *"}}
    for name in names:
        await api.create(pipeline_body(name, NS, triggers=schedule))
    for name in names[:deployments]:
        await api.create(_md_body(name))

    # Play the Job controller for every initial run.
    done: set[str] = set()
    while len(done) < n:
        jobs = [name for name in _names(emulator, JOBS) if name not in done]
        for run in jobs:
            await controllers.complete_job(
                run, NS, termination_message=result_json(run, accuracy=0.9)
            )
            done.add(run)
        if not jobs:
            await asyncio.sleep(0.2)
        if len(done) < n and time.monotonic() - started > 120 + n * 10:
            raise TimeoutError(f"only {len(done)} of {n} Jobs appeared")

    async def all_succeeded() -> bool:
        runs = _objects(emulator, TR)
        ok = sum(1 for r in runs if (r.get("status") or {}).get("phase") == "Succeeded")
        return ok >= n

    try:
        await _wait(
            all_succeeded,
            float(os.environ.get("BENCH_SETUP_TIMEOUT", 120 + n * 10)),
            "every initial run Succeeded",
            interval=0.5,
        )
    except TimeoutError as exc:
        phases = collections.Counter(
            (r.get("status") or {}).get("phase") for r in _objects(emulator, TR)
        )
        failed = [
            f"{r['metadata']['name']}: {r['status'].get('reason')}: {r['status'].get('message')}"
            for r in _objects(emulator, TR)
            if (r.get("status") or {}).get("phase") == "Failed"
        ][:3]
        raise TimeoutError(f"{exc}: runs by phase {dict(phases)} {failed}") from None
    await _make_ready(emulator, controllers, names[:deployments], "00001")
    setup = time.monotonic() - started

    # The operator may still be catching up (pipeline statuses, event posts) after the last
    # run Succeeded: the window starts once every pipeline's status shows its initial run
    # taken in (Idle, that run its champion), and the operator has then sent nothing for
    # QUIET seconds. (At 5,000 a window opened after a 10 s lull alone still held 129
    # pipeline status writes.)
    limit = float(os.environ.get("BENCH_SETUP_TIMEOUT", 120 + n * 10))

    async def all_at_rest() -> bool:
        rest = 0
        for tp in _objects(emulator, TP):
            status = tp.get("status") or {}
            champion = (status.get("champion") or {}).get("run")
            if status.get("phase") == "Idle" and champion == run_name(tp["metadata"]["name"], 1):
                rest += 1
        return rest >= n

    await _wait(all_at_rest, limit, "every pipeline Idle with its first run as champion", 1.0)
    await _quiet(emulator, operator.pid, limit)
    settle = time.monotonic() - started - setup
    begin, cpu0 = time.monotonic(), _proc_cpu_seconds(operator.pid)
    await asyncio.sleep(window)
    end, cpu1 = time.monotonic(), _proc_cpu_seconds(operator.pid)
    rss = _proc_rss_mib(operator.pid)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    watches = 0
    for moment, verb, resource, agent in emulator.log:
        if begin <= moment < end and "httpx" not in agent:
            if verb == "WATCH":
                watches += 1
            else:
                counts[(verb, resource)] += 1
    result = SizeResult(
        n=n,
        deployments=deployments,
        setup_seconds=setup,
        window_seconds=end - begin,
        requests=dict(counts),
        watches=watches,
        cpu_percent=100 * (cpu1 - cpu0) / (end - begin),
        rss_mib=rss,
        settle_seconds=settle,
        rss_start_mib=rss_start,
        commit=_commit(),
    )
    for name in names[: min(samples, deployments)]:
        a, b = await _latencies(emulator, api, controllers, name)
        result.trigger_to_job.append(a)
        result.job_to_rollout.append(b)
    return result


QUIET = 10.0
QUIET_CPU = 0.01  # of a core, over the last QUIET seconds


async def _quiet(emulator: CountingEmulator, pid: int, timeout: float) -> None:
    """Wait until the operator has sent no request (watches aside) for ``QUIET`` seconds
    and used less than ``QUIET_CPU`` of a core over them: its queue of watch events is
    worked off too (an event whose handlers decide "nothing to do" sends no request, and
    at N = 1,000 such a backlog outlasted a lull of requests alone)."""

    def last_request() -> float:
        for moment, verb, _, agent in reversed(emulator.log):
            if verb != "WATCH" and "httpx" not in agent:
                return moment
        return 0.0

    cpu: collections.deque[tuple[float, float]] = collections.deque()
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        cpu.append((now, _proc_cpu_seconds(pid)))
        while now - cpu[0][0] > QUIET:
            cpu.popleft()
        span = cpu[-1][0] - cpu[0][0]
        idle = span >= QUIET - 1.5 and (cpu[-1][1] - cpu[0][1]) < QUIET_CPU * span
        if idle and now - last_request() >= QUIET:
            return
        if now > deadline:
            raise TimeoutError("the operator never came to rest after the setup")
        await asyncio.sleep(1.0)


async def _async(value: Any) -> Any:
    return value


def _md_body(pipeline: str) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": pipeline, "namespace": NS},
        "spec": {"source": {"pipelineRef": {"name": pipeline}}, "replicas": 1},
    }


def _serving_run(emulator: ApiServerEmulator, md: str) -> str | None:
    dep = _object(emulator, DEPLOYMENTS, f"{md}-serving")
    if dep is None:
        return None
    labels = dep["spec"]["template"]["metadata"].get("labels") or {}
    return labels.get("perennial.dev/run")


async def _make_ready(
    emulator: ApiServerEmulator, controllers: StandInControllers, mds: list[str], seq: str
) -> None:
    for md in mds:
        await _wait(
            lambda md=md: _async(_serving_run(emulator, md) == f"{md}-{seq}"), 120, f"{md} serving"
        )
        await controllers.set_deployment_ready(f"{md}-serving", NS)

    async def available() -> bool:
        found = {m["metadata"]["name"]: m for m in _objects(emulator, MD)}
        return all(
            ((found.get(md) or {}).get("status") or {}).get("phase") == "Available"
            and not (found[md].get("status") or {}).get("rollout")
            for md in mds
        )

    await _wait(available, 120, "every ModelDeployment Available", interval=0.2)


async def _latencies(
    emulator: CountingEmulator, api: KubeApi, controllers: StandInControllers, pipeline: str
) -> tuple[float, float]:
    run = f"{pipeline}-00002"
    t0 = time.monotonic()
    await api.patch(
        TP, pipeline, NS, {"metadata": {"annotations": {"perennial.dev/retrain": "bench"}}}
    )
    await _wait(
        lambda: _async(_object(emulator, JOBS, run) is not None),
        60,
        f"Job {run}",
        interval=0.005,
    )
    trigger_to_job = time.monotonic() - t0
    t1 = time.monotonic()
    await controllers.complete_job(
        run,
        NS,
        termination_message=result_json(
            run, accuracy=0.95, champion_accuracy=0.9, champion_run=f"{pipeline}-00001"
        ),
    )
    await _wait(
        lambda: _async(_serving_run(emulator, pipeline) == run), 60, f"rollout of {run}", 0.005
    )
    job_to_rollout = time.monotonic() - t1
    await controllers.set_deployment_ready(f"{pipeline}-serving", NS)
    _trace(emulator, pipeline, t0)
    return trigger_to_job, job_to_rollout


def _trace(emulator: CountingEmulator, pipeline: str, t0: float) -> None:
    """The requests of one latency sample, in order, to .bench/operator/trace-<pipeline>.txt
    (who sent what when: where the time between trigger, Job and rollout goes)."""
    lines = [
        f"{moment - t0:8.3f}s {verb:7} {resource:40} {agent}"
        for moment, verb, resource, agent in emulator.log
        if moment >= t0 and verb != "WATCH"
    ]
    _log_path(0).with_name(f"trace-{pipeline}.txt").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator", description=__doc__)
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated N")
    parser.add_argument("--window", type=float, default=60.0, help="steady window, seconds")
    parser.add_argument("--deployments", type=int, default=10, help="ModelDeployments per N")
    parser.add_argument("--samples", type=int, default=5, help="latency samples per N")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="run the operator under tracemalloc and write its largest Python allocations "
        "after the window to .bench/operator/tracemalloc-N.txt (slows it: implies --no-docs)",
    )
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: write docs/benchmarks.md from the results of earlier runs of "
        "these sizes (.bench/operator/result-N.json)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    t0 = time.monotonic()
    for n in sizes:
        saved = _log_path(n).with_name(f"result-{n}.json")
        if args.from_results:
            stored = json.loads(saved.read_text())
            results.append(SizeResult.from_json(stored["result"]))
            t0 -= stored["seconds"]
            continue
        print(f"N={n} ...", flush=True)
        began = time.monotonic()
        result = asyncio.run(
            _bench_one(n, min(args.deployments, n), args.window, args.samples, args.tracemalloc)
        )
        result.repeated_creates = _repeated_creates(_log_path(n))
        if not args.tracemalloc:  # its figures are the tracer's: never rendered
            saved.write_text(
                json.dumps({"result": result.to_json(), "seconds": time.monotonic() - began})
            )
        results.append(result)
        print(
            f"N={n}: setup {result.setup_seconds:.0f}s, {result.requests_per_second:.3f} req/s "
            f"{result.requests}, watches {result.watches}, CPU {result.cpu_percent:.2f}%, "
            f"RSS {result.rss_start_mib:.0f}->{result.rss_mib:.0f} MiB, trigger->job "
            f"{statistics.median(result.trigger_to_job) if result.trigger_to_job else 0:.3f}s, "
            f"job->rollout "
            f"{statistics.median(result.job_to_rollout) if result.job_to_rollout else 0:.3f}s",
            flush=True,
        )
    if not args.no_docs and not args.tracemalloc:
        write_section(REPO / "docs" / "benchmarks.md", results, time.monotonic() - t0, args)
    return 0
