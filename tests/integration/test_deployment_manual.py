"""Manual rollback (the perennial.dev/rollback annotation and spec.rollbackTo) and pinned
runs, against the emulator. The operator never writes the spec: a rollback asked for with
the annotation is recorded in status and ends when a new model is blessed."""

from __future__ import annotations

from perennial_runtime.contract import TrackingFinalize, TrackingResult, TrainResult

from .deployment_helpers import MD, Serving, env_of, full_operator, metric, serving
from .harness import wait_for
from .training_helpers import JOBS, result_json, validate_job

__all__ = ["full_operator", "serving"]

MLFLOW = {"mlflow": {"trackingUri": "http://mlflow.mlflow.svc:5000"}}
ALIAS_LABEL = "perennial.dev/tracking-alias-of"


async def serve_two(serving: Serving) -> None:
    """iris-00001 served, then iris-00002 rolled out and served."""
    await serving.serve_first("iris", "iris")
    await serving.new_champion("iris", "iris-00002")
    await serving.wait_serving("iris-serving", "iris-00002")
    await serving.ready("iris-serving")
    await serving.wait_md(
        "iris",
        lambda s: (
            (s.get("currentModel") or {}).get("run") == "iris-00002"
            and s.get("phase") == "Available"
        ),
        "iris-00002 live",
    )


async def test_rollback_annotation_serves_a_revision_until_a_new_model_is_blessed(
    serving: Serving,
) -> None:
    serving.namespace = "md-annotation"
    await serve_two(serving)
    spec_before = (await serving.md("iris"))["spec"]

    await serving.api.patch(
        MD,
        "iris",
        serving.namespace,
        {"metadata": {"annotations": {"perennial.dev/rollback": "iris-00001"}}},
    )
    await serving.wait_serving("iris-serving", "iris-00001")
    await serving.ready("iris-serving")
    back = await serving.wait_md(
        "iris",
        lambda s: (
            (s.get("currentModel") or {}).get("run") == "iris-00001"
            and s.get("phase") == "Available"
        ),
        "rolled back by hand",
    )
    status = back["status"]
    assert back["spec"] == spec_before  # GitOps: the spec is Git's
    assert status["manualRollback"]["run"] == "iris-00001"
    assert status["manualRollback"]["sourceRun"] == "iris-00002"
    assert status["lastRollbackToken"] == "iris-00001"
    assert status["currentModel"]["revision"] == 3
    assert [h["run"] for h in status["history"]] == ["iris-00002"]
    assert "rolled back by hand" in status["message"]
    assert status["rolledBackRuns"] == []  # a choice, not a failure
    events = await serving.wait_events(back, "ManualRollback")
    assert "ManualRollback" in events and "RolledBack" not in events
    assert (
        metric(
            "perennial_rollbacks_total",
            namespace="md-annotation",
            deployment="iris",
            reason="Manual",
        )
        == 1
    )

    # The champion (iris-00002) is not rolled out again while the rollback holds.
    serving.clock.advance(600)
    await serving.ready("iris-serving")
    held = await serving.md("iris")
    assert held["status"]["currentModel"]["run"] == "iris-00001"
    assert (await serving.deployment("iris-serving") or {})["spec"]["template"]["metadata"][
        "labels"
    ]["perennial.dev/run"] == "iris-00001"

    # A new blessed model ends the manual rollback and gets its own rollout.
    await serving.new_champion("iris", "iris-00003")
    await serving.wait_serving("iris-serving", "iris-00003")
    await serving.ready("iris-serving")
    final = await serving.wait_md(
        "iris",
        lambda s: (s.get("currentModel") or {}).get("run") == "iris-00003",
        "iris-00003 live",
    )
    assert "manualRollback" not in final["status"]
    await serving.wait_events(final, "ManualRollbackEnded")


async def test_rollback_by_revision_number_and_unknown_targets(serving: Serving) -> None:
    serving.namespace = "md-revision"
    await serve_two(serving)
    await serving.api.patch(
        MD,
        "iris",
        serving.namespace,
        {"metadata": {"annotations": {"perennial.dev/rollback": "nope"}}},
    )
    warned = await serving.wait_md(
        "iris", lambda s: s.get("lastRollbackToken") == "nope", "unknown target seen"
    )
    assert warned["status"]["currentModel"]["run"] == "iris-00002"
    await serving.wait_events(warned, "RollbackTargetUnknown")
    posted = await serving.api.events_for(warned)
    (unknown,) = [e for e in posted if e.reason == "RollbackTargetUnknown"]
    assert unknown.type == "Warning" and "iris-00001 (revision 1)" in unknown.message

    await serving.api.patch(
        MD,
        "iris",
        serving.namespace,
        {"metadata": {"annotations": {"perennial.dev/rollback": "1"}}},
    )
    await serving.wait_serving("iris-serving", "iris-00001")


async def test_rollback_to_in_the_spec_holds_until_removed(serving: Serving) -> None:
    serving.namespace = "md-rollbackto"
    await serve_two(serving)
    await serving.api.patch(MD, "iris", serving.namespace, {"spec": {"rollbackTo": "iris-00001"}})
    await serving.wait_serving("iris-serving", "iris-00001")
    await serving.ready("iris-serving")
    pinned = await serving.wait_md(
        "iris",
        lambda s: (
            (s.get("currentModel") or {}).get("run") == "iris-00001"
            and s.get("phase") == "Available"
        ),
        "rollbackTo served",
    )
    assert "spec.rollbackTo pins iris-00001" in pinned["status"]["message"]

    # A newer champion does not override what Git says while rollbackTo is set.
    await serving.new_champion("iris", "iris-00003")
    serving.clock.advance(60)
    await serving.ready("iris-serving")
    assert (await serving.md("iris"))["status"]["currentModel"]["run"] == "iris-00001"

    # A rollbackTo naming no known revision keeps what serves and says why.
    await serving.api.patch(MD, "iris", serving.namespace, {"spec": {"rollbackTo": "iris-00042"}})
    stalled = await serving.wait_md(
        "iris",
        lambda s: any(
            c["type"] == "Stalled" and c["reason"] == "RollbackTargetUnknown"
            for c in s.get("conditions", [])
        ),
        "stalled on an unknown revision",
    )
    assert stalled["status"]["currentModel"]["run"] == "iris-00001"

    # Removing it follows the source again: the champion (iris-00003) is rolled out.
    await serving.api.patch(MD, "iris", serving.namespace, {"spec": {"rollbackTo": None}})
    await serving.wait_serving("iris-serving", "iris-00003")


async def test_pinned_run_waits_then_serves_and_a_new_pin_is_a_deploy(serving: Serving) -> None:
    serving.namespace = "md-pinned"
    md = await serving.create_md("pinned", run="adhoc-1", replicas=1)
    waiting = await serving.wait_phase("pinned", "Waiting")
    assert "TrainingRun adhoc-1: it does not exist" in waiting["status"]["message"]

    await serving.publish_run("adhoc-1", pipeline=None, phase="Training")
    await serving.wait_md(
        "pinned", lambda s: "to succeed (phase Training)" in s.get("message", ""), "training"
    )
    run = await serving.publish_run("adhoc-2", pipeline=None, image="custom/runtime:7")
    await serving.api.patch_status(
        "perennial.dev/v1alpha1/trainingruns",
        "adhoc-1",
        serving.namespace,
        {"phase": "Succeeded", "artifact": {**run["status"]["artifact"], "sha256": "1" * 64}},
    )
    deployment = await serving.wait_serving("pinned-serving", "adhoc-1", replicas=1)
    assert env_of(deployment)["PERENNIAL_MODEL_SHA256"] == "1" * 64
    await serving.ready("pinned-serving")
    await serving.wait_phase("pinned", "Available")

    # GitOps: a commit that changes the pinned run is a deploy.
    await serving.api.patch(
        MD, "pinned", serving.namespace, {"spec": {"source": {"runRef": {"name": "adhoc-2"}}}}
    )
    deployment = await serving.wait_serving("pinned-serving", "adhoc-2")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "custom/runtime:7"  # the image that trained it
    await serving.ready("pinned-serving")
    await serving.wait_md(
        "pinned",
        lambda s: (s.get("currentModel") or {}).get("run") == "adhoc-2",
        "adhoc-2 live",
    )

    # Pinning a rejected run is stuck until the spec changes: Stalled, not an error loop.
    await serving.publish_run("adhoc-3", pipeline=None, phase="Rejected", message="gate failed")
    await serving.api.patch(
        MD, "pinned", serving.namespace, {"spec": {"source": {"runRef": {"name": "adhoc-3"}}}}
    )
    stalled = await serving.wait_phase("pinned", "Degraded")
    assert "pinned run adhoc-3 is Rejected (gate failed)" in stalled["status"]["message"]
    assert stalled["status"]["currentModel"]["run"] == "adhoc-2"  # still serving
    await serving.wait_events(md, "RunNotBlessed")


def _tracked(run: str, version: str, accuracy: float, champion: str | None = None) -> str:
    result = TrainResult.model_validate_json(
        result_json(
            run,
            accuracy=accuracy,
            champion_accuracy=0.9 if champion else None,
            champion_run=champion,
        )
    )
    result.tracking = TrackingResult(mlflow_run_id=f"mlflow-{run}", model_version=version)
    return result.to_json()


async def test_a_rollback_to_moves_the_mlflow_champion_alias_back_once(
    full_operator: Serving,
) -> None:
    serving = full_operator
    serving.namespace = "md-alias"
    await serving.create_pipeline("iris", tracking=MLFLOW)
    md = await serving.create_md("iris", pipeline="iris", replicas=1)
    await serving.bless("iris-00001", message=_tracked("iris-00001", "1", 0.9))
    await serving.wait_serving("iris-serving", "iris-00001")
    await serving.ready("iris-serving")
    await serving.retrain("iris")
    await serving.bless(
        "iris-00002", message=_tracked("iris-00002", "2", 0.95, champion="iris-00001")
    )
    await serving.wait_serving("iris-serving", "iris-00002")
    await serving.ready("iris-serving")
    await serving.wait_md(
        "iris", lambda s: (s.get("currentModel") or {}).get("run") == "iris-00002", "v2 live"
    )

    async def alias_jobs() -> list[dict[str, object]]:
        jobs = await serving.api.list(JOBS, serving.namespace)
        return [j for j in jobs if ALIAS_LABEL in j["metadata"].get("labels", {})]

    assert await alias_jobs() == []  # a new champion's alias is the finalize Job's business
    await serving.api.patch(MD, "iris", serving.namespace, {"spec": {"rollbackTo": "iris-00001"}})
    await serving.wait_serving("iris-serving", "iris-00001")
    await serving.ready("iris-serving")
    await serving.wait_md(
        "iris", lambda s: (s.get("currentModel") or {}).get("run") == "iris-00001", "rolled back"
    )

    (job,) = await wait_for(alias_jobs, what="the alias Job")
    validate_job(job)
    assert job["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    request = TrackingFinalize.model_validate_json(env["PERENNIAL_TRACKING_FINALIZE"] or "")
    assert (request.alias_version, request.verdict, request.mlflow_run_id) == ("1", None, None)
    assert request.mlflow.registered_model_name == "iris"
    md_now = await serving.md("iris")
    await serving.wait_events(md_now, "TrackingAliasMoveStarted")

    # Its end is told on the deployment; a restarted operator starts no second Job.
    await serving.controllers.complete_job(job["metadata"]["name"], serving.namespace)
    await serving.wait_events(md_now, "TrackingAliasMoved")
    await serving.training.runner.restart()
    await serving.training.decided()
    assert len(await alias_jobs()) == 1
