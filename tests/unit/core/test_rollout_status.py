"""The status a decision leads to: models, history, rollout record, conditions, events —
checked against the CRD's status schema and read back by the shipped Argo CD health
script (a real Lua 5.1 interpreter, as Argo CD's gopher-lua)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from perennial.api.deployment import ModelDeploymentStatus
from perennial.core.deployment_status import (
    next_status,
    read_state,
    revision_to_wire,
    with_monitoring,
)
from perennial.core.model_source import Desired, ManualPin, Notice
from perennial.core.rollout import (
    AnalysisLimits,
    AnalysisSample,
    CanaryStep,
    Decision,
    ModelRef,
    Strategy,
    WorkloadState,
    plan,
)

lua51 = pytest.importorskip("lupa.lua51")

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
V1 = ModelRef(
    "iris-00001",
    "file:///artifacts/iris-00001/model.skops",
    "a" * 64,
    image="img:1",
    artifact_claim="models",
    artifact_mount_path="/artifacts",
)
V2 = ModelRef(
    "iris-00002", "s3://m/iris-00002/model.skops", "b" * 64, image="img:2", secret_name="s3"
)
ROLLING = Strategy(progress_deadline_seconds=60)
CANARY = Strategy(
    type="Canary",
    steps=(CanaryStep(50, 10), CanaryStep(100, 0)),
    analysis=AnalysisLimits(min_requests=10),
    progress_deadline_seconds=60,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def serving(model: ModelRef | None, replicas: int = 2, **kw: Any) -> WorkloadState:
    if model is None:
        return WorkloadState(exists=False)
    base = WorkloadState(
        model_sha256=model.sha256,
        desired_replicas=replicas,
        total_replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
    )
    return replace(base, **kw)


CRD = yaml.safe_load((REPO / "crds" / "modeldeployments.perennial.dev.yaml").read_text())
STATUS_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
HEALTH = (REPO / "manifests/argocd/perennial.dev/ModelDeployment/health.lua").read_text()


def argo_health(status: dict[str, Any], generation: int = 1) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    obj = {"metadata": {"name": "iris", "generation": generation}, "status": status}
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(HEALTH)
    return str(result["status"]), str(result["message"])


class Sim:
    """Drives plan() + next_status() like the operator does, keeping the status."""

    def __init__(self, strategy: Strategy = ROLLING, replicas: int = 2) -> None:
        self.status: dict[str, Any] = {}
        self.strategy = strategy
        self.replicas = replicas
        self.events: list[Notice] = []
        self.results: list[tuple[str | None, str | None]] = []

    def step(
        self,
        desired: ModelRef | Desired | None,
        stable: WorkloadState,
        now: datetime,
        canary: WorkloadState | None = None,
        analysis: AnalysisSample | None = None,
    ) -> Decision:
        want = (
            desired
            if isinstance(desired, Desired)
            else Desired(desired, "ChampionAvailable" if desired else "NoBlessedModel", "m")
        )
        state = read_state(self.status)
        decision = plan(
            desired=want.model,
            current=state.current.ref if state.current else None,
            rollout=state.rollout,
            strategy=self.strategy,
            replicas=self.replicas,
            stable=stable,
            canary=canary,
            analysis=analysis,
            rolled_back=state.rolled_back,
            now=now,
            manual=want.manual,
        )
        update = next_status(
            old=self.status,
            generation=1,
            desired=want,
            decision=decision,
            stable=stable,
            canary=canary,
            history_limit=2,
            endpoint="http://iris-serving.ml.svc:8080",
            strategy=self.strategy,
            replicas=self.replicas,
            now=now,
        )
        self.status = update.status
        self.events.extend(update.events)
        self.results.append((update.rollout_result, update.rollback_reason))
        jsonschema.Draft7Validator(STATUS_SCHEMA).validate(self.status)
        ModelDeploymentStatus.model_validate(self.status)
        return decision

    def cond(self, type_: str) -> dict[str, Any]:
        (found,) = [c for c in self.status["conditions"] if c["type"] == type_]
        return found

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def test_waiting_is_progressing_not_an_error() -> None:
    sim = Sim()
    sim.step(None, serving(None), T0)
    assert sim.status["phase"] == "Waiting"
    assert sim.cond("Reconciling")["status"] == "True"
    assert sim.cond("Ready")["reason"] == "NoBlessedModel"
    assert sim.cond("Stalled")["status"] == "False"
    assert argo_health(sim.status)[0] == "Progressing"
    assert sim.reasons() == ["NoBlessedModel"]
    sim.step(None, serving(None), at(10))
    assert sim.reasons() == ["NoBlessedModel"]  # not posted again


def test_first_rollout_then_a_second_one_records_history() -> None:
    sim = Sim()
    sim.step(V1, serving(None), T0)
    assert sim.status["rollout"]["toRun"] == V1.run
    assert sim.status["rollout"]["model"]["revision"] == 1
    assert sim.status["rollout"]["model"]["artifactVolume"] == {
        "claimName": "models",
        "mountPath": "/artifacts",
    }
    assert argo_health(sim.status)[0] == "Progressing"
    sim.step(V1, serving(V1, ready_replicas=0), at(5))
    sim.step(V1, serving(V1), at(10))
    assert sim.status["phase"] == "Available"
    assert sim.status["currentModel"]["run"] == V1.run
    assert sim.status["currentModel"]["deployedAt"] == "2026-06-01T12:00:10Z"
    assert "rollout" not in sim.status and sim.status["history"] == []
    assert sim.status["lastRollout"]["result"] == "Succeeded"
    assert argo_health(sim.status) == ("Healthy", sim.cond("Ready")["message"])

    sim.step(V2, serving(V1), at(20))
    sim.step(V2, serving(V2), at(30))
    assert sim.status["currentModel"]["run"] == V2.run
    assert sim.status["currentModel"]["revision"] == 2
    assert sim.status["currentModel"]["secretRef"] == {"name": "s3"}
    assert [h["run"] for h in sim.status["history"]] == [V1.run]
    assert sim.reasons() == [
        "RolloutStarted",
        "RolloutSucceeded",
        "RolloutStarted",
        "RolloutSucceeded",
    ]
    assert sim.results.count(("Succeeded", None)) == 2
    assert sim.status["endpoint"] == "http://iris-serving.ml.svc:8080"
    assert sim.status["readyReplicas"] == 2 and sim.status["observedGeneration"] == 1


def test_automatic_rollback_is_degraded_until_a_new_model() -> None:
    sim = Sim()
    sim.step(V1, serving(None), T0)
    sim.step(V1, serving(V1), at(1))
    sim.step(V2, serving(V1), at(10))
    decision = sim.step(V2, serving(V2, ready_replicas=0, crash_looping_pods=2), at(20))
    assert decision.restore == V1
    assert sim.status["phase"] == "Degraded"
    assert sim.status["rolledBackRuns"] == [V2.run]
    assert sim.status["lastRollout"]["result"] == "RolledBack"
    assert sim.status["lastRollout"]["reason"] == "RolloutFailed"
    assert sim.status["currentModel"]["run"] == V1.run
    assert sim.cond("RolledBack")["status"] == "True"
    assert sim.cond("Degraded")["status"] == "True"
    assert sim.cond("Stalled")["status"] == "True"
    assert sim.results[-1] == ("RolledBack", "RolloutFailed")
    (rolled,) = [e for e in sim.events if e.reason == "RolledBack"]
    assert rolled.type == "Warning" and "crash-looping" in rolled.message
    health, message = argo_health(sim.status)
    assert health == "Degraded" and "rolled back iris-00002 -> iris-00001" in message

    # Still V2 from the source: not retried, still Degraded, no new event.
    before = len(sim.events)
    sim.step(V2, serving(V1), at(30))
    assert sim.status["phase"] == "Degraded" and len(sim.events) == before
    assert "rollout" not in sim.status
    assert sim.cond("RolledBack")["status"] == "True"

    # A new model gets its own rollout; RolledBack clears.
    v3 = ModelRef("iris-00003", "s3://m/3", "c" * 64)
    sim.step(v3, serving(V1), at(40))
    assert sim.cond("RolledBack")["status"] == "False"
    sim.step(v3, serving(v3), at(50))
    assert sim.status["phase"] == "Available"
    assert [h["run"] for h in sim.status["history"]] == [V1.run]
    assert argo_health(sim.status)[0] == "Healthy"


def test_canary_records_step_and_weight() -> None:
    sim = Sim(CANARY, replicas=2)
    sim.step(V1, serving(None), T0)
    sim.step(V1, serving(V1), at(1))
    sim.step(V2, serving(V1), at(2))
    assert sim.status["rollout"]["strategy"] == "Canary"
    assert sim.status["rollout"]["step"] == 0 and sim.status["rollout"]["weight"] == 50
    good = AnalysisSample(requests=20)
    sim.step(V2, serving(V1, 1), at(20), canary=serving(V2, 1), analysis=good)
    assert sim.status["rollout"]["promoted"] is True
    assert sim.status["rollout"]["weight"] == 100
    assert sim.reasons()[-1] == "CanaryPromoted"
    sim.step(V2, serving(V2), at(30), canary=serving(V2, 1))
    assert sim.status["currentModel"]["run"] == V2.run


def test_analysis_failure_posts_rolled_back_with_the_verdict() -> None:
    sim = Sim(CANARY, replicas=2)
    sim.step(V1, serving(None), T0)
    sim.step(V1, serving(V1), at(1))
    sim.step(V2, serving(V1), at(2))
    bad = AnalysisSample(requests=100, errors=30)
    sim.step(V2, serving(V1, 1), at(20), canary=serving(V2, 1), analysis=bad)
    assert sim.status["lastRollout"]["reason"] == "AnalysisFailed"
    assert "error rate 30.00%" in sim.status["lastRollout"]["message"]
    assert sim.results[-1] == ("RolledBack", "AnalysisFailed")


def test_manual_rollback_records_pin_token_and_metric() -> None:
    sim = Sim()
    sim.step(V1, serving(None), T0)
    sim.step(V1, serving(V1), at(1))
    sim.step(V2, serving(V1), at(2))
    sim.step(V2, serving(V2), at(3))
    pin = ManualPin(V1.run, V2.run, at(4))
    manual = Desired(
        V1, "ManualRollback", "rolled back by hand", manual=True, pin=pin, token=V1.run
    )
    sim.step(manual, serving(V2), at(4))
    assert sim.status["manualRollback"] == {
        "run": V1.run,
        "sourceRun": V2.run,
        "requestedAt": "2026-06-01T12:00:04Z",
    }
    assert sim.status["lastRollbackToken"] == V1.run
    assert sim.results[-1] == (None, "Manual")
    assert sim.reasons()[-1] == "ManualRollback"
    sim.step(manual, serving(V1), at(5))
    assert sim.status["currentModel"]["run"] == V1.run
    assert sim.status["currentModel"]["revision"] == 3
    assert [h["run"] for h in sim.status["history"]] == [V2.run]
    sim.step(manual, serving(V1), at(6))
    assert sim.status["phase"] == "Available"
    assert "rolled back by hand" in sim.cond("Ready")["message"]


def test_manual_abort_of_a_rollout_is_recorded_as_rolled_back() -> None:
    sim = Sim()
    sim.step(V1, serving(None), T0)
    sim.step(V1, serving(V1), at(1))
    sim.step(V2, serving(V1), at(2))
    manual = Desired(V1, "RollbackToSet", "spec.rollbackTo pins", manual=True)
    sim.step(manual, serving(V2, ready_replicas=0), at(3))
    assert "rollout" not in sim.status
    assert sim.status["lastRollout"]["reason"] == "ManualRollback"
    assert sim.status["rolledBackRuns"] == []  # a choice, not a failure


def test_stalled_source_is_stalled() -> None:
    sim = Sim()
    stuck = Desired(None, "RunNotBlessed", "pinned run iris-00001 is Rejected", stalled=True)
    sim.step(stuck, serving(None), T0)
    assert sim.status["phase"] == "Degraded"
    assert sim.cond("Stalled")["reason"] == "RunNotBlessed"
    assert argo_health(sim.status) == ("Degraded", "pinned run iris-00001 is Rejected")
    assert [(e.type, e.reason) for e in sim.events] == [("Warning", "RunNotBlessed")]


def test_history_is_bounded_and_unique() -> None:
    sim = Sim()
    models = [ModelRef(f"iris-0000{i}", f"s3://m/{i}", str(i) * 64) for i in range(1, 6)]
    t = 0.0
    for model in models:
        sim.step(model, serving(None if t == 0 else models[0]), at(t))
        sim.step(model, serving(model), at(t + 1))
        t += 10
    assert [h["run"] for h in sim.status["history"]] == ["iris-00004", "iris-00003"]
    assert sim.status["currentModel"]["revision"] == 5


def test_monitoring_is_merged_and_unreachable_keeps_the_numbers() -> None:
    base = {"phase": "Available", "conditions": []}
    scraped = with_monitoring(
        base,
        {"maxDriftScore": 0.4, "driftSamples": 200, "reachable": True},
        reachable=True,
        message="scraped",
        now=T0,
        generation=1,
    )
    assert scraped["monitoring"]["maxDriftScore"] == 0.4
    down = with_monitoring(
        scraped, None, reachable=False, message="connection refused", now=at(60), generation=1
    )
    assert down["monitoring"] == {"maxDriftScore": 0.4, "driftSamples": 200, "reachable": False}
    (metrics,) = [c for c in down["conditions"] if c["type"] == "MetricsAvailable"]
    assert metrics["status"] == "False" and metrics["reason"] == "ScrapeFailed"
    assert metrics["message"] == "connection refused"
    ModelDeploymentStatus.model_validate(down)


def test_a_rollout_drops_the_replaced_models_numbers() -> None:
    sim = Sim()
    sim.step(V1, serving(None), at(0))
    sim.step(V1, serving(V1), at(1))
    assert sim.status["currentModel"]["run"] == "iris-00001"
    numbers = {"run": "iris-00001", "sha256": V1.sha256, "liveAccuracy": 0.6, "reachable": True}
    sim.status = with_monitoring(
        sim.status, numbers, reachable=True, message="scraped", now=at(2), generation=1
    )
    # While V2 rolls out, V1 still serves: its numbers stay (a trigger holds them anyway).
    sim.step(V2, serving(V1), at(10))
    assert sim.status["rollout"]["toRun"] == "iris-00002"
    assert sim.status["monitoring"] == numbers
    # V2 is current: V1's numbers are gone (no lastScrapeTime: the next scrape is due now).
    sim.step(V2, serving(V2), at(11))
    assert sim.status["currentModel"]["run"] == "iris-00002"
    assert "monitoring" not in sim.status
    (metrics,) = [c for c in sim.status["conditions"] if c["type"] == "MetricsAvailable"]
    assert metrics["status"] == "True"
    ModelDeploymentStatus.model_validate(sim.status)
    # Nothing changes while V2 keeps serving: fresh numbers stay.
    fresh = {**numbers, "run": "iris-00002", "sha256": V2.sha256}
    sim.status = with_monitoring(
        sim.status, fresh, reachable=True, message="scraped", now=at(12), generation=1
    )
    sim.step(V2, serving(V2), at(20))
    assert sim.status["monitoring"] == fresh


def test_revision_wire_round_trip() -> None:
    wire = revision_to_wire(V1, 4, T0)
    state = read_state({"currentModel": wire})
    assert state.current is not None and state.current.ref == V1
    assert state.current.revision == 4 and state.current.deployed_at == T0


def test_the_served_models_holdout_metrics_are_recorded_and_backfilled() -> None:
    v1 = replace(V1, holdout_metrics=(("accuracy", 0.93),))
    sim = Sim()
    sim.step(v1, serving(None), T0)
    sim.step(v1, serving(v1), at(10))
    assert sim.status["currentModel"]["holdoutMetrics"] == {"accuracy": 0.93}
    # A status written before the metrics were recorded gets them from the source, without
    # a rollout (the model is the same).
    del sim.status["currentModel"]["holdoutMetrics"]
    sim.step(v1, serving(v1), at(20))
    assert sim.status["currentModel"]["holdoutMetrics"] == {"accuracy": 0.93}
    assert sim.reasons() == ["RolloutStarted", "RolloutSucceeded"]
