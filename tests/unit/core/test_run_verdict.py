"""perennial.core.run_verdict: TrainResult + gates -> phase, reason, message, status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from perennial.api.enums import RunPhase
from perennial.api.training import TrainingSpec
from perennial.core.gates import BeatChampion, MetricGate
from perennial.core.run_verdict import (
    GateConfig,
    failure,
    gate_status,
    parse_result,
    verdict_conditions,
    verdict_from_result,
)
from perennial_runtime.contract import (
    ArtifactRef,
    DataReport,
    FeatureImportance,
    TrainResult,
    Violation,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = GateConfig(
    primary_metric="accuracy",
    metric_gates=(
        MetricGate("accuracy", threshold=0.9),
        MetricGate("f1", min_absolute_change=0.01),
    ),
    beat_champion=BeatChampion("accuracy"),
    top_features=2,
)
ARTIFACT = ArtifactRef(
    uri="file:///a/r1", model_uri="file:///a/r1/model.skops", sha256="a" * 64, size=1
)


def result(
    accuracy: float = 0.95,
    champion: float | None = None,
    *,
    artifact: ArtifactRef | None = ARTIFACT,
    data: DataReport | None = None,
    **extra: Any,
) -> TrainResult:
    return TrainResult(
        status="Succeeded",
        metrics={"accuracy": accuracy, "f1": accuracy},
        champion_metrics=({"accuracy": champion, "f1": champion} if champion is not None else None),
        artifact=artifact,
        data=data,
        **extra,
    )


def names(gates: Any) -> list[str]:
    return [g.name for g in gates]


def test_first_model_is_blessed_with_change_gates_skipped() -> None:
    verdict = verdict_from_result(result(0.95), CONFIG, had_champion=False)
    assert verdict.phase is RunPhase.SUCCEEDED and verdict.blessed
    assert verdict.reason == "ModelBlessed"
    skipped = [g.name for g in verdict.gates if g.skipped]
    assert skipped == ["f1.minAbsoluteChange", "beatChampion"]
    assert "first model" in verdict.message
    assert verdict.status["primaryMetric"] == {
        "name": "accuracy",
        "candidate": 0.95,
        "candidateDisplay": "0.9500",
    }
    assert verdict.status["artifact"]["sha256"] == "a" * 64


@pytest.mark.parametrize(
    ("candidate", "champion", "phase", "failing"),
    [
        (0.96, 0.94, RunPhase.SUCCEEDED, []),
        (0.95, 0.945, RunPhase.REJECTED, ["f1.minAbsoluteChange"]),
        (0.93, 0.95, RunPhase.REJECTED, ["f1.minAbsoluteChange", "beatChampion"]),
        (0.85, 0.80, RunPhase.REJECTED, ["accuracy.threshold"]),
    ],
)
def test_gates_against_the_champion(
    candidate: float, champion: float, phase: RunPhase, failing: list[str]
) -> None:
    verdict = verdict_from_result(result(candidate, champion), CONFIG, had_champion=True)
    assert verdict.phase is phase
    assert names(verdict.failed_gates) == failing
    for gate in failing:
        assert gate in verdict.message
    if failing:
        assert verdict.reason == "GateFailed" and not verdict.blessed


def test_a_champion_that_was_not_rescored_fails_the_change_gates() -> None:
    verdict = verdict_from_result(result(0.99, None), CONFIG, had_champion=True)
    assert verdict.phase is RunPhase.REJECTED
    assert all("missing from the champion" in g.message for g in verdict.failed_gates)


def test_a_champion_on_a_different_feature_spec_skips_the_change_gates_saying_why() -> None:
    why = (
        "champion iris-00003 was trained on a different feature spec (changed: columns "
        "added: petal ratio)"
    )
    changed = result(0.96, None).model_copy(update={"champion_not_compared": why})
    verdict = verdict_from_result(changed, CONFIG, had_champion=True)
    assert verdict.phase is RunPhase.SUCCEEDED and verdict.blessed
    skipped = [g for g in verdict.gates if g.skipped]
    assert names(skipped) == ["f1.minAbsoluteChange", "beatChampion"]
    assert all(g.message.endswith(f"skipped: {why}") for g in skipped)
    assert f"2 skipped: {why}" in verdict.message
    # Thresholds still hold.
    low = result(0.85, None).model_copy(update={"champion_not_compared": why})
    rejected = verdict_from_result(low, CONFIG, had_champion=True)
    assert names(rejected.failed_gates) == ["accuracy.threshold"]


def test_data_validation_failure_is_a_rejection_with_the_gate_failing() -> None:
    report = DataReport(
        uri="s3://b/d.csv",
        rows=10,
        validation_passed=False,
        violations=[
            Violation(rule="minRows", observed=10, limit=20, message="10 rows < minRows 20"),
            Violation(
                rule="maxMissingFraction",
                column="x",
                observed=0.5,
                limit=0.2,
                message="x: 50% missing",
            ),
        ],
    )
    failed = TrainResult(
        status="Failed", reason="DataValidationFailed", message="2 rules failed", data=report
    )
    verdict = verdict_from_result(failed, CONFIG, had_champion=True)
    assert verdict.phase is RunPhase.REJECTED
    assert verdict.reason == "DataValidationFailed"
    (gate,) = verdict.gates
    assert gate.name == "dataValidation" and not gate.passed
    assert "10 rows < minRows 20" in gate.message and "x: 50% missing" in gate.message
    violations = verdict.status["data"]["violations"]
    assert violations[0]["observed"] == "10" and violations[1]["observed"] == "0.5"


def test_other_trainer_failures_fail_the_run_with_their_reason() -> None:
    failed = TrainResult(status="Failed", reason="ChampionUnavailable", message="sha mismatch")
    verdict = verdict_from_result(failed, CONFIG, had_champion=True)
    assert (verdict.phase, verdict.reason, verdict.message) == (
        RunPhase.FAILED,
        "ChampionUnavailable",
        "sha mismatch",
    )
    assert not verdict.gates


def test_success_without_an_artifact_cannot_be_blessed() -> None:
    verdict = verdict_from_result(result(artifact=None), CONFIG, had_champion=False)
    assert (verdict.phase, verdict.reason) == (RunPhase.FAILED, "ResultInvalid")


def test_feature_importance_is_cut_to_top_features_highest_first() -> None:
    importances = [
        FeatureImportance(feature=f, importance=v) for f, v in (("a", 0.1), ("b", 0.5), ("c", 0.3))
    ]
    verdict = verdict_from_result(
        result(feature_importance=importances), CONFIG, had_champion=False
    )
    assert [f["feature"] for f in verdict.status["featureImportance"]] == ["b", "c"]


@pytest.mark.parametrize(
    "text", [None, "", "Traceback (most recent call last):", "{not json", '{"status": "Maybe"}']
)
def test_parse_result_rejects_what_is_not_a_result(text: str | None) -> None:
    assert parse_result(text) is None


def test_parse_result_reads_a_result() -> None:
    parsed = parse_result(result().to_json())
    assert parsed is not None and parsed.metrics["accuracy"] == 0.95


def test_failure_reasons_become_condition_reasons() -> None:
    assert failure("Deadline Exceeded!", "x").reason == "DeadlineExceeded"
    assert failure("", "x").reason == "TrainingFailed"
    assert len(failure("X", "m" * 5000).message) <= 1024


def test_conditions_of_each_outcome() -> None:
    blessed = verdict_from_result(result(), CONFIG, had_champion=False)
    rejected = verdict_from_result(result(0.5), CONFIG, had_champion=False)
    failed = failure("DeadlineExceeded", "too slow")
    for verdict, ready, blessed_reason in (
        (blessed, "True", "ModelBlessed"),
        (rejected, "False", "GateFailed"),
        (failed, "False", "TrainingFailed"),
    ):
        conditions = {
            c["type"]: c for c in verdict_conditions(verdict, None, now=NOW, generation=1)
        }
        assert conditions["Ready"]["status"] == ready
        assert conditions["Reconciling"]["status"] == "False"
        assert conditions["Stalled"]["status"] == "False"
        assert conditions["Blessed"]["reason"] == blessed_reason
        assert conditions["Blessed"]["observedGeneration"] == 1


def test_gate_status_wire_shape() -> None:
    verdict = verdict_from_result(result(0.95), CONFIG, had_champion=False)
    shapes = [gate_status(g) for g in verdict.gates]
    assert shapes[0] == {
        "name": "dataValidation",
        "passed": True,
        "message": "data validation passed",
    }
    assert shapes[1]["threshold"] == 0.9 and shapes[1]["observed"] == 0.95
    assert shapes[-1]["skipped"] is True


def test_config_from_a_spec_resolves_defaults() -> None:
    spec = TrainingSpec.model_validate(
        {
            "data": {"uri": "sklearn://diabetes", "target": "target"},
            "model": {"task": "regression", "estimator": "Ridge"},
            "gates": {
                "metrics": [{"metric": "rmse", "threshold": 60}],
                "beatChampion": {"minDelta": 1},
            },
            "artifacts": {"uri": "s3://bucket/models"},
        }
    )
    config = GateConfig.from_spec(spec)
    assert config.primary_metric == "rmse"
    assert config.beat_champion == BeatChampion("rmse", min_delta=1.0)
    assert config.metric_gates == (MetricGate("rmse", threshold=60.0),)
