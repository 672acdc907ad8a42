"""A catalogue of invalid objects: each is rejected by the model AND by the CRD (schema or
CEL, as an API server would), with an error that names the offending field."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from perennial import api
from perennial.api.common import (
    EMPTY_KEY_NEEDS_EXISTS,
    EXISTS_TAKES_NO_VALUE,
    TOLERATION_SECONDS_NEED_NO_EXECUTE,
)
from perennial.api.deployment import (
    CANARY_NEEDS_STEPS,
    EXACTLY_ONE_SOURCE,
    LAST_WEIGHT_IS_100,
    MIN_SAMPLES_WITHIN_WINDOW,
    PDB_ALLOWS_AN_EVICTION,
    WEIGHTS_INCREASE,
)
from perennial.api.object_names import (
    DEPLOYMENT_NAME_RULES,
    MAX_DEPLOYMENT_NAME,
    MAX_PIPELINE_NAME,
    MAX_RUN_NAME,
    PIPELINE_NAME_RULES,
    RUN_NAME_RULES,
)
from perennial.api.pipeline import (
    CRON_RULE,
    DECAY_MAX_DROP_IN_RANGE,
    DECAY_METRIC_SUITS_TASK,
    DECAY_ONE_LIMIT,
    DECAY_THRESHOLD_IN_RANGE,
)
from perennial.api.tracking import TRACKING_URI_RULE
from perennial.api.training import (
    BEAT_CHAMPION_METRIC_SUITS_TASK,
    ESTIMATOR_SUITS_TASK,
    GATE_ABSOLUTE_CHANGE_POSSIBLE,
    GATE_METRICS_SUIT_TASK,
    GATE_RELATIVE_CHANGE_POSSIBLE,
    GATE_THRESHOLD_IN_RANGE,
    PRIMARY_METRIC_SUITS_TASK,
    TOLERANCE_WITHIN_BOUNDS,
    URI_UNDER_MOUNT_PATH,
    VOLUME_NEEDS_FILE_URI,
)

from .crd_support import Error, api_server_errors

PIPELINE: dict[str, Any] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "TrainingPipeline",
    "metadata": {"name": "iris"},
    "spec": {
        "data": {
            "uri": "sklearn://iris",
            "target": "target",
            "columns": [{"name": "sepal length (cm)", "min": 0, "max": 10}],
        },
        "model": {"task": "classification", "estimator": "RandomForestClassifier"},
        "evaluation": {"testSize": 0.25, "primaryMetric": "accuracy"},
        "gates": {"metrics": [{"metric": "accuracy", "threshold": 0.9}]},
        "triggers": {
            "schedule": {"cron": "0 3 * * *"},
            "dataChange": {"enabled": True},
            "performanceDecay": {"deploymentRef": {"name": "iris"}, "threshold": 0.8},
        },
        "runTemplate": {"resources": {"requests": {"cpu": "250m"}}},
        "artifacts": {"uri": "file:///artifacts/iris", "volume": {"claimName": "models"}},
    },
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {
        "source": {"pipelineRef": {"name": "iris"}},
        "strategy": {
            "type": "Canary",
            "canary": {"steps": [{"weight": 10}, {"weight": 50}, {"weight": 100}]},
        },
    },
}
RUN: dict[str, Any] = {
    "apiVersion": "perennial.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "iris-00001"},
    "spec": {
        "pipelineRef": {"name": "iris"},
        "trigger": {"type": "Schedule", "reason": "schedule '0 3 * * *' due"},
        "pipelineSpec": {
            key: PIPELINE["spec"][key]
            for key in ("data", "model", "evaluation", "gates", "runTemplate", "artifacts")
        },
    },
}
BASES = {"TrainingPipeline": PIPELINE, "ModelDeployment": DEPLOYMENT, "TrainingRun": RUN}
MODELS: dict[str, type[BaseModel]] = {
    "TrainingPipeline": api.TrainingPipeline,
    "ModelDeployment": api.ModelDeployment,
    "TrainingRun": api.TrainingRun,
}
DELETE = object()
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(path: str) -> list[str | int]:
    return [int(i) if i else name for name, i in _PART.findall(path)]


def mutate(obj: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        *parents, last = _parts(path)
        node: Any = out
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return out


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    changes: dict[str, Any]
    field: str  # the field the error must name, e.g. spec.model.estimator
    message: str | None = None  # the CEL rule's message, when a rule (and its mirror) decides


CASES = [
    Case(
        "mlflow-tracking-uri-not-http",
        "TrainingPipeline",
        {"spec.tracking": {"mlflow": {"trackingUri": "file:///mlruns"}}},
        "spec.tracking.mlflow.trackingUri",
        TRACKING_URI_RULE.message,
    ),
    Case(
        "mlflow-tracking-uri-with-credentials",
        "TrainingPipeline",
        {"spec.tracking": {"mlflow": {"trackingUri": "https://user:secret@mlflow.example"}}},
        "spec.tracking.mlflow.trackingUri",
        TRACKING_URI_RULE.message,
    ),
    Case(
        "run-mlflow-tracking-uri-not-http",
        "TrainingRun",
        {"spec.pipelineSpec.tracking": {"mlflow": {"trackingUri": "mlflow:5000"}}},
        "spec.pipelineSpec.tracking.mlflow.trackingUri",
        TRACKING_URI_RULE.message,
    ),
    Case(
        "mlflow-without-tracking-uri",
        "TrainingPipeline",
        {"spec.tracking": {"mlflow": {"experimentName": "x"}}},
        "spec.tracking.mlflow.trackingUri",
    ),
    Case(
        "pipeline-name-too-long-for-its-run-names",
        "TrainingPipeline",
        {"metadata.name": "p" * (MAX_PIPELINE_NAME + 1)},
        "metadata.name",
        PIPELINE_NAME_RULES[0].rule.message,
    ),
    Case(
        "run-name-too-long-for-a-label",
        "TrainingRun",
        {"metadata.name": "r" * (MAX_RUN_NAME + 1)},
        "metadata.name",
        RUN_NAME_RULES[0].rule.message,
    ),
    Case(
        "deployment-name-too-long-for-its-service",
        "ModelDeployment",
        {"metadata.name": "d" * (MAX_DEPLOYMENT_NAME + 1)},
        "metadata.name",
        DEPLOYMENT_NAME_RULES[0].rule.message,
    ),
    Case(
        "deployment-name-starting-with-a-digit",
        "ModelDeployment",
        {"metadata.name": "1iris"},
        "metadata.name",
        DEPLOYMENT_NAME_RULES[1].rule.message,
    ),
    Case(
        "run-pipeline-ref-longer-than-a-pipeline-name",
        "TrainingRun",
        {"spec.pipelineRef.name": "p" * (MAX_PIPELINE_NAME + 1)},
        "spec.pipelineRef.name",
        "",
    ),
    Case(
        "deployment-pipeline-ref-longer-than-a-pipeline-name",
        "ModelDeployment",
        {"spec.source.pipelineRef.name": "p" * (MAX_PIPELINE_NAME + 1)},
        "spec.source.pipelineRef.name",
        "",
    ),
    Case(
        "deployment-run-ref-longer-than-a-label-value",
        "ModelDeployment",
        {"spec.source": {"runRef": {"name": "r" * (MAX_RUN_NAME + 1)}}},
        "spec.source.runRef.name",
        "",
    ),
    Case(
        "deployment-name-with-a-dot",
        "ModelDeployment",
        {"metadata.name": "iris.v2"},
        "metadata.name",
        DEPLOYMENT_NAME_RULES[1].rule.message,
    ),
    Case(
        "wrong-type",
        "TrainingPipeline",
        {"spec.evaluation.testSize": "a lot"},
        "spec.evaluation.testSize",
    ),
    Case(
        "unknown-estimator",
        "TrainingPipeline",
        {"spec.model.estimator": "SuperForest"},
        "spec.model.estimator",
    ),
    Case(
        "estimator-of-the-wrong-task",
        "TrainingPipeline",
        {"spec.model.estimator": "Ridge"},
        "spec.model.estimator",
        ESTIMATOR_SUITS_TASK.message,
    ),
    Case(
        "negative-test-size",
        "TrainingPipeline",
        {"spec.evaluation.testSize": -0.1},
        "spec.evaluation.testSize",
    ),
    Case(
        "test-size-1.5",
        "TrainingPipeline",
        {"spec.evaluation.testSize": 1.5},
        "spec.evaluation.testSize",
    ),
    Case(
        "cron-not-cron",
        "TrainingPipeline",
        {"spec.triggers.schedule.cron": "every day"},
        "spec.triggers.schedule.cron",
    ),
    Case(
        "cron-out-of-range",
        "TrainingPipeline",
        {"spec.triggers.schedule.cron": "61 * * * *"},
        "spec.triggers.schedule.cron",
        CRON_RULE.message,
    ),
    Case(
        "cron-four-fields",
        "TrainingPipeline",
        {"spec.triggers.schedule.cron": "0 3 * *"},
        "spec.triggers.schedule.cron",
    ),
    Case(
        "weights-not-increasing",
        "ModelDeployment",
        {"spec.strategy.canary.steps": [{"weight": 50}, {"weight": 20}, {"weight": 100}]},
        "spec.strategy.canary.steps",
        WEIGHTS_INCREASE.message,
    ),
    Case(
        "weights-not-reaching-100",
        "ModelDeployment",
        {"spec.strategy.canary.steps": [{"weight": 10}, {"weight": 50}]},
        "spec.strategy.canary.steps",
        LAST_WEIGHT_IS_100.message,
    ),
    Case(
        "both-pipeline-and-run",
        "ModelDeployment",
        {"spec.source.runRef": {"name": "iris-00001"}},
        "spec.source",
        EXACTLY_ONE_SOURCE.message,
    ),
    Case(
        "neither-pipeline-nor-run",
        "ModelDeployment",
        {"spec.source": {}},
        "spec.source",
        EXACTLY_ONE_SOURCE.message,
    ),
    Case(
        "unknown-field", "TrainingPipeline", {"spec.model.estimater": "SVC"}, "spec.model.estimater"
    ),
    Case("unknown-top-level-spec-field", "ModelDeployment", {"spec.replica": 3}, "spec.replica"),
    Case("negative-replicas", "ModelDeployment", {"spec.replicas": -1}, "spec.replicas"),
    Case("missing-target", "TrainingPipeline", {"spec.data.target": DELETE}, "spec.data.target"),
    Case("missing-artifacts", "TrainingPipeline", {"spec.artifacts": DELETE}, "spec.artifacts"),
    Case(
        "bad-metric-name",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "precision_at_k", "threshold": 0.5}]},
        "spec.gates.metrics[0].metric",
    ),
    Case(
        "canary-without-steps",
        "ModelDeployment",
        {"spec.strategy.canary": DELETE},
        "spec.strategy.canary",
        CANARY_NEEDS_STEPS.message,
    ),
    Case(
        "canary-empty-steps",
        "ModelDeployment",
        {"spec.strategy.canary.steps": []},
        "spec.strategy.canary.steps",
    ),
    Case(
        "canary-weight-0",
        "ModelDeployment",
        {"spec.strategy.canary.steps": [{"weight": 0}, {"weight": 100}]},
        "spec.strategy.canary.steps[0].weight",
    ),
    Case(
        "primary-metric-of-the-wrong-task",
        "TrainingPipeline",
        {"spec.evaluation.primaryMetric": "rmse"},
        "spec.evaluation.primaryMetric",
        PRIMARY_METRIC_SUITS_TASK.message,
    ),
    Case(
        "gate-metric-of-the-wrong-task",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "r2", "threshold": 0.5}]},
        "spec.gates.metrics",
        GATE_METRICS_SUIT_TASK.message,
    ),
    Case(
        "two-gates-on-one-metric",
        "TrainingPipeline",
        {
            "spec.gates.metrics": [
                {"metric": "f1", "threshold": 0.5},
                {"metric": "f1", "minAbsoluteChange": 0.01},
            ]
        },
        "spec.gates.metrics[1]",
    ),
    Case(
        "gate-without-a-limit",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "f1"}]},
        "spec.gates.metrics[0]",
        api.MetricGateSpec.cel_rules[0].message,
    ),
    Case(
        "decay-metric-of-the-wrong-task",
        "TrainingPipeline",
        {"spec.triggers.performanceDecay.metric": "rmse"},
        "spec.triggers.performanceDecay.metric",
        DECAY_METRIC_SUITS_TASK.message,
    ),
    Case(
        "decay-without-threshold-or-maxdrop",
        "TrainingPipeline",
        {"spec.triggers.performanceDecay.threshold": DELETE},
        "spec.triggers.performanceDecay",
        DECAY_ONE_LIMIT.message,
    ),
    Case(
        "poll-too-often",
        "TrainingPipeline",
        {"spec.triggers.dataChange.pollIntervalSeconds": 5},
        "spec.triggers.dataChange.pollIntervalSeconds",
    ),
    Case(
        "bad-quantity",
        "TrainingPipeline",
        {"spec.runTemplate.resources.requests.cpu": "lots"},
        "spec.runTemplate.resources.requests.cpu",
    ),
    Case(
        "backoff-limit-11",
        "TrainingPipeline",
        {"spec.runTemplate.backoffLimit": 11},
        "spec.runTemplate.backoffLimit",
    ),
    Case(
        "volume-with-s3",
        "TrainingPipeline",
        {"spec.artifacts.uri": "s3://bucket/iris"},
        "spec.artifacts.volume",
        VOLUME_NEEDS_FILE_URI.message,
    ),
    Case(
        "file-uri-outside-the-volume",
        "TrainingPipeline",
        {"spec.artifacts.uri": "file:///tmp/iris"},
        "spec.artifacts.uri",
        URI_UNDER_MOUNT_PATH.message,
    ),
    Case(
        "ftp-data",
        "TrainingPipeline",
        {"spec.data.uri": "ftp://example.com/iris.csv"},
        "spec.data.uri",
    ),
    Case(
        "column-min-above-max",
        "TrainingPipeline",
        {"spec.data.columns[0].min": 20},
        "spec.data.columns[0].min",
        api.ColumnSpec.cel_rules[0].message,
    ),
    Case(
        "bad-object-name",
        "ModelDeployment",
        {"spec.source.pipelineRef.name": "Iris_Model"},
        "spec.source.pipelineRef.name",
    ),
    Case(
        "scrape-too-often",
        "ModelDeployment",
        {"spec.monitoring": {"scrapeIntervalSeconds": 1}},
        "spec.monitoring.scrapeIntervalSeconds",
    ),
    Case(
        "feedback-window-of-a-handful",
        "ModelDeployment",
        {"spec.monitoring": {"feedbackWindow": 3}},
        "spec.monitoring.feedbackWindow",
    ),
    Case(
        "feedback-window-too-large",
        "ModelDeployment",
        {"spec.monitoring": {"feedbackWindow": 5_000_000}},
        "spec.monitoring.feedbackWindow",
    ),
    Case(
        "drift-window-too-large",
        "ModelDeployment",
        {"spec.monitoring": {"driftWindow": 1_000_000}},
        "spec.monitoring.driftWindow",
    ),
    Case(
        "min-samples-above-the-drift-window",
        "ModelDeployment",
        {"spec.monitoring": {"driftWindow": 200, "minSamples": 500}},
        "spec.monitoring.minSamples",
        MIN_SAMPLES_WITHIN_WINDOW.message,
    ),
    Case(
        "tolerance-of-half-the-accuracy-scale",
        "TrainingPipeline",
        {"spec.gates.beatChampion": {"minDelta": -0.5}},
        "spec.gates.beatChampion.minDelta",
        TOLERANCE_WITHIN_BOUNDS.message,
    ),
    Case(
        "tolerance-on-the-default-metric",
        "TrainingPipeline",
        {"spec.evaluation.primaryMetric": DELETE, "spec.gates.beatChampion": {"minDelta": -1}},
        "spec.gates.beatChampion.minDelta",
        TOLERANCE_WITHIN_BOUNDS.message,
    ),
    Case(
        "bad-concurrency-policy",
        "TrainingPipeline",
        {"spec.concurrencyPolicy": "Allow"},
        "spec.concurrencyPolicy",
    ),
    Case("unknown-trigger-type", "TrainingRun", {"spec.trigger.type": "Whim"}, "spec.trigger.type"),
    Case("run-without-snapshot", "TrainingRun", {"spec.pipelineSpec": DELETE}, "spec.pipelineSpec"),
    Case(
        "run-snapshot-estimator-of-the-wrong-task",
        "TrainingRun",
        {"spec.pipelineSpec.model.estimator": "SVR"},
        "spec.pipelineSpec.model.estimator",
        ESTIMATOR_SUITS_TASK.message,
    ),
]


REGRESSION = {
    "spec.model": {"task": "regression", "estimator": "Ridge"},
    "spec.evaluation.primaryMetric": "rmse",
    "spec.gates.metrics": [],
}


def _tolerations(prefix: str) -> list[Case]:
    """The Pod API's toleration rules, on the Pod template of a pipeline or deployment."""
    kind = "TrainingPipeline" if prefix == "spec.runTemplate" else "ModelDeployment"
    field = f"{prefix}.tolerations[0]"
    return [
        Case(
            f"{kind}-toleration-seconds-without-no-execute",
            kind,
            {
                f"{prefix}.tolerations": [
                    {"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}
                ]
            },
            f"{field}.tolerationSeconds",
            TOLERATION_SECONDS_NEED_NO_EXECUTE.message,
        ),
        Case(
            f"{kind}-toleration-exists-with-a-value",
            kind,
            {f"{prefix}.tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]},
            f"{field}.value",
            EXISTS_TAKES_NO_VALUE.message,
        ),
        Case(
            f"{kind}-toleration-without-key-or-exists",
            kind,
            {f"{prefix}.tolerations": [{"operator": "Equal", "value": "yes"}]},
            f"{field}.operator",
            EMPTY_KEY_NEEDS_EXISTS.message,
        ),
    ]


CROSS_FIELD_CASES = [
    Case(
        "decay-maxdrop-1-for-accuracy",
        "TrainingPipeline",
        {
            "spec.triggers.performanceDecay.threshold": DELETE,
            "spec.triggers.performanceDecay.maxDrop": 1.0,
        },
        "spec.triggers.performanceDecay.maxDrop",
        DECAY_MAX_DROP_IN_RANGE.message,
    ),
    Case(
        "decay-threshold-and-maxdrop",
        "TrainingPipeline",
        {"spec.triggers.performanceDecay.maxDrop": 0.05},
        "spec.triggers.performanceDecay",
        DECAY_ONE_LIMIT.message,
    ),
    Case(
        "decay-confidence-1",
        "TrainingPipeline",
        {"spec.triggers.performanceDecay.confidence": 1.0},
        "spec.triggers.performanceDecay.confidence",
    ),
    Case(
        "decay-threshold-7-for-accuracy-by-default",
        "TrainingPipeline",
        {"spec.triggers.performanceDecay.threshold": 7},
        "spec.triggers.performanceDecay.threshold",
        DECAY_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "decay-threshold-1.5-for-accuracy",
        "TrainingPipeline",
        {
            "spec.triggers.performanceDecay.metric": "accuracy",
            "spec.triggers.performanceDecay.threshold": 1.5,
        },
        "spec.triggers.performanceDecay.threshold",
        DECAY_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "gate-accuracy-threshold-above-1",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "accuracy", "threshold": 1.2}]},
        "spec.gates.metrics[0].threshold",
        GATE_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "gate-roc-auc-threshold-below-0",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "roc_auc", "threshold": -0.1}]},
        "spec.gates.metrics[0].threshold",
        GATE_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "gate-log-loss-threshold-below-0",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "log_loss", "threshold": -0.5}]},
        "spec.gates.metrics[0].threshold",
        GATE_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "gate-r2-threshold-above-1",
        "TrainingPipeline",
        {**REGRESSION, "spec.gates.metrics": [{"metric": "r2", "threshold": 1.5}]},
        "spec.gates.metrics[0].threshold",
        GATE_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "gate-rmse-threshold-below-0",
        "TrainingPipeline",
        {**REGRESSION, "spec.gates.metrics": [{"metric": "rmse", "threshold": -1}]},
        "spec.gates.metrics[0].threshold",
        GATE_THRESHOLD_IN_RANGE.message,
    ),
    Case(
        "gate-f1-absolute-change-above-1",
        "TrainingPipeline",
        {"spec.gates.metrics": [{"metric": "f1", "minAbsoluteChange": 1.5}]},
        "spec.gates.metrics[0].minAbsoluteChange",
        GATE_ABSOLUTE_CHANGE_POSSIBLE.message,
    ),
    Case(
        "gate-rmse-relative-change-above-1",
        "TrainingPipeline",
        {**REGRESSION, "spec.gates.metrics": [{"metric": "rmse", "minRelativeChange": 1.5}]},
        "spec.gates.metrics[0].minRelativeChange",
        GATE_RELATIVE_CHANGE_POSSIBLE.message,
    ),
    Case(
        "beat-champion-metric-of-the-wrong-task",
        "TrainingPipeline",
        {"spec.gates.beatChampion": {"metric": "rmse"}},
        "spec.gates.beatChampion.metric",
        BEAT_CHAMPION_METRIC_SUITS_TASK.message,
    ),
    Case(
        "pdb-min-available-5-of-2-replicas",
        "ModelDeployment",
        {"spec.replicas": 2, "spec.podDisruptionBudget": {"minAvailable": 5}},
        "spec.podDisruptionBudget.minAvailable",
        PDB_ALLOWS_AN_EVICTION.message,
    ),
    Case(
        "pdb-keeps-every-replica",
        "ModelDeployment",
        {"spec.replicas": 2, "spec.podDisruptionBudget": {"minAvailable": 2}},
        "spec.podDisruptionBudget.minAvailable",
        PDB_ALLOWS_AN_EVICTION.message,
    ),
    Case(
        "pdb-default-min-available-with-one-replica",
        "ModelDeployment",
        {"spec.podDisruptionBudget": {}},
        "spec.podDisruptionBudget.minAvailable",
        PDB_ALLOWS_AN_EVICTION.message,
    ),
    Case(
        "pdb-100-percent",
        "ModelDeployment",
        {"spec.replicas": 3, "spec.podDisruptionBudget": {"minAvailable": "100%"}},
        "spec.podDisruptionBudget.minAvailable",
        PDB_ALLOWS_AN_EVICTION.message,
    ),
    Case(
        "pdb-150-percent",
        "ModelDeployment",
        {"spec.replicas": 3, "spec.podDisruptionBudget": {"minAvailable": "150%"}},
        "spec.podDisruptionBudget.minAvailable",
    ),
    Case(
        "pdb-count-as-a-string",
        "ModelDeployment",
        {"spec.replicas": 3, "spec.podDisruptionBudget": {"minAvailable": "1"}},
        "spec.podDisruptionBudget.minAvailable",
    ),
    Case(
        "monitoring-min-samples-above-the-window",
        "ModelDeployment",
        {"spec.monitoring": {"driftWindow": 500, "minSamples": 600}},
        "spec.monitoring.minSamples",
        MIN_SAMPLES_WITHIN_WINDOW.message,
    ),
    *_tolerations("spec.runTemplate"),
    *_tolerations("spec"),
]
CASES += CROSS_FIELD_CASES

_TRAINING_KEYS = ("data", "model", "evaluation", "gates", "runTemplate", "artifacts")


def _in_run_snapshot(case: Case) -> Case | None:
    """A pipeline case on the training spec, replayed on a run's pipelineSpec snapshot."""
    prefixes = tuple(f"spec.{key}" for key in _TRAINING_KEYS)
    if case.kind != "TrainingPipeline" or not all(
        path.startswith(prefixes) for path in case.changes
    ):
        return None
    if not case.field.startswith(prefixes):
        return None
    return Case(
        f"in-run-snapshot-{case.id}",
        "TrainingRun",
        {path.replace("spec.", "spec.pipelineSpec.", 1): v for path, v in case.changes.items()},
        case.field.replace("spec.", "spec.pipelineSpec.", 1),
        case.message,
    )


CASES += [c for c in map(_in_run_snapshot, CASES) if c is not None and c.message]

ADMITTED = [
    ("ModelDeployment", {"spec.replicas": 2, "spec.podDisruptionBudget": {"minAvailable": 1}}),
    ("ModelDeployment", {"spec.replicas": 2, "spec.podDisruptionBudget": {"minAvailable": "50%"}}),
    ("ModelDeployment", {"spec.replicas": 1, "spec.podDisruptionBudget": {"minAvailable": 0}}),
    ("ModelDeployment", {"spec.monitoring": {"driftWindow": 500, "minSamples": 500}}),
    ("ModelDeployment", {"spec.tolerations": [{"operator": "Exists"}]}),
    (
        "ModelDeployment",
        {"spec.tolerations": [{"key": "a", "effect": "NoExecute", "tolerationSeconds": 30}]},
    ),
    ("TrainingPipeline", {"spec.triggers.performanceDecay.threshold": 1}),
    ("TrainingPipeline", {**REGRESSION, "spec.triggers.performanceDecay.threshold": 7}),
    (
        "TrainingPipeline",
        {**REGRESSION, "spec.gates.metrics": [{"metric": "r2", "threshold": -0.5}]},
    ),
    (
        "TrainingPipeline",
        {**REGRESSION, "spec.gates.metrics": [{"metric": "mae", "threshold": 30}]},
    ),
    ("TrainingPipeline", {"spec.gates.metrics": [{"metric": "f1", "minAbsoluteChange": 1}]}),
    ("TrainingPipeline", {"spec.tracking": {"mlflow": {"trackingUri": "http://mlflow:5000"}}}),
    (
        "TrainingPipeline",
        {"spec.tracking": {"mlflow": {"trackingUri": "https://mlflow.example.com/prefix?x=1"}}},
    ),
]


@pytest.mark.parametrize(("kind", "changes"), ADMITTED, ids=lambda v: str(v)[:60])
def test_values_at_the_edge_of_a_range_are_admitted(kind: str, changes: dict[str, Any]) -> None:
    obj = mutate(BASES[kind], changes)
    assert api_server_errors(obj) == []
    MODELS[kind].model_validate(obj)


def test_every_cel_rule_of_every_crd_is_exercised_by_the_catalogue() -> None:
    """Each rule (but the transition rule, tested on updates) refuses at least one case of
    its own kind, at the field the case names."""
    from .crd_support import openapi, walk

    for kind, base in BASES.items():
        rules = {
            rule["message"]
            for _, node in walk(openapi(kind))
            for rule in node.get("x-kubernetes-validations", [])
            if "oldSelf" not in rule["rule"]
        }
        refused = {case.message for case in CASES if case.kind == kind and case.message is not None}
        assert rules - refused == set(), kind
        assert base  # each kind has a valid base object


def _names(path: str, text: str, target: str) -> bool:
    """An error at ``path`` saying ``text`` names ``target`` if it sits on the field itself,
    or on an ancestor and mentions the field's name."""
    if path == target:
        return True
    leaf = re.sub(r"\[\d+\]$", "", target).rsplit(".", 1)[-1]
    return target.startswith(path) and leaf in text


def _model_errors(case: Case) -> list[Error]:
    obj = mutate(BASES[case.kind], case.changes)
    with pytest.raises(ValidationError) as info:
        MODELS[case.kind].model_validate(obj)
    return [
        (
            "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip("."),
            e["msg"],
        )
        for e in info.value.errors()
    ]


def test_the_catalogue_is_large_and_the_bases_are_valid() -> None:
    assert len(CASES) >= 15
    assert len({c.id for c in CASES}) == len(CASES)
    for kind, base in BASES.items():
        MODELS[kind].model_validate(base)
        assert api_server_errors(base) == [], kind


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_model_rejects_and_names_the_field(case: Case) -> None:
    errors = _model_errors(case)
    assert any(_names(path, msg, case.field) for path, msg in errors), errors
    if case.message:
        assert any(case.message in msg for _, msg in errors), errors


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_api_server_rejects_and_names_the_field(case: Case) -> None:
    errors = api_server_errors(mutate(BASES[case.kind], case.changes))
    assert errors, "accepted by the CRD"
    assert any(_names(path, msg, case.field) for path, msg in errors), errors
    if case.message:
        assert (case.field, case.message) in errors


def test_model_and_cel_give_the_same_message() -> None:
    """Where a CEL rule decides, the model's mirror raises the very same sentence."""
    for case in CASES:
        if case.message:
            model_msgs = [m for _, m in _model_errors(case)]
            server_msgs = [m for _, m in api_server_errors(mutate(BASES[case.kind], case.changes))]
            assert any(case.message in m for m in model_msgs), case.id
            assert case.message in server_msgs, case.id


def test_model_error_lists_the_choices() -> None:
    errors = _model_errors(Case("x", "TrainingPipeline", {"spec.model.estimator": "Nope"}, ""))
    (msg,) = [m for p, m in errors if p == "spec.model.estimator"]
    assert "unknown estimator 'Nope'" in msg and "RandomForestClassifier" in msg


def test_tolerances_and_windows_within_bounds_are_accepted() -> None:
    for changes in (
        {"spec.gates.beatChampion": {"minDelta": -0.01}},
        {"spec.gates.beatChampion": {"minDelta": -0.2, "metric": "f1"}},
        # rmse is in the target's own units: no bound on the tolerance.
        {
            "spec.model": {"task": "regression", "estimator": "Ridge"},
            "spec.evaluation.primaryMetric": "rmse",
            "spec.gates.metrics": [{"metric": "rmse", "threshold": 5000}],
            "spec.triggers.performanceDecay": {"deploymentRef": {"name": "x"}, "threshold": 9},
            "spec.gates.beatChampion": {"minDelta": -250},
        },
    ):
        obj = mutate(PIPELINE, changes)
        api.TrainingPipeline.model_validate(obj)
        assert api_server_errors(obj) == [], changes
    md = mutate(DEPLOYMENT, {"spec.monitoring": {"feedbackWindow": 5000, "driftWindow": 200}})
    parsed = api.ModelDeployment.model_validate(md)
    assert (parsed.spec.monitoring.feedback_window, parsed.spec.monitoring.min_samples) == (
        5000,
        100,
    )
    assert api_server_errors(md) == []


# --- TrainingRun spec is immutable (a transition rule: only the CRD can check it) -------


def test_run_spec_is_immutable() -> None:
    changed = mutate(RUN, {"spec.pipelineSpec.model.estimator": "LogisticRegression"})
    assert api_server_errors(changed, old=RUN) == [
        ("spec", "TrainingRun spec is immutable; create a new run to retrain")
    ]


def test_run_status_and_metadata_may_change() -> None:
    updated = mutate(RUN, {"metadata.labels": {"a": "b"}, "status": {"phase": "Training"}})
    assert api_server_errors(updated, old=RUN) == []


def test_pipeline_spec_may_change() -> None:
    updated = mutate(PIPELINE, {"spec.model.estimator": "SVC"})
    assert api_server_errors(updated, old=PIPELINE) == []


# --- cron: the CEL rule, the model and croniter agree ----------------------------------

VALID_CRONS = [
    "0 3 * * *",
    "*/15 * * * 1-5",
    "0 0 1 jan,jul *",
    "30 2 ? * MON-FRI",
    "0 0-23/2 1,15 * sun",
    "59 23 31 12 7",
    "@daily",
    "@hourly",
]
INVALID_CRONS = [
    "61 * * * *",
    "0 24 * * *",
    "0 0 32 * *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "*/0 * * * *",
    "* * * *",
    "* * * * * *",
    "@every 5m",
    "0 3 * * *\n",
    "",
]


@pytest.mark.parametrize("cron", VALID_CRONS)
def test_valid_cron(cron: str) -> None:
    from croniter import croniter

    api.ScheduleTrigger(cron=cron)
    assert api_server_errors(mutate(PIPELINE, {"spec.triggers.schedule.cron": cron})) == []
    assert croniter.is_valid(cron)


@pytest.mark.parametrize("cron", INVALID_CRONS)
def test_invalid_cron(cron: str) -> None:
    with pytest.raises(ValidationError, match="cron"):
        api.ScheduleTrigger(cron=cron)
    errors = api_server_errors(mutate(PIPELINE, {"spec.triggers.schedule.cron": cron}))
    assert errors and all(p == "spec.triggers.schedule.cron" for p, _ in errors), errors


@pytest.mark.parametrize(
    ("kind", "limit"),
    [
        ("TrainingPipeline", MAX_PIPELINE_NAME),
        ("TrainingRun", MAX_RUN_NAME),
        ("ModelDeployment", MAX_DEPLOYMENT_NAME),
    ],
)
def test_names_at_the_limit_are_admitted_one_past_refused(kind: str, limit: int) -> None:
    at = mutate(BASES[kind], {"metadata.name": "a" * (limit - 2) + "-1"})
    past = mutate(BASES[kind], {"metadata.name": "a" * (limit - 1) + "-1"})
    assert api_server_errors(at) == []
    MODELS[kind].model_validate(at)
    assert [path for path, _ in api_server_errors(past)] == ["metadata.name"]
    with pytest.raises(ValidationError, match=f"at most {limit} characters"):
        MODELS[kind].model_validate(past)


def test_limits_leave_room_for_every_derived_name() -> None:
    """The limits follow from the names the operator derives (core.naming)."""
    from perennial.core.naming import canary_name, job_name, run_name, serving_name

    longest_pipeline = "p" * MAX_PIPELINE_NAME
    assert run_name(longest_pipeline, 1) == f"{longest_pipeline}-00001"  # no digest needed
    assert len(run_name(longest_pipeline, 1)) == MAX_RUN_NAME == 63
    assert job_name("r" * MAX_RUN_NAME) == "r" * MAX_RUN_NAME
    longest_deployment = "d" * MAX_DEPLOYMENT_NAME
    assert serving_name(longest_deployment) == f"{longest_deployment}-serving"
    assert canary_name(longest_deployment) == f"{longest_deployment}-canary"
    assert len(serving_name(longest_deployment)) == 63
