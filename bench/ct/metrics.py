"""From what the driver saw to the benchmark's figures (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.ct.driver import StreamResult

RETRAIN_TRIGGERS = frozenset({"Schedule", "DataChange", "Drift", "PerformanceDecay"})


@dataclass(frozen=True)
class Summary:
    stream: str
    config: str
    accuracy: float  # mean over served windows of the served predictions' accuracy
    retrains: int  # runs started by a trigger (not the first model)
    rejected: int  # candidates the gates refused
    failed: int
    lag_windows: float | None  # mean, over the stream's abrupt changes, windows to serve
    lag_seconds: float | None  # the same in simulated seconds
    missed: int  # changes never followed by a model trained after them
    staleness: float  # mean age (windows) of the data behind the served model
    feedback_unknown: int  # labels the server that made the prediction no longer took


def summarise(result: StreamResult) -> list[Summary]:
    speed = result.settings.speed
    out = []
    for config in result.configs:
        records = sorted((r for r in result.records if r.config == config), key=lambda r: r.window)
        runs = [r for r in result.runs if r.config == config]
        trained_on = {r.name: r.data_window for r in runs}
        retrains = [r for r in runs if r.trigger in RETRAIN_TRIGGERS]
        accuracy = sum(r.accuracy for r in records) / len(records) if records else float("nan")
        staleness = (
            sum(r.window - trained_on.get(r.served_by, 0) for r in records) / len(records)
            if records
            else float("nan")
        )
        lags_w: list[float] = []
        lags_s: list[float] = []
        missed = 0
        for change in result.changes:
            fresh = [r for r in runs if r.data_window >= change]
            served = [
                rec.window
                for rec in records
                if rec.window >= change and trained_on.get(rec.served_by, -1) >= change
            ]
            if not served:
                missed += 1
                continue
            lags_w.append(served[0] - change)
            times = [
                result.serving_since[(config, r.name)]
                for r in fresh
                if (config, r.name) in result.serving_since
            ]
            if times:
                lags_s.append((min(times) - result.step_started[change]) * speed)
        out.append(
            Summary(
                stream=result.stream,
                config=config,
                accuracy=accuracy,
                retrains=len(retrains),
                rejected=sum(r.phase == "Rejected" for r in retrains),
                failed=sum(r.phase == "Failed" for r in retrains),
                lag_windows=sum(lags_w) / len(lags_w) if lags_w else None,
                lag_seconds=sum(lags_s) / len(lags_s) if lags_s else None,
                missed=missed,
                staleness=staleness,
                feedback_unknown=sum(r.feedback_unknown for r in records),
            )
        )
    return out
