"""Figures from a ``make rollouts`` run, and its two sections of docs/reliability.md."""

from __future__ import annotations

import argparse
import os
import platform
from collections import Counter
from pathlib import Path
from typing import Any

from bench.chaos.report import HEADER, replace_section

ROLLOUTS_BEGIN = "<!-- begin: rollouts under load -->"
ROLLOUTS_END = "<!-- end: rollouts under load -->"
SOAK_BEGIN = "<!-- begin: server soak -->"
SOAK_END = "<!-- end: server soak -->"
WARM_UP_SECONDS = 60.0
# "Flat": the server's RSS at the end is within this of its RSS after the warm-up.
RSS_FLAT_MIB = 8.0
WINDOW_MARGIN = (0.5, 2.0)  # seconds before the first and after the last rollout event


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figures(records: list[list[Any]]) -> dict[str, Any]:
    latencies = [r[1] for r in records]
    failed = [r for r in records if not 200 <= r[2] < 300]
    return {
        "requests": len(records),
        "failed": len(failed),
        "failures": dict(Counter(str(r[2]) for r in failed)),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }


def _field(result: Any, name: str) -> Any:
    return result[name] if isinstance(result, dict) else getattr(result, name)


def summarize(result: Any) -> dict[str, Any]:
    """Plain figures (JSON) from a :class:`bench.rollouts.run.Result` or its JSON form."""
    requests = _field(result, "requests")
    stages_out = []
    stages = list(_field(result, "stages"))
    for index, stage in enumerate(stages):
        st = stage if isinstance(stage, dict) else stage.__dict__
        end = _field(stages[index + 1], "action") if index + 1 < len(stages) else float("inf")
        during = [r for r in requests if st["action"] <= r[0] < end]
        window = st["window"]
        in_window: list[list[Any]] = []
        if window:
            lo, hi = window[0] - WINDOW_MARGIN[0], window[1] + WINDOW_MARGIN[1]
            in_window = [r for r in requests if lo <= r[0] <= hi]
        stages_out.append(
            {
                "name": st["name"],
                "before": st["before"],
                "after": st["after"],
                "expected": st["expected"],
                "error": st["error"],
                "events": [e[1] for e in st["events"]],
                "switch_seconds": (window[1] - window[0]) if window else None,
                "stage": _figures(during),
                "switch": _figures(in_window),
                "served": dict(Counter(str(r[4]) for r in during if r[4])),
            }
        )
    span = (requests[-1][0] - requests[0][0]) if len(requests) > 1 else 0.0
    summary: dict[str, Any] = {
        "seed": _field(result, "seed"),
        "rate": _field(result, "rate"),
        "batch_share": _field(result, "batch_share"),
        "batch_rows": _field(result, "batch_rows"),
        "seconds": _field(result, "seconds"),
        "finished_at": _field(result, "finished_at"),
        "load_after": _field(result, "load_after"),
        "overall": _figures(requests),
        "by_kind": {k: _figures([r for r in requests if r[3] == k]) for k in ("single", "batch")},
        "sent_rate": len(requests) / span if span else 0.0,
        "stages": stages_out,
        "served": dict(Counter(str(r[4]) for r in requests if r[4])),
    }
    summary["soak"] = _soak(result)
    return summary


def _soak(result: Any) -> dict[str, Any] | None:
    records = _field(result, "soak_requests")
    if not records:
        return None
    rss = [s if isinstance(s, dict) else s.__dict__ for s in _field(result, "soak_rss")]
    warm = next((s for s in rss if s["seconds"] >= WARM_UP_SECONDS), rss[0] if rss else None)
    start = records[0][0]
    minutes: dict[int, list[list[Any]]] = {}
    for r in records:
        if r[3] != "feedback":
            minutes.setdefault(int((r[0] - start) // 60), []).append(r)
    per_minute = [_figures(minutes[m])["p99_ms"] for m in sorted(minutes)]
    predictions = [r for r in records if r[3] != "feedback"]
    return {
        "rate": _field(result, "soak_rate"),
        "minutes": _field(result, "soak_minutes"),
        "server": _field(result, "soak_server"),
        "predictions": _figures(predictions),
        "feedback": _figures([r for r in records if r[3] == "feedback"]),
        "rss_first_mib": rss[0]["rss_mib"] if rss else None,
        "rss_warm_mib": warm["rss_mib"] if warm else None,
        "rss_end_mib": rss[-1]["rss_mib"] if rss else None,
        "rss_max_mib": max(s["rss_mib"] for s in rss) if rss else None,
        "rss_samples": len(rss),
        "p99_per_minute_ms": per_minute,
    }


def passed(summary: dict[str, Any]) -> bool:
    stages_ok = all(s["after"] == s["expected"] and not s["error"] for s in summary["stages"])
    soak = summary["soak"]
    soak_ok = soak is None or (
        soak["predictions"]["failed"] == 0
        and soak["feedback"]["failed"] == 0
        and soak["rss_end_mib"] is not None
        and soak["rss_end_mib"] - soak["rss_warm_mib"] <= RSS_FLAT_MIB
    )
    return summary["overall"]["failed"] == 0 and stages_ok and soak_ok


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _stamp(summary: dict[str, Any]) -> str:
    load = summary.get("load_after")
    return (
        f"{summary.get('finished_at') or 'an unrecorded time'}; {os.cpu_count()} cores "
        f"(shared), Linux {platform.release()}, Python {platform.python_version()}; the run "
        f"took {summary['seconds'] / 60:.1f} min"
        + (f" (load average after {load:.2f})" if load is not None else "")
    )


def render_rollouts(summary: dict[str, Any], args: argparse.Namespace) -> str:
    o = summary["overall"]
    lines = [
        ROLLOUTS_BEGIN,
        "## Rollouts under load (`make rollouts`)",
        "",
        f"Generated by `make rollouts` (`python -m bench.rollouts --seed {summary['seed']} "
        f"--rate {summary['rate']:g} --canary-pause {args.canary_pause}`, `bench/rollouts/`) "
        f"on {_stamp(summary)}.",
        "",
        "`perennial local` (real trainer and model-server processes; the stable endpoint, a "
        "reverse proxy on loopback, in front) serves a breast_cancer LogisticRegression. A "
        "load generator in its own process sends requests to the stable endpoint at "
        f"{summary['rate']:g}/s, open loop (seeded Poisson arrivals; latency counted from the "
        "instant a request was due), "
        f"{summary['batch_share']:.0%} of them batches of {summary['batch_rows']} rows, the "
        "rest single rows, while the manifest is edited as a user would: a retrain rolled "
        "out with RollingUpdate; one rolled out as a canary (25%, 50%, 100%); one whose model "
        "is broken after blessing (its smoke test fails, so its server is refused and never "
        "becomes ready: the automatic rollback, at the latest on the "
        f"{_progress()} s progress deadline); then `spec.rollbackTo` (the manual rollback). "
        "A request failed when it got no answer or any answer but 2xx. "
        "The switch is the span from the stage's first to its last rollout event "
        f"(-{WINDOW_MARGIN[0]:g} s / +{WINDOW_MARGIN[1]:g} s); a stage also holds the "
        "training of its new model, on the same cores.",
        "",
        "| stage | serving before -> after | requests (switch) | failed | p99 stage | "
        "p99 switch | switch |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary["stages"]:
        note = f" (ERROR: {s['error']})" if s["error"] else ""
        if s["after"] != s["expected"]:
            note += f" (expected {s['expected']})"
        switch = f"{s['switch_seconds']:.1f} s" if s["switch_seconds"] is not None else "n/a"
        lines.append(
            f"| {s['name']}{note} | {s['before']} -> {s['after']} | {s['stage']['requests']} "
            f"({s['switch']['requests']}) | {s['stage']['failed']} | {_ms(s['stage']['p99_ms'])}"
            f" | {_ms(s['switch']['p99_ms'])} | {switch} |"
        )
    single, batch = summary["by_kind"]["single"], summary["by_kind"]["batch"]
    served = ", ".join(f"{run} {count}" for run, count in sorted(summary["served"].items()))
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent (achieved rate) | {o['requests']} ({summary['sent_rate']:.0f}/s) |",
        f"| failed requests | {o['failed']}"
        + (f" ({o['failures']})" if o["failures"] else "")
        + " |",
        f"| p50 / p99, whole run | {_ms(o['p50_ms'])} / {_ms(o['p99_ms'])} |",
        f"| p99 single row / batch | {_ms(single['p99_ms'])} / {_ms(batch['p99_ms'])} |",
        f"| answers by model | {served} |",
        "",
        ROLLOUTS_END,
    ]
    return "\n".join(lines) + "\n"


def _progress() -> int:
    from bench.rollouts.scenario import PROGRESS_DEADLINE_SECONDS

    return PROGRESS_DEADLINE_SECONDS


def render_soak(summary: dict[str, Any], args: argparse.Namespace) -> str:
    soak = summary["soak"]
    lines = [SOAK_BEGIN, "## Server soak (`make rollouts`)", ""]
    if soak is None:
        lines += ["Not run (`--soak-minutes 0`).", "", SOAK_END]
        return "\n".join(lines) + "\n"
    p, f = soak["predictions"], soak["feedback"]
    drift = soak["p99_per_minute_ms"]
    grown = soak["rss_end_mib"] - soak["rss_warm_mib"]
    lines += [
        f"Same run, after the rollouts: the server of `{soak['server']}` for "
        f"{soak['minutes']:g} min at {soak['rate']:g} predictions/s (same mix), each answered "
        "prediction's labels sent to `/feedback` by its ids, pinned to that server. RSS of the "
        f'server process every 10 s; "after warm-up" is the first sample after '
        f"{WARM_UP_SECONDS:.0f} s; flat means the end is within {RSS_FLAT_MIB:g} MiB of it.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| predictions / failed | {p['requests']} / {p['failed']} |",
        f"| feedback requests / failed | {f['requests']} / {f['failed']} |",
        f"| RSS first / after warm-up / end / max | {soak['rss_first_mib']:.1f} / "
        f"{soak['rss_warm_mib']:.1f} / {soak['rss_end_mib']:.1f} / {soak['rss_max_mib']:.1f} MiB"
        f" |",
        f"| RSS growth after warm-up | {grown:+.1f} MiB "
        f"({'flat' if grown <= RSS_FLAT_MIB else 'NOT flat'}) |",
        f"| prediction p50 / p99, whole soak | {_ms(p['p50_ms'])} / {_ms(p['p99_ms'])} |",
        "| p99 per minute | " + ", ".join(f"{v:.1f}" for v in drift if v is not None) + " ms |",
        "| p99 drift, last minute vs first | "
        + (f"{drift[-1] - drift[0]:+.1f} ms |" if len(drift) > 1 else "n/a |"),
        "",
        SOAK_END,
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, summary: dict[str, Any], args: argparse.Namespace) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    text = replace_section(text, ROLLOUTS_BEGIN, ROLLOUTS_END, render_rollouts(summary, args))
    text = replace_section(text, SOAK_BEGIN, SOAK_END, render_soak(summary, args))
    path.write_text(text, encoding="utf-8")
