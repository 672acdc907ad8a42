"""TrainingPipeline (tp): what to train, when to retrain, what a model must prove."""

from __future__ import annotations

import re
from typing import ClassVar, Literal, Self

from pydantic import AwareDatetime, Field, field_validator, model_validator

from perennial.api.base import ApiModel, CelRule, SpecModel, StatusModel, cel_field
from perennial.api.common import Condition, LocalObjectReference, ObjectMeta
from perennial.api.constants import RETRAIN_ANNOTATION
from perennial.api.enums import ConcurrencyPolicy, PipelinePhase, RunPhase, TriggerType
from perennial.api.object_names import PIPELINE_NAME_RULES, name_cel_rules, name_errors
from perennial.api.training import TrainingSpec
from perennial_runtime.contract import Task

# --- cron ------------------------------------------------------------------------------
# The structural pattern only checks the shape (five fields or a macro); the CEL rule
# (and the Python validator, with the same expression) checks every field's range.

CRON_MACROS = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
CRON_SHAPE_PATTERN = r"^(@[a-z]+|[^ ]+( +[^ ]+){4})$"


def _cron_field(value: str, *, question_mark: bool = False) -> str:
    any_value = "[*?]" if question_mark else "[*]"
    item = f"({any_value}|{value}(-{value})?)(/[1-9][0-9]*)?"
    return f"{item}(,{item})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
CRON_REGEX = (
    "(?i)^(@("
    + "|".join(CRON_MACROS)
    + ")|"
    + " +".join(
        (
            _cron_field("[0-5]?[0-9]"),
            _cron_field("([01]?[0-9]|2[0-3])"),
            _cron_field("(0?[1-9]|[12][0-9]|3[01])", question_mark=True),
            _cron_field(f"(0?[1-9]|1[0-2]|{_MONTHS})"),
            _cron_field(f"(0?[0-7]|{_DAYS})", question_mark=True),
        )
    )
    + ")$"
)
_CRON = re.compile(CRON_REGEX)

CRON_RULE = CelRule(
    rule=f"self.matches('{CRON_REGEX}')",
    message="cron must be a 5-field cron expression 'minute hour day-of-month month "
    "day-of-week' with values in range (e.g. '0 3 * * *', '*/15 * * * 1-5') or a macro "
    "such as @daily",
)

TIME_ZONE_PATTERN = r"^[A-Za-z0-9_+/-]+$"


class ScheduleTrigger(SpecModel):
    """Retrain on a cron schedule (like a CronJob: missed times collapse into one run)."""

    cron: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": CRON_SHAPE_PATTERN, **cel_field(CRON_RULE)},
        description="Cron expression, e.g. '0 3 * * *' (03:00 every day) or @daily.",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        pattern=TIME_ZONE_PATTERN,
        description="IANA time zone of the schedule, e.g. Europe/Berlin. Default: UTC.",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description="A scheduled run not started within this many seconds of its time is skipped.",
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        if not _CRON.fullmatch(cron):
            raise CRON_RULE.error()
        return cron


class DataChangeTrigger(SpecModel):
    """Retrain when the data at data.uri changes (its fingerprint is polled)."""

    enabled: bool = Field(default=False, description="Whether to poll the data for changes.")
    poll_interval_seconds: int = Field(
        default=300, ge=30, description="How often the data's fingerprint is checked."
    )


class DriftTrigger(SpecModel):
    """Retrain when the serving model sees inputs unlike its training data (PSI)."""

    deployment_ref: LocalObjectReference = Field(
        description="The ModelDeployment whose monitoring.maxDriftScore is watched."
    )
    threshold: float = Field(
        default=0.25,
        gt=0,
        description="Retrain when the largest per-feature PSI reaches this (0.25 = "
        "significant shift). The deployment's monitoring.minSamples must be reached first.",
    )
    cooldown_seconds: int = Field(
        default=3600,
        ge=0,
        description="Least time between two drift-triggered runs; doubled for each "
        "drift-triggered run in a row the gates rejected (up to 16 times).",
    )


DECAY_ONE_LIMIT = CelRule(
    rule="has(self.threshold) != has(self.maxDrop)",
    message="set exactly one of threshold (an absolute limit on the live metric) or maxDrop "
    "(a drop from the served model's own holdout score)",
)


class PerformanceDecayTrigger(SpecModel):
    """Retrain when the live metric computed from feedback falls below a limit: an absolute
    threshold, or the served model's own holdout score minus maxDrop."""

    deployment_ref: LocalObjectReference = Field(
        description="The ModelDeployment whose live metric (from /feedback) is watched."
    )
    metric: Literal["accuracy", "rmse"] | None = Field(
        default=None,
        description="Live metric: accuracy (classification) or rmse (regression). Default: "
        "the one that suits model.task.",
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        description="Retrain when live accuracy falls below this (0..1), or live rmse rises "
        "above it (>= 0). Set this or maxDrop.",
    )
    max_drop: float | None = Field(
        default=None,
        gt=0,
        description="Retrain when live accuracy falls more than this below the served "
        "model's holdout accuracy (e.g. 0.05), or live rmse rises more than this fraction "
        "above its holdout rmse (0.10 = 10%). Set this or threshold.",
    )
    confidence: float | None = Field(
        default=None,
        ge=0.5,
        lt=1,
        description="Fire only when the live metric is beyond the limit with this "
        "confidence (one-sided: the Wilson upper bound of live accuracy lies below the "
        "limit; for rmse the chi-square lower bound lies above it), so a small feedback "
        "window neither fires on noise nor hides a real drop. Empty: compare the live "
        "value itself.",
    )
    min_feedback_samples: int = Field(
        default=100, ge=1, description="Feedback samples needed before any verdict."
    )
    cooldown_seconds: int = Field(
        default=3600,
        ge=0,
        description="Least time between two decay-triggered runs; doubled for each "
        "decay-triggered run in a row the gates rejected (up to 16 times).",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (DECAY_ONE_LIMIT,)

    @model_validator(mode="after")
    def _one_limit(self) -> Self:
        if (self.threshold is None) == (self.max_drop is None):
            raise DECAY_ONE_LIMIT.error()
        return self


class TriggersSpec(SpecModel):
    """When to retrain. A run can always be started by hand by setting the annotation
    perennial.dev/retrain to a new value."""

    on_spec_change: bool = Field(
        default=True,
        description="Retrain when data, model, evaluation, gates or artifacts change.",
    )
    schedule: ScheduleTrigger | None = Field(default=None, description="Retrain on a schedule.")
    data_change: DataChangeTrigger = Field(
        default_factory=DataChangeTrigger, description="Retrain when the data changes."
    )
    drift: DriftTrigger | None = Field(
        default=None, description="Retrain when the served model's inputs drift."
    )
    performance_decay: PerformanceDecayTrigger | None = Field(
        default=None, description="Retrain when the served model's live metric decays."
    )


DECAY_METRIC_SUITS_TASK = CelRule(
    rule="!has(self.triggers) || !has(self.triggers.performanceDecay) || "
    "!has(self.triggers.performanceDecay.metric) || "
    "self.triggers.performanceDecay.metric == "
    "(self.model.task == 'classification' ? 'accuracy' : 'rmse')",
    message="triggers.performanceDecay.metric must suit model.task: accuracy for "
    "classification, rmse for regression",
    field_path=".triggers.performanceDecay.metric",
)


_DECAY = "self.triggers.performanceDecay"
DECAY_THRESHOLD_IN_RANGE = CelRule(
    rule=f"!has(self.triggers) || !has({_DECAY}) || "
    f"(has({_DECAY}.metric) ? {_DECAY}.metric : "
    "(self.model.task == 'classification' ? 'accuracy' : 'rmse')) != 'accuracy' || "
    f"!has({_DECAY}.threshold) || {_DECAY}.threshold <= 1.0",
    message="triggers.performanceDecay.threshold must lie in 0..1 when the metric is accuracy "
    "(the default for classification): live accuracy never exceeds 1",
    field_path=".triggers.performanceDecay.threshold",
)
DECAY_MAX_DROP_IN_RANGE = CelRule(
    rule=f"!has(self.triggers) || !has({_DECAY}) || "
    f"(has({_DECAY}.metric) ? {_DECAY}.metric : "
    "(self.model.task == 'classification' ? 'accuracy' : 'rmse')) != 'accuracy' || "
    f"!has({_DECAY}.maxDrop) || {_DECAY}.maxDrop < 1.0",
    message="triggers.performanceDecay.maxDrop must be below 1 when the metric is accuracy: "
    "it is a drop in accuracy points (0.05 = five points below the holdout accuracy)",
    field_path=".triggers.performanceDecay.maxDrop",
)


class TrainingPipelineSpec(TrainingSpec):
    """Desired state of a TrainingPipeline. Start a run now with
    kubectl annotate tp/NAME perennial.dev/retrain="$(date +%s)" --overwrite."""

    triggers: TriggersSpec = Field(
        default_factory=TriggersSpec,
        description=f"When to retrain (besides the {RETRAIN_ANNOTATION} annotation).",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="Forbid: a trigger waits until the active run finishes. Replace: the "
        "active run is cancelled and a new one starts.",
    )
    suspend: bool = Field(default=False, description="Start no new runs (an active run finishes).")
    successful_runs_history_limit: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Finished Succeeded/Rejected runs kept; the champion's run is always kept.",
    )
    failed_runs_history_limit: int = Field(
        default=5, ge=0, le=1000, description="Failed runs kept."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        DECAY_METRIC_SUITS_TASK,
        DECAY_THRESHOLD_IN_RANGE,
        DECAY_MAX_DROP_IN_RANGE,
    )

    @model_validator(mode="after")
    def _decay_metric_suits_task(self) -> Self:
        decay = self.triggers.performance_decay
        if decay is not None and decay.metric is not None:
            expected = "accuracy" if self.model.task is Task.CLASSIFICATION else "rmse"
            if decay.metric != expected:
                raise DECAY_METRIC_SUITS_TASK.error()
        if decay is not None:
            default = "accuracy" if self.model.task is Task.CLASSIFICATION else "rmse"
            accuracy = (decay.metric or default) == "accuracy"
            if accuracy and decay.threshold is not None and decay.threshold > 1:
                raise DECAY_THRESHOLD_IN_RANGE.error()
            if accuracy and decay.max_drop is not None and decay.max_drop >= 1:
                raise DECAY_MAX_DROP_IN_RANGE.error()
        return self

    def resolved_decay_metric(self) -> str | None:
        decay = self.triggers.performance_decay
        if decay is None:
            return None
        if decay.metric is not None:
            return decay.metric
        return "accuracy" if self.model.task is Task.CLASSIFICATION else "rmse"

    def training_spec(self) -> TrainingSpec:
        """The snapshot stored in a TrainingRun's spec.pipelineSpec."""
        return TrainingSpec.model_validate(
            self.model_dump(include=set(TrainingSpec.model_fields), by_alias=True)
        )


# --- status ----------------------------------------------------------------------------


class LastRunStatus(StatusModel):
    """The most recent TrainingRun of the pipeline."""

    name: str = Field(description="Name of the TrainingRun.")
    phase: RunPhase | None = Field(default=None, description="Its phase.")
    trigger: TriggerType | None = Field(default=None, description="What started it.")
    start_time: AwareDatetime | None = Field(default=None, description="When it started.")


class ChampionStatus(StatusModel):
    """The blessed model: the last run that passed every gate."""

    run: str = Field(description="Name of the champion's TrainingRun.")
    model_uri: str | None = Field(default=None, description="Location of the model file.")
    sha256: str | None = Field(default=None, description="sha256 of the model file.")
    metric: str | None = Field(default=None, description="The primary metric's name.")
    value: float | None = Field(default=None, description="The primary metric's value.")
    value_display: str | None = Field(
        default=None,
        description="The value rounded to 4 decimals, as kubectl get tp prints it.",
    )
    blessed_at: AwareDatetime | None = Field(
        default=None, description="When it became the champion."
    )


class TrainingPipelineStatus(StatusModel):
    """Observed state of a TrainingPipeline, written by the operator."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    phase: PipelinePhase | None = Field(
        default=None, description="Idle, Training, Suspended or Stalled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        description="Ready, Reconciling and Stalled (kstatus).",
    )
    last_run: LastRunStatus | None = Field(default=None, description="The most recent run.")
    champion: ChampionStatus | None = Field(
        default=None,
        json_schema_extra={"nullable": True},
        description="The current champion; empty until a run is blessed.",
    )
    next_schedule_time: AwareDatetime | None = Field(
        default=None,
        json_schema_extra={"nullable": True},
        description="When the schedule trigger fires next.",
    )
    last_schedule_time: AwareDatetime | None = Field(
        default=None, description="Schedule time of the last scheduled run."
    )
    last_data_fingerprint: str | None = Field(
        default=None, description="Fingerprint of the data when last checked."
    )
    last_data_check_time: AwareDatetime | None = Field(
        default=None, description="When the data was last checked for changes."
    )
    spec_hash: str | None = Field(
        default=None, description="Hash of the training spec the last run was made from."
    )
    run_sequence: int = Field(
        default=0, ge=0, description="Sequence number of the last run (run names end in it)."
    )
    last_triggers: dict[str, AwareDatetime] = Field(
        default_factory=dict,
        description="When each trigger type last started a run (for cool-downs).",
    )
    last_retrain_token: str | None = Field(
        default=None,
        description=f"The {RETRAIN_ANNOTATION} annotation value that last started a run.",
    )
    message: str | None = Field(default=None, description="Human-readable summary.")


class TrainingPipeline(ApiModel):
    """A TrainingPipeline keeps a scikit-learn model fresh: it starts TrainingRuns on its
    triggers and blesses a candidate as champion when every gate passes."""

    api_version: Literal["perennial.dev/v1alpha1"] = "perennial.dev/v1alpha1"
    kind: Literal["TrainingPipeline"] = "TrainingPipeline"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TrainingPipelineSpec
    status: TrainingPipelineStatus = Field(default_factory=TrainingPipelineStatus)

    cel_rules: ClassVar[tuple[CelRule, ...]] = name_cel_rules(PIPELINE_NAME_RULES)

    @model_validator(mode="after")
    def _name_fits(self) -> Self:
        errors = name_errors(self.metadata.name, PIPELINE_NAME_RULES)
        if errors:
            raise ValueError(errors[0])
        return self
