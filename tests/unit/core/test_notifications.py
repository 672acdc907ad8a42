"""Which Kubernetes events become CloudEvents, with what source, subject and data.

The rollout messages are the ones the real state machine (perennial.core.rollout.plan)
writes, so a change of wording there that would silently stop rollback notifications
fails here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.core import notifications as n
from perennial.core.rollout import (
    Action,
    ModelRef,
    RolloutState,
    Strategy,
    WorkloadState,
    plan,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
V1 = ModelRef("iris-00001", "file:///a/iris-00001/model.skops", "a" * 64)
V2 = ModelRef("iris-00002", "file:///a/iris-00002/model.skops", "b" * 64)
ROLLING = Strategy(progress_deadline_seconds=120)


def workload(model: ModelRef, replicas: int = 2, **kw: Any) -> WorkloadState:
    base = WorkloadState(
        model_sha256=model.sha256,
        desired_replicas=replicas,
        total_replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
    )
    return replace(base, **kw)


ROLLOUT = RolloutState(
    from_run=V1.run,
    to=V2,
    strategy="RollingUpdate",
    started_at=T0,
    step_started_at=T0,
    revision=2,
)


def obj(kind: str, name: str, namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
    }


def run(name: str, trigger: str = "Schedule") -> dict[str, Any]:
    return obj(
        "TrainingRun",
        name,
        pipelineRef={"name": "iris"},
        trigger={"type": trigger, "reason": "serving drift score 0.31 >= threshold 0.25"},
        pipelineSpec={},
    )


@pytest.mark.parametrize(
    ("reason", "event_type", "verdict"),
    [
        ("ModelBlessed", n.RUN_BLESSED, "Blessed"),
        ("ModelRejected", n.RUN_REJECTED, "Rejected"),
        ("TrainingFailed", n.RUN_FAILED, "Failed"),
    ],
)
def test_run_verdicts(reason: str, event_type: str, verdict: str) -> None:
    found = n.notification_for(run("iris-00002"), reason, "the message", "Warning")
    assert found is not None
    assert found.type == event_type
    assert found.source == "/apis/perennial.dev/v1alpha1/namespaces/ml/trainingruns"
    assert found.subject == "iris-00002"
    assert found.data == {
        "kind": "TrainingRun",
        "namespace": "ml",
        "name": "iris-00002",
        "uid": "uid-iris-00002",
        "reason": reason,
        "message": "the message",
        "eventType": "Warning",
        "pipeline": "iris",
        "trigger": {
            "type": "Schedule",
            "reason": "serving drift score 0.31 >= threshold 0.25",
        },
        "verdict": verdict,
    }


@pytest.mark.parametrize(
    ("trigger", "event_type"),
    [("Drift", n.TRIGGER_DRIFT), ("PerformanceDecay", n.TRIGGER_DECAY), ("Schedule", None)],
)
def test_a_created_run_notifies_only_drift_and_decay_triggers(
    trigger: str, event_type: str | None
) -> None:
    found = n.notification_for(run("iris-00003", trigger), "RunCreated", f"{trigger}: why")
    if event_type is None:
        assert found is None
        return
    assert found is not None and found.type == event_type
    assert found.data["trigger"]["type"] == trigger and found.data["pipeline"] == "iris"
    # The RunCreated event on the pipeline (posted too) is not a second notification.
    assert n.notification_for(obj("TrainingPipeline", "iris"), "RunCreated", "created") is None


def test_champion_changed() -> None:
    message = "run iris-00002 is the new champion (accuracy 0.9500)"
    found = n.notification_for(obj("TrainingPipeline", "iris"), "ChampionUpdated", message)
    assert found is not None and found.type == n.CHAMPION_CHANGED
    assert found.source == "/apis/perennial.dev/v1alpha1/namespaces/ml/trainingpipelines"
    assert found.data["champion"] == "iris-00002" and found.data["pipeline"] == "iris"


def test_rollout_succeeded_with_the_state_machines_message() -> None:
    decision = plan(
        desired=V2,
        current=V1,
        rollout=ROLLOUT,
        strategy=ROLLING,
        replicas=2,
        stable=workload(V2),
        now=T0 + timedelta(seconds=10),
    )
    assert decision.action is Action.SUCCEED
    found = n.notification_for(obj("ModelDeployment", "iris"), decision.reason, decision.message)
    assert found is not None and found.type == n.ROLLOUT_SUCCEEDED
    assert found.data["run"] == "iris-00002" and found.data["deployment"] == "iris"
    assert found.source == "/apis/perennial.dev/v1alpha1/namespaces/ml/modeldeployments"


def test_a_rollback_notifies_once_not_the_degraded_state_after_it() -> None:
    rollback = plan(
        desired=V2,
        current=V1,
        rollout=ROLLOUT,
        strategy=ROLLING,
        replicas=2,
        stable=workload(V2, ready_replicas=0, available_replicas=0),
        now=T0 + timedelta(seconds=121),
    )
    assert rollback.action is Action.ROLLBACK
    md = obj("ModelDeployment", "iris")
    # deployment_status posts the rollback action's event with reason RolledBack.
    found = n.notification_for(md, "RolledBack", rollback.message, "Warning")
    assert found is not None and found.type == n.ROLLED_BACK
    assert found.data["rolledBackRun"] == "iris-00002"
    assert found.data["restoredRun"] == "iris-00001"

    settled = plan(
        desired=V2,
        current=V1,
        rollout=None,
        strategy=ROLLING,
        replicas=2,
        stable=workload(V1),
        rolled_back=["iris-00002"],
        now=T0 + timedelta(seconds=200),
    )
    assert settled.reason == "RolledBack" and settled.action is Action.NONE
    assert n.notification_for(md, settled.reason, settled.message, "Warning") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (obj("TrainingRun", "iris-00002"), "TrainingStarted"),  # not a notification
        (obj("TrainingPipeline", "iris"), "ModelBlessed"),  # a reason of another kind
        (obj("Deployment", "iris-serving"), "RolloutSucceeded"),  # not our kind
        ({"kind": "TrainingRun", "metadata": {}}, "ModelBlessed"),  # no name
    ],
)
def test_everything_else_is_not_a_notification(body: dict[str, Any], reason: str) -> None:
    assert n.notification_for(body, reason, "message") is None


def test_an_object_reference_is_enough() -> None:
    found = n.notification_for(
        {"kind": "TrainingRun", "name": "adhoc", "namespace": "ml"}, "ModelBlessed", "ok"
    )
    assert found is not None and found.subject == "adhoc" and "pipeline" not in found.data
    assert set(n.EVENT_TYPES) == {
        n.RUN_BLESSED,
        n.RUN_REJECTED,
        n.RUN_FAILED,
        n.CHAMPION_CHANGED,
        n.ROLLOUT_SUCCEEDED,
        n.ROLLED_BACK,
        n.TRIGGER_DRIFT,
        n.TRIGGER_DECAY,
    }
