"""What the demo saw, summed up: runs, rollouts, live accuracy per phase, the checks.

Pure functions over what the scenario recorded (traffic batches, events, the runs'
objects), so the summary and its numbers are testable without running the demo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from perennial.local.demo.traffic import BatchRecord, Totals

ROLLOUT_END = {"RolloutSucceeded": "Succeeded", "RolledBack": "RolledBack"}


@dataclass(frozen=True)
class TimedEvent:
    time: float  # seconds of the demo's clock since it started
    kind: str
    name: str
    reason: str
    message: str
    type: str
    target: str | None = None  # rollout events: the run rolled out


@dataclass(frozen=True)
class Rollout:
    target: str
    started: float
    ended: float | None
    result: str  # Succeeded, RolledBack, InProgress
    requests: int
    failed: int


@dataclass(frozen=True)
class PhaseStat:
    phase: str
    start: float
    end: float
    rows: int
    accuracy: float | None
    baseline: float | None
    requests: int
    failed: int


@dataclass(frozen=True)
class RunRow:
    name: str
    trigger: str
    also: str  # triggers coalesced into the run
    phase: str
    candidate: float | None
    champion: float | None
    gates: str
    served: bool


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def traffic_between(
    records: Sequence[BatchRecord], start: float, end: float | None
) -> tuple[int, int]:
    """(requests, failed requests) of the batches sent between ``start`` and ``end``."""
    chosen = [r for r in records if r.time >= start and (end is None or r.time <= end)]
    return sum(r.requests for r in chosen), sum(r.failed for r in chosen)


def rollouts(events: Sequence[TimedEvent], records: Sequence[BatchRecord]) -> list[Rollout]:
    """Every rollout (start to success or rollback) with the traffic it saw."""
    out: list[Rollout] = []
    open_: dict[str, float] = {}
    for event in events:
        if event.kind != "ModelDeployment" or event.target is None:
            continue
        if event.reason in ("RolloutStarted", "ManualRollback"):
            open_[event.target] = event.time
        elif event.reason in ROLLOUT_END and event.target in open_:
            started = open_.pop(event.target)
            requests, failed = traffic_between(records, started, event.time)
            out.append(
                Rollout(
                    event.target, started, event.time, ROLLOUT_END[event.reason], requests, failed
                )
            )
    for target, started in open_.items():
        requests, failed = traffic_between(records, started, None)
        out.append(Rollout(target, started, None, "InProgress", requests, failed))
    return sorted(out, key=lambda r: r.started)


def phase_stats(records: Sequence[BatchRecord]) -> list[PhaseStat]:
    """Live accuracy per phase: served model vs the never-retrained baseline."""
    order: list[str] = []
    groups: dict[str, list[BatchRecord]] = {}
    for record in records:
        if record.phase not in groups:
            order.append(record.phase)
            groups[record.phase] = []
        groups[record.phase].append(record)
    out = []
    for phase in order:
        batch = groups[phase]
        answered = [r for r in batch if r.run is not None]
        rows = sum(r.rows for r in answered)
        based = [r for r in batch if r.baseline_correct is not None]
        base_rows = sum(r.rows for r in based)
        out.append(
            PhaseStat(
                phase=phase,
                start=batch[0].time,
                end=batch[-1].time,
                rows=sum(r.rows for r in batch),
                accuracy=sum(r.correct for r in answered) / rows if rows else None,
                baseline=sum(r.baseline_correct or 0 for r in based) / base_rows
                if base_rows
                else None,
                requests=sum(r.requests for r in batch),
                failed=sum(r.failed for r in batch),
            )
        )
    return out


def _coalesced(reason: str) -> str:
    marker = "coalesced into this run: "
    if marker not in reason:
        return ""
    tail = reason.split(marker, 1)[1]
    names = [part.split(":", 1)[0].strip() for part in tail.split("; ")]
    return ", ".join(n for n in names if n)


def run_rows(runs: Sequence[Mapping[str, Any]], served: set[str]) -> list[RunRow]:
    out = []
    for body in sorted(runs, key=lambda b: str(b["metadata"]["name"])):
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        trigger = spec.get("trigger") or {}
        primary = status.get("primaryMetric") or {}
        gates = status.get("gates") or []
        failed = [g["name"] for g in gates if not g.get("passed")]
        if failed:
            verdict = "failed: " + ", ".join(failed)
        elif gates:
            skipped = sum(1 for g in gates if g.get("skipped"))
            verdict = f"{len(gates)} passed" + (f" ({skipped} skipped)" if skipped else "")
        else:
            verdict = status.get("reason") or "-"
        out.append(
            RunRow(
                name=str(body["metadata"]["name"]),
                trigger=str(trigger.get("type") or "?"),
                also=_coalesced(str(trigger.get("reason") or "")),
                phase=str(status.get("phase") or "Pending"),
                candidate=primary.get("candidate"),
                champion=primary.get("champion"),
                gates=verdict,
                served=str(body["metadata"]["name"]) in served,
            )
        )
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([line, rule, *body])


def render(
    *,
    runs: Sequence[RunRow],
    rollout_list: Sequence[Rollout],
    phases: Sequence[PhaseStat],
    totals: Totals,
    checks: Sequence[Check],
) -> str:
    """The summary as plain text (tables, then the checks)."""
    parts = ["Runs (kubectl get tr)"]
    parts.append(
        table(
            ["RUN", "TRIGGER", "ALSO DUE", "PHASE", "ACCURACY", "CHAMPION*", "GATES", "SERVED"],
            [
                [
                    r.name,
                    r.trigger,
                    r.also or "-",
                    r.phase,
                    _fmt(r.candidate),
                    _fmt(r.champion),
                    r.gates,
                    "yes" if r.served else "no",
                ]
                for r in runs
            ],
        )
    )
    parts.append("* the champion re-scored on the candidate's holdout")
    parts.append("")
    parts.append("Rollouts (requests sent through the stable endpoint meanwhile)")
    parts.append(
        table(
            ["MODEL", "RESULT", "FROM (min)", "TO (min)", "REQUESTS", "FAILED"],
            [
                [
                    r.target,
                    r.result,
                    f"{r.started / 60:.1f}",
                    "-" if r.ended is None else f"{r.ended / 60:.1f}",
                    str(r.requests),
                    str(r.failed),
                ]
                for r in rollout_list
            ],
        )
    )
    parts.append("")
    parts.append("Live accuracy per phase (ground truth from the feedback)")
    parts.append(
        table(
            ["PHASE", "ROWS", "SERVED MODEL", "NEVER RETRAINED", "REQUESTS", "FAILED"],
            [
                [
                    p.phase,
                    str(p.rows),
                    _fmt(p.accuracy),
                    _fmt(p.baseline),
                    str(p.requests),
                    str(p.failed),
                ]
                for p in phases
            ],
        )
    )
    parts.append("")
    parts.append(
        f"Traffic: {totals.requests} requests ({totals.rows} rows), {totals.failed} failed."
    )
    parts.append("")
    parts.append("Expected outcomes")
    for check in checks:
        mark = "PASS" if check.passed else "FAIL"
        parts.append(f"  [{mark}] {check.name}: {check.detail}")
    return "\n".join(parts)


def to_json(
    *,
    runs: Sequence[RunRow],
    rollout_list: Sequence[Rollout],
    phases: Sequence[PhaseStat],
    totals: Totals,
    checks: Sequence[Check],
) -> str:
    return json.dumps(
        {
            "runs": [asdict(r) for r in runs],
            "rollouts": [asdict(r) for r in rollout_list],
            "phases": [asdict(p) for p in phases],
            "traffic": asdict(totals),
            "checks": [asdict(c) for c in checks],
            "passed": all(c.passed for c in checks),
        },
        indent=2,
    )
