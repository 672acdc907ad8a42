"""MLflow tracking through the operator against the emulator: the run's status, the
TrackingFailed condition and event, and the finalize Job (the trainer and the finalize
command themselves run against a real MLflow server in tests/runtime)."""

from __future__ import annotations

import json

from perennial_runtime.contract import TrackingFinalize, TrackingResult, TrainResult

from .harness import wait_for
from .training_helpers import Training, result_json, training, validate_job

__all__ = ["training"]

MLFLOW = {
    "mlflow": {
        "trackingUri": "http://mlflow.mlflow.svc:5000",
        "credentialsSecretRef": {"name": "mlflow-creds"},
    }
}


def _tracked(run: str, tracking: TrackingResult, accuracy: float = 0.97) -> str:
    result = TrainResult.model_validate_json(result_json(run, accuracy=accuracy))
    result.tracking = tracking
    return result.to_json()


def _condition(body: dict[str, object], type_: str) -> dict[str, str]:
    conditions = (body.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
    (found,) = [c for c in conditions if c["type"] == type_]
    return dict(found)


async def test_a_tracked_run_records_its_mlflow_run_and_starts_the_finalize_job(
    training: Training,
) -> None:
    await training.create_pipeline("iris", tracking=MLFLOW)
    job = await training.wait_job("iris-00001")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    config = json.loads(
        next(e["value"] for e in container["env"] if e["name"] == "PERENNIAL_TRAIN_CONFIG")
    )
    assert config["mlflow"]["experimentName"] == "ml/iris"
    assert config["mlflow"]["registeredModelName"] == "iris"
    refs = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    assert refs["MLFLOW_TRACKING_PASSWORD"]["secretKeyRef"]["name"] == "mlflow-creds"

    run = await training.finish(
        "iris-00001", _tracked("iris-00001", TrackingResult(mlflow_run_id="r1", model_version="1"))
    )
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["tracking"] == {"mlflowRunId": "r1", "modelVersion": "1"}
    assert _condition(run, "TrackingFailed")["status"] == "False"

    finalize = await training.wait_job("iris-00001-mlflow")
    validate_job(finalize)
    assert finalize["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert "perennial.dev/run" not in finalize["metadata"]["labels"]
    (container,) = finalize["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    request = TrackingFinalize.model_validate_json(env["PERENNIAL_TRACKING_FINALIZE"]["value"])
    assert (request.mlflow_run_id, request.verdict, request.alias_version) == ("r1", "Blessed", "1")
    assert {g.name for g in request.gates} == {g["name"] for g in run["status"]["gates"]}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-creds"
    await training.wait_events(run, "ModelBlessed", "TrackingFinalizeStarted")


async def test_a_tracking_server_that_was_down_is_a_warning_not_a_failure(
    training: Training,
) -> None:
    await training.create_pipeline("iris", tracking=MLFLOW)
    warning = "MLflow run logging failed: ConnectionError: refused"
    run = await training.finish(
        "iris-00001", _tracked("iris-00001", TrackingResult(warning=warning))
    )
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["tracking"] == {"warning": warning}
    condition = _condition(run, "TrackingFailed")
    assert (condition["status"], condition["reason"]) == ("True", "MlflowUnavailable")
    assert condition["message"] == warning
    await training.wait_events(run, "ModelBlessed", "TrackingFailed")
    assert "iris-00001-mlflow" not in [j["metadata"]["name"] for j in await training.jobs()]


async def test_the_finalize_jobs_end_is_reported_on_the_run(training: Training) -> None:
    await training.create_pipeline("iris", tracking=MLFLOW)
    run = await training.finish(
        "iris-00001", _tracked("iris-00001", TrackingResult(mlflow_run_id="r1", model_version="1"))
    )
    await training.wait_job("iris-00001-mlflow")
    await training.controllers.complete_job(
        "iris-00001-mlflow",
        training.namespace,
        succeeded=False,
        message="Job has reached the specified backoff limit",
    )

    async def reported() -> dict[str, object] | None:
        current = await training.run("iris-00001")
        found = _condition(current, "TrackingFailed")
        return current if found["reason"] == "FinalizeFailed" else None

    failed = await wait_for(reported)
    condition = _condition(failed, "TrackingFailed")
    assert condition["status"] == "True"
    assert (
        "iris-00001-mlflow failed: Job has reached the specified backoff limit"
        in (condition["message"])
    )
    assert failed["status"]["phase"] == "Succeeded"  # the verdict stands
    await training.wait_events(run, "TrackingFailed")


async def test_a_finalize_job_that_succeeded_is_reported_once(training: Training) -> None:
    await training.create_pipeline("iris", tracking=MLFLOW)
    run = await training.finish(
        "iris-00001", _tracked("iris-00001", TrackingResult(mlflow_run_id="r1", model_version="1"))
    )
    await training.wait_job("iris-00001-mlflow")
    await training.controllers.complete_job("iris-00001-mlflow", training.namespace)

    async def finalized() -> dict[str, object] | None:
        current = await training.run("iris-00001")
        found = _condition(current, "TrackingFailed")
        return current if found["reason"] == "Finalized" else None

    done = await wait_for(finalized)
    assert _condition(done, "TrackingFailed")["status"] == "False"
    await training.wait_events(run, "TrackingFinalized")
