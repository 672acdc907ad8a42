"""Forget the Prometheus series of objects that are gone.

A watch's DELETED event is the moment an object left the API server (after its
finalizers); kopf delivers it to ``on.event`` handlers without adding a finalizer of its own.
"""

from __future__ import annotations

from typing import Any

import kopf

from perennial.api.constants import GROUP, MODEL_DEPLOYMENTS, TRAINING_PIPELINES, VERSION
from perennial.k8s import metrics

DELETED = "DELETED"


@kopf.on.event(GROUP, VERSION, TRAINING_PIPELINES, id="tp-forget-series")
def pipeline_event(type: str | None, name: str, namespace: str | None, **_: Any) -> None:
    if type == DELETED:
        metrics.forget_pipeline(namespace or "", name)


@kopf.on.event(GROUP, VERSION, MODEL_DEPLOYMENTS, id="md-forget-series")
def deployment_event(type: str | None, name: str, namespace: str | None, **_: Any) -> None:
    if type == DELETED:
        metrics.forget_deployment(namespace or "", name)
