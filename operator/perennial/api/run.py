"""TrainingRun (tr): one immutable training attempt and its verdict."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import AwareDatetime, Field, field_validator, model_validator

from perennial.api.base import ApiModel, CelRule, SpecModel, StatusModel
from perennial.api.common import Condition, ObjectMeta, PipelineReference
from perennial.api.enums import RunPhase, TriggerType
from perennial.api.object_names import RUN_NAME_RULES, name_cel_rules, name_errors
from perennial.api.training import TrainingSpec
from perennial_runtime import contract

RUN_SPEC_IMMUTABLE = CelRule(
    rule="self == oldSelf",
    message="TrainingRun spec is immutable; create a new run to retrain",
)


class RunTrigger(SpecModel):
    """What started the run."""

    type: TriggerType = Field(
        default=TriggerType.MANUAL,
        description="Initial, SpecChange, Schedule, DataChange, Drift, PerformanceDecay, "
        "Manual or Reproduce.",
    )
    reason: str = Field(
        default="created by hand",
        max_length=1024,
        description="Why, in a sentence (e.g. 'serving drift score 0.31 >= threshold 0.25').",
    )
    time: AwareDatetime | None = Field(default=None, description="When the trigger fired.")


class RunChampion(SpecModel):
    """The champion when the run was created; the trainer re-scores it on the same holdout.

    The names are those of perennial_runtime.contract.ChampionRef.
    """

    run: str = Field(min_length=1, max_length=253, description="The champion's TrainingRun.")
    model_uri: str = Field(min_length=1, max_length=2048, description="Its model file.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of its model file (verified on load)."
    )
    metadata_uri: str | None = Field(
        default=None, max_length=2048, description="Its metadata.json."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, max_length=64, description="Its metrics when it was blessed."
    )

    def to_contract(self) -> contract.ChampionRef:
        return contract.ChampionRef.model_validate(self.model_dump(by_alias=True))


class TrainingRunSpec(SpecModel):
    """An immutable record of one training attempt: the pipeline spec snapshot it trains
    and the trigger that caused it. Create one by hand for an ad-hoc run or to reproduce
    an earlier run (trigger.type Reproduce)."""

    pipeline_ref: PipelineReference | None = Field(
        default=None, description="The TrainingPipeline this run belongs to; empty: ad hoc."
    )
    trigger: RunTrigger = Field(default_factory=RunTrigger, description="What started the run.")
    pipeline_spec: TrainingSpec = Field(
        description="Snapshot of the pipeline's data, model, evaluation, gates, runTemplate "
        "and artifacts."
    )
    spec_hash: str | None = Field(
        default=None, max_length=64, description="Hash of the training spec (see the pipeline)."
    )
    champion: RunChampion | None = Field(
        default=None, description="The champion to compare against; empty: first run."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (RUN_SPEC_IMMUTABLE,)


# --- status ----------------------------------------------------------------------------


class PrimaryMetricStatus(StatusModel):
    """The primary metric of the candidate and of the champion on the same holdout."""

    name: str = Field(description="Metric name, e.g. accuracy.")
    candidate: float | None = Field(default=None, description="The candidate's score.")
    champion: float | None = Field(
        default=None,
        json_schema_extra={"nullable": True},
        description="The champion's score on the same holdout; empty on the first run.",
    )
    candidate_display: str | None = Field(
        default=None,
        description="The candidate's score rounded to 4 decimals, as kubectl get tr prints it.",
    )
    champion_display: str | None = Field(
        default=None,
        json_schema_extra={"nullable": True},
        description="The champion's score rounded to 4 decimals, as kubectl get tr prints it.",
    )


class GateStatus(StatusModel):
    """One gate's verdict, with its reason."""

    name: str = Field(description="Gate name, e.g. accuracy.threshold or beatChampion.")
    metric: str | None = Field(default=None, description="The metric checked.")
    observed: float | None = Field(default=None, description="The candidate's value.")
    threshold: float | None = Field(default=None, description="The limit it was held to.")
    passed: bool = Field(description="Whether the gate passed.")
    skipped: bool | None = Field(
        default=None, description="True when skipped (a change gate with no champion yet)."
    )
    message: str = Field(default="", description="The verdict in a sentence.")


class ArtifactStatus(StatusModel):
    """The stored model (perennial_runtime.contract.ArtifactRef)."""

    uri: str = Field(description="The run's artifact folder.")
    model_uri: str = Field(description="The model file (skops).")
    sha256: str = Field(description="sha256 of the model file.")
    size: int = Field(description="Size of the model file in bytes.")
    onnx_uri: str | None = Field(default=None, description="ONNX export, if any.")
    onnx_sha256: str | None = Field(default=None, description="sha256 of the ONNX file.")


class ViolationStatus(StatusModel):
    """One failed data-validation rule."""

    rule: str = Field(description="The rule, e.g. minRows or maxMissingFraction.")
    column: str | None = Field(default=None, description="The column, if the rule has one.")
    observed: str | None = Field(default=None, description="The observed value.")
    limit: str | None = Field(default=None, description="The limit.")
    message: str = Field(description="The violation in a sentence.")

    @field_validator("observed", "limit", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        # The trainer reports numbers or strings; the status keeps one type.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        return f"{value:.6g}" if isinstance(value, float) else str(value)


class RunDataStatus(StatusModel):
    """What the trainer saw of the data (perennial_runtime.contract.DataReport)."""

    uri: str = Field(description="Where the data was read from.")
    fingerprint: str | None = Field(default=None, description="Content hash of the data.")
    rows: int | None = Field(default=None, description="Number of rows.")
    columns: int | None = Field(default=None, description="Number of columns.")
    validation_passed: bool | None = Field(
        default=None, description="Whether every data-validation rule passed."
    )
    violations: list[ViolationStatus] = Field(
        default_factory=list, description="Failed data-validation rules."
    )
    warnings: list[str] = Field(default_factory=list, description="Non-blocking findings.")
    drift_scores: dict[str, float] = Field(
        default_factory=dict, description="PSI per feature vs the champion's training data."
    )
    max_drift: float | None = Field(default=None, description="The largest drift score.")


class FeatureImportanceStatus(StatusModel):
    """How much one feature contributes to the model's predictions."""

    feature: str = Field(description="Feature name.")
    importance: float = Field(description="Its importance.")


class RunTrackingStatus(StatusModel):
    """Where the run is in MLflow (spec.tracking.mlflow)."""

    mlflow_run_id: str | None = Field(default=None, description="The MLflow run's ID.")
    model_version: str | None = Field(
        default=None, description="The registered model version of this run's model."
    )
    warning: str | None = Field(
        default=None,
        description="Why the run is not (fully) tracked, e.g. the server was down; "
        "training is never failed by tracking.",
    )


class TrainingRunStatus(StatusModel):
    """Observed state of a TrainingRun, written by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    phase: RunPhase | None = Field(
        default=None,
        description="Pending, Training, Evaluating, Succeeded (blessed), Rejected (a gate "
        "failed) or Failed.",
    )
    job_name: str | None = Field(default=None, description="The training Job.")
    start_time: AwareDatetime | None = Field(default=None, description="When training started.")
    completion_time: AwareDatetime | None = Field(
        default=None, description="When the run finished."
    )
    primary_metric: PrimaryMetricStatus | None = Field(
        default=None, description="Candidate vs champion on the primary metric."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Every metric of the candidate on the holdout."
    )
    champion_metrics: dict[str, float] | None = Field(
        default=None, description="The champion's metrics on the same holdout."
    )
    holdout_sha256: str | None = Field(
        default=None, description="Content hash of the holdout both models were scored on."
    )
    holdout_rows: int | None = Field(default=None, description="Rows in the holdout.")
    gates: list[GateStatus] = Field(
        default_factory=list, description="Every gate's verdict, with its reason."
    )
    artifact: ArtifactStatus | None = Field(default=None, description="The stored model.")
    data: RunDataStatus | None = Field(default=None, description="What was seen of the data.")
    tracking: RunTrackingStatus | None = Field(
        default=None, description="MLflow run and model version (spec.tracking)."
    )
    feature_importance: list[FeatureImportanceStatus] = Field(
        default_factory=list, description="The most important features, highest first."
    )
    image_digest: str | None = Field(
        default=None, description="Digest of the image that trained the model."
    )
    reason: str | None = Field(
        default=None, description="CamelCase reason of the outcome, e.g. GateFailed."
    )
    message: str | None = Field(default=None, description="The outcome in a sentence.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Ready, Reconciling and Stalled (kstatus).",
    )


class TrainingRun(ApiModel):
    """One training attempt: an immutable snapshot of a pipeline spec, the trigger that
    caused it and, in its status, the candidate's metrics and every gate's verdict."""

    api_version: Literal["perennial.dev/v1alpha1"] = "perennial.dev/v1alpha1"
    kind: Literal["TrainingRun"] = "TrainingRun"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TrainingRunSpec
    status: TrainingRunStatus = Field(default_factory=TrainingRunStatus)

    cel_rules: ClassVar[tuple[CelRule, ...]] = name_cel_rules(RUN_NAME_RULES)

    @model_validator(mode="after")
    def _name_fits(self) -> Self:
        errors = name_errors(self.metadata.name, RUN_NAME_RULES)
        if errors:
            raise ValueError(errors[0])
        return self
