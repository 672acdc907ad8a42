"""The training-relevant part of a pipeline spec, snapshotted into every TrainingRun.

Names match ``perennial_runtime.contract`` (``DataSource``, ``ModelConfig``,
``EvaluationConfig``, ``DataValidationLimits``, ``ChampionRef``) so the operator passes
them straight through into the trainer's ``TrainConfig``; the ``contract_*`` methods do
exactly that.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from perennial.api.base import CelRule, SpecModel, cel_list, one_of
from perennial.api.common import (
    ImagePullPolicy,
    LocalObjectReference,
    ObjectName,
    PodPlacement,
    ResourceRequirements,
)
from perennial.api.constants import DEFAULT_RUNTIME_IMAGE
from perennial.api.tracking import TrackingSpec
from perennial_runtime import contract
from perennial_runtime.contract import (
    CLASSIFICATION_METRICS,
    CLASSIFIERS,
    DEFAULT_PRIMARY_METRIC,
    ESTIMATORS,
    METRICS,
    REGRESSION_METRICS,
    REGRESSORS,
    ColumnType,
    Task,
    metrics_for,
)

# The largest tolerance (negative beatChampion.minDelta) on a metric scored in [0, 1]:
# beyond it the gate lets almost any candidate through, which is a mistake, not a policy.
MAX_SCORE_TOLERANCE = 0.2
SCORE_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "r2")
MAX_NAME_CHARS = 64  # estimator and metric names: bounded, so CEL rules stay cheap
MAX_GATES = 16
MAX_COLUMNS = 500
MAX_URI = 2048

EstimatorName = Annotated[
    str,
    one_of(ESTIMATORS, "estimator"),
    WithJsonSchema({"type": "string", "enum": list(ESTIMATORS), "maxLength": MAX_NAME_CHARS}),
]
MetricName = Annotated[
    str,
    one_of(METRICS, "metric"),
    WithJsonSchema({"type": "string", "enum": list(METRICS), "maxLength": MAX_NAME_CHARS}),
]

DATA_URI_PATTERN = r"^(sklearn://[a-z0-9_]+|(file|s3|gs|https?)://[^ ]+)$"
ARTIFACT_URI_PATTERN = r"^(file|s3|gs)://[^ ]+$"
ABSOLUTE_PATH_PATTERN = r"^/[^ ]*$"


# --- the range of each metric (gate thresholds and decay limits must lie in it) ---------

UNIT_INTERVAL_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")
NON_NEGATIVE_METRICS: tuple[str, ...] = ("log_loss", "rmse", "mae")
AT_MOST_ONE_METRICS: tuple[str, ...] = ("r2",)
METRIC_RANGE_TEXT = (
    f"0..1 for {', '.join(UNIT_INTERVAL_METRICS)}; >= 0 for {', '.join(NON_NEGATIVE_METRICS)}; "
    f"<= 1 for {', '.join(AT_MOST_ONE_METRICS)}"
)


def metric_range(metric: str) -> tuple[float | None, float | None]:
    """(lowest, highest) value ``metric`` can take; None: unbounded."""
    if metric in UNIT_INTERVAL_METRICS:
        return 0.0, 1.0
    if metric in NON_NEGATIVE_METRICS:
        return 0.0, None
    if metric in AT_MOST_ONE_METRICS:
        return None, 1.0
    raise ValueError(f"metric {metric!r} has no known range")


def in_metric_range_cel(metric: str, value: str) -> str:
    """CEL: ``value`` lies in the range of the metric named by the CEL expression ``metric``."""
    return (
        f"({metric} in {cel_list(UNIT_INTERVAL_METRICS)} ? {value} >= 0.0 && {value} <= 1.0 "
        f": {metric} in {cel_list(NON_NEGATIVE_METRICS)} ? {value} >= 0.0 : {value} <= 1.0)"
    )


def in_metric_range(metric: str, value: float) -> bool:
    low, high = metric_range(metric)
    return (low is None or value >= low) and (high is None or value <= high)


def estimators_for(task: Task) -> tuple[str, ...]:
    return CLASSIFIERS if task is Task.CLASSIFICATION else REGRESSORS


def task_metrics_cel(task: str) -> str:
    """CEL: the metric names allowed for the task at ``task`` (a CEL expression)."""
    return (
        f"({task} == 'classification' ? {cel_list(CLASSIFICATION_METRICS)} "
        f": {cel_list(REGRESSION_METRICS)})"
    )


def _choices_by_task(what: str, cls: tuple[str, ...], reg: tuple[str, ...]) -> str:
    return (
        f"{what} must suit model.task: for classification one of {', '.join(cls)}; "
        f"for regression one of {', '.join(reg)}"
    )


# --- data ------------------------------------------------------------------------------


class ColumnSpec(SpecModel):
    """Expected type and range of one input column (checked before training)."""

    name: str = Field(min_length=1, max_length=253, description="Column name in the data.")
    type: ColumnType = Field(
        default=ColumnType.NUMERIC,
        description="numeric, integer, categorical or boolean.",
    )
    nullable: bool = Field(default=True, description="Whether missing values are allowed.")
    min: float | None = Field(default=None, description="Smallest allowed value (numeric).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric).")
    allowed_values: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="The only values allowed (categorical columns).",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="min must not be greater than max",
            field_path=".min",
        ),
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise self.cel_rules[0].error()
        return self


class DataSpec(SpecModel):
    """Where the training data comes from and what it must look like."""

    uri: str = Field(
        max_length=MAX_URI,
        pattern=DATA_URI_PATTERN,
        description=(
            "Location of the data: sklearn://<dataset> (a dataset bundled with scikit-learn, "
            "e.g. sklearn://iris), file://, s3://, gs:// or http(s)://."
        ),
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto",
        description="File format; auto guesses it from the file name.",
    )
    target: str = Field(min_length=1, max_length=253, description="Name of the column to predict.")
    columns: list[ColumnSpec] | None = Field(
        default=None,
        max_length=MAX_COLUMNS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description=(
            "Expected feature schema. With gates.data.enforceSchema a column of the wrong "
            "type or out of range fails the run before training."
        ),
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret whose keys become environment variables of the training Pod, e.g. "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://."
        ),
    )

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, columns: list[ColumnSpec] | None) -> list[ColumnSpec] | None:
        names = [c.name for c in columns or ()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"columns: duplicate column name(s) {', '.join(duplicates)}")
        return columns


# --- model -----------------------------------------------------------------------------

ESTIMATOR_SUITS_TASK = CelRule(
    rule=(
        f"self.task == 'classification' ? self.estimator in {cel_list(CLASSIFIERS)} "
        f": self.estimator in {cel_list(REGRESSORS)}"
    ),
    message=_choices_by_task("estimator", CLASSIFIERS, REGRESSORS),
    field_path=".estimator",
)


class ModelSpec(SpecModel):
    """What to train: a task and one estimator of the allow-list with its parameters."""

    task: Task = Field(description="classification or regression.")
    estimator: EstimatorName = Field(
        description=(
            "scikit-learn estimator class from the allow-list; it must suit the task "
            "(e.g. RandomForestClassifier for classification, Ridge for regression)."
        )
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        max_length=100,
        description=(
            "Constructor parameters of the estimator, e.g. {n_estimators: 200, max_depth: 8}. "
            "Unknown parameters fail the run."
        ),
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (ESTIMATOR_SUITS_TASK,)

    @model_validator(mode="after")
    def _estimator_suits_task(self) -> Self:
        if self.estimator not in estimators_for(self.task):
            raise ESTIMATOR_SUITS_TASK.error()
        return self


# --- evaluation ------------------------------------------------------------------------


class EvaluationSpec(SpecModel):
    """How candidates are scored: a seeded holdout split of the data."""

    test_size: float = Field(
        default=0.2, gt=0, lt=1, description="Fraction of rows held out for scoring (0..1)."
    )
    seed: int = Field(
        default=42,
        ge=0,
        le=4294967295,
        description="Random seed of the split and of the estimator: runs are reproducible.",
    )
    primary_metric: MetricName | None = Field(
        default=None,
        description=(
            "The metric shown in printer columns and used by beatChampion; it must suit the "
            "task. Default: accuracy for classification, rmse for regression."
        ),
    )
    top_features: int = Field(
        default=10,
        ge=0,
        le=50,
        description="How many feature importances to record in the run's status.",
    )


# --- gates -----------------------------------------------------------------------------


GATE_THRESHOLD_IN_RANGE = CelRule(
    rule="!has(self.threshold) || " + in_metric_range_cel("self.metric", "self.threshold"),
    message=f"threshold must lie in the metric's range: {METRIC_RANGE_TEXT}",
    field_path=".threshold",
)
GATE_ABSOLUTE_CHANGE_POSSIBLE = CelRule(
    rule="!has(self.minAbsoluteChange) || "
    f"!(self.metric in {cel_list(UNIT_INTERVAL_METRICS)}) || self.minAbsoluteChange <= 1.0",
    message="minAbsoluteChange must be at most 1 for a metric in 0..1 "
    f"({', '.join(UNIT_INTERVAL_METRICS)}): no candidate could beat the champion by more",
    field_path=".minAbsoluteChange",
)
GATE_RELATIVE_CHANGE_POSSIBLE = CelRule(
    rule="!has(self.minRelativeChange) || "
    f"!(self.metric in {cel_list(NON_NEGATIVE_METRICS)}) || self.minRelativeChange <= 1.0",
    message="minRelativeChange must be at most 1 for a lower-is-better metric "
    f"({', '.join(NON_NEGATIVE_METRICS)}): it would need an error below 0",
    field_path=".minRelativeChange",
)


class MetricGateSpec(SpecModel):
    """A gate on one metric (MLflow MetricThreshold semantics)."""

    metric: MetricName = Field(description="The metric this gate checks; it must suit the task.")
    threshold: float | None = Field(
        default=None,
        description=(
            "Absolute limit: a floor for higher-is-better metrics (accuracy >= 0.9), a "
            "ceiling for lower-is-better ones (rmse, mae, log_loss)."
        ),
    )
    min_absolute_change: float | None = Field(
        default=None,
        ge=0,
        description=(
            "The candidate must be better than the champion (re-scored on the same holdout) "
            "by at least this much. Skipped while there is no champion."
        ),
    )
    min_relative_change: float | None = Field(
        default=None,
        ge=0,
        description=(
            "The candidate must be better than the champion by at least this fraction "
            "(0.01 = 1%). Skipped while there is no champion."
        ),
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="has(self.threshold) || has(self.minAbsoluteChange) || "
            "has(self.minRelativeChange)",
            message="a metric gate needs threshold, minAbsoluteChange or minRelativeChange",
        ),
        GATE_THRESHOLD_IN_RANGE,
        GATE_ABSOLUTE_CHANGE_POSSIBLE,
        GATE_RELATIVE_CHANGE_POSSIBLE,
    )

    @model_validator(mode="after")
    def _has_a_limit(self) -> Self:
        if (
            self.threshold is None
            and self.min_absolute_change is None
            and self.min_relative_change is None
        ):
            raise self.cel_rules[0].error()
        if self.threshold is not None and not in_metric_range(self.metric, self.threshold):
            raise GATE_THRESHOLD_IN_RANGE.error()
        change = self.min_absolute_change
        if change is not None and self.metric in UNIT_INTERVAL_METRICS and change > 1:
            raise GATE_ABSOLUTE_CHANGE_POSSIBLE.error()
        relative = self.min_relative_change
        if relative is not None and self.metric in NON_NEGATIVE_METRICS and relative > 1:
            raise GATE_RELATIVE_CHANGE_POSSIBLE.error()
        return self


class BeatChampionSpec(SpecModel):
    """The must-beat-the-champion rule, on the champion re-scored on the same holdout."""

    enabled: bool = Field(
        default=True,
        description="Whether a candidate must be at least as good as the current champion.",
    )
    metric: MetricName | None = Field(
        default=None, description="Metric compared; default: evaluation.primaryMetric."
    )
    min_delta: float = Field(
        default=0.0,
        description=(
            "How much better than the champion the candidate must be, in the metric's own "
            "direction; 0 lets an equal score pass. Negative: a tolerance, the candidate may "
            "be up to that much worse (-0.01: within one point of accuracy, for a small "
            f"holdout's noise); at least -{MAX_SCORE_TOLERANCE} for metrics scored in [0, 1]."
        ),
    )


class DataGateSpec(SpecModel):
    """Data validation before training: a violation fails the run (never just a warning).

    The names are those of perennial_runtime.contract.DataValidationLimits.
    """

    min_rows: int = Field(default=20, ge=1, description="Fewest rows the data may have.")
    max_missing_fraction: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Largest fraction of missing values allowed in any column.",
    )
    max_duplicate_fraction: float | None = Field(
        default=None, ge=0, le=1, description="Largest fraction of duplicated rows allowed."
    )
    min_class_fraction: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Classification: smallest share of rows any class may have.",
    )
    enforce_schema: bool = Field(
        default=True,
        description="Fail the run when data.columns does not match the data.",
    )
    max_drift_psi: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Fail the run when a feature's PSI against the champion's training data exceeds "
            "this (0.25 = significant shift). Default: not checked."
        ),
    )
    fail_on_target_leakage: bool = Field(
        default=False,
        description=(
            "Fail the run when a feature is the target or a one-to-one copy of it "
            "(always reported as a warning)."
        ),
    )


class GatesSpec(SpecModel):
    """What a candidate must prove before it becomes the champion."""

    metrics: list[MetricGateSpec] = Field(
        default_factory=list,
        max_length=MAX_GATES,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["metric"],
        },
        description="Metric gates, at most one per metric; all must pass.",
    )
    beat_champion: BeatChampionSpec = Field(
        default_factory=BeatChampionSpec,
        description="The candidate must not be worse than the champion.",
    )
    data: DataGateSpec = Field(default_factory=DataGateSpec, description="Data validation limits.")

    @field_validator("metrics")
    @classmethod
    def _one_gate_per_metric(cls, gates: list[MetricGateSpec]) -> list[MetricGateSpec]:
        names = [g.metric for g in gates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"metrics: more than one gate for {', '.join(duplicates)}; merge them into one"
            )
        return gates


# --- run template and artifacts --------------------------------------------------------


def _default_training_resources() -> ResourceRequirements:
    return ResourceRequirements(
        requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "2Gi"}
    )


class RunTemplate(PodPlacement):
    """How the training Job and its Pod are built."""

    image: str = Field(
        default=DEFAULT_RUNTIME_IMAGE,
        min_length=1,
        max_length=512,
        description="The perennial-runtime image that trains (and later serves) the model. "
        "Default: the runtime image of this Perennial release, stored with the object when it "
        "is created (set it explicitly to move to a newer runtime).",
    )
    image_pull_policy: ImagePullPolicy = Field(
        default="IfNotPresent", description="IfNotPresent, Always or Never."
    )
    resources: ResourceRequirements = Field(
        default_factory=_default_training_resources,
        description="Resources of the training container.",
    )
    active_deadline_seconds: int = Field(
        default=3600, ge=60, description="A run still training after this long fails."
    )
    backoff_limit: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Pod retries of the training Job (0: a failed Pod fails the run).",
    )
    ttl_seconds_after_finished: int = Field(
        default=86400,
        ge=0,
        description="Finished Jobs (and their Pods' logs) are deleted after this long.",
    )


class ArtifactVolume(SpecModel):
    """A PersistentVolumeClaim mounted into the Pods for file:// artifact URIs."""

    claim_name: ObjectName = Field(description="Name of the PersistentVolumeClaim.")
    mount_path: str = Field(
        default="/artifacts",
        max_length=512,
        pattern=ABSOLUTE_PATH_PATTERN,
        description="Where the claim is mounted; artifacts.uri must lie below it.",
    )


VOLUME_NEEDS_FILE_URI = CelRule(
    rule="!has(self.volume) || self.uri.startsWith('file://')",
    message="volume only applies to file:// URIs; for s3:// or gs:// use secretRef or a "
    "ServiceAccount",
    field_path=".volume",
)
URI_UNDER_MOUNT_PATH = CelRule(
    rule="!has(self.volume) || !self.uri.startsWith('file://') || "
    "self.uri.startsWith('file://' + self.volume.mountPath)",
    message="uri must lie below volume.mountPath, e.g. file:///artifacts/models with "
    "mountPath /artifacts",
    field_path=".uri",
)


class ArtifactsSpec(SpecModel):
    """Where runs store their model, metadata.json and model card (one folder per run)."""

    uri: str = Field(
        max_length=MAX_URI,
        pattern=ARTIFACT_URI_PATTERN,
        description="Base location: file:// (on volume), s3:// or gs://.",
    )
    volume: ArtifactVolume | None = Field(
        default=None,
        description="PersistentVolumeClaim holding a file:// location, mounted into the "
        "training and serving Pods.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret whose keys become environment variables of the training and "
        "serving Pods (credentials for s3:// or gs://).",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (VOLUME_NEEDS_FILE_URI, URI_UNDER_MOUNT_PATH)

    @model_validator(mode="after")
    def _volume_matches_uri(self) -> Self:
        if self.volume is None:
            return self
        if not self.uri.startswith("file://"):
            raise VOLUME_NEEDS_FILE_URI.error()
        if not self.uri.startswith("file://" + self.volume.mount_path):
            raise URI_UNDER_MOUNT_PATH.error()
        return self


# --- the training spec -----------------------------------------------------------------

PRIMARY_METRIC_SUITS_TASK = CelRule(
    rule="!has(self.evaluation) || !has(self.evaluation.primaryMetric) || "
    f"self.evaluation.primaryMetric in {task_metrics_cel('self.model.task')}",
    message=_choices_by_task(
        "evaluation.primaryMetric", CLASSIFICATION_METRICS, REGRESSION_METRICS
    ),
    field_path=".evaluation.primaryMetric",
)
GATE_METRICS_SUIT_TASK = CelRule(
    rule="!has(self.gates) || !has(self.gates.metrics) || "
    f"self.gates.metrics.all(g, g.metric in {task_metrics_cel('self.model.task')})",
    message=_choices_by_task("gates.metrics[].metric", CLASSIFICATION_METRICS, REGRESSION_METRICS),
    field_path=".gates.metrics",
)
BEAT_CHAMPION_METRIC_SUITS_TASK = CelRule(
    rule="!has(self.gates) || !has(self.gates.beatChampion) || "
    "!has(self.gates.beatChampion.metric) || "
    f"self.gates.beatChampion.metric in {task_metrics_cel('self.model.task')}",
    message=_choices_by_task(
        "gates.beatChampion.metric", CLASSIFICATION_METRICS, REGRESSION_METRICS
    ),
    field_path=".gates.beatChampion.metric",
)

_BEAT_METRIC_CEL = (
    "(has(self.gates.beatChampion.metric) ? self.gates.beatChampion.metric : "
    "(has(self.evaluation) && has(self.evaluation.primaryMetric) ? "
    "self.evaluation.primaryMetric : "
    f"(self.model.task == 'classification' ? '{DEFAULT_PRIMARY_METRIC[Task.CLASSIFICATION]}' "
    f": '{DEFAULT_PRIMARY_METRIC[Task.REGRESSION]}')))"
)
TOLERANCE_WITHIN_BOUNDS = CelRule(
    rule="!has(self.gates) || !has(self.gates.beatChampion) || "
    "!has(self.gates.beatChampion.minDelta) || "
    f"self.gates.beatChampion.minDelta >= -{MAX_SCORE_TOLERANCE} || "
    f"!({_BEAT_METRIC_CEL} in {cel_list(SCORE_METRICS)})",
    message=f"gates.beatChampion.minDelta: a tolerance larger than {MAX_SCORE_TOLERANCE} on a "
    f"metric scored in [0, 1] ({', '.join(SCORE_METRICS)}) lets almost any candidate "
    f"replace the champion; use a value between -{MAX_SCORE_TOLERANCE} and 0 "
    "(e.g. -0.01: within one point)",
    field_path=".gates.beatChampion.minDelta",
)


class TrainingSpec(SpecModel):
    """Everything that determines what a run trains and how it is judged."""

    data: DataSpec = Field(description="The training data.")
    model: ModelSpec = Field(description="The estimator to train.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="How candidates are scored."
    )
    gates: GatesSpec = Field(
        default_factory=GatesSpec,
        description="What a candidate must prove before it becomes the champion.",
    )
    run_template: RunTemplate = Field(
        default_factory=RunTemplate, description="How the training Job's Pod is built."
    )
    artifacts: ArtifactsSpec = Field(description="Where models and their metadata are stored.")
    tracking: TrackingSpec | None = Field(
        default=None,
        description="Experiment tracking (MLflow), off by default; not part of the spec hash.",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        PRIMARY_METRIC_SUITS_TASK,
        GATE_METRICS_SUIT_TASK,
        BEAT_CHAMPION_METRIC_SUITS_TASK,
        TOLERANCE_WITHIN_BOUNDS,
    )

    @model_validator(mode="after")
    def _metrics_suit_task(self) -> Self:
        allowed = metrics_for(self.model.task)
        if self.evaluation.primary_metric not in (None, *allowed):
            raise PRIMARY_METRIC_SUITS_TASK.error()
        if any(g.metric not in allowed for g in self.gates.metrics):
            raise GATE_METRICS_SUIT_TASK.error()
        if self.gates.beat_champion.metric not in (None, *allowed):
            raise BEAT_CHAMPION_METRIC_SUITS_TASK.error()
        if (
            self.gates.beat_champion.min_delta < -MAX_SCORE_TOLERANCE
            and self.resolved_beat_champion_metric() in SCORE_METRICS
        ):
            raise TOLERANCE_WITHIN_BOUNDS.error()
        return self

    # --- resolved values and the trainer contract ---

    def resolved_primary_metric(self) -> str:
        """evaluation.primaryMetric, or the task's default (accuracy / rmse)."""
        return self.evaluation.primary_metric or DEFAULT_PRIMARY_METRIC[self.model.task]

    def resolved_beat_champion_metric(self) -> str:
        return self.gates.beat_champion.metric or self.resolved_primary_metric()

    def contract_data_source(self) -> contract.DataSource:
        return contract.DataSource.model_validate(
            self.data.model_dump(by_alias=True, exclude={"secret_ref"}, exclude_none=True)
        )

    def contract_model(self) -> contract.ModelConfig:
        return contract.ModelConfig.model_validate(self.model.model_dump(by_alias=True))

    def contract_evaluation(self) -> contract.EvaluationConfig:
        return contract.EvaluationConfig.model_validate(self.evaluation.model_dump(by_alias=True))

    def contract_validation_limits(self) -> contract.DataValidationLimits:
        return contract.DataValidationLimits.model_validate(
            self.gates.data.model_dump(by_alias=True)
        )
