"""``python -m bench.operator.traced run ...``: the operator (``perennial run``) under
tracemalloc, for ``python -m bench.operator --tracemalloc``: where its memory goes.

On SIGUSR1 it writes the live Python allocations, largest first, by file and by line, to
the path in ``PERENNIAL_TRACEMALLOC_OUT`` (after a full garbage collection). tracemalloc
slows every allocation and keeps a record of each: CPU and RSS under it are not the
operator's, only the split of its Python heap is.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

TOP = 40
OUT_ENV = "PERENNIAL_TRACEMALLOC_OUT"


def dump(path: Path) -> None:
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"traced: {current / 2**20:.1f} MiB now, {peak / 2**20:.1f} MiB at peak"]
    for key in ("filename", "lineno"):
        lines.append(f"\nlargest by {key} (MiB, blocks, where):")
        for stat in snapshot.statistics(key)[:TOP]:
            lines.append(f"{stat.size / 2**20:8.2f} {stat.count:9d}  {stat.traceback}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)  # the benchmark waits for the file: never show it half written


def main() -> int:
    tracemalloc.start()
    out = Path(os.environ[OUT_ENV])

    def on_signal(signum: int, frame: FrameType | None) -> None:
        dump(out)

    signal.signal(signal.SIGUSR1, on_signal)
    from perennial.cli import main as perennial

    return perennial(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
