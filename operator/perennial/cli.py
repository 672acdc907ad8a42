"""`python -m perennial`: run the operator, render CRDs, print the version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from perennial._version import __version__

DEFAULT_CRD_DIR = Path("crds")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perennial", description="Perennial: continuous training for scikit-learn models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator (kopf) against the current cluster")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)"
    )
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint served by kopf (default: %(default)s)",
    )
    run.add_argument("--metrics-port", type=int, default=9090, help="Prometheus port")
    run.add_argument(
        "--peering",
        default=None,
        help="kopf peering object name for a standby (default: standalone)",
    )
    run.add_argument("--priority", type=int, default=0, help="kopf peering priority")
    run.add_argument(
        "--notify-sink",
        action="append",
        default=[],
        metavar="URL",
        help="send CloudEvents to this HTTP(S) sink (repeatable); default: "
        "$PERENNIAL_NOTIFY_SINKS (comma-separated), else none",
    )
    run.add_argument(
        "--notify-mode",
        choices=("binary", "structured"),
        default=None,
        help="CloudEvents HTTP content mode; default: $PERENNIAL_NOTIFY_MODE, else binary",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")

    crds = sub.add_parser("crds", help="render the CRDs from the API models")
    crds.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_CRD_DIR,
        help="directory to write into (default: %(default)s); '-' writes to stdout",
    )
    crds.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the files in --output differ from the generated ones",
    )

    rerun = sub.add_parser(
        "rerun",
        help="reproduce a TrainingRun: a new run with the same spec snapshot, data and seed",
    )
    rerun.add_argument("run", help="name of the TrainingRun to reproduce")
    rerun.add_argument(
        "-n", "--namespace", default=None, help="its namespace (default: the kubeconfig's)"
    )
    rerun.add_argument("--name", default=None, help="name of the new run (default: RUN-rerun-N)")
    rerun.add_argument(
        "--dry-run", action="store_true", help="print the new TrainingRun as YAML, create nothing"
    )

    sub.add_parser("version", help="print the version")
    _add_local(sub)
    _add_demo(sub)
    return parser


def _add_local(sub: Any) -> None:
    local = sub.add_parser(
        "local",
        help="run the continuous-training loop on this machine, without a cluster",
        description=(
            "Run TrainingPipelines and ModelDeployments from their YAML with local processes: "
            "trainers, model servers and a stable endpoint on a loopback port. A development "
            "and evaluation tool; the operator is the production path. Editing a manifest "
            "applies it; stop with Ctrl-C and start again with the same --state-dir to carry "
            "on. See docs/local.md."
        ),
    )
    local.add_argument(
        "manifests", nargs="+", type=Path, metavar="MANIFEST", help="YAML file or directory"
    )
    local.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".local-state"),
        help="where objects, runs, artifacts and logs are kept (default: %(default)s)",
    )
    local.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port of the first deployment's stable endpoint, the next ones count up; "
        "0 picks free ports (default: %(default)s)",
    )
    local.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between two passes of the controllers (default: %(default)s)",
    )
    local.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="how much faster than real time the runner's clock runs, as in the demo: "
        "cool-downs, poll and scrape intervals, schedules and deadlines pass SPEED times "
        "faster (default: %(default)s, the wall clock)",
    )
    local.add_argument("--verbose", action="store_true", help="debug logging")


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the local continuous-training demo",
        description=(
            "The whole loop on a drifting stream in a few minutes: train, serve, drift, "
            "retrain, gates, rollout, rollback. Writes a summary and a PNG plot; exits 1 if "
            "an expected outcome did not happen. See docs/local.md."
        ),
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=Path(".demo"),
        help="scratch directory, deleted and re-created (default: %(default)s)",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port of the stable endpoint; 0 picks a free one (default: %(default)s)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="how much faster than real time the demo's clock runs (default: %(default)s)",
    )
    demo.add_argument("--quick", action="store_true", help="a shorter stream")
    demo.add_argument("--no-plot", action="store_true", help="skip the PNG")


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "version":
        print(f"perennial {__version__}")
        return 0
    if args.command == "crds":
        from perennial.api.crdgen import write_crds

        return write_crds(args.output, check=args.check)
    if args.command == "run":
        from perennial.controllers.runner import run_operator

        return run_operator(
            namespaces=list(args.namespace),
            liveness=args.liveness,
            metrics_port=args.metrics_port,
            peering=args.peering,
            priority=args.priority,
            verbose=args.verbose,
            notify_sinks=args.notify_sink,
            notify_mode=args.notify_mode,
        )
    if args.command == "rerun":
        from perennial.rerun import rerun

        return rerun(args.run, namespace=args.namespace, name=args.name, dry_run=args.dry_run)
    if args.command == "local":
        return _local(args)
    if args.command == "demo":
        return _demo(args)
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _local(args: argparse.Namespace) -> int:
    import logging

    from perennial.local.clock import ScaledClock, SystemClock
    from perennial.local.manifests import ManifestError
    from perennial.local.runner import Runner
    from perennial.local.store import StateError

    if args.interval <= 0:
        print("perennial local: --interval must be a positive number of seconds", file=sys.stderr)
        return 2
    if not args.speed > 0 or args.speed == float("inf"):
        print(
            "perennial local: --speed must be a positive number (e.g. 60: a minute per second)",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print("perennial local: --port must be between 0 and 65535", file=sys.stderr)
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    clock = SystemClock() if args.speed == 1 else ScaledClock(args.speed)
    runner = Runner(args.manifests, args.state_dir, port=args.port, clock=clock)
    try:
        runner.start()
    except (ManifestError, StateError) as exc:
        print(f"perennial local: {exc}", file=sys.stderr)
        return 2
    try:
        announced: set[str] = set()

        def show_endpoints(current: Runner) -> None:
            for (namespace, name), endpoint in current.ctx.endpoints.items():
                if endpoint.url not in announced:
                    announced.add(endpoint.url)
                    logging.getLogger("perennial.local").info(
                        "stable endpoint of md/%s (namespace %s): %s", name, namespace, endpoint.url
                    )

        runner.run_forever(interval=args.interval, on_tick=show_endpoints)
    finally:
        runner.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from perennial.local.demo.scenario import DemoSettings, run_demo

    if args.speed <= 0:
        print("perennial demo: --speed must be a positive number", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print("perennial demo: --port must be between 0 and 65535", file=sys.stderr)
        return 2
    settings = DemoSettings.quick(args.workdir) if args.quick else DemoSettings(args.workdir)
    settings = replace(settings, port=args.port, speed=args.speed, plot=not args.no_plot)
    result = run_demo(settings)
    return 0 if result.passed else 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
