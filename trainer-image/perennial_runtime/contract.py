"""The contract between the operator, the trainer and the model server.

Light on purpose: pydantic only, no scikit-learn, numpy or pandas at import time, so the
operator can import it. Field names are camelCase on the wire (JSON), snake_case in Python.

- ``TrainConfig``: operator -> trainer (env var ``PERENNIAL_TRAIN_CONFIG`` or a file).
- ``TrainResult``: trainer -> operator, compact JSON in the termination message (<= 4 KiB).
- ``ModelMetadata``: ``metadata.json`` beside the model in ``<artifactUri>/<run>/``.
- ``MonitoringSnapshot``: what ``GET /v2/models/{name}/monitoring`` returns.
"""

from __future__ import annotations

import re
from enum import IntEnum, StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

CONTRACT_VERSION = 1
TERMINATION_MESSAGE_LIMIT = 4096
TRAIN_CONFIG_ENV = "PERENNIAL_TRAIN_CONFIG"
TRAIN_CONFIG_FILE_ENV = "PERENNIAL_TRAIN_CONFIG_FILE"
DEFAULT_RESULT_PATH = "/dev/termination-log"

MODEL_FILE = "model.skops"
ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
MODEL_CARD_FILE = "MODEL_CARD.md"

# PSI bands (conventional): < 0.1 stable, 0.1-0.25 moderate shift, >= 0.25 significant.
PSI_WARN = 0.1
PSI_ALERT = 0.25
# Minimum number of observations before a drift score is meaningful (and so the
# smallest drift window a server accepts).
MIN_DRIFT_SAMPLES = 100


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


# The only estimators a resource may name. The trainer maps each name to its
# scikit-learn class; no import path ever comes from a resource spec.
CLASSIFIERS: tuple[str, ...] = (
    "LogisticRegression",
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "DecisionTreeClassifier",
    "KNeighborsClassifier",
    "SVC",
    "GaussianNB",
)
REGRESSORS: tuple[str, ...] = (
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
    "GradientBoostingRegressor",
    "HistGradientBoostingRegressor",
    "DecisionTreeRegressor",
    "KNeighborsRegressor",
    "SVR",
)
ESTIMATORS: tuple[str, ...] = CLASSIFIERS + REGRESSORS

CLASSIFICATION_METRICS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + REGRESSION_METRICS
# Metrics where a smaller value is better; every other metric is higher-is-better.
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae"})

DEFAULT_PRIMARY_METRIC: dict[Task, str] = {
    Task.CLASSIFICATION: "accuracy",
    Task.REGRESSION: "rmse",
}


def metric_higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def metrics_for(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task is Task.CLASSIFICATION else REGRESSION_METRICS


class Wire(BaseModel):
    """Base: camelCase JSON, snake_case Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
    )

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ColumnType(StrEnum):
    NUMERIC = "numeric"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


class ColumnSchema(Wire):
    """Expected type and range of one input column."""

    name: str = Field(min_length=1)
    type: ColumnType = ColumnType.NUMERIC
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed_values: list[str] | None = None


class DataSource(Wire):
    uri: str = Field(min_length=1)
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str = Field(min_length=1)
    columns: list[ColumnSchema] | None = None


class FeatureSpec(Wire):
    """The part of the data spec that shapes a model's features (target and declared
    columns; not where the data lives). Recorded with each model, so a later run can tell
    a feature change the user asked for (the spec changed) from skew (the data changed
    under an unchanged spec)."""

    target: str
    columns: list[ColumnSchema] | None = None

    @classmethod
    def of(cls, data: DataSource) -> FeatureSpec:
        return cls(target=data.target, columns=data.columns)


class ModelConfig(Wire):
    task: Task
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _estimator_matches_task(self) -> ModelConfig:
        allowed = CLASSIFIERS if self.task is Task.CLASSIFICATION else REGRESSORS
        if self.estimator not in allowed:
            raise ValueError(
                f"model.estimator {self.estimator!r} is not allowed for task "
                f"{self.task.value!r}; choose one of: {', '.join(allowed)}"
            )
        return self


class EvaluationConfig(Wire):
    test_size: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42
    primary_metric: str | None = None
    top_features: int = Field(default=10, ge=0, le=50)

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; choose one of: {', '.join(METRICS)}")
        return value


class DataValidationLimits(Wire):
    """Limits checked before training; a violation fails the run (never just a warning)."""

    min_rows: int = Field(default=20, ge=1)
    max_missing_fraction: float | None = Field(default=0.2, ge=0, le=1)
    max_duplicate_fraction: float | None = Field(default=None, ge=0, le=1)
    min_class_fraction: float | None = Field(default=None, ge=0, le=1)
    enforce_schema: bool = True
    max_drift_psi: float | None = Field(default=None, ge=0)
    # A feature that is the target (or a one-to-one copy of it): a warning, or a violation.
    fail_on_target_leakage: bool = False


class ChampionRef(Wire):
    """The current champion, re-scored by the trainer on the candidate's holdout."""

    run: str
    model_uri: str
    sha256: str
    metadata_uri: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class OnnxConfig(Wire):
    """Compiled inference: export the fitted pipeline to ``model.onnx`` (best effort).

    The export is accepted only when onnxruntime reproduces the pipeline on the holdout:
    at most ``label_mismatch_fraction`` of the labels differ (classification), every
    probability is within ``probability_abs_diff`` (absolute), every regression value
    within ``value_rel_diff`` x max(1, |value|). Otherwise only ``model.skops`` serves.
    """

    enabled: bool = True
    label_mismatch_fraction: float = Field(default=0.0, ge=0, le=1)
    # onnxruntime's tree kernels sum float32 leaf values: ~1e-6 off for 100 trees.
    probability_abs_diff: float = Field(default=1e-5, ge=0)
    value_rel_diff: float = Field(default=1e-5, ge=0)


class MlflowConfig(Wire):
    """MLflow tracking of one run (optional). Credentials never travel here: the Pod gets
    MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN from a Secret by reference."""

    tracking_uri: str = Field(min_length=1, pattern=r"^https?://")
    experiment_name: str = Field(min_length=1)
    registered_model_name: str = Field(min_length=1)
    spec_hash: str | None = None


# A Kubernetes object name (DNS-1123 subdomain): the run's folder under artifactUri.
RUN_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
RUN_NAME_MAX_LENGTH = 253


class TrainConfig(Wire):
    version: int = CONTRACT_VERSION
    run_name: str = Field(min_length=1)
    pipeline_name: str | None = None
    namespace: str | None = None
    data: DataSource
    model: ModelConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    validation: DataValidationLimits = Field(default_factory=DataValidationLimits)
    champion: ChampionRef | None = None
    artifact_uri: str = Field(min_length=1)
    image: str | None = None
    result_path: str = DEFAULT_RESULT_PATH
    onnx: OnnxConfig = Field(default_factory=OnnxConfig)
    mlflow: MlflowConfig | None = None

    @field_validator("run_name")
    @classmethod
    def _kubernetes_name(cls, value: str) -> str:
        if len(value) > RUN_NAME_MAX_LENGTH or not re.fullmatch(RUN_NAME_PATTERN, value):
            raise ValueError(
                f"runName {value!r} is not a Kubernetes object name (lowercase letters, "
                f"digits, '-' and '.', starting and ending with a letter or digit, at most "
                f"{RUN_NAME_MAX_LENGTH} characters); it names the run's folder under "
                "artifactUri, so '/' and '..' are refused"
            )
        return value


class ExitCode(IntEnum):
    """Distinct exit codes of ``perennial-runtime train``."""

    OK = 0
    UNEXPECTED = 1
    INVALID_CONFIG = 2
    DATA_UNAVAILABLE = 3
    DATA_VALIDATION_FAILED = 4
    TRAINING_ERROR = 5
    CHAMPION_UNAVAILABLE = 6
    ARTIFACT_ERROR = 7


class FailureReason(StrEnum):
    INVALID_CONFIG = "InvalidConfig"
    DATA_UNAVAILABLE = "DataUnavailable"
    DATA_VALIDATION_FAILED = "DataValidationFailed"
    TRAINING_ERROR = "TrainingError"
    CHAMPION_UNAVAILABLE = "ChampionUnavailable"
    ARTIFACT_ERROR = "ArtifactError"
    UNEXPECTED = "UnexpectedError"


EXIT_CODE_FOR: dict[FailureReason, ExitCode] = {
    FailureReason.INVALID_CONFIG: ExitCode.INVALID_CONFIG,
    FailureReason.DATA_UNAVAILABLE: ExitCode.DATA_UNAVAILABLE,
    FailureReason.DATA_VALIDATION_FAILED: ExitCode.DATA_VALIDATION_FAILED,
    FailureReason.TRAINING_ERROR: ExitCode.TRAINING_ERROR,
    FailureReason.CHAMPION_UNAVAILABLE: ExitCode.CHAMPION_UNAVAILABLE,
    FailureReason.ARTIFACT_ERROR: ExitCode.ARTIFACT_ERROR,
    FailureReason.UNEXPECTED: ExitCode.UNEXPECTED,
}


class Violation(Wire):
    """One failed data-validation rule: which column, which rule, observed vs limit."""

    rule: str
    column: str | None = None
    observed: float | str | None = None
    limit: float | str | None = None
    message: str


class DataReport(Wire):
    uri: str
    fingerprint: str | None = None
    rows: int | None = None
    columns: int | None = None
    validation_passed: bool = True
    violations: list[Violation] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    drift_scores: dict[str, float] = Field(default_factory=dict)
    max_drift: float | None = None


class ArtifactRef(Wire):
    uri: str  # the run's folder: <artifactUri>/<run>/
    model_uri: str
    sha256: str
    size: int
    onnx_uri: str | None = None
    onnx_sha256: str | None = None


class FeatureImportance(Wire):
    feature: str
    importance: float


class OnnxParity(Wire):
    """onnxruntime vs scikit-learn on the same rows (the holdout)."""

    rows: int
    label_mismatches: int | None = None  # classification
    max_abs_diff: float | None = None  # probabilities (classification) or values
    max_rel_diff: float | None = None  # regression: |diff| / max(1, |value|)


class OnnxExport(Wire):
    """Whether ``model.onnx`` was written, why (not), and the parity figures."""

    exported: bool
    reason: str
    parity: OnnxParity | None = None
    seconds: float | None = None  # conversion and parity check
    # Input tensor -> the features in its columns, in order (metadata.json only).
    inputs: dict[str, list[str]] | None = None
    missing_label: str | None = None  # stands for a missing value in the string input
    tolerance: OnnxConfig | None = None  # metadata.json only


# A tracking warning in the termination message is cut to this many characters.
TRACKING_WARNING_LIMIT = 300


class TrackingResult(Wire):
    """What the run left in MLflow; a tracking server that failed leaves only a warning
    (tracking never fails a training run)."""

    mlflow_run_id: str | None = None
    model_version: str | None = None
    warning: str | None = Field(default=None, max_length=TRACKING_WARNING_LIMIT)


class TrainResult(Wire):
    """Compact verdict-relevant result; must serialise to <= 4096 bytes."""

    version: int = CONTRACT_VERSION
    status: Literal["Succeeded", "Failed"]
    reason: str = "Trained"
    message: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    champion_run: str | None = None
    # Why the champion was not scored on the holdout although there is one (its feature
    # spec differs from this run's): the change gates are skipped with this reason.
    champion_not_compared: str | None = Field(default=None, max_length=300)
    holdout_sha256: str | None = None
    holdout_rows: int | None = None
    artifact: ArtifactRef | None = None
    data: DataReport | None = None
    feature_importance: list[FeatureImportance] = Field(default_factory=list)
    duration_seconds: float | None = None
    onnx_export: OnnxExport | None = None
    tracking: TrackingResult | None = None
    truncated: bool = False


TRACKING_FINALIZE_ENV = "PERENNIAL_TRACKING_FINALIZE"
CHAMPION_ALIAS = "champion"


class GateOutcome(Wire):
    """One gate's verdict, as the operator computed it (copied into the MLflow run)."""

    name: str
    passed: bool
    skipped: bool = False
    observed: float | None = None
    threshold: float | None = None
    message: str = ""


class TrackingFinalize(Wire):
    """Operator -> ``python -m perennial_runtime.tracking finalize``: write the verdict to
    the MLflow run and, when ``alias_version`` is set, point the ``champion`` alias at it
    (a new champion, or a rollback)."""

    mlflow: MlflowConfig
    mlflow_run_id: str | None = None
    model_version: str | None = None
    verdict: Literal["Blessed", "Rejected", "Failed", "RolledBack"] | None = None
    reason: str | None = None
    gates: list[GateOutcome] = Field(default_factory=list)
    alias_version: str | None = None


class FeatureReference(Wire):
    """Training-time distribution of one feature (or of the predictions), for PSI.

    numeric: ``edges`` are the inner bin edges (bins are (-inf, e0], (e0, e1], ...,
    (e_n, +inf)), ``fractions`` has ``len(edges) + 1`` entries.
    categorical: ``categories`` with one fraction each, plus a last "other" bucket.
    """

    kind: Literal["numeric", "categorical"]
    edges: list[float] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    fractions: list[float]
    count: int


class FeatureInfo(Wire):
    name: str
    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed_values: list[str] | None = None


class ModelFile(Wire):
    file: str
    sha256: str
    size: int


class SampleSet(Wire):
    """Rows stored with the model; the server's smoke test predicts them at start-up."""

    instances: list[list[Any]]
    predictions: list[Any]


class ModelMetadata(Wire):
    """``metadata.json``: lineage and everything the server needs besides the model."""

    schema_version: int = CONTRACT_VERSION
    run: str
    pipeline: str | None = None
    namespace: str | None = None
    created_at: str
    task: Task
    target: str
    features: list[FeatureInfo]
    classes: list[Any] | None = None
    estimator: str
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int
    test_size: float
    primary_metric: str
    data: DataReport
    metrics: dict[str, float]
    champion_run: str | None = None
    champion_metrics: dict[str, float] | None = None
    holdout_sha256: str | None = None
    feature_spec: FeatureSpec | None = None  # None: a model from before it was recorded
    reference: dict[str, FeatureReference] = Field(default_factory=dict)
    prediction_reference: FeatureReference | None = None
    feature_importance: list[FeatureImportance] = Field(default_factory=list)
    libraries: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    model: ModelFile
    onnx: ModelFile | None = None
    onnx_export: OnnxExport | None = None
    sample: SampleSet


class EarlierModelFeedback(Wire):
    """Feedback for predictions made by a model that is no longer the one serving here
    (the ids name it; see docs/serving.md, Feedback and live accuracy)."""

    sha256_prefix: str  # the first 8 hex digits of its model file's sha256
    feedback_samples: int = 0
    live_accuracy: float | None = None
    live_rmse: float | None = None
    # Prediction times (RFC 3339, UTC) of the oldest and newest prediction in its window.
    oldest_prediction: str | None = None
    newest_prediction: str | None = None


class MonitoringSnapshot(Wire):
    """``GET /v2/models/{name}/monitoring``: what the operator copies into MD status."""

    model: str
    # Which model the numbers describe: the run that trained it and the sha256 of its
    # model file (the operator counts a drift/decay signal only for the model it serves).
    run: str | None = None
    sha256: str | None = None
    backend: str = "sklearn"
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    rows_predicted: int = 0
    latency_p99_ms: float | None = None
    drift_samples: int = 0
    drift_scores: dict[str, float] = Field(default_factory=dict)
    max_drift_score: float | None = None
    prediction_distribution: dict[str, float] = Field(default_factory=dict)
    # Live metrics of the serving model only: feedback whose id names it (by sha256),
    # ordered by when the prediction was made (docs/serving.md).
    feedback_samples: int = 0
    live_accuracy: float | None = None
    live_rmse: float | None = None
    # Feedback that arrived for earlier models' predictions (after a rollout), most
    # recently predicted first; at most a few models.
    earlier_models: list[EarlierModelFeedback] = Field(default_factory=list)
