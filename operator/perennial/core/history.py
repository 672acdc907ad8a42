"""History limits: which finished runs may be pruned?"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

FINISHED_OK = frozenset({"Succeeded", "Rejected"})
FINISHED_FAILED = frozenset({"Failed"})


@dataclass(frozen=True)
class RunRecord:
    name: str
    phase: str | None
    finished: datetime | None
    sequence: int = 0


def runs_to_prune(
    runs: Sequence[RunRecord],
    successful_limit: int,
    failed_limit: int,
    protected: Collection[str] = (),
) -> list[str]:
    """Oldest finished runs beyond the limits; never a protected run (the champion, a
    run some deployment serves or may roll back to) and never an unfinished run."""
    doomed: list[str] = []
    for phases, limit in ((FINISHED_OK, successful_limit), (FINISHED_FAILED, failed_limit)):
        finished = [r for r in runs if r.phase in phases]
        finished.sort(key=lambda r: (r.finished is not None, r.finished, r.sequence), reverse=True)
        kept = 0
        for run in finished:
            if run.name in protected:
                continue
            if kept < limit:
                kept += 1
                continue
            doomed.append(run.name)
    return sorted(doomed)
