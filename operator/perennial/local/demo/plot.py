"""The demo's picture: live accuracy over time, retrain and rollback markers, and the
accuracy the first model would have had had it never been retrained."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from perennial.local.demo.report import PhaseStat, RunRow, TimedEvent
from perennial.local.demo.traffic import BatchRecord

SMOOTH_ROWS = 200
GAP_MINUTES = 1.0  # no traffic for longer than this (a jump of the clock): break the line
CHAPTERS = {
    "1": "1 v1 serves",
    "2": "2 drift, retrain, v2",
    "3": "3 corrupted labels",
    "4": "4 shift, broken v4",
    "5": "5 v5",
}


def rolling(records: Sequence[BatchRecord], baseline: bool) -> tuple[list[float], list[float]]:
    """(minutes, accuracy over the last SMOOTH_ROWS rows) per batch; NaN breaks gaps."""
    xs: list[float] = []
    ys: list[float] = []
    window: list[tuple[int, int]] = []
    rows = 0
    for record in records:
        correct = record.baseline_correct if baseline else record.correct
        if correct is None or (not baseline and record.run is None):
            continue
        minute = record.time / 60
        if xs and minute - xs[-1] > GAP_MINUTES:
            xs.append(math.nan)
            ys.append(math.nan)
        window.append((record.rows, correct))
        rows += record.rows
        while rows - window[0][0] >= SMOOTH_ROWS:
            rows -= window.pop(0)[0]
        xs.append(minute)
        ys.append(sum(c for _, c in window) / rows)
    return xs, ys


def chapters(phases: Sequence[PhaseStat]) -> list[tuple[str, float, float]]:
    """(label, start, end) in minutes per chapter (phases are named "<n> ...")."""
    out: list[tuple[str, float, float]] = []
    for phase in phases:
        key = phase.phase.split(" ", 1)[0]
        label = CHAPTERS.get(key, phase.phase)
        if out and out[-1][0] == label:
            out[-1] = (label, out[-1][1], phase.end / 60)
        else:
            out.append((label, phase.start / 60, phase.end / 60))
    return out


def draw(
    path: Path,
    *,
    records: Sequence[BatchRecord],
    events: Sequence[TimedEvent],
    runs: Sequence[RunRow],
    phases: Sequence[PhaseStat],
    jumps: Sequence[tuple[float, float]] = (),
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    for index, (label, start, end) in enumerate(chapters(phases)):
        ax.axvspan(start, end, color="0.93" if index % 2 else "0.97", zorder=0)
        height = 0.03 if index % 2 == 0 else 0.08
        ax.text((start + end) / 2, height, label, ha="center", va="bottom", fontsize=8, color="0.3")
    for before, after in jumps:
        if after - before < 5 * 60:
            continue  # a short jump (the next poll): nothing to see
        ax.axvspan(
            before / 60, after / 60, facecolor="none", hatch="//", edgecolor="0.85", zorder=1
        )
        ax.text(
            (before + after) / 120,
            0.5,
            f"clock jumps\n+{(after - before) / 60:.0f} min",
            ha="center",
            va="center",
            fontsize=7,
            color="0.5",
        )
    xs, ys = rolling(records, baseline=False)
    ax.plot(xs, ys, color="tab:blue", lw=2, label="live accuracy of the served model")
    bx, by = rolling(records, baseline=True)
    ax.plot(bx, by, color="tab:gray", lw=1.5, ls="--", label="never retrained (the first model)")
    trigger = {r.name: r.trigger for r in runs}
    labelled: set[str] = set()

    def once(label: str) -> str | None:
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for event in events:
        x = event.time / 60
        if event.kind == "TrainingRun" and event.reason == "RunCreated":
            ax.axvline(x, color="tab:purple", ls=":", lw=1.2, label=once("retrain started"))
            ax.text(
                x,
                1.09,
                f" v{int(event.name.rsplit('-', 1)[-1])}: {trigger.get(event.name, '')}",
                rotation=90,
                fontsize=7,
                va="top",
                ha="right",
                color="tab:purple",
            )
        elif event.kind == "TrainingRun" and event.reason == "ModelRejected":
            ax.plot(
                [x],
                [0.97],
                marker="X",
                color="tab:orange",
                ms=11,
                ls="none",
                label=once("candidate rejected by the gates"),
            )
        elif event.kind == "ModelDeployment" and event.reason == "RolloutSucceeded":
            ax.axvline(x, color="tab:green", lw=1.5, label=once("rollout succeeded"))
        elif event.kind == "ModelDeployment" and event.reason == "RolledBack":
            ax.axvline(x, color="tab:red", lw=2.5, label=once("rolled back automatically"))
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("time on the demo's clock (minutes)")
    ax.set_ylabel(f"accuracy (last {SMOOTH_ROWS} rows, from feedback)")
    ax.set_title("Perennial local demo: continuous training on a drifting stream")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 0.1), fontsize=8, framealpha=0.95)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
