"""``make bench-serving``: train, start both servers pinned, drive them with wrk, report.

Steps (every loop bounded in count and time, loopback only):

1. tools: wrk (apt-get when missing), MLServer 1.7.1 + mlserver-sklearn in
   ``.bench/mlserver-venv`` (``uvloop<0.21``), granian in ``.bench/granian-venv``;
2. models: breast_cancer LogisticRegression and 100-tree RandomForest trained by our
   trainer; MLServer's joblib copy of each (``models.py`` says how and why);
3. servers on 127.0.0.1, pinned with taskset to the first half of the cores; wrk pinned
   to the other half: ours (one worker per server core), MLServer (same models),
   constant-response apps on each HTTP stack candidate;
4. checks: both servers return the same labels for every request body;
5. measurements: for each repeat, every point (model x rows x connections) on ours, then
   MLServer, then (single-row points) a constant-response app on our HTTP stack, the
   ceiling -- interleaved, so background load hits all alike; median over repeats;
6. report: docs/benchmarks.md (tables, ratios, targets) and raw JSON in .bench/results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.operator.report import operator_section
from bench.serving import environment, loadgen, models, report
from bench.serving.processes import Server, free_port, get, pinned, post

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEQUENTIAL_REQUESTS = 300


def _cpus(argument: str | None, fallback: list[int]) -> str:
    return argument if argument is not None else ",".join(str(c) for c in fallback)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--work", default=".bench", help="scratch folder (default .bench)")
    parser.add_argument("--output", default="docs/benchmarks.md", help="report (Markdown)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point (median)")
    parser.add_argument("--connections", default="1,8,32", help="wrk connections")
    parser.add_argument("--rows", default="1,100", help="rows per request")
    parser.add_argument("--server-cpus", help="taskset list for servers (default: first half)")
    parser.add_argument("--client-cpus", help="taskset list for wrk (default: second half)")
    parser.add_argument(
        "--mlserver-parallel-workers",
        type=int,
        help="MLServer inference processes (default: 0 on one server core, where it is "
        "fastest, else one per server core)",
    )
    parser.add_argument("--skip-stacks", action="store_true", help="no HTTP stack comparison")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    work = (REPO / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / ".gitignore").write_text("*\n")
    cores = sorted(os.sched_getaffinity(0))
    half = max(1, len(cores) // 2)
    server_cpus = _cpus(args.server_cpus, cores[:half])
    client_cpus = _cpus(args.client_cpus, cores[half:] or cores)
    n_server = len(server_cpus.split(","))
    machine = environment.machine()
    os.sched_setaffinity(0, [int(c) for c in client_cpus.split(",")])  # orchestration too

    environment.ensure_wrk()
    mlserver_python = environment.mlserver_venv(work)
    granian_python = None if args.skip_stacks else environment.granian_venv(work)
    load_before = environment.load_average()
    print("training the benchmark models with our trainer", flush=True)
    trained = models.train_all(work / "models")
    rows_list = [int(r) for r in args.rows.split(",")]
    conns_list = [int(c) for c in args.connections.split(",")]
    bodies: dict[tuple[str, int], Path] = {}
    for model in trained:
        for rows in rows_list:
            path = work / "bodies" / f"{model.key.lower()}-{rows}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(models.request_body(model.run_dir, rows))
            bodies[model.key, rows] = path

    parallel = args.mlserver_parallel_workers
    if parallel is None:
        parallel = 0 if n_server == 1 else n_server
    servers: list[Server] = []
    results: dict[str, Any] = {"points": [], "stacks": [], "mlserver_default": []}
    try:
        ours = {m.key: _our_server(m, work, server_cpus, n_server) for m in trained}
        ceiling = _constant_server("uvicorn", work, server_cpus, None)
        anchor = _mlserver(
            mlserver_python,
            trained,
            work,
            cpus=server_cpus,
            parallel_workers=parallel,
            name="mlserver",
        )
        servers += [*ours.values(), anchor, ceiling]
        for server in servers:
            print(f"starting {server.name}", flush=True)
            server.start()
        backends = {
            key: json.loads(get(f"{s.url}/v2/models/{key.lower()}"))["parameters"]
            for key, s in ours.items()
        }
        _check_same_labels(trained, ours, anchor, bodies)
        results["server_time"] = {
            key: _sequential_server_time(s, key, bodies[key, 1]) for key, s in ours.items()
        }
        targets = [
            (model.key, rows, conns)
            for model in trained
            for rows in rows_list
            for conns in conns_list
        ]

        def url(server: Server, key: str) -> str:
            return f"{server.url}/v2/models/{key.lower()}/infer"

        print("warming up", flush=True)
        for key, rows, _ in {(k, r, 0) for k, r, _ in targets}:
            for server in (ours[key], anchor):
                loadgen.run(url(server, key), bodies[key, rows], 8, args.warmup, client_cpus)
        loadgen.run(url(ceiling, "LR"), bodies["LR", 1], 8, args.warmup, client_cpus)
        runs: dict[tuple[str, int, int, str], list[loadgen.Measurement]] = {}
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats}", flush=True)
            for key, rows, conns in targets:
                contenders = [("ours", ours[key]), ("mlserver", anchor)]
                if rows == 1:  # the HTTP stack's ceiling, measured alongside (same body)
                    contenders.append(("constant", ceiling))
                for name, server in contenders:
                    measured = loadgen.run(
                        url(server, key), bodies[key, rows], conns, args.duration, client_cpus
                    )
                    runs.setdefault((key, rows, conns, name), []).append(measured)
        results["points"] = [
            {"model": k, "rows": r, "connections": c, "server": n, **_median(ms)}
            for (k, r, c, n), ms in runs.items()
        ]
        anchor.stop()
        ceiling.stop()
        default = _mlserver(
            mlserver_python,
            trained,
            work,
            cpus=server_cpus,
            parallel_workers=None,
            name="mlserver-default",
        )
        servers.append(default)
        print("MLServer with its default settings (headline points)", flush=True)
        default.start()
        for key in ours:
            loadgen.run(url(default, key), bodies[key, 1], 8, args.warmup, client_cpus)
            default_runs = [
                loadgen.run(url(default, key), bodies[key, 1], 8, args.duration, client_cpus)
                for _ in range(args.repeats)
            ]
            results["mlserver_default"].append(
                {"model": key, "rows": 1, "connections": 8, **_median(default_runs)}
            )
        default.stop()
        for server in ours.values():
            server.stop()
        if granian_python is not None:
            results["stacks"] = _stacks(
                granian_python,
                work,
                server_cpus=server_cpus,
                client_cpus=client_cpus,
                body=bodies["LR", 1],
                args=args,
            )
        results["inprocess"] = _inprocess(trained, server_cpus)
    finally:
        for server in servers:
            server.stop()

    results["meta"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "load_before": load_before,
        "load_after": environment.load_average(),
        "server_cpus": server_cpus,
        "client_cpus": client_cpus,
        "our_workers": n_server,
        "mlserver_parallel_workers": parallel,
        "ours": environment.our_versions(),
        "mlserver": environment.versions_in(
            mlserver_python,
            ["mlserver", "mlserver-sklearn", "scikit-learn", "numpy", "uvloop", "uvicorn"],
        ),
        "granian": (environment.versions_in(granian_python, ["granian"]) if granian_python else {}),
        "wrk": loadgen.version(),
        "duration": args.duration,
        "repeats": args.repeats,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "models": [
            {"key": m.key, "estimator": m.estimator, "onnx": m.onnx_exported, "why": m.onnx_reason}
            for m in trained
        ],
        "backends": backends,
    }
    stamp = results["meta"]["date"].replace(":", "")
    raw = work / "results" / f"serving-{stamp}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=2))
    output = REPO / args.output
    # The operator benchmark's section (make bench-operator) is kept as it is.
    kept = operator_section(output.read_text()) if output.exists() else ""
    output.write_text(report.render(results) + (f"\n{kept}" if kept else ""))
    print(f"wrote {output} and {raw} in {results['meta']['minutes']} min", flush=True)
    print(report.summary(results), flush=True)
    return 0


def _median(measurements: list[loadgen.Measurement]) -> dict[str, Any]:
    return {
        "rps": statistics.median(m.requests_per_second for m in measurements),
        "p50_ms": statistics.median(m.p50_ms for m in measurements),
        "p99_ms": statistics.median(m.p99_ms for m in measurements),
        "errors": sum(m.errors for m in measurements),
        "requests": sum(m.requests for m in measurements),
        "runs": [asdict(m) for m in measurements],
    }


def _our_server(model: models.BenchModel, work: Path, cpus: str, workers: int) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "perennial_runtime", "serve", "--model-uri", model.model_uri]
    argv += ["--sha256", model.sha256, "--model-name", model.key.lower(), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    return Server(
        name=f"ours-{model.key}",
        argv=pinned(cpus, argv),
        port=port,
        ready_path="/v2/health/ready",
        log=work / "logs" / f"ours-{model.key.lower()}.log",
    )


def _mlserver(
    python: Path,
    trained: list[models.BenchModel],
    work: Path,
    *,
    cpus: str,
    parallel_workers: int | None,
    name: str,
) -> Server:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    for model in trained:
        target = folder / model.key.lower()
        target.mkdir(exist_ok=True)
        for file in ("model.joblib", "model-settings.json"):
            (target / file).write_bytes((model.mlserver_dir / file).read_bytes())
    port = free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (folder / "settings.json").write_text(json.dumps(settings))
    mlserver = python.parent / "mlserver"
    return Server(
        name=name,
        argv=pinned(cpus, [str(mlserver), "start", str(folder)]),
        port=port,
        ready_path=f"/v2/models/{trained[-1].key.lower()}/ready",
        log=work / "logs" / f"{name}.log",
        cwd=folder,
    )


def _check_same_labels(
    trained: list[models.BenchModel],
    ours: dict[str, Server],
    anchor: Server,
    bodies: dict[tuple[str, int], Path],
) -> None:
    for (key, rows), path in bodies.items():
        body = path.read_bytes()
        url = f"/v2/models/{key.lower()}/infer"
        mine = models.labels_of(post(ours[key].url + url, body)[0])
        theirs = models.labels_of(post(anchor.url + url, body)[0])
        flat = [v[0] if isinstance(v, list) else v for v in theirs]
        if mine != flat:
            raise SystemExit(f"{key} x{rows}: the servers disagree: {mine[:5]} vs {flat[:5]}")
    print("both servers return the same labels for every request body", flush=True)


def _sequential_server_time(server: Server, key: str, body_file: Path) -> dict[str, float]:
    """Single-row requests one after another; the server-timing header (app time)."""
    body = body_file.read_bytes()
    timings = []
    deadline = time.monotonic() + 60
    for _ in range(SEQUENTIAL_REQUESTS):
        if time.monotonic() > deadline:
            break
        _, headers = post(f"{server.url}/v2/models/{key.lower()}/infer", body)
        timing = {k.lower(): v for k, v in headers.items()}["server-timing"]
        timings.append(float(timing.split("dur=")[1]))
    timings = sorted(timings[50:])
    return {
        "median_ms": statistics.median(timings),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
        "requests": len(timings),
    }


STACKS = {
    "uvicorn + uvloop + httptools, plain ASGI (ours)": "uvicorn",
    "Starlette on uvicorn + uvloop + httptools": "starlette",
    "granian, ASGI": "granian-asgi",
    "granian, RSGI": "granian-rsgi",
}


def _constant_server(kind: str, work: Path, cpus: str, granian: Path | None) -> Server:
    """A constant-response app on one stack (``STACKS``), pinned like the model servers."""
    port = free_port()
    if kind in ("uvicorn", "starlette"):
        app = "bench.serving.constant_apps:" + ("asgi" if kind == "uvicorn" else "starlette")
        argv = [sys.executable, "-m", "uvicorn", app, "--port", str(port), *uvicorn_flags()]
    else:
        assert granian is not None
        interface = kind.split("-")[1]
        argv = [str(granian.parent / "granian"), "--interface", interface, "--host"]
        argv += ["127.0.0.1", "--port", str(port), "--workers", "1", "--no-ws"]
        argv += ["--log-level", "warning", f"constant_apps:{interface}"]
    return Server(
        name=f"constant-{kind}",
        argv=pinned(cpus, argv),
        port=port,
        ready_path="/ready",
        log=work / "logs" / f"constant-{kind}.log",
        cwd=HERE if kind.startswith("granian") else REPO,
    )


def _stacks(
    granian: Path,
    work: Path,
    *,
    server_cpus: str,
    client_cpus: str,
    body: Path,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Constant-response apps on each candidate stack, 8 connections, same body as LR x1;
    all started at once and measured in turn within each repeat."""
    servers = {kind: _constant_server(kind, work, server_cpus, granian) for kind in STACKS.values()}
    runs: dict[str, list[loadgen.Measurement]] = {}
    try:
        for server in servers.values():
            server.start(timeout=60)
        for server in servers.values():
            loadgen.run(f"{server.url}/v2/models/lr/infer", body, 8, args.warmup, client_cpus)
        for _ in range(args.repeats):
            for kind, server in servers.items():
                target = f"{server.url}/v2/models/lr/infer"
                measured = loadgen.run(target, body, 8, args.duration, client_cpus)
                runs.setdefault(kind, []).append(measured)
    finally:
        for server in servers.values():
            server.stop()
    out = []
    for label, kind in STACKS.items():
        out.append({"stack": label, "kind": kind, "connections": 8, **_median(runs[kind])})
        print(f"{label}: {out[-1]['rps']:.0f} req/s", flush=True)
    return out


def uvicorn_flags() -> list[str]:
    """The uvicorn settings our server uses, as command-line flags (constant apps)."""
    from perennial_runtime.serve.config import ServeConfig
    from perennial_runtime.serve.server import uvicorn_options

    opts = uvicorn_options(ServeConfig(model_uri="-", sha256=None, insecure_skip_verify=True))
    flags = ["--host", "127.0.0.1", "--loop", str(opts["loop"]), "--http", str(opts["http"])]
    flags += ["--log-level", "warning", "--no-access-log", "--no-server-header"]
    return flags


def _inprocess(trained: list[models.BenchModel], cpus: str) -> dict[str, Any]:
    argv = pinned(cpus, [sys.executable, "-m", "bench.serving.inprocess"])
    argv += [str(m.run_dir) for m in trained]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True, cwd=REPO)
    per_run: dict[str, Any] = json.loads(done.stdout)
    return {m.key: per_run[m.run_dir.name] for m in trained}
