"""The models fit the trainer contract, and statuses the operator writes fit the CRDs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from perennial import api
from perennial_runtime import contract

from .crd_support import openapi, schema_errors
from .test_defaults import MINIMAL_PIPELINE

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHA = "ab" * 32


def _wire_names(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


@pytest.mark.parametrize(
    ("ours", "theirs", "only_ours"),
    [
        (api.ColumnSpec, contract.ColumnSchema, set()),
        (api.DataSpec, contract.DataSource, {"secretRef"}),
        (api.ModelSpec, contract.ModelConfig, set()),
        (api.EvaluationSpec, contract.EvaluationConfig, set()),
        (api.DataGateSpec, contract.DataValidationLimits, set()),
        (api.RunChampion, contract.ChampionRef, set()),
    ],
)
def test_field_names_match_the_contract(
    ours: type[BaseModel], theirs: type[BaseModel], only_ours: set[str]
) -> None:
    assert _wire_names(ours) - only_ours == _wire_names(theirs)


def test_spec_converts_into_a_train_config() -> None:
    spec = api.TrainingPipelineSpec.model_validate(
        {
            **MINIMAL_PIPELINE,
            "data": {
                "uri": "s3://data/iris.csv",
                "format": "csv",
                "target": "species",
                "columns": [{"name": "petal", "type": "numeric", "min": 0}],
                "secretRef": {"name": "s3-creds"},
            },
            "model": {
                "task": "classification",
                "estimator": "SVC",
                "params": {"C": 2.0, "kernel": "rbf"},
            },
            "gates": {"data": {"minRows": 50, "maxDriftPsi": 0.3}},
        }
    )
    config = contract.TrainConfig(
        run_name="iris-00001",
        data=spec.contract_data_source(),
        model=spec.contract_model(),
        evaluation=spec.contract_evaluation(),
        validation=spec.contract_validation_limits(),
        artifact_uri=spec.artifacts.uri,
        image=spec.run_template.image,
    )
    assert config.data.columns is not None and config.data.columns[0].min == 0
    assert config.model.params == {"C": 2.0, "kernel": "rbf"}
    assert config.validation.min_rows == 50 and config.validation.max_drift_psi == 0.3
    assert config.evaluation.test_size == 0.2


def test_champion_converts_into_the_contract() -> None:
    champion = api.RunChampion(
        run="iris-00001", model_uri="file:///a/model.skops", sha256=SHA, metrics={"f1": 0.9}
    )
    assert champion.to_contract() == contract.ChampionRef(
        run="iris-00001", model_uri="file:///a/model.skops", sha256=SHA, metrics={"f1": 0.9}
    )


def test_training_spec_snapshot_drops_pipeline_only_fields() -> None:
    spec = api.TrainingPipelineSpec.model_validate(
        {**MINIMAL_PIPELINE, "suspend": True, "triggers": {"schedule": {"cron": "@daily"}}}
    )
    snapshot = spec.training_spec()
    assert type(snapshot) is api.TrainingSpec
    assert set(snapshot.to_dict()) == {
        "data",
        "model",
        "evaluation",
        "gates",
        "runTemplate",
        "artifacts",
    }
    run = api.TrainingRunSpec(pipeline_spec=snapshot, trigger=api.RunTrigger())
    assert api.TrainingRunSpec.model_validate(run.to_dict()) == run


def test_python_names_and_wire_names_both_work() -> None:
    by_alias = api.EvaluationSpec.model_validate({"testSize": 0.3, "topFeatures": 5})
    by_name = api.EvaluationSpec(test_size=0.3, top_features=5)
    assert by_alias == by_name
    assert by_name.to_dict() == {"testSize": 0.3, "seed": 42, "topFeatures": 5}


def test_constants() -> None:
    assert api.API_VERSION == "perennial.dev/v1alpha1"
    assert api.RETRAIN_ANNOTATION == "perennial.dev/retrain"
    assert api.ROLLBACK_ANNOTATION == "perennial.dev/rollback"
    assert api.PLURALS == {
        "TrainingPipeline": "trainingpipelines",
        "TrainingRun": "trainingruns",
        "ModelDeployment": "modeldeployments",
    }
    for model in (api.TrainingPipeline, api.TrainingRun, api.ModelDeployment):
        assert model.model_fields["api_version"].default == api.API_VERSION


def test_run_phases() -> None:
    finished = {p for p in api.RunPhase if p.finished}
    assert finished == {api.RunPhase.SUCCEEDED, api.RunPhase.REJECTED, api.RunPhase.FAILED}


def test_quantities() -> None:
    ok = api.ResourceRequirements(requests={"cpu": "1.5", "memory": "1e9", "gpu": 1})
    assert ok.requests == {"cpu": "1.5", "memory": "1e9", "gpu": 1}
    for bad in ("-1", "1 Gi", "one", "2GB"):
        with pytest.raises(ValidationError, match="quantity"):
            api.ResourceRequirements(requests={"memory": bad})
    with pytest.raises(ValidationError):
        api.ResourceRequirements(limits={"cpu": 0.5})  # floats must be written as '500m'


def test_time_fields_need_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        api.LastRunStatus(name="x", start_time=datetime(2026, 1, 1))


# --- statuses as the operator writes them ----------------------------------------------


def _status_ok(kind: str, status: BaseModel) -> list[tuple[str, str]]:
    schema = openapi(kind)["properties"]["status"]
    return schema_errors(schema, status.model_dump(mode="json", by_alias=True, exclude_none=True))


def _condition(type_: str, status: str, reason: str) -> api.Condition:
    return api.Condition(
        type=type_, status=status, reason=reason, message="", last_transition_time=NOW
    )


CONDITIONS = [
    _condition("Ready", "True", "ModelBlessed"),
    _condition("Reconciling", "False", "Idle"),
    _condition("Stalled", "False", "Healthy"),
]


def test_pipeline_status_fits_the_crd() -> None:
    status = api.TrainingPipelineStatus(
        observed_generation=3,
        phase=api.PipelinePhase.IDLE,
        conditions=CONDITIONS,
        last_run=api.LastRunStatus(
            name="iris-00002",
            phase=api.RunPhase.SUCCEEDED,
            trigger=api.TriggerType.SCHEDULE,
            start_time=NOW,
        ),
        champion=api.ChampionStatus(
            run="iris-00002",
            model_uri="file:///artifacts/iris/iris-00002/model.skops",
            sha256=SHA,
            metric="accuracy",
            value=0.97,
            blessed_at=NOW,
        ),
        next_schedule_time=NOW,
        last_schedule_time=NOW,
        last_data_fingerprint="f" * 64,
        last_data_check_time=NOW,
        spec_hash="0123456789abcdef",
        run_sequence=2,
        last_triggers={"Schedule": NOW, "Drift": NOW},
        last_retrain_token="1700000000",
        message="champion iris-00002 (accuracy 0.97)",
    )
    assert _status_ok("TrainingPipeline", status) == []
    dumped = status.to_dict()
    assert dumped["champion"]["blessedAt"] == "2026-01-02T03:04:05Z"
    stamp = "2026-01-02T03:04:05Z"
    assert dumped["lastTriggers"] == {"Schedule": stamp, "Drift": stamp}
    assert api.TrainingPipelineStatus.model_validate(dumped) == status


def _train_result() -> contract.TrainResult:
    return contract.TrainResult(
        status="Succeeded",
        metrics={"accuracy": 0.95, "f1": 0.94},
        champion_metrics={"accuracy": 0.93, "f1": 0.92},
        champion_run="iris-00001",
        holdout_sha256=SHA,
        holdout_rows=38,
        artifact=contract.ArtifactRef(
            uri="file:///artifacts/iris/iris-00002/",
            model_uri="file:///artifacts/iris/iris-00002/model.skops",
            sha256=SHA,
            size=12345,
        ),
        data=contract.DataReport(
            uri="sklearn://iris",
            fingerprint="f" * 64,
            rows=150,
            columns=5,
            validation_passed=False,
            violations=[
                contract.Violation(
                    rule="maxMissingFraction",
                    column="petal",
                    observed=0.31,
                    limit=0.2,
                    message="petal: 31% missing > 20%",
                ),
                contract.Violation(rule="minRows", observed=10, limit=20, message="too few rows"),
            ],
            drift_scores={"petal": 0.02},
            max_drift=0.02,
        ),
        feature_importance=[contract.FeatureImportance(feature="petal", importance=0.6)],
    )


def test_run_status_takes_the_trainer_result_as_is() -> None:
    result = _train_result().to_dict()
    status = api.TrainingRunStatus(
        observed_generation=1,
        phase=api.RunPhase.REJECTED,
        job_name="iris-00002",
        start_time=NOW,
        completion_time=NOW,
        primary_metric=api.PrimaryMetricStatus(name="accuracy", candidate=0.95, champion=0.93),
        metrics=result["metrics"],
        champion_metrics=result["championMetrics"],
        holdout_sha256=result["holdoutSha256"],
        holdout_rows=result["holdoutRows"],
        gates=[
            api.GateStatus(name="dataValidation", passed=False, message="data validation failed"),
            api.GateStatus(
                name="accuracy.threshold",
                metric="accuracy",
                observed=0.95,
                threshold=0.9,
                passed=True,
                message="accuracy.threshold passed",
            ),
            api.GateStatus(
                name="beatChampion", metric="accuracy", passed=True, skipped=True, message="-"
            ),
        ],
        artifact=api.ArtifactStatus.model_validate(result["artifact"]),
        data=api.RunDataStatus.model_validate(result["data"]),
        feature_importance=[
            api.FeatureImportanceStatus.model_validate(f) for f in result["featureImportance"]
        ],
        image_digest="sha256:" + "0" * 64,
        reason="GateFailed",
        message="data validation failed",
        conditions=CONDITIONS,
    )
    assert status.data is not None
    assert [v.observed for v in status.data.violations] == ["0.31", "10"]
    assert [v.limit for v in status.data.violations] == ["0.2", "20"]
    assert _status_ok("TrainingRun", status) == []


def test_first_run_has_no_champion_value() -> None:
    status = api.TrainingRunStatus(
        primary_metric=api.PrimaryMetricStatus(name="rmse", candidate=3.2)
    )
    assert status.to_dict() == {
        "primaryMetric": {"name": "rmse", "candidate": 3.2},
        "metrics": {},
        "gates": [],
        "featureImportance": [],
        "conditions": [],
    }
    explicit_null = {"primaryMetric": {"name": "rmse", "candidate": 3.2, "champion": None}}
    assert schema_errors(openapi("TrainingRun")["properties"]["status"], explicit_null) == []


def test_deployment_status_fits_the_crd() -> None:
    snapshot = contract.MonitoringSnapshot(
        model="iris",
        run="iris-00002",
        requests=500,
        errors=2,
        error_rate=0.004,
        latency_p99_ms=12.5,
        drift_samples=400,
        drift_scores={"petal": 0.3},
        max_drift_score=0.3,
        feedback_samples=120,
        live_accuracy=0.91,
    ).to_dict()
    revision = api.ModelRevision(
        run="iris-00002", revision=2, model_uri="file:///m", sha256=SHA, deployed_at=NOW
    )
    status = api.ModelDeploymentStatus(
        observed_generation=4,
        phase=api.DeploymentPhase.DEGRADED,
        current_model=revision,
        history=[revision, api.ModelRevision(run="iris-00001", revision=1)],
        rollout=api.RolloutStatus(
            from_run="iris-00001",
            to_run="iris-00003",
            strategy=api.RolloutStrategyType.CANARY,
            step=1,
            weight=50,
            started_at=NOW,
            step_started_at=NOW,
        ),
        last_rollout=api.LastRolloutStatus(
            result=api.RolloutResult.ROLLED_BACK,
            to_run="iris-00003",
            reason="AnalysisFailed",
            message="error rate 0.2 > 0.01 at step 1 (weight 50)",
            finished_at=NOW,
        ),
        rolled_back_runs=["iris-00003"],
        endpoint="http://iris-serving.default.svc:8080",
        replicas=2,
        ready_replicas=2,
        monitoring=api.DeploymentMonitoringStatus.model_validate(
            {**snapshot, "lastScrapeTime": NOW.isoformat(), "reachable": True}
        ),
        conditions=CONDITIONS,
    )
    assert status.monitoring is not None and status.monitoring.live_accuracy == 0.91
    assert status.monitoring.drift_samples == 400
    assert _status_ok("ModelDeployment", status) == []


def test_status_ignores_unknown_fields_but_specs_do_not() -> None:
    status = api.TrainingRunStatus.model_validate({"phase": "Training", "kopf": {"progress": {}}})
    assert status.phase is api.RunPhase.TRAINING
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        api.EvaluationSpec.model_validate({"testsize": 0.3})


def test_condition_shape() -> None:
    wire: dict[str, Any] = {
        "type": "Ready",
        "status": "True",
        "reason": "ModelBlessed",
        "message": "iris-00002 blessed",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 3,
    }
    cond = api.Condition.model_validate(wire)
    assert cond.to_dict() == wire
    for bad in ({"status": "Yes"}, {"reason": "not camel case!"}, {"reason": ""}):
        with pytest.raises(ValidationError):
            api.Condition.model_validate({**wire, **bad})


def test_whole_objects_parse() -> None:
    tp = api.TrainingPipeline.model_validate(
        {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "TrainingPipeline",
            "metadata": {
                "name": "iris",
                "namespace": "ml",
                "generation": 2,
                "annotations": {api.RETRAIN_ANNOTATION: "1"},
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": MINIMAL_PIPELINE,
        }
    )
    assert tp.metadata.annotations[api.RETRAIN_ANNOTATION] == "1"
    assert tp.status == api.TrainingPipelineStatus()
    with pytest.raises(ValidationError):
        api.TrainingPipeline.model_validate(
            {"apiVersion": "v1", "kind": "TrainingPipeline", "spec": MINIMAL_PIPELINE}
        )
