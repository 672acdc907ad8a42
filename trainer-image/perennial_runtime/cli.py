"""`perennial-runtime train` (inside the training Job) and `perennial-runtime serve`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: perennial-runtime {train,serve,version} [options]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "train":
        from perennial_runtime.training.trainer import main as train_main

        return train_main(rest)
    if command == "serve":
        from perennial_runtime.serve import main as serve_main

        return serve_main(rest)
    if command == "version":
        from perennial_runtime import __version__

        print(f"perennial-runtime {__version__}")
        return 0
    print(f"perennial-runtime: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
