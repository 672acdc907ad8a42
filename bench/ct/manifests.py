"""One TrainingPipeline + ModelDeployment pair per configuration, all reading the same
data file: the ordinary YAML a user gives ``perennial local``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from bench.ct.configs import Config
from bench.ct.streams import FEATURES, TARGET


def slug(config: Config) -> str:
    """The objects' name: ``ct-`` and the configuration's name in DNS-label form."""
    return "ct-" + re.sub(r"[^a-z0-9]+", "-", config.name.lower()).strip("-")


def _triggers(config: Config, deployment: str) -> dict[str, Any]:
    text = json.dumps(config.triggers).replace("{deployment}", deployment)
    triggers: dict[str, Any] = json.loads(text)
    return triggers


def objects(
    config: Config, data: Path, *, trees: int, feedback_window: int, drift_window: int
) -> list[dict[str, Any]]:
    name = slug(config)
    pipeline = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": name, "annotations": {"bench.perennial.dev/config": config.name}},
        "spec": {
            "data": {
                "uri": f"file://{data.resolve()}",
                "target": TARGET,
                "columns": [{"name": f, "type": "numeric"} for f in FEATURES],
            },
            "model": {
                "task": "classification",
                "estimator": "RandomForestClassifier",
                "params": {"n_estimators": trees, "max_depth": 10, "n_jobs": 1},
            },
            "evaluation": {"testSize": 0.25, "seed": 7, "primaryMetric": "accuracy"},
            "gates": {
                "metrics": [{"metric": "accuracy", "threshold": 0.7}],
                "beatChampion": {"enabled": True, "minDelta": 0.0},
                "data": {"minRows": 100},
            },
            "triggers": _triggers(config, name),
            "artifacts": {
                "uri": f"file:///artifacts/{name}",
                "volume": {"claimName": "ct-artifacts", "mountPath": "/artifacts"},
            },
            # the runner's clock runs --speed times faster, deadlines included: give a
            # trainer on a busy machine (real) minutes
            "runTemplate": {"activeDeadlineSeconds": 2_000_000},
            "concurrencyPolicy": "Forbid",
        },
    }
    deployment = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "source": {"pipelineRef": {"name": name}},
            "replicas": 1,
            "progressDeadlineSeconds": 600_000,
            "strategy": {"type": "RollingUpdate"},
            "rollback": {"automatic": True},
            "monitoring": {
                "scrapeIntervalSeconds": 60,
                "driftWindow": drift_window,
                "feedbackWindow": feedback_window,
                "minSamples": min(200, drift_window),
            },
        },
    }
    return [pipeline, deployment]


def write(path: Path, configs: list[Config], data: Path, **sizes: int) -> Path:
    docs = [obj for config in configs for obj in objects(config, data, **sizes)]
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `make bench-ct`: a pipeline and deployment per configuration.\n"
    path.write_text(header + yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path
