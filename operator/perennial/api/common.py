"""Shapes shared by the three kinds, in their Kubernetes form (metav1.Condition, ...)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from perennial.api.base import CelRule, SpecModel, StatusModel
from perennial.api.object_names import MAX_PIPELINE_NAME, MAX_RUN_NAME

# A DNS-1123 subdomain: what Kubernetes accepts as the name of most objects.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
MAX_NAME_LENGTH = 253

ObjectName = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS1123_SUBDOMAIN)
]

# A resource quantity such as 500m, 2Gi, 1.5, 1e3 (never negative here).
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"quantity {value} must not be negative")
        return value
    if not _QUANTITY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity; write e.g. '500m' (CPU), '2Gi' "
            "(memory) or a whole number"
        )
    return value


Quantity = Annotated[
    StrictInt | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

# As a string, only a percentage (0%..100%): a PodDisruptionBudget refuses "3" or "150%".
_PERCENT_OR_COUNT = r"^([0-9]|[1-9][0-9]|100)%$"
_PERCENT = re.compile(_PERCENT_OR_COUNT)


def _check_int_or_percent(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} must not be negative")
        return value
    if not _PERCENT.fullmatch(value):
        raise ValueError(
            f"{value!r} must be a whole number or a percentage from 0% to 100% such as '50%'"
        )
    return value


IntOrPercent = Annotated[
    StrictInt | str,
    AfterValidator(_check_int_or_percent),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _PERCENT_OR_COUNT,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

ImagePullPolicy = Literal["IfNotPresent", "Always", "Never"]

StringMap = Annotated[dict[str, str], Field(max_length=64)]


class LocalObjectReference(SpecModel):
    """A reference to an object in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object.")


class PipelineReference(SpecModel):
    """A reference to a TrainingPipeline in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=MAX_PIPELINE_NAME,
        pattern=DNS1123_SUBDOMAIN,
        description=f"Name of the TrainingPipeline (at most {MAX_PIPELINE_NAME} characters, "
        "as pipeline names are: it becomes the perennial.dev/pipeline label value of runs, "
        "Jobs and Pods).",
    )


class RunReference(SpecModel):
    """A reference to a TrainingRun in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=MAX_RUN_NAME,
        pattern=DNS1123_SUBDOMAIN,
        description=f"Name of the TrainingRun (at most {MAX_RUN_NAME} characters, as run "
        "names are: it becomes the perennial.dev/run label value).",
    )


class ResourceRequirements(SpecModel):
    """Compute resources of a container, as in a Pod spec (quantities such as 500m, 2Gi)."""

    requests: dict[str, Quantity] | None = Field(
        default=None,
        max_length=16,
        description="Minimum resources the container is scheduled with, e.g. cpu: 500m.",
    )
    limits: dict[str, Quantity] | None = Field(
        default=None,
        max_length=16,
        description="Maximum resources the container may use, e.g. memory: 2Gi.",
    )


# The Pod API's own rules for a toleration: a Job or Deployment breaking them is refused.
TOLERATION_SECONDS_NEED_NO_EXECUTE = CelRule(
    rule="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
    message="tolerationSeconds only applies with effect NoExecute",
    field_path=".tolerationSeconds",
)
EXISTS_TAKES_NO_VALUE = CelRule(
    rule="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
    message="value must be empty when operator is Exists",
    field_path=".value",
)
EMPTY_KEY_NEEDS_EXISTS = CelRule(
    rule="(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
    message="an empty key (tolerate every taint) needs operator Exists",
    field_path=".operator",
)


class Toleration(SpecModel):
    """A Pod toleration (the Kubernetes core/v1 Toleration shape)."""

    key: str | None = Field(
        default=None,
        max_length=316,
        description="Taint key to tolerate; empty with operator Exists tolerates every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (Kubernetes' default: Equal)."
    )
    value: str | None = Field(
        default=None, max_length=63, description="Taint value matched by operator Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates every effect."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="With effect NoExecute: how long the Pod stays bound after the taint.",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        TOLERATION_SECONDS_NEED_NO_EXECUTE,
        EXISTS_TAKES_NO_VALUE,
        EMPTY_KEY_NEEDS_EXISTS,
    )

    @model_validator(mode="after")
    def _pod_api_rules(self) -> Self:
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise TOLERATION_SECONDS_NEED_NO_EXECUTE.error()
        if self.operator == "Exists" and self.value:
            raise EXISTS_TAKES_NO_VALUE.error()
        if not self.key and self.operator != "Exists":
            raise EMPTY_KEY_NEEDS_EXISTS.error()
        return self


class PodPlacement(SpecModel):
    """Where and as whom the Pods run; copied into the Pod template as-is."""

    service_account_name: ObjectName | None = Field(
        default=None,
        description=(
            "ServiceAccount of the Pods (e.g. for workload identity to reach s3:// or gs://). "
            "Default: the namespace's default ServiceAccount."
        ),
    )
    node_selector: StringMap | None = Field(
        default=None, description="Node labels the Pods must be scheduled on."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations of the Pods."
    )
    pod_labels: StringMap | None = Field(
        default=None, description="Extra labels on the Pods (the operator's own labels win)."
    )
    pod_annotations: StringMap | None = Field(
        default=None, description="Extra annotations on the Pods."
    )


CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(StatusModel):
    """One aspect of the object's state (the metav1.Condition shape; kstatus types Ready,
    Reconciling, Stalled)."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Type of the condition in CamelCase: Ready, Reconciling or Stalled.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="metadata.generation of the spec this condition was computed from.",
    )
    last_transition_time: AwareDatetime = Field(
        description="When the status last changed (RFC 3339)."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Machine-readable CamelCase reason of the last transition.",
    )
    message: str = Field(
        default="", max_length=32768, description="Human-readable details of the transition."
    )


class ObjectMeta(BaseModel):
    """The parts of ``metadata`` the operator reads; every other field is kept as-is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: AwareDatetime | None = None
    deletion_timestamp: AwareDatetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[dict[str, Any]] = Field(default_factory=list)
    finalizers: list[str] = Field(default_factory=list)
