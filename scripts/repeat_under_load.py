"""Run a pytest command N times in a row while a CPU hog keeps every core busy.

The proof that the test suite does not flake on a busy machine (docs/testing.md):

    .venv/bin/python scripts/repeat_under_load.py --runs 20 -- tests/integration
    .venv/bin/python scripts/repeat_under_load.py --runs 5 --

Everything after ``--`` goes to ``python -m pytest`` (nothing: the whole suite). The hog is
one busy process per core (``--hogs``, default: the number of cores), started before the
first run and stopped after the last; each run's output goes to ``--logs``
(``.repeat-logs/run-NN.log``), and one line per run (exit code, duration, pytest's summary)
is printed. ``--keep-going`` runs all N even after a failure (to measure how often a
failure shows); without it the first failure ends the series. The exit code is 0 only if
every run passed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _burn() -> None:  # pragma: no cover - runs in the hog processes
    while True:
        pass


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # runs the clean-up below: the hogs never outlive the script


def _summary(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if " in " in line and ("passed" in line or "failed" in line or "error" in line):
            return line.strip("= ")
    return lines[-1] if lines else "(no output)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs in a row")
    parser.add_argument(
        "--hogs",
        type=int,
        default=os.cpu_count() or 1,
        help="busy processes to run meanwhile (default: one per core; 0: none)",
    )
    parser.add_argument("--logs", type=Path, default=Path(".repeat-logs"), help="log folder")
    parser.add_argument(
        "--keep-going", action="store_true", help="run all N even after a failing run"
    )
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: give at least 1")
    if args.hogs < 0:
        parser.error("--hogs: give 0 or more")

    args.logs.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    hogs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args.pytest_args]
    print(f"{len(hogs)} CPU hog(s); {args.runs} x {' '.join(command)}", flush=True)
    passed = failed = 0
    try:
        for number in range(1, args.runs + 1):
            log = args.logs / f"run-{number:02d}.log"
            started = time.monotonic()
            with log.open("w") as out:
                code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
            took = time.monotonic() - started
            passed, failed = (passed + 1, failed) if code == 0 else (passed, failed + 1)
            verdict = "PASS" if code == 0 else f"FAIL (exit {code})"
            print(f"run {number}: {verdict} in {took:.0f} s: {_summary(log)}", flush=True)
            if code != 0 and not args.keep_going:
                break
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join()
    print(f"{passed} passed, {failed} failed of {passed + failed} run(s)", flush=True)
    return 0 if failed == 0 and passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
