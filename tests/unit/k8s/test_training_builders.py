"""Pure builders: TrainingRun -> Job (official batch/v1 schema, restricted PSS), pipeline
-> TrainingRun, old run -> reproduction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from perennial.api.enums import TriggerType
from perennial.api.run import TrainingRun
from perennial.core.pipeline_plan import ANNOTATION_CONSUMED, Consumed, NewRun
from perennial.core.triggers import Trigger
from perennial.k8s.builders.training_job import NON_RETRYABLE_EXIT_CODES, build_job
from perennial.k8s.builders.training_run import (
    build_rerun,
    build_run,
    champion_ref,
    rerun_name,
)
from perennial_runtime.contract import TrainConfig
from testsupport.pod_security import restricted_violations

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
K8S_VERSIONS = ("1.30", "1.33")


def pipeline(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": "churn", "namespace": "ml", "uid": "tp-uid"},
        "spec": {
            "data": {"uri": "s3://data/churn.parquet", "target": "churned"},
            "model": {"task": "classification", "estimator": "RandomForestClassifier"},
            "artifacts": {"uri": "s3://models/churn"},
        },
    }
    body["spec"].update(spec)
    return body


def new_run(sequence: int = 3) -> NewRun:
    return NewRun(
        sequence=sequence,
        name=f"churn-{sequence:05d}",
        trigger=Trigger(TriggerType.SCHEDULE, "schedule '0 3 * * *' due"),
        coalesced=(Trigger(TriggerType.DATA_CHANGE, "data changed"),),
        consumed=Consumed(spec_hash="h", triggers=("Schedule", "DataChange"), time=NOW),
    )


def run_body(**spec: Any) -> dict[str, Any]:
    body = build_run(pipeline(**spec), new_run(), champion=None, now=NOW)
    body["metadata"]["uid"] = "tr-uid"
    return body


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_job_validates_against_the_official_schema(version: str) -> None:
    job = build_job(
        run_body(
            data={"uri": "s3://d/x.csv", "target": "y", "secretRef": {"name": "data-creds"}},
            artifacts={
                "uri": "file:///artifacts/models",
                "volume": {"claimName": "models", "mountPath": "/artifacts"},
                "secretRef": {"name": "data-creds"},
            },
            runTemplate={
                "serviceAccountName": "trainer",
                "nodeSelector": {"pool": "cpu"},
                "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
                "podLabels": {"team": "risk", "perennial.dev/run": "spoofed"},
                "podAnnotations": {"cost-center": "42"},
            },
        )
    )
    kubernetes_validate.validate(job, version, strict=True)


def test_the_job_is_linked_owned_and_bounded() -> None:
    job = build_job(run_body())
    assert job["metadata"]["name"] == "churn-00003"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "perennial.dev/v1alpha1",
            "kind": "TrainingRun",
            "name": "churn-00003",
            "uid": "tr-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = job["metadata"]["labels"]
    assert labels["perennial.dev/run"] == "churn-00003"
    assert labels["perennial.dev/pipeline"] == "churn"
    assert job["spec"]["template"]["metadata"]["labels"]["perennial.dev/run"] == "churn-00003"
    spec = job["spec"]
    assert (
        spec["backoffLimit"],
        spec["activeDeadlineSeconds"],
        spec["ttlSecondsAfterFinished"],
    ) == (
        0,
        3600,
        86400,
    )
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["onExitCodes"]["values"] == list(NON_RETRYABLE_EXIT_CODES)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"data": {"uri": "s3://d/x.csv", "target": "y", "secretRef": {"name": "data-creds"}}},
        {
            "artifacts": {
                "uri": "file:///artifacts/models",
                "volume": {"claimName": "models", "mountPath": "/artifacts"},
                "secretRef": {"name": "data-creds"},
            }
        },
        {
            "tracking": {
                "mlflow": {
                    "trackingUri": "https://mlflow.example",
                    "credentialsSecretRef": {"name": "c"},
                }
            }
        },
    ],
    ids=["defaults", "s3-data", "volume-artifacts", "mlflow"],
)
def test_every_training_pod_template_is_restricted(options: dict[str, Any]) -> None:
    template = build_job(run_body(**options))["spec"]["template"]
    annotations = template["metadata"].get("annotations") or {}
    assert restricted_violations(template["spec"], annotations) == []


def test_the_pod_is_restricted_and_writes_only_to_tmp() -> None:
    pod = build_job(run_body())["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False  # no identity needed
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["terminationMessagePath"] == "/dev/termination-log"


def test_the_train_config_in_the_env_is_the_runs_snapshot() -> None:
    body = build_run(
        pipeline(evaluation={"seed": 11, "primaryMetric": "f1"}),
        new_run(),
        champion=champion_ref(
            None,
            fallback={
                "run": "churn-00002",
                "modelUri": "s3://models/churn/churn-00002/model.skops",
                "sha256": "c" * 64,
                "metric": "f1",
                "value": 0.8,
            },
            spec=TrainingRun.model_validate(run_body()).spec.pipeline_spec,
        ),
        now=NOW,
    )
    body["metadata"]["uid"] = "u"
    (container,) = build_job(body)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = TrainConfig.model_validate_json(env["PERENNIAL_TRAIN_CONFIG"])
    assert config.run_name == "churn-00003" and config.pipeline_name == "churn"
    assert config.evaluation.seed == 11
    assert config.data.uri == "s3://data/churn.parquet"
    assert config.artifact_uri == "s3://models/churn"
    assert config.champion is not None and config.champion.run == "churn-00002"
    assert config.champion.metadata_uri == "s3://models/churn/churn-00002/metadata.json"
    assert config.champion.metrics == {"f1": 0.8}
    assert config.result_path == "/dev/termination-log"


def test_secrets_are_env_from_never_read() -> None:
    job = build_job(
        run_body(
            data={"uri": "s3://d/x.csv", "target": "y", "secretRef": {"name": "a"}},
            artifacts={"uri": "s3://m/x", "secretRef": {"name": "b"}},
        )
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "a"}}, {"secretRef": {"name": "b"}}]


def test_mlflow_settings_resolve_defaults_and_credentials_are_references() -> None:
    tracking = {
        "mlflow": {
            "trackingUri": "http://mlflow.mlflow.svc:5000",
            "credentialsSecretRef": {"name": "mlflow-creds"},
        }
    }
    body = run_body(tracking=tracking)
    job = build_job(body)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    config = TrainConfig.model_validate_json(env["PERENNIAL_TRAIN_CONFIG"]["value"])
    assert config.mlflow is not None
    assert config.mlflow.tracking_uri == "http://mlflow.mlflow.svc:5000"
    assert config.mlflow.experiment_name == "ml/churn"  # <namespace>/<pipeline>
    assert config.mlflow.registered_model_name == "churn"
    assert config.mlflow.spec_hash == body["spec"]["specHash"]
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert env[key]["valueFrom"] == {
            "secretKeyRef": {"name": "mlflow-creds", "key": key, "optional": True}
        }
    assert "mlflow-creds" not in json.dumps(config.to_dict())
    named = {"mlflow": {**tracking["mlflow"], "experimentName": "e", "registeredModelName": "m"}}
    config = TrainConfig.model_validate_json(
        build_job(run_body(tracking=named))["spec"]["template"]["spec"]["containers"][0]["env"][0][
            "value"
        ]
    )
    assert config.mlflow is not None
    assert (config.mlflow.experiment_name, config.mlflow.registered_model_name) == ("e", "m")


def test_no_tracking_no_mlflow() -> None:
    (container,) = build_job(run_body())["spec"]["template"]["spec"]["containers"]
    config = TrainConfig.model_validate_json(container["env"][0]["value"])
    assert config.mlflow is None
    assert not any(e["name"].startswith("MLFLOW_") for e in container["env"])


def test_operator_labels_win_over_pod_labels() -> None:
    job = build_job(run_body(runTemplate={"podLabels": {"perennial.dev/run": "x", "team": "t"}}))
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["perennial.dev/run"] == "churn-00003" and labels["team"] == "t"


def test_the_run_is_an_owned_snapshot_with_its_record() -> None:
    body = build_run(pipeline(), new_run(), champion=None, now=NOW)
    run = TrainingRun.model_validate(body)
    assert body["metadata"]["ownerReferences"][0]["uid"] == "tp-uid"
    assert body["metadata"]["labels"]["perennial.dev/run-sequence"] == "3"
    assert run.spec.trigger.type is TriggerType.SCHEDULE
    assert "coalesced" in run.spec.trigger.reason
    assert run.spec.trigger.time == NOW
    assert run.spec.pipeline_spec.run_template.image.startswith("ghcr.io/")  # defaults resolved
    record = json.loads(body["metadata"]["annotations"][ANNOTATION_CONSUMED])
    assert record["triggers"] == ["Schedule", "DataChange"]
    assert "triggers" not in body["spec"]["pipelineSpec"]


def test_an_incomparable_champion_is_not_passed_on() -> None:
    old = run_body()
    old["status"] = {
        "artifact": {
            "uri": "s3://m/o",
            "modelUri": "s3://m/o/model.skops",
            "sha256": "d" * 64,
            "size": 1,
        },
        "metrics": {"accuracy": 0.9},
    }
    same = TrainingRun.model_validate(run_body()).spec.pipeline_spec
    ref = champion_ref(old, fallback=None, spec=same)
    assert ref is not None and ref.metrics == {"accuracy": 0.9}
    other_target = same.model_copy(
        update={"data": same.data.model_copy(update={"target": "other"})}
    )
    assert champion_ref(old, fallback=None, spec=other_target) is None
    assert champion_ref(None, fallback={"run": "x"}, spec=same) is None


def test_a_rerun_copies_the_snapshot_and_is_not_owned() -> None:
    old = build_run(
        pipeline(evaluation={"seed": 5}),
        new_run(),
        champion=champion_ref(
            None,
            fallback={"run": "c", "modelUri": "s3://m/c/model.skops", "sha256": "e" * 64},
            spec=TrainingRun.model_validate(run_body()).spec.pipeline_spec,
        ),
        now=NOW,
    )
    again = build_rerun(old, "churn-00003-rerun-1", now=NOW)
    assert again["spec"]["pipelineSpec"] == old["spec"]["pipelineSpec"]
    assert again["spec"]["champion"] == old["spec"]["champion"]
    assert again["spec"]["trigger"]["type"] == "Reproduce"
    assert "ownerReferences" not in again["metadata"]
    assert again["metadata"]["annotations"]["perennial.dev/reproduces"] == "churn-00003"
    TrainingRun.model_validate(again)


def test_rerun_names() -> None:
    assert rerun_name("churn-00003", set()) == "churn-00003-rerun-1"
    assert rerun_name("churn-00003", {"churn-00003-rerun-1"}) == "churn-00003-rerun-2"
    long = rerun_name("x" * 63, set())
    assert len(long) == 63 and long.endswith("-rerun-1")


def test_writing_out_a_default_does_not_change_the_spec_hash() -> None:
    from perennial.api.pipeline import TrainingPipeline
    from perennial.k8s.builders.training_run import pipeline_spec_hash

    implicit = TrainingPipeline.model_validate(pipeline())
    explicit = TrainingPipeline.model_validate(pipeline(evaluation={"seed": 42, "testSize": 0.2}))
    changed = TrainingPipeline.model_validate(pipeline(evaluation={"seed": 7}))
    template = TrainingPipeline.model_validate(pipeline(runTemplate={"backoffLimit": 2}))
    assert pipeline_spec_hash(implicit) == pipeline_spec_hash(explicit)
    assert pipeline_spec_hash(implicit) != pipeline_spec_hash(changed)
    assert pipeline_spec_hash(implicit) == pipeline_spec_hash(template)  # not training-relevant


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_mlflow_finalize_job_is_restricted_owned_and_valid(version: str) -> None:
    from perennial.core.pipeline_plan import LABEL_RUN
    from perennial.k8s.builders.tracking_job import build_finalize_job
    from perennial_runtime.contract import TrackingFinalize

    tracking = {
        "mlflow": {"trackingUri": "https://mlflow.example", "credentialsSecretRef": {"name": "c"}}
    }
    body = run_body(tracking=tracking)
    body["metadata"]["name"] = "r" * 63
    request = TrackingFinalize.model_validate(
        {
            "mlflow": {
                "trackingUri": "https://mlflow.example",
                "experimentName": "ml/churn",
                "registeredModelName": "churn",
            },
            "mlflowRunId": "abc",
            "modelVersion": "2",
            "verdict": "Blessed",
            "aliasVersion": "2",
        }
    )
    job = build_finalize_job(body, request)
    kubernetes_validate.validate(job, version, strict=True)
    assert len(job["metadata"]["name"]) <= 63 and job["metadata"]["name"].endswith("-mlflow")
    assert job["metadata"]["ownerReferences"][0]["uid"] == "tr-uid"
    assert LABEL_RUN not in job["metadata"]["labels"]  # never taken for the training Job
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert TrackingFinalize.model_validate_json(env["PERENNIAL_TRACKING_FINALIZE"]["value"]) == (
        request
    )
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "c"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_mlflow_alias_job_of_a_rollback_is_restricted_owned_by_the_deployment(
    version: str,
) -> None:
    from perennial.core.pipeline_plan import LABEL_RUN
    from perennial.k8s.builders.tracking_job import (
        LABEL_ALIAS_DEPLOYMENT,
        LABEL_TRACKED_RUN,
        build_alias_job,
    )
    from perennial_runtime.contract import TrackingFinalize

    tracking = {"mlflow": {"trackingUri": "https://mlflow.example"}}
    body = run_body(tracking=tracking)
    md = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m" * 63, "namespace": "ml", "uid": "md-uid", "generation": 4},
    }
    request = TrackingFinalize.model_validate(
        {
            "mlflow": {
                "trackingUri": "https://mlflow.example",
                "experimentName": "ml/churn",
                "registeredModelName": "churn",
            },
            "aliasVersion": "1",
        }
    )
    job = build_alias_job(md, body, request)
    kubernetes_validate.validate(job, version, strict=True)
    name = job["metadata"]["name"]
    assert len(name) <= 63 and "-mlflow-alias-" in name
    assert job["metadata"]["ownerReferences"][0]["uid"] == "md-uid"
    labels = job["metadata"]["labels"]
    assert labels[LABEL_ALIAS_DEPLOYMENT] == "m" * 63
    assert LABEL_RUN not in labels and LABEL_TRACKED_RUN not in labels
    assert restricted_violations(job["spec"]["template"]["spec"]) == []
    # Another rollback (a later generation) gets another Job; the same one, the same Job.
    assert build_alias_job(md, body, request)["metadata"]["name"] == name
    later = {**md, "metadata": {**md["metadata"], "generation": 5}}
    assert build_alias_job(later, body, request)["metadata"]["name"] != name
