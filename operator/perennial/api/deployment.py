"""ModelDeployment (md): serve a blessed model, roll it out, watch it, roll it back."""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from perennial.api.base import ApiModel, CelRule, SpecModel, StatusModel
from perennial.api.common import (
    Condition,
    ImagePullPolicy,
    IntOrPercent,
    LocalObjectReference,
    ObjectMeta,
    ObjectName,
    PipelineReference,
    PodPlacement,
    ResourceRequirements,
    RunReference,
)
from perennial.api.constants import DEFAULT_SERVING_PORT
from perennial.api.enums import DeploymentPhase, RolloutResult, RolloutStrategyType
from perennial.api.object_names import DEPLOYMENT_NAME_RULES, name_cel_rules, name_errors
from perennial.api.training import ArtifactVolume
from perennial_runtime.contract import MIN_DRIFT_SAMPLES

MAX_CANARY_STEPS = 20
MAX_HISTORY = 100
# earlier models in status.monitoring (a server keeps the last 4; room for a later change)
MAX_EARLIER_MODELS = 8

EXACTLY_ONE_SOURCE = CelRule(
    rule="has(self.pipelineRef) != has(self.runRef)",
    message="set exactly one of pipelineRef (follow the pipeline's champion) or runRef "
    "(pin one run)",
)


class DeploymentSource(SpecModel):
    """What to serve: the champion of a pipeline, or one pinned run."""

    pipeline_ref: PipelineReference | None = Field(
        default=None,
        description="Follow this TrainingPipeline: each new champion is rolled out.",
    )
    run_ref: RunReference | None = Field(
        default=None, description="Serve the model of this Succeeded TrainingRun."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (EXACTLY_ONE_SOURCE,)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.pipeline_ref is None) == (self.run_ref is None):
            raise EXACTLY_ONE_SOURCE.error()
        return self


class CanaryStep(SpecModel):
    """One step of a canary rollout."""

    weight: int = Field(
        ge=1, le=100, description="Percentage of traffic sent to the new model (1..100)."
    )
    pause_seconds: int = Field(
        default=60,
        ge=0,
        description="How long the step runs (and is analysed) before the next one.",
    )


class CanaryAnalysis(SpecModel):
    """Limits the new model must respect at every step; a breach rolls it back."""

    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Largest fraction of failed requests."
    )
    max_p99_latency_ms: float = Field(
        default=100, gt=0, description="Largest 99th-percentile latency in milliseconds."
    )
    max_prediction_shift: float = Field(
        default=0.25,
        ge=0,
        description="Largest PSI between the new model's predictions and the stable one's.",
    )
    min_requests: int = Field(
        default=50,
        ge=0,
        description="Requests the new model must have served before a step may pass.",
    )


_LATER_STEPS = "[" + ", ".join(str(i) for i in range(1, MAX_CANARY_STEPS)) + "]"
WEIGHTS_INCREASE = CelRule(
    rule=f"{_LATER_STEPS}.all(i, i >= size(self.steps) || "
    "self.steps[i].weight > self.steps[i - 1].weight)",
    message="steps: weights must be strictly increasing, e.g. 10, 50, 100",
    field_path=".steps",
)
LAST_WEIGHT_IS_100 = CelRule(
    rule="size(self.steps) > 0 && self.steps[size(self.steps) - 1].weight == 100",
    message="steps: the last step's weight must be 100 (the new model takes all traffic)",
    field_path=".steps",
)


class CanarySpec(SpecModel):
    """A canary rollout: traffic moves to the new model step by step, each analysed."""

    steps: list[CanaryStep] = Field(
        min_length=1,
        max_length=MAX_CANARY_STEPS,
        description="Traffic weights in strictly increasing order; the last must be 100.",
    )
    analysis: CanaryAnalysis = Field(
        default_factory=CanaryAnalysis, description="Limits checked at every step."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (WEIGHTS_INCREASE, LAST_WEIGHT_IS_100)

    @model_validator(mode="after")
    def _weights(self) -> Self:
        weights = [s.weight for s in self.steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise WEIGHTS_INCREASE.error()
        if weights[-1] != 100:
            raise LAST_WEIGHT_IS_100.error()
        return self


CANARY_NEEDS_STEPS = CelRule(
    rule="self.type != 'Canary' || has(self.canary)",
    message="canary (with steps) is required when type is Canary",
    field_path=".canary",
)


class StrategySpec(SpecModel):
    """How a new model replaces the current one."""

    type: RolloutStrategyType = Field(
        default=RolloutStrategyType.ROLLING_UPDATE,
        description="RollingUpdate (replace the Pods) or Canary (shift traffic in steps).",
    )
    canary: CanarySpec | None = Field(default=None, description="Steps and analysis (Canary).")

    cel_rules: ClassVar[tuple[CelRule, ...]] = (CANARY_NEEDS_STEPS,)

    @model_validator(mode="after")
    def _canary_needs_steps(self) -> Self:
        if self.type is RolloutStrategyType.CANARY and self.canary is None:
            raise CANARY_NEEDS_STEPS.error()
        return self


class RollbackSpec(SpecModel):
    """When the operator restores the previous model by itself."""

    automatic: bool = Field(
        default=True,
        description="Roll back when a new model never becomes ready within "
        "progressDeadlineSeconds (crash loop, failed smoke test).",
    )
    on_analysis_failure: bool = Field(
        default=True, description="Roll back when a canary step breaks an analysis limit."
    )


DEFAULT_WINDOW = 1000
MAX_DRIFT_WINDOW = 100_000  # rows x tracked columns are kept per server process
MIN_FEEDBACK_WINDOW = 10
MAX_FEEDBACK_WINDOW = 1_000_000  # one float per row per server process

MIN_SAMPLES_WITHIN_WINDOW = CelRule(
    rule="!has(self.minSamples) || self.minSamples <= (has(self.driftWindow) ? "
    f"self.driftWindow : {DEFAULT_WINDOW})",
    message="minSamples must not exceed driftWindow: the drift window never holds more "
    "rows, so no drift verdict could ever be reached; raise driftWindow or lower minSamples",
    field_path=".minSamples",
)


class MonitoringSpec(SpecModel):
    """Scraping the server's monitoring endpoint into status.monitoring, and the windows
    the server computes drift and live metrics over (see docs/deployments.md)."""

    enabled: bool = Field(default=True, description="Whether to scrape the server.")
    scrape_interval_seconds: int = Field(
        default=60, ge=10, description="How often the server is scraped."
    )
    drift_window: int = Field(
        default=DEFAULT_WINDOW,
        ge=MIN_DRIFT_SAMPLES,
        le=MAX_DRIFT_WINDOW,
        description=(
            "Number of most recent rows the drift scores are computed over "
            f"(at least {MIN_DRIFT_SAMPLES}: fewer rows give no meaningful PSI)."
        ),
    )
    feedback_window: int = Field(
        default=DEFAULT_WINDOW,
        ge=MIN_FEEDBACK_WINDOW,
        le=MAX_FEEDBACK_WINDOW,
        description=(
            "Number of most recent feedback rows live accuracy / rmse is computed over. "
            "Smaller reacts sooner to decay but is noisier; larger is steadier but a "
            "decay shows only once it fills a large part of the window."
        ),
    )
    min_samples: int = Field(
        default=100,
        ge=1,
        description="Rows needed before a drift score is reported (no verdict on a handful); "
        "at most driftWindow.",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (MIN_SAMPLES_WITHIN_WINDOW,)

    @model_validator(mode="after")
    def _min_samples_within_window(self) -> Self:
        if self.min_samples > self.drift_window:
            raise MIN_SAMPLES_WITHIN_WINDOW.error()
        return self


class PodDisruptionBudgetSpec(SpecModel):
    """A PodDisruptionBudget for the serving Pods."""

    min_available: IntOrPercent = Field(
        default=1,
        description="Pods (or percentage, e.g. '50%') that must stay available: fewer than "
        "replicas (or 0), a percentage below 100%, so one Pod can always be evicted.",
    )


_PDB = "self.podDisruptionBudget.minAvailable"
PDB_ALLOWS_AN_EVICTION = CelRule(
    rule=f"!has(self.podDisruptionBudget) || !has({_PDB}) || "
    f"(type({_PDB}) == string ? {_PDB} != '100%' : "
    f"{_PDB} == 0 || {_PDB} < (has(self.replicas) ? self.replicas : 1))",
    message="podDisruptionBudget.minAvailable must be less than replicas (or 0), or a "
    "percentage below 100%: a budget that keeps every serving Pod blocks every eviction and "
    "hangs node drains",
    field_path=".podDisruptionBudget.minAvailable",
)


def _default_serving_resources() -> ResourceRequirements:
    return ResourceRequirements(
        requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "1Gi"}
    )


class ModelDeploymentSpec(PodPlacement):
    """Desired state of a ModelDeployment. Roll back by hand with
    kubectl annotate md/NAME perennial.dev/rollback=RUN --overwrite, or set rollbackTo."""

    source: DeploymentSource = Field(description="What to serve.")
    replicas: int = Field(default=1, ge=0, le=1000, description="Number of serving Pods.")
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Serving image. Default: the image that trained the model.",
    )
    image_pull_policy: ImagePullPolicy = Field(
        default="IfNotPresent", description="IfNotPresent, Always or Never."
    )
    resources: ResourceRequirements = Field(
        default_factory=_default_serving_resources,
        description="Resources of the serving container.",
    )
    port: int = Field(
        default=DEFAULT_SERVING_PORT, ge=1, le=65535, description="Port the server listens on."
    )
    strategy: StrategySpec = Field(
        default_factory=StrategySpec, description="How a new model is rolled out."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=30,
        description="A rollout that has not become ready in this long fails.",
    )
    rollback: RollbackSpec = Field(
        default_factory=RollbackSpec, description="Automatic rollback policy."
    )
    rollback_to: ObjectName | None = Field(
        default=None,
        description="Serve this run from the history instead of the source's model; remove "
        "it to follow the source again.",
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, description="Drift and live-metric monitoring."
    )
    revision_history_limit: int = Field(
        default=10,
        ge=1,
        le=MAX_HISTORY,
        description="Models kept in status.history (targets of a manual rollback).",
    )
    pod_disruption_budget: PodDisruptionBudgetSpec | None = Field(
        default=None,
        description="Create a PodDisruptionBudget for the serving Pods (minAvailable below "
        "replicas).",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (PDB_ALLOWS_AN_EVICTION,)

    @model_validator(mode="after")
    def _pdb_allows_an_eviction(self) -> Self:
        pdb = self.pod_disruption_budget
        if pdb is None:
            return self
        keeps = pdb.min_available
        if keeps == "100%" or (isinstance(keeps, int) and keeps != 0 and keeps >= self.replicas):
            raise PDB_ALLOWS_AN_EVICTION.error()
        return self


# --- status ----------------------------------------------------------------------------


class ModelRevision(StatusModel):
    """A model that is or was served."""

    run: str = Field(description="The TrainingRun that produced the model.")
    revision: int = Field(ge=1, description="Rollout counter of this deployment (1, 2, ...).")
    model_uri: str | None = Field(default=None, description="The model file.")
    sha256: str | None = Field(default=None, description="sha256 of the model file.")
    deployed_at: AwareDatetime | None = Field(default=None, description="When it went live.")
    holdout_metrics: dict[str, float] | None = Field(
        default=None,
        max_length=64,
        description="Its metrics on its training run's holdout (what live accuracy / rmse "
        "is compared with, e.g. by a pipeline's performanceDecay.maxDrop).",
    )
    image: str | None = Field(
        default=None, description="The image that trained it (serves it unless spec.image)."
    )
    artifact_volume: ArtifactVolume | None = Field(
        default=None, description="The PersistentVolumeClaim holding a file:// model."
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="The Secret with object-store credentials, if any."
    )


class RolloutStatus(StatusModel):
    """A rollout in progress."""

    from_run: str | None = Field(default=None, description="The model being replaced.")
    to_run: str = Field(description="The model being rolled out.")
    strategy: RolloutStrategyType = Field(description="RollingUpdate or Canary.")
    step: int | None = Field(default=None, ge=0, description="Canary step index (0-based).")
    weight: int | None = Field(
        default=None, ge=0, le=100, description="Traffic percentage on the new model."
    )
    started_at: AwareDatetime | None = Field(default=None, description="Rollout start.")
    step_started_at: AwareDatetime | None = Field(default=None, description="Step start.")
    promoted: bool | None = Field(
        default=None, description="Canary: analysis passed, the stable Pods take the new model."
    )
    model: ModelRevision | None = Field(
        default=None, description="The model being rolled out, with its revision number."
    )


class LastRolloutStatus(StatusModel):
    """How the last finished rollout ended."""

    result: RolloutResult = Field(description="Succeeded, RolledBack or Failed.")
    to_run: str = Field(description="The model that was rolled out.")
    reason: str | None = Field(default=None, description="CamelCase reason.")
    message: str | None = Field(default=None, description="What happened, in a sentence.")
    finished_at: AwareDatetime | None = Field(default=None, description="When it ended.")


class ManualRollbackStatus(StatusModel):
    """A rollback requested with the perennial.dev/rollback annotation."""

    run: str = Field(description="The run served on request.")
    source_run: str | None = Field(
        default=None,
        description="The source's model when it was requested; a newer one ends the rollback.",
    )
    requested_at: AwareDatetime | None = Field(default=None, description="When it was asked.")


class EarlierModelMonitoring(StatusModel):
    """Labels that arrived for an earlier model's predictions (after a rollout)."""

    sha256_prefix: str = Field(
        description="First 8 hex digits of the model file's sha256 (see history)."
    )
    feedback_samples: int | None = Field(default=None, description="Labels in its window.")
    live_accuracy: float | None = Field(
        default=None, description="Accuracy of its predictions in the window (classification)."
    )
    live_rmse: float | None = Field(
        default=None, description="RMSE of its predictions in the window (regression)."
    )
    oldest_prediction: AwareDatetime | None = Field(
        default=None, description="When the oldest prediction in the window was made."
    )
    newest_prediction: AwareDatetime | None = Field(
        default=None, description="When the newest prediction in the window was made."
    )


class DeploymentMonitoringStatus(StatusModel):
    """Live numbers scraped from the serving Pods."""

    run: str | None = Field(
        default=None,
        description="The run whose model the numbers describe (as its server reports it).",
    )
    sha256: str | None = Field(
        default=None, description="sha256 of that model's file (as its server reports it)."
    )
    max_drift_score: float | None = Field(
        default=None, description="Largest per-feature PSI vs the training data."
    )
    drift_scores: dict[str, float] = Field(default_factory=dict, description="PSI per feature.")
    drift_samples: int | None = Field(default=None, description="Rows the PSI is computed on.")
    live_accuracy: float | None = Field(
        default=None,
        description="Accuracy of the served model's own predictions that received feedback, "
        "over the feedback window ordered by prediction time (classification).",
    )
    live_rmse: float | None = Field(
        default=None,
        description="RMSE of the served model's own predictions that received feedback, "
        "over the feedback window ordered by prediction time (regression).",
    )
    error_rate: float | None = Field(default=None, description="Fraction of failed requests.")
    latency_p99_ms: float | None = Field(default=None, description="99th-percentile latency.")
    requests: int | None = Field(default=None, description="Requests served.")
    feedback_samples: int | None = Field(
        default=None, description="Feedback rows in the served model's window."
    )
    earlier_models: list[EarlierModelMonitoring] = Field(
        default_factory=list,
        max_length=MAX_EARLIER_MODELS,
        description="Late labels for earlier models' predictions, scored against the model "
        "that made them (never in liveAccuracy / liveRmse); most recently predicted first.",
    )
    last_scrape_time: AwareDatetime | None = Field(default=None, description="Last scrape.")
    reachable: bool | None = Field(
        default=None, description="Whether the last scrape reached the server."
    )


class ModelDeploymentStatus(StatusModel):
    """Observed state of a ModelDeployment, written by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    phase: DeploymentPhase | None = Field(
        default=None, description="Waiting, Progressing, Available or Degraded."
    )
    current_model: ModelRevision | None = Field(
        default=None, json_schema_extra={"nullable": True}, description="The model served."
    )
    history: list[ModelRevision] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description="Models served before, newest first (bounded by revisionHistoryLimit).",
    )
    rollout: RolloutStatus | None = Field(
        default=None,
        json_schema_extra={"nullable": True},
        description="The rollout in progress; empty when none.",
    )
    last_rollout: LastRolloutStatus | None = Field(
        default=None, description="How the last rollout ended."
    )
    rolled_back_runs: list[str] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Runs rolled back automatically; they are not rolled out again.",
    )
    endpoint: str | None = Field(default=None, description="In-cluster URL of the server.")
    replicas: int | None = Field(default=None, description="Serving Pods.")
    ready_replicas: int | None = Field(default=None, description="Ready serving Pods.")
    monitoring: DeploymentMonitoringStatus | None = Field(
        default=None, description="Live drift, accuracy, error rate."
    )
    last_rollback_token: str | None = Field(
        default=None,
        description="The perennial.dev/rollback annotation value last acted on.",
    )
    manual_rollback: ManualRollbackStatus | None = Field(
        default=None,
        description="The manual rollback in force (annotation); empty: the source is followed.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Ready, Reconciling and Stalled (kstatus).",
    )
    message: str | None = Field(default=None, description="Human-readable summary.")


class ModelDeployment(ApiModel):
    """A ModelDeployment serves a blessed model (a pipeline's champion or a pinned run),
    rolls new models out (rolling or canary), monitors drift and rolls back."""

    api_version: Literal["perennial.dev/v1alpha1"] = "perennial.dev/v1alpha1"
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)

    cel_rules: ClassVar[tuple[CelRule, ...]] = name_cel_rules(DEPLOYMENT_NAME_RULES)

    @model_validator(mode="after")
    def _name_fits(self) -> Self:
        errors = name_errors(self.metadata.name, DEPLOYMENT_NAME_RULES)
        if errors:
            raise ValueError(errors[0])
        return self
