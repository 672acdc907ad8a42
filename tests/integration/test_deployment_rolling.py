"""Rolling rollouts against the emulator: a blessed run is rolled out, a newer champion
replaces it, a model that never becomes ready (or crash-loops) is rolled back in time and
not retried. The test plays the Job and Deployment controllers."""

from __future__ import annotations

from perennial.api.deployment import ModelDeploymentStatus

from .deployment_helpers import (
    MD,
    PDBS,
    SERVICES,
    Serving,
    env_of,
    full_operator,
    metric,
    serving,
    template_of,
    validate,
)
from .harness import wait_for

__all__ = ["full_operator", "serving"]


def condition(status: dict, type_: str) -> dict:  # type: ignore[type-arg]
    (found,) = [c for c in status["conditions"] if c["type"] == type_]
    return found  # type: ignore[no-any-return]


async def test_waiting_then_blessed_run_rolls_out_then_a_new_champion_replaces_it(
    full_operator: Serving,
) -> None:
    """The whole operator: runs are blessed by the real training controllers."""
    serving = full_operator
    serving.namespace = "md-rolling"
    await serving.create_pipeline("iris")
    md = await serving.create_md("iris", pipeline="iris", podDisruptionBudget={"minAvailable": 1})

    waiting = await serving.wait_phase("iris", "Waiting")
    status = waiting["status"]
    assert condition(status, "Ready")["reason"] == "NoBlessedModel"
    assert condition(status, "Reconciling")["status"] == "True"
    assert condition(status, "Stalled")["status"] == "False"
    assert "no champion yet" in status["message"]
    assert await serving.deployment("iris-serving") is None

    # The first run is blessed: the Deployment appears with its model.
    await serving.training.wait_run("iris-00001")
    run1 = await serving.bless("iris-00001")
    deployment = await serving.wait_serving("iris-serving", "iris-00001", replicas=2)
    validate(deployment)
    env = env_of(deployment)
    assert env["PERENNIAL_MODEL_URI"] == run1["status"]["artifact"]["modelUri"]
    assert env["PERENNIAL_MODEL_SHA256"] == run1["status"]["artifact"]["sha256"]
    assert template_of(deployment)["spec"]["containers"][0]["image"] == (
        "registry.example/perennial-runtime:1.0"
    )
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == md["metadata"]["uid"] and owner["controller"] is True
    service = await serving.api.get(SERVICES, "iris-serving", serving.namespace)
    validate(service)
    assert service["spec"]["selector"] == {"perennial.dev/deployment": "iris"}
    pdb = await serving.api.get(PDBS, "iris-serving", serving.namespace)
    validate(pdb)
    progressing = await serving.wait_phase("iris", "Progressing")
    assert progressing["status"]["rollout"]["toRun"] == "iris-00001"

    # The Deployment controller reports the rollout done: the model is live.
    await serving.ready("iris-serving")
    available = await serving.wait_phase("iris", "Available")
    status = available["status"]
    ModelDeploymentStatus.model_validate(status)
    assert status["currentModel"]["run"] == "iris-00001"
    assert status["currentModel"]["revision"] == 1
    assert status["readyReplicas"] == 2
    assert status["endpoint"] == "http://iris-serving.md-rolling.svc:8080"
    assert status["observedGeneration"] == available["metadata"]["generation"]
    assert condition(status, "Ready")["status"] == "True"
    assert status["lastRollout"]["result"] == "Succeeded"

    # A better run is blessed: the same Deployment's template takes the new model.
    before = metric(
        "perennial_rollouts_total", namespace="md-rolling", deployment="iris", result="Succeeded"
    )
    await serving.retrain("iris")
    await serving.training.wait_run("iris-00002")
    await serving.bless(
        "iris-00002", accuracy=0.95, champion_accuracy=0.9, champion_run="iris-00001"
    )
    await serving.champion("iris", "iris-00002")
    patched = await serving.wait_serving("iris-serving", "iris-00002", replicas=2)
    strategy = patched["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}  # the old model serves meanwhile
    rolling = await serving.wait_md(
        "iris", lambda s: (s.get("rollout") or {}).get("toRun") == "iris-00002", "rollout"
    )
    assert rolling["status"]["rollout"]["fromRun"] == "iris-00001"
    assert rolling["status"]["currentModel"]["run"] == "iris-00001"

    await serving.ready("iris-serving")
    done = await serving.wait_md(
        "iris",
        lambda s: (
            (s.get("currentModel") or {}).get("run") == "iris-00002"
            and s.get("phase") == "Available"
        ),
        "iris-00002 live",
    )
    assert [h["run"] for h in done["status"]["history"]] == ["iris-00001"]
    assert done["status"]["currentModel"]["revision"] == 2
    assert "rollout" not in done["status"]
    events = await serving.wait_events(
        md,
        "RolloutStarted",
        "RolloutStarted",
        "RolloutSucceeded",
        "RolloutSucceeded",
        "NoBlessedModel",
    )
    assert events.count("RolloutStarted") == 2 and events.count("RolloutSucceeded") == 2
    after = metric(
        "perennial_rollouts_total", namespace="md-rolling", deployment="iris", result="Succeeded"
    )
    assert after == before + 1


async def test_readiness_never_reached_rolls_back_within_the_deadline(serving: Serving) -> None:
    serving.namespace = "md-deadline"
    md = await serving.serve_first("iris", "iris", progressDeadlineSeconds=60)
    good = template_of(await serving.deployment("iris-serving") or {})

    await serving.new_champion("iris", "iris-00002")
    await serving.wait_serving("iris-serving", "iris-00002")
    # The new Pods never become ready (a model that fails its smoke test).
    await serving.ready("iris-serving", ready=False)
    await serving.wait_phase("iris", "Progressing")

    serving.clock.advance(59)
    await serving.ready("iris-serving", ready=False)  # more progress reports, still not ready
    still = await serving.md("iris")
    assert still["status"]["phase"] == "Progressing"
    assert still["status"]["rollout"]["toRun"] == "iris-00002"

    serving.clock.advance(2)  # past progressDeadlineSeconds on the operator's clock
    restored = await serving.wait_serving("iris-serving", "iris-00001")
    assert template_of(restored) == good  # the previous template, exactly
    degraded = await serving.wait_phase("iris", "Degraded")
    status = degraded["status"]
    assert status["currentModel"]["run"] == "iris-00001"
    assert status["rolledBackRuns"] == ["iris-00002"]
    assert status["lastRollout"]["result"] == "RolledBack"
    assert status["lastRollout"]["reason"] == "RolloutFailed"
    assert "within progressDeadlineSeconds" in status["lastRollout"]["message"]
    assert condition(status, "RolledBack")["status"] == "True"
    assert condition(status, "Degraded")["status"] == "True"
    assert condition(status, "Ready")["status"] == "False"
    await serving.wait_events(md, "RolledBack")
    posted = await serving.api.events_for(md)
    (rolled_back,) = [e for e in posted if e.reason == "RolledBack"]
    assert rolled_back.type == "Warning" and "iris-00002 -> iris-00001" in rolled_back.message
    assert (
        metric(
            "perennial_rollbacks_total",
            namespace="md-deadline",
            deployment="iris",
            reason="RolloutFailed",
        )
        == 1
    )

    # iris-00002 is still the champion, but it is not rolled out again.
    serving.clock.advance(600)
    await serving.ready("iris-serving")
    settled = await serving.wait_md(
        "iris", lambda s: s.get("readyReplicas") == 2, "ready replicas reported"
    )
    assert settled["status"]["phase"] == "Degraded"
    assert "not retried" in settled["status"]["message"]
    deployment = await serving.deployment("iris-serving")
    assert template_of(deployment or {}) == good


async def test_a_surge_is_not_rolled_out_while_old_pods_carry_the_traffic(
    serving: Serving,
) -> None:
    serving.namespace = "md-surge"
    await serving.serve_first("iris", "iris")
    await serving.new_champion("iris", "iris-00002")
    await serving.wait_serving("iris-serving", "iris-00002")
    # Every new Pod exists but none is ready; the two old Pods still serve, so ready,
    # available and updated all reach 2 and nothing is unavailable.
    await serving.ready("iris-serving", ready=False, old_replicas=2)
    surging = await serving.wait_md(
        "iris",
        lambda s: "2 old replica(s) still running" in (s.get("message") or ""),
        "the surge reported",
    )
    status = surging["status"]
    assert status["phase"] == "Progressing"
    assert status["rollout"]["toRun"] == "iris-00002"
    assert status["currentModel"]["run"] == "iris-00001"

    # The new Pods are ready, the old ones are still terminating: not done yet either.
    await serving.ready("iris-serving", old_replicas=1)
    await serving.wait_md(
        "iris",
        lambda s: "1 old replica(s) still running" in (s.get("message") or ""),
        "the last old Pod reported",
    )
    await serving.ready("iris-serving")
    done = await serving.wait_md(
        "iris",
        lambda s: (
            (s.get("currentModel") or {}).get("run") == "iris-00002"
            and s.get("phase") == "Available"
        ),
        "iris-00002 live",
    )
    assert done["status"]["lastRollout"]["result"] == "Succeeded"
    assert serving.serving_reads() == []


async def test_crash_looping_pods_roll_back_at_once(serving: Serving) -> None:
    serving.namespace = "md-crash"
    await serving.serve_first("iris", "iris")
    await serving.new_champion("iris", "iris-00002")
    await serving.wait_serving("iris-serving", "iris-00002")
    await serving.controllers.crashloop_pod(
        "iris-serving", serving.namespace, termination_message="sha256 mismatch: refusing to load"
    )
    await serving.wait_serving("iris-serving", "iris-00001")
    degraded = await serving.wait_phase("iris", "Degraded")
    message = degraded["status"]["lastRollout"]["message"]
    assert "crash-looping" in message and "sha256 mismatch" in message
    # The serving Deployments and their Pods came from the watches: never read.
    assert serving.serving_reads() == []


async def test_the_serving_deployment_is_restored_when_changed_by_hand(serving: Serving) -> None:
    serving.namespace = "md-restore"
    await serving.serve_first("iris", "iris")
    await serving.api.delete("apps/v1/deployments", "iris-serving", serving.namespace)
    recreated = await serving.wait_serving("iris-serving", "iris-00001", replicas=2)
    assert recreated["metadata"]["labels"]["perennial.dev/deployment"] == "iris"

    async def scaled_back() -> bool:
        body = await serving.deployment("iris-serving")
        return body is not None and body["spec"]["replicas"] == 3

    await serving.api.patch(MD, "iris", serving.namespace, {"spec": {"replicas": 3}})
    await wait_for(scaled_back, what="replicas follow spec.replicas")


async def test_a_restarted_operator_finishes_the_rollout_in_progress(serving: Serving) -> None:
    serving.namespace = "md-restart"
    md = await serving.serve_first("iris", "iris")
    await serving.new_champion("iris", "iris-00002")
    await serving.wait_serving("iris-serving", "iris-00002")
    await serving.wait_md("iris", lambda s: bool(s.get("rollout")), "rollout recorded")

    await serving.training.runner.restart()  # the operator Pod restarts mid-rollout
    await serving.ready("iris-serving")
    done = await serving.wait_md(
        "iris",
        lambda s: (
            (s.get("currentModel") or {}).get("run") == "iris-00002"
            and s.get("phase") == "Available"
        ),
        "rollout finished after the restart",
    )
    assert done["status"]["currentModel"]["revision"] == 2
    events = await serving.wait_events(
        md, "RolloutStarted", "RolloutStarted", "RolloutSucceeded", "RolloutSucceeded"
    )
    assert events.count("RolloutStarted") == 2 and events.count("RolloutSucceeded") == 2
    deployments = await serving.api.list("apps/v1/deployments", serving.namespace)
    assert [d["metadata"]["name"] for d in deployments] == ["iris-serving"]
    assert serving.training.runner.problems() == []


async def test_service_and_disruption_budget_follow_the_spec(serving: Serving) -> None:
    """A changed port patches the Service, a changed budget patches the PDB, a removed
    budget deletes it (the emulator holds each request to the shipped RBAC)."""
    serving.namespace = "md-children"
    await serving.serve_first("iris", "iris", replicas=3, podDisruptionBudget={"minAvailable": 1})
    pdb = await serving.api.get(PDBS, "iris-serving", serving.namespace)
    assert pdb["spec"]["minAvailable"] == 1

    changes = {"spec": {"port": 9000, "podDisruptionBudget": {"minAvailable": 2}}}
    await serving.api.patch(MD, "iris", serving.namespace, changes)

    async def port_and_budget() -> tuple[int, int | None]:
        service = await serving.api.get(SERVICES, "iris-serving", serving.namespace)
        found = await serving.api.get_or_none(PDBS, "iris-serving", serving.namespace)
        budget = None if found is None else int(found["spec"]["minAvailable"])
        return int(service["spec"]["ports"][0]["port"]), budget

    async def changed() -> bool:
        return await port_and_budget() == (9000, 2)

    await wait_for(changed, what="service port 9000 and minAvailable 2")

    await serving.api.patch(MD, "iris", serving.namespace, {"spec": {"podDisruptionBudget": None}})

    async def budget_gone() -> bool:
        return await serving.api.get_or_none(PDBS, "iris-serving", serving.namespace) is None

    await wait_for(budget_gone, what="the PodDisruptionBudget deleted")
