"""A pipeline's life against the emulator: first run, Job, verdict, champion, events."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from perennial.api.run import TrainingRun
from perennial.cli import main
from perennial.k8s import metrics

from .harness import wait_for
from .training_helpers import (
    Training,
    created_jobs,
    data_validation_failure,
    result_json,
    training,
    validate_job,
)

__all__ = ["training"]


def _sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_a_new_pipeline_starts_a_run_and_its_job(training: Training) -> None:
    pipeline = await training.create_pipeline(
        "iris",
        data={
            "uri": "sklearn://iris",
            "target": "target",
            "secretRef": {"name": "iris-data"},
        },
    )
    run = await training.wait_run("iris-00001")
    job = await training.wait_job("iris-00001")

    # The run: owned by the pipeline, an immutable snapshot, the trigger recorded.
    parsed = TrainingRun.model_validate(run)
    assert run["metadata"]["ownerReferences"][0]["uid"] == pipeline["metadata"]["uid"]
    assert run["metadata"]["labels"]["perennial.dev/pipeline"] == "iris"
    assert parsed.spec.trigger.type.value == "Initial"
    assert parsed.spec.champion is None
    assert parsed.spec.pipeline_spec.model.estimator == "LogisticRegression"

    # The Job: owned by the run, restricted, TrainConfig in env, secrets as env, PVC.
    validate_job(job)
    (sent,) = created_jobs(training.emulator)  # what the fixture validates at teardown
    assert sent["metadata"]["name"] == "iris-00001"
    assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert job["metadata"]["labels"]["perennial.dev/run"] == "iris-00001"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["perennial-runtime"] and container["args"] == ["train"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["envFrom"] == [{"secretRef": {"name": "iris-data"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    config = json.loads(env["PERENNIAL_TRAIN_CONFIG"])
    assert config["runName"] == "iris-00001"
    assert config["artifactUri"] == "file:///artifacts/models"
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "models"}} in pod["volumes"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 3600

    tp = await training.wait_pipeline(
        "iris", lambda s: s.get("phase") == "Training", "pipeline Training"
    )
    assert tp["status"]["lastRun"]["name"] == "iris-00001"
    assert tp["status"]["runSequence"] == 1


async def test_blessed_run_becomes_champion_and_a_failing_gate_keeps_it(
    training: Training,
) -> None:
    started = _sample(
        "perennial_runs_started_total", namespace="ml", pipeline="iris", trigger="Initial"
    )
    await training.create_pipeline("iris")
    await training.wait_run("iris-00001")
    run = await training.finish("iris-00001", result_json("iris-00001", accuracy=0.95))

    status = run["status"]
    assert status["phase"] == "Succeeded"
    assert status["primaryMetric"] == {
        "name": "accuracy",
        "candidate": 0.95,
        "candidateDisplay": "0.9500",
    }
    gates = {g["name"]: g for g in status["gates"]}
    assert gates["accuracy.threshold"]["passed"] is True
    assert gates["beatChampion"]["skipped"] is True
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Blessed"]["status"] == "True"
    assert conditions["Ready"]["status"] == "True"

    tp = await training.wait_pipeline(
        "iris", lambda s: (s.get("champion") or {}).get("run") == "iris-00001", "champion"
    )
    champion = tp["status"]["champion"]
    assert champion["value"] == 0.95 and champion["modelUri"].endswith("iris-00001/model.skops")
    assert (
        _sample("perennial_runs_started_total", namespace="ml", pipeline="iris", trigger="Initial")
        == started + 1
    )
    champion_gauge = {"namespace": "ml", "pipeline": "iris", "metric": "accuracy"}
    await wait_for(lambda: _sample("perennial_champion_metric", **champion_gauge) == 0.95)

    await training.wait_events(
        run,
        "RunCreated",
        "JobCreated",
        "TrainingStarted",
        "TrainingCompleted",
        "GatePassed",
        "GateSkipped",
        "ModelBlessed",
    )

    # A manual retrain whose candidate is worse than the champion: Rejected.
    await training.api.patch(
        "perennial.dev/v1alpha1/trainingpipelines",
        "iris",
        "ml",
        {"metadata": {"annotations": {"perennial.dev/retrain": "1"}}},
    )
    second = await training.wait_run("iris-00002")
    assert second["spec"]["trigger"]["type"] == "Manual"
    assert second["spec"]["champion"]["run"] == "iris-00001"
    run2 = await training.finish(
        "iris-00002",
        result_json("iris-00002", accuracy=0.91, champion_accuracy=0.95, champion_run="iris-00001"),
    )
    assert run2["status"]["phase"] == "Rejected"
    failed = [g for g in run2["status"]["gates"] if not g["passed"]]
    assert [g["name"] for g in failed] == ["beatChampion"]
    assert "beatChampion" in run2["status"]["message"]
    blessed = {c["type"]: c for c in run2["status"]["conditions"]}["Blessed"]
    assert blessed["status"] == "False" and blessed["reason"] == "GateFailed"
    await training.wait_events(run2, "GateFailed", "ModelRejected")

    tp = await training.wait_pipeline(
        "iris", lambda s: (s.get("lastRun") or {}).get("phase") == "Rejected", "last run"
    )
    assert tp["status"]["champion"]["run"] == "iris-00001"
    assert tp["status"]["phase"] == "Idle"
    assert _sample("perennial_champion_metric", **champion_gauge) == 0.95  # still the champion

    # Deleted: the pipeline's series go with it (no champion gauge for a model nobody serves).
    await training.api.delete("perennial.dev/v1alpha1/trainingpipelines", "iris", "ml")
    await wait_for(
        lambda: (
            metrics.REGISTRY.get_sample_value("perennial_champion_metric", champion_gauge) is None
        )
    )
    runs_started = {"namespace": "ml", "pipeline": "iris", "trigger": "Manual"}
    assert metrics.REGISTRY.get_sample_value("perennial_runs_started_total", runs_started) is None


async def test_failed_job_and_data_validation(training: Training) -> None:
    await training.create_pipeline("iris")
    await training.wait_run("iris-00001")
    run = await training.finish(
        "iris-00001", "Traceback ...\nMemoryError", succeeded=False, reason="DeadlineExceeded"
    )
    assert run["status"]["phase"] == "Failed"
    assert run["status"]["reason"] == "DeadlineExceeded"
    assert "MemoryError" in run["status"]["message"]
    await training.wait_events(run, "TrainingFailed")
    tp = await training.wait_pipeline(
        "iris",
        lambda s: (
            {c["type"]: c["reason"] for c in s.get("conditions", [])}.get("Ready")
            == "LastRunFailed"
        ),
        "pipeline reports the failed run",
    )
    assert "iris-00001 failed" in tp["status"]["message"]

    await training.api.patch(
        "perennial.dev/v1alpha1/trainingpipelines",
        "iris",
        "ml",
        {"metadata": {"annotations": {"perennial.dev/retrain": "again"}}},
    )
    await training.wait_run("iris-00002")
    run2 = await training.finish(
        "iris-00002",
        data_validation_failure(),
        succeeded=False,
        exit_code=4,
        reason="PodFailurePolicy",
    )
    assert run2["status"]["phase"] == "Rejected"
    assert run2["status"]["reason"] == "DataValidationFailed"
    (gate,) = run2["status"]["gates"]
    assert gate["name"] == "dataValidation" and gate["passed"] is False
    assert "10 rows < minRows 20" in gate["message"]
    assert run2["status"]["data"]["violations"][0]["rule"] == "minRows"

    async def no_champion() -> bool:
        tp = await training.pipeline("iris")
        return (tp["status"].get("lastRun") or {}).get("phase") == "Rejected" and not tp[
            "status"
        ].get("champion")

    await wait_for(no_champion, what="no champion after a rejection")


async def test_rerun_reproduces_a_run_without_touching_the_champion(
    training: Training, capsys: pytest.CaptureFixture[str]
) -> None:
    await training.create_pipeline("iris")
    await training.wait_run("iris-00001")
    await training.finish("iris-00001", result_json("iris-00001", accuracy=0.95))
    await training.wait_pipeline(
        "iris", lambda s: (s.get("champion") or {}).get("run") == "iris-00001", "champion"
    )

    assert await asyncio.to_thread(main, ["rerun", "iris-00001", "-n", "ml", "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["metadata"]["name"] == "iris-00001-rerun-1"
    assert await training.run("iris-00001-rerun-1") is None  # nothing created

    assert await asyncio.to_thread(main, ["rerun", "iris-00001", "-n", "ml"]) == 0
    assert "iris-00001-rerun-1 created" in capsys.readouterr().out
    old = await training.run("iris-00001")
    new = await training.wait_run("iris-00001-rerun-1")
    assert old is not None
    assert new["spec"]["pipelineSpec"] == old["spec"]["pipelineSpec"]
    assert new["spec"]["trigger"]["type"] == "Reproduce"
    job = await training.wait_job("iris-00001-rerun-1")
    validate_job(job)
    done = await training.finish(
        "iris-00001-rerun-1",
        result_json("iris-00001-rerun-1", accuracy=0.96),
    )
    assert done["status"]["phase"] == "Succeeded"
    tp = await training.handled("iris")
    assert tp["status"]["champion"]["run"] == "iris-00001"
    assert tp["status"]["runSequence"] == 1

    assert await asyncio.to_thread(main, ["rerun", "nope", "-n", "ml"]) == 1
    assert "not found" in capsys.readouterr().err


async def test_metrics_count_outcomes_and_gate_failures(training: Training) -> None:
    labels = {"namespace": "ml", "pipeline": "metered"}
    before = {
        "ok": _sample("perennial_run_outcomes_total", **labels, outcome="Succeeded"),
        "rejected": _sample("perennial_run_outcomes_total", **labels, outcome="Rejected"),
        "gate": _sample("perennial_gate_failures_total", **labels, gate="accuracy.threshold"),
        "duration": _sample("perennial_training_duration_seconds_count", **labels),
        "verdict": _sample("perennial_trigger_to_verdict_seconds_count", **labels),
    }
    await training.create_pipeline("metered")
    await training.wait_run("metered-00001")
    await training.finish("metered-00001", result_json("metered-00001", accuracy=0.5))
    assert _sample("perennial_run_outcomes_total", **labels, outcome="Rejected") == (
        before["rejected"] + 1
    )
    assert _sample("perennial_gate_failures_total", **labels, gate="accuracy.threshold") == (
        before["gate"] + 1
    )
    assert _sample("perennial_training_duration_seconds_count", **labels) == before["duration"] + 1
    assert _sample("perennial_trigger_to_verdict_seconds_count", **labels) == before["verdict"] + 1
    assert _sample("perennial_run_outcomes_total", **labels, outcome="Succeeded") == before["ok"]
