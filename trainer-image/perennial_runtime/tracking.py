"""MLflow tracking and registry (optional: only when the TrainConfig carries ``mlflow``).

Two entry points, both in the runtime image so that credentials reach them from a Secret
by reference (``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or ``MLFLOW_TRACKING_TOKEN`` in
the environment; the operator never reads the Secret):

- :func:`log_training` after a successful training: one MLflow run per TrainingRun with
  params, tags (spec hash, seed, data URI + fingerprint, holdout hash, image, library
  versions, the model's URI + sha256), metrics and ``champion.<metric>`` (the champion on
  the same holdout), ``metadata.json`` and ``MODEL_CARD.md`` as artifacts, and a model
  version in the registry whose source is our artifact URI. Our skops file stays the
  source of truth: MLflow gets its URI and sha256, never a copy.
- ``python -m perennial_runtime.tracking finalize`` (:func:`finalize`) after the
  operator's verdict: each gate's verdict on the run and on the model version, and the
  ``champion`` alias moved to a blessed version (or back, on a rollback).

Tracking never fails a training run: every MLflow error becomes a warning in the result.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from perennial_runtime import artifacts
from perennial_runtime.contract import (
    CHAMPION_ALIAS,
    METADATA_FILE,
    MODEL_CARD_FILE,
    TRACKING_FINALIZE_ENV,
    TRACKING_WARNING_LIMIT,
    MlflowConfig,
    ModelMetadata,
    TrackingFinalize,
    TrackingResult,
    TrainConfig,
    TrainResult,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

# MLflow retries a refused connection 7 times with exponential backoff (minutes): a
# tracking server that is down must not hold the training Pod that long. The environment
# may still override these.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
RUN_TAG = "perennial.run"
_BATCH = 100  # MLflow's log_batch limit per kind
ARTIFACT_PATH = "perennial"  # metadata.json and MODEL_CARD.md in the MLflow run


def _client(config: MlflowConfig) -> MlflowClient:
    for key, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)


def _warning(what: str, exc: BaseException) -> str:
    text = f"MLflow {what} failed: {type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    if len(text) > TRACKING_WARNING_LIMIT:
        text = text[: TRACKING_WARNING_LIMIT - 3] + "..."
    return text


def _already_exists(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_ALREADY_EXISTS"


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception as exc:
        if not _already_exists(exc):
            raise
        experiment = client.get_experiment_by_name(name)  # created concurrently
        assert experiment is not None
        return str(experiment.experiment_id)


def _run_id(client: MlflowClient, experiment_id: str, run_name: str) -> str:
    """The MLflow run of this TrainingRun: a retried Pod reuses the one it made before."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run_name}'", max_results=1
    )
    if found:
        return str(found[0].info.run_id)
    return str(client.create_run(experiment_id, run_name=run_name).info.run_id)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _params(meta: ModelMetadata) -> dict[str, str]:
    params = {
        "estimator": meta.estimator,
        "task": meta.task.value,
        "seed": str(meta.seed),
        "test_size": str(meta.test_size),
        "primary_metric": meta.primary_metric,
    }
    params.update({f"model.{k}": str(v)[:6000] for k, v in sorted(meta.params.items())})
    return params


def _tags(config: TrainConfig, result: TrainResult, meta: ModelMetadata) -> dict[str, str]:
    assert result.artifact is not None and config.mlflow is not None
    tags = {
        RUN_TAG: config.run_name,
        "perennial.pipeline": config.pipeline_name or "",
        "perennial.namespace": config.namespace or "",
        "perennial.specHash": config.mlflow.spec_hash or "",
        "perennial.seed": str(meta.seed),
        "data.uri": meta.data.uri,
        "data.fingerprint": meta.data.fingerprint or "",
        "data.rows": str(meta.data.rows or ""),
        "holdout.sha256": meta.holdout_sha256 or "",
        "model.uri": result.artifact.model_uri,
        "model.sha256": result.artifact.sha256,
        "artifacts.uri": result.artifact.uri,
        "image": meta.image or "",
        "champion.run": meta.champion_run or "",
    }
    tags.update({f"library.{k}": v for k, v in sorted(meta.libraries.items())})
    return {k: v for k, v in tags.items() if v}


def _log_run(client: MlflowClient, run_id: str, config: TrainConfig, result: TrainResult) -> None:
    from mlflow.entities import Metric, Param, RunTag

    assert result.artifact is not None
    meta = artifacts.read_metadata(result.artifact.uri)
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in sorted(result.metrics.items())]
    metrics += [
        Metric(f"champion.{k}", v, now, 0)
        for k, v in sorted((result.champion_metrics or {}).items())
    ]
    params = [Param(k, v) for k, v in _params(meta).items()]
    existing = client.get_run(run_id).data.params
    params = [p for p in params if p.key not in existing]  # a retried Pod logged them
    tags = [RunTag(k, v) for k, v in _tags(config, result, meta).items()]
    for chunk in _chunks(params):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(tags):
        client.log_batch(run_id, tags=chunk)
    for chunk in _chunks(metrics):
        client.log_batch(run_id, metrics=chunk)
    with tempfile.TemporaryDirectory(prefix="perennial-mlflow-") as tmp:
        for name in (METADATA_FILE, MODEL_CARD_FILE):
            path = Path(tmp) / name
            path.write_bytes(artifacts.read_bytes(artifacts.join_uri(result.artifact.uri, name)))
            client.log_artifact(run_id, str(path), ARTIFACT_PATH)


def _register(
    client: MlflowClient, model_name: str, run_id: str, run_name: str, result: TrainResult
) -> str:
    """A model version (reused when a retried Pod registered it already).

    Its source is our artifact folder when that is remote storage (s3://, gs://). A
    file:// folder lives on the Pods' volume, which the tracking server cannot see, and
    the server refuses local sources outside the run: such a version's source is the
    run's copy of metadata.json and the card. Either way its tags name the model file and
    its sha256."""
    assert result.artifact is not None
    try:
        client.create_registered_model(
            model_name,
            description="Registered by Perennial; model files live at each "
            "version's source (skops, verified by the sha256 tag).",
        )
    except Exception as exc:
        if not _already_exists(exc):
            raise
    for version in client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"):
        return str(version.version)
    source = result.artifact.uri
    if "://" not in source or source.startswith("file://"):
        source = f"runs:/{run_id}/{ARTIFACT_PATH}"
    version = client.create_model_version(
        model_name,
        source=source,
        run_id=run_id,
        tags={
            RUN_TAG: run_name,
            "model.uri": result.artifact.model_uri,
            "model.sha256": result.artifact.sha256,
        },
    )
    return str(version.version)


def log_training(config: TrainConfig, result: TrainResult) -> TrackingResult:
    """Log a succeeded run to MLflow and register its model; errors become a warning."""
    assert config.mlflow is not None
    tracking = TrackingResult()
    if result.status != "Succeeded" or result.artifact is None:
        return tracking
    stage = "client"
    try:
        client = _client(config.mlflow)
        stage = "run logging"
        experiment_id = _experiment_id(client, config.mlflow.experiment_name)
        tracking.mlflow_run_id = _run_id(client, experiment_id, config.run_name)
        _log_run(client, tracking.mlflow_run_id, config, result)
        client.set_terminated(tracking.mlflow_run_id, "FINISHED")
        stage = "model registration"
        tracking.model_version = _register(
            client,
            config.mlflow.registered_model_name,
            tracking.mlflow_run_id,
            config.run_name,
            result,
        )
    except Exception as exc:
        tracking.warning = _warning(stage, exc)
        log.warning("%s (training is not affected)", tracking.warning)
    return tracking


# --- after the verdict ---------------------------------------------------------------


def finalize(request: TrackingFinalize) -> None:
    """Write the verdict to the run and the model version; move the alias. Raises on an
    MLflow error (the finalize Job retries; the operator reports it)."""
    from mlflow.entities import Metric, RunTag

    client = _client(request.mlflow)
    name = request.mlflow.registered_model_name
    if request.mlflow_run_id is not None and request.verdict is not None:
        tags: dict[str, str] = {"perennial.verdict": request.verdict}
        if request.reason:
            tags["perennial.verdictReason"] = request.reason[:5000]
        metrics: list[Metric] = []
        now = int(time.time() * 1000)
        for gate in request.gates:
            state = "skipped" if gate.skipped else ("passed" if gate.passed else "failed")
            tags[f"gate.{gate.name}"] = state
            if gate.message:
                tags[f"gate.{gate.name}.message"] = gate.message[:5000]
            if gate.observed is not None:
                metrics.append(Metric(f"gate.{gate.name}.observed", gate.observed, now, 0))
            if gate.threshold is not None:
                metrics.append(Metric(f"gate.{gate.name}.threshold", gate.threshold, now, 0))
        for chunk in _chunks([RunTag(k, v) for k, v in tags.items()]):
            client.log_batch(request.mlflow_run_id, tags=chunk)
        for chunk in _chunks(metrics):
            client.log_batch(request.mlflow_run_id, metrics=chunk)
        if request.model_version is not None:
            client.set_model_version_tag(
                name, request.model_version, "perennial.verdict", request.verdict
            )
    if request.alias_version is not None:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, request.alias_version)


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    """``python -m perennial_runtime.tracking finalize``: the request is JSON in
    ``PERENNIAL_TRACKING_FINALIZE``. Exit 0 done, 2 invalid request, 1 MLflow error."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    environ = os.environ if env is None else env
    if argv != ["finalize"]:
        print("usage: python -m perennial_runtime.tracking finalize", file=sys.stderr)
        return 2
    try:
        request = TrackingFinalize.model_validate_json(environ.get(TRACKING_FINALIZE_ENV, ""))
    except ValidationError as exc:
        print(f"{TRACKING_FINALIZE_ENV} is not a valid request: {exc}", file=sys.stderr)
        return 2
    try:
        finalize(request)
    except Exception as exc:
        print(_warning("finalize", exc), file=sys.stderr)
        return 1
    print("finalized", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
