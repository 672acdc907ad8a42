"""``perennial run`` as the chaos suite starts it: the operator in its own process (so that
SIGKILL is a real crash), on a clock the suite moves.

``python -m bench.chaos.operator_process CLOCK_FILE [perennial run options...]``: the
operator's clock is a :class:`~perennial.controllers.clock.ManualClock` set to the ISO time
in ``CLOCK_FILE`` and moved whenever the suite rewrites it (a thread polls the file), so
schedules and poll intervals fire when the scenario says, and a restarted operator sees the
same time its predecessor saw. ``PERENNIAL_CHAOS_READ_TIMEOUT`` (seconds) shortens the API
client's read timeout for the fault suite (:mod:`bench.chaos.faults`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from perennial import cli
from perennial.controllers import clock

POLL_SECONDS = 0.02


def read_clock(path: Path) -> datetime:
    return datetime.fromisoformat(path.read_text().strip())


def follow(path: Path, manual: clock.ManualClock) -> None:
    last = path.read_text()
    while True:
        time.sleep(POLL_SECONDS)
        text = path.read_text()
        if text.strip() and text != last:
            last = text
            manual.set(datetime.fromisoformat(text.strip()))


def main(argv: list[str]) -> int:
    timeout = os.environ.get("PERENNIAL_CHAOS_READ_TIMEOUT")
    if timeout:  # the fault suite answers some requests after this, to see them retried
        from perennial.k8s import client

        client.REQUEST_TIMEOUT = (client.REQUEST_TIMEOUT[0], float(timeout))  # type: ignore[misc]
    path = Path(argv[0])
    manual = clock.ManualClock(read_clock(path))
    clock.set_clock(manual)
    threading.Thread(target=follow, args=(path, manual), daemon=True).start()
    return cli.main(["run", "--liveness=", "--metrics-port=0", *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
