"""spec.tracking: optional experiment tracking (MLflow), off by default.

Not part of the spec hash: pointing a pipeline at a tracking server does not retrain.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from perennial.api.base import CelRule, SpecModel, cel_field
from perennial.api.common import LocalObjectReference
from perennial_runtime.contract import MlflowConfig

TRACKING_URI_REGEX = r"^https?://[^\s/?#@]+([/?#][^\s]*)?$"
_TRACKING_URI = re.compile(TRACKING_URI_REGEX)
TRACKING_URI_RULE = CelRule(
    rule=f"self.matches('{TRACKING_URI_REGEX}')",
    message="trackingUri must be the tracking server's http:// or https:// URL, e.g. "
    "http://mlflow.mlflow.svc:5000 (credentials go in credentialsSecretRef, never in the URL)",
)


class MlflowTrackingSpec(SpecModel):
    """Log every run to an MLflow tracking server and register its model."""

    tracking_uri: str = Field(
        min_length=1,
        max_length=2048,
        json_schema_extra=cel_field(TRACKING_URI_RULE),
        description="The tracking server, e.g. http://mlflow.mlflow.svc:5000.",
    )
    experiment_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="MLflow experiment. Default: <namespace>/<pipeline name>.",
    )
    registered_model_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Model Registry name; the blessed champion's version gets the alias "
        "champion. Default: the pipeline's name.",
    )
    credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
        "MLFLOW_TRACKING_TOKEN; passed to the training Pod by reference (the operator "
        "never reads it).",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _http_uri(cls, value: str) -> str:
        if not _TRACKING_URI.fullmatch(value):
            raise TRACKING_URI_RULE.error()
        return value

    def contract(
        self, namespace: str | None, pipeline: str | None, spec_hash: str | None
    ) -> MlflowConfig:
        """The trainer's view, with the defaults resolved."""
        name = pipeline or "perennial"
        return MlflowConfig(
            tracking_uri=self.tracking_uri,
            experiment_name=self.experiment_name or f"{namespace or 'default'}/{name}",
            registered_model_name=self.registered_model_name or name,
            spec_hash=spec_hash,
        )


class TrackingSpec(SpecModel):
    """Experiment tracking backends (only MLflow today)."""

    mlflow: MlflowTrackingSpec | None = Field(
        default=None, description="MLflow tracking and Model Registry."
    )
