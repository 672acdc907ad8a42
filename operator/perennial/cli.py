"""`python -m perennial`: run the operator, render CRDs, print the version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
    sub.add_parser("demo", help="run the local continuous-training demo")
    return parser


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
        )
    if args.command == "rerun":
        from perennial.rerun import rerun

        return rerun(args.run, namespace=args.namespace, name=args.name, dry_run=args.dry_run)
    if args.command == "demo":
        print(
            "perennial demo: not yet implemented (the local runner lands with the demo issue)",
            file=sys.stderr,
        )
        return 2
    raise AssertionError(f"unhandled command {args.command}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
