"""TrainingPipeline + trigger -> a TrainingRun; an old run -> its reproduction (pure).

A run is an immutable snapshot: the pipeline's training spec (data, model, evaluation,
gates, run template, artifacts) at the moment the trigger fired, the trigger itself and
the champion it will be compared with. Its name is deterministic (pipeline + sequence),
it is owned by the pipeline (deleting the pipeline deletes its runs, and their Jobs) and
it records what it consumed (:class:`perennial.core.pipeline_plan.Consumed`), so a
restarted operator never starts it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from perennial.api.constants import API_VERSION, TRAINING_RUN
from perennial.api.enums import TriggerType
from perennial.api.pipeline import TrainingPipeline
from perennial.api.run import RunChampion, TrainingRun
from perennial.api.training import TrainingSpec
from perennial.core.naming import MAX_NAME
from perennial.core.pipeline_plan import (
    ANNOTATION_CONSUMED,
    LABEL_PIPELINE,
    LABEL_SEQUENCE,
    ChampionRecord,
    NewRun,
)
from perennial.core.spec_hash import spec_hash
from perennial.k8s.client import owner_reference
from perennial_runtime.artifacts import join_uri, run_dir
from perennial_runtime.contract import METADATA_FILE

ANNOTATION_REPRODUCES = "perennial.dev/reproduces"


def pipeline_spec_hash(pipeline: TrainingPipeline) -> str:
    """The hash of the pipeline's training-relevant spec, defaults resolved: writing a
    default out explicitly (or leaving it out) is not a change that retrains."""
    return spec_hash(pipeline.spec.to_dict())


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def champion_ref(
    champion_run: Mapping[str, Any] | None,
    *,
    fallback: Mapping[str, Any] | None,
    spec: TrainingSpec,
) -> RunChampion | None:
    """The champion a new run is compared with, from the champion's TrainingRun (its
    artifact and metrics) or, if that run is gone, from the pipeline's status.champion.

    ``None`` (first-run semantics, change gates skipped) when there is no champion or it
    cannot be compared: a different task or target makes the old model incomparable.
    """
    if champion_run is not None:
        old = TrainingRun.model_validate(champion_run)
        artifact = old.status.artifact
        if artifact is None:
            return None
        before = old.spec.pipeline_spec
        if before.model.task != spec.model.task or before.data.target != spec.data.target:
            return None
        return RunChampion(
            run=old.metadata.name or "",
            model_uri=artifact.model_uri,
            sha256=artifact.sha256,
            metadata_uri=join_uri(artifact.uri, METADATA_FILE),
            metrics=dict(old.status.metrics),
        )
    if fallback is None or not fallback.get("modelUri") or not fallback.get("sha256"):
        return None
    metrics = {}
    if fallback.get("metric") and fallback.get("value") is not None:
        metrics[str(fallback["metric"])] = float(fallback["value"])
    model_uri = str(fallback["modelUri"])
    folder = model_uri.rsplit("/", 1)[0]
    return RunChampion(
        run=str(fallback["run"]),
        model_uri=model_uri,
        sha256=str(fallback["sha256"]),
        metadata_uri=join_uri(folder, METADATA_FILE),
        metrics=metrics,
    )


def build_run(
    pipeline_body: Mapping[str, Any],
    new_run: NewRun,
    *,
    champion: RunChampion | None,
    now: datetime,
) -> dict[str, Any]:
    """The TrainingRun a pipeline starts for ``new_run``."""
    pipeline = TrainingPipeline.model_validate(pipeline_body)
    snapshot = pipeline.spec.training_spec()
    name = new_run.name
    labels = {
        "app.kubernetes.io/managed-by": "perennial",
        LABEL_PIPELINE: pipeline.metadata.name or "",
        LABEL_SEQUENCE: str(new_run.sequence),
    }
    spec: dict[str, Any] = {
        "pipelineRef": {"name": pipeline.metadata.name},
        "trigger": {
            "type": new_run.trigger.type.value,
            "reason": new_run.reason,
            "time": _timestamp(now),
        },
        "pipelineSpec": snapshot.to_dict(),
        "specHash": pipeline_spec_hash(pipeline),
    }
    if champion is not None:
        spec["champion"] = champion.to_dict()
    metadata: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "annotations": {
            ANNOTATION_CONSUMED: new_run.consumed.to_annotation(),
            "perennial.dev/artifact-dir": run_dir(snapshot.artifacts.uri, name),
        },
        "ownerReferences": [owner_reference(dict(pipeline_body))],
    }
    if pipeline.metadata.namespace:
        metadata["namespace"] = pipeline.metadata.namespace
    return {"apiVersion": API_VERSION, "kind": TRAINING_RUN, "metadata": metadata, "spec": spec}


def build_rerun(old_body: Mapping[str, Any], name: str, *, now: datetime) -> dict[str, Any]:
    """A TrainingRun that reproduces ``old_body``: the same snapshot (data reference, seed,
    estimator, image, gates) and the same champion to compare with, trigger ``Reproduce``.

    It is not owned by the pipeline: it is an experiment, never pruned, and it does not
    replace the pipeline's champion even when it passes every gate.
    """
    old = TrainingRun.model_validate(old_body)
    old_name = old.metadata.name or ""
    spec: dict[str, Any] = {
        "trigger": {
            "type": TriggerType.REPRODUCE.value,
            "reason": f"reproduces run {old_name} (same spec snapshot, data reference and seed)",
            "time": _timestamp(now),
        },
        "pipelineSpec": old.spec.pipeline_spec.to_dict(),
    }
    if old.spec.pipeline_ref is not None:
        spec["pipelineRef"] = old.spec.pipeline_ref.to_dict()
    if old.spec.spec_hash:
        spec["specHash"] = old.spec.spec_hash
    if old.spec.champion is not None:
        spec["champion"] = old.spec.champion.to_dict()
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/managed-by": "perennial"},
        "annotations": {ANNOTATION_REPRODUCES: old_name},
    }
    if old.metadata.namespace:
        metadata["namespace"] = old.metadata.namespace
    return {"apiVersion": API_VERSION, "kind": TRAINING_RUN, "metadata": metadata, "spec": spec}


def rerun_name(old: str, taken: set[str]) -> str:
    """``<old>-rerun-N``: the first N not in ``taken``, at most 63 characters (the run's
    name is also its Job's name, which ends up in a Pod label)."""
    for index in range(1, 1000):
        suffix = f"-rerun-{index}"
        candidate = old[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    raise ValueError(f"run {old} has been reproduced 999 times; delete some reproductions")


def new_run_body(
    pipeline_body: Mapping[str, Any],
    pipeline: TrainingPipeline,
    new_run: NewRun,
    *,
    champion_run: Mapping[str, Any] | None,
    champion: ChampionRecord | None,
    now: datetime,
) -> dict[str, Any]:
    """The TrainingRun to create for ``new_run``, compared with the current champion (its
    run, or the pipeline's record of it when the run is gone)."""
    ref = champion_ref(
        champion_run,
        fallback=champion.to_status() if champion else None,
        spec=pipeline.spec,
    )
    return build_run(pipeline_body, new_run, champion=ref, now=now)
