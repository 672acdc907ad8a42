"""The trigger configurations the benchmark compares: one entry each, as the YAML a user
writes under ``spec.triggers`` (``{deployment}`` is the deployment's name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perennial.api.pipeline import PerformanceDecayTrigger

COOLDOWN = 900  # seconds of the simulated clock: half a window


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    triggers: dict[str, Any]
    needs: tuple[str, ...] = ()  # performanceDecay fields the API must have

    def supported(self) -> bool:
        aliases = {f.alias or n for n, f in PerformanceDecayTrigger.model_fields.items()}
        return all(field in aliases for field in self.needs)


def _decay(**fields: Any) -> dict[str, Any]:
    return {
        "deploymentRef": {"name": "{deployment}"},
        "metric": "accuracy",
        "minFeedbackSamples": 200,
        "cooldownSeconds": COOLDOWN,
        **fields,
    }


_DRIFT = {"deploymentRef": {"name": "{deployment}"}, "threshold": 0.2, "cooldownSeconds": COOLDOWN}
_OFF = {"dataChange": {"enabled": False}}

CONFIGS: tuple[Config, ...] = (
    Config("never retrained", "the first model serves throughout (the floor)", {**_OFF}),
    Config(
        "schedule", "cron every 12 simulated hours", {**_OFF, "schedule": {"cron": "0 */12 * * *"}}
    ),
    Config(
        "dataChange",
        "retrain on every new data file",
        {"dataChange": {"enabled": True, "pollIntervalSeconds": 300}},
    ),
    Config(
        "decay < 0.80",
        "absolute: live accuracy below 0.80",
        {**_OFF, "performanceDecay": _decay(threshold=0.8)},
    ),
    Config(
        "decay maxDrop 0.05",
        "relative: live accuracy below holdout - 0.05",
        {**_OFF, "performanceDecay": _decay(maxDrop=0.05)},
        needs=("maxDrop",),
    ),
    Config(
        "decay maxDrop 0.05, confidence 0.95",
        "relative, when the 95% Wilson upper bound is below holdout - 0.05",
        {**_OFF, "performanceDecay": _decay(maxDrop=0.05, confidence=0.95)},
        needs=("maxDrop", "confidence"),
    ),
    Config("drift", "input drift PSI >= 0.2", {**_OFF, "drift": _DRIFT}),
    Config(
        "drift + decay < 0.80",
        "drift PSI >= 0.2, or live accuracy below 0.80",
        {**_OFF, "drift": _DRIFT, "performanceDecay": _decay(threshold=0.8)},
    ),
    Config(
        "drift + decay maxDrop 0.05",
        "drift PSI >= 0.2, or live accuracy below holdout - 0.05",
        {**_OFF, "drift": _DRIFT, "performanceDecay": _decay(maxDrop=0.05)},
        needs=("maxDrop",),
    ),
)

QUICK = ("never retrained", "dataChange")


def by_name(names: list[str] | tuple[str, ...]) -> list[Config]:
    known = {c.name: c for c in CONFIGS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]
