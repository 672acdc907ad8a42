"""``python -m bench.ct``: run the streams through ``perennial local`` for each trigger
configuration and write the table and the Pareto plot into docs/ct.md."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.ct import report
from bench.ct.configs import CONFIGS, QUICK, by_name
from bench.ct.driver import RunRecord, Settings, StreamDriver, StreamResult, WindowRecord
from bench.ct.metrics import Summary, summarise
from bench.ct.streams import DEFAULT_STREAMS, STREAMS, DriftingStream

ROOT = Path(__file__).resolve().parents[2]
INTRO = "# Continuous-training benchmark (`make bench-ct`)\n"
MARKER = ".made-by-bench-ct"
RESULTS = "results.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m bench.ct", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: one stream, 3 windows of 300 rows, 2 configurations",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--windows", type=int, default=d.windows)
    p.add_argument("--rows", type=int, default=d.rows)
    p.add_argument("--trees", type=int, default=d.trees)
    p.add_argument("--speed", type=float, default=d.speed)
    p.add_argument(
        "--streams",
        default=";".join(DEFAULT_STREAMS),
        help=f"semicolon-separated, of: {'; '.join(STREAMS)}",
    )
    p.add_argument(
        "--configs",
        default=None,
        help="comma-separated configuration names (default: all the API supports)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=2,
        help="streams run at once, each with its own runner (default 2: a window mostly "
        "waits for processes to start)",
    )
    p.add_argument(
        "--report-from",
        type=Path,
        nargs="+",
        metavar="WORKDIR",
        help="run nothing: write the report from these earlier runs' results (merged)",
    )
    p.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "ct")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "ct.md")
    return p.parse_args(argv)


def _workdir(path: Path) -> Path:
    """Start from an empty work directory; only ever delete one this tool made."""
    if path.exists():
        if not (path / MARKER).exists():
            raise SystemExit(
                f"--workdir {path} exists and was not made by bench.ct: choose another"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).touch()
    return path


def _note(data: dict[str, Any]) -> str:
    streams = data["streams"]
    parallel = data.get("parallel", 2)
    text = f"`{data.get('command', 'python -m bench.ct')}` ({len(streams)} stream(s), "
    if "wall_seconds" in data:
        text += f"{data['wall_seconds'] / 60:.1f} min of wall time, {parallel} streams at a time"
    else:
        each = ", ".join(f"{x['wall_seconds'] / 60:.1f}" for x in streams)
        text += f"{each} min of wall time each, {parallel} at a time"
    load = data.get("load")
    if load:
        text += f"; load average {load[0]:.1f} before, {load[1]:.1f} after, on 2 shared cores"
    return text + ")"


def load_results(workdirs: list[Path]) -> tuple[list[StreamResult], list[Summary], list[str]]:
    """Results of one or more runs (the same streams and settings), merged per stream."""
    merged: dict[str, StreamResult] = {}
    summaries: list[Summary] = []
    notes: list[str] = []
    for workdir in workdirs:
        data = json.loads((workdir / RESULTS).read_text(encoding="utf-8"))
        settings = Settings(**data["settings"])
        notes.append(_note(data))
        summaries += [Summary(**s) for s in data["summaries"]]
        configs = list(dict.fromkeys(s["config"] for s in data["summaries"]))
        for entry in data["streams"]:
            spec = STREAMS[entry["stream"]]
            result = merged.setdefault(
                spec.name,
                StreamResult(
                    stream=spec.name,
                    description=spec.description,
                    windows=settings.windows,
                    rows=settings.rows,
                    label_delay=spec.label_delay,
                    changes=tuple(entry["changes"]),
                    settings=settings,
                    configs=[],
                ),
            )
            if result.settings != settings:
                raise SystemExit(f"{workdir}: other settings than the first run's; not comparable")
            result.configs += [c for c in configs if c not in result.configs]
            for window in entry["windows"]:
                fields = {k: v for k, v in window.items() if k != "accuracy"}
                result.records.append(WindowRecord(**fields))
            result.runs += [RunRecord(**r) for r in entry["runs"]]
    return list(merged.values()), summaries, notes


def write_report(workdirs: list[Path], out: Path) -> None:
    results, summaries, notes = load_results(workdirs)
    configs = results[0].configs
    supported = {c.name for c in CONFIGS if c.supported()}
    skipped = [c.name for c in CONFIGS if c.name not in supported]
    plot_path = out.with_name(out.stem + "-pareto.svg")
    points = report.overall(summaries, configs)
    seed = results[0].settings.seed
    report.plot(points, plot_path, f"{len(results)} drifting streams, seed {seed}")
    generated = report.section(
        results, summaries, notes=notes, plot_name=plot_path.name, skipped=skipped
    )
    report.write(out, generated, INTRO)
    print(f"wrote {out} and {plot_path}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report_from:
        write_report([p.resolve() for p in args.report_from], args.out)
        return 0
    settings = Settings(
        windows=args.windows, rows=args.rows, trees=args.trees, seed=args.seed, speed=args.speed
    )
    streams = [s.strip() for s in args.streams.split(";") if s.strip()]
    names = args.configs.split(",") if args.configs else [c.name for c in CONFIGS]
    if args.quick:
        settings = replace(settings, windows=3, rows=300, trees=20)
        streams, names = ["sudden"], list(QUICK)
    unknown = [s for s in streams if s not in STREAMS]
    if unknown:
        raise SystemExit(f"--streams: unknown {unknown}; known: {', '.join(STREAMS)}")
    try:
        chosen = by_name(names)
    except ValueError as exc:
        raise SystemExit(f"--configs: {exc}") from None
    configs = [c for c in chosen if c.supported()]
    skipped = [c.name for c in chosen if not c.supported()]
    workdir = _workdir(args.workdir.resolve())

    def one(index: int, name: str) -> StreamResult:
        stream = DriftingStream(STREAMS[name], settings.windows, settings.rows, settings.seed)
        print(f"[{index + 1}/{len(streams)}] {name}: {len(configs)} configurations", flush=True)
        return StreamDriver(stream, configs, settings, workdir / f"stream-{index}").run()

    started, load_before = time.monotonic(), os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = list(pool.map(one, range(len(streams)), streams))
    wall, load_after = time.monotonic() - started, os.getloadavg()[0]
    summaries: list[Summary] = []
    for result in results:
        print(f"{result.stream} ({result.wall_seconds:.0f} s)")
        for s in summarise(result):
            summaries.append(s)
            print(
                f"    {s.config:40s} accuracy {s.accuracy:.3f}  "
                f"retrains {s.retrains:2d}  rejected {s.rejected}",
                flush=True,
            )
    command = (
        "make bench-ct"
        if argv is None and len(sys.argv) == 1
        else "python -m bench.ct " + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    (workdir / RESULTS).write_text(
        json.dumps(
            {
                "command": command,
                "settings": asdict(settings),
                "wall_seconds": wall,
                "parallel": args.parallel,
                "load": [load_before, load_after],
                "skipped": skipped,
                "summaries": [asdict(s) for s in summaries],
                "streams": [
                    {
                        "stream": r.stream,
                        "changes": r.changes,
                        "windows": [asdict(w) | {"accuracy": w.accuracy} for w in r.records],
                        "runs": [asdict(run) for run in r.runs],
                        "wall_seconds": r.wall_seconds,
                    }
                    for r in results
                ],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    write_report([workdir], args.out)
    return 0
