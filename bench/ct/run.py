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

from bench.ct import report
from bench.ct.configs import CONFIGS, QUICK, by_name
from bench.ct.driver import Settings, StreamDriver, StreamResult
from bench.ct.metrics import Summary, summarise
from bench.ct.streams import DEFAULT_STREAMS, STREAMS, DriftingStream

ROOT = Path(__file__).resolve().parents[2]
INTRO = "# Continuous-training benchmark (`make bench-ct`)\n"
MARKER = ".made-by-bench-ct"


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


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
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
    (workdir / "results.json").write_text(
        json.dumps(
            {
                "settings": asdict(settings),
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
    command = (
        "make bench-ct"
        if argv is None and len(sys.argv) == 1
        else "python -m bench.ct " + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    plot_path = args.out.with_name(args.out.stem + "-pareto.svg")
    points = report.overall(summaries, [c.name for c in configs])
    report.plot(points, plot_path, f"{len(streams)} drifting streams, seed {settings.seed}")
    generated = report.section(
        results,
        summaries,
        command=command,
        plot_name=plot_path.name,
        skipped=skipped,
        wall_seconds=wall,
        parallel=args.parallel,
        load=(load_before, load_after),
    )
    report.write(args.out, generated, INTRO)
    print(f"wrote {args.out} and {plot_path}")
    return 0
