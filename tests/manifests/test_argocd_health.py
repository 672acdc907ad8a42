"""The Argo CD health scripts, run in a real Lua 5.1 interpreter (Argo CD uses gopher-lua,
a Lua 5.1 implementation) on objects in the shapes the operator writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

lua51 = pytest.importorskip("lupa.lua51")

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "manifests" / "argocd"
KINDS = ("TrainingPipeline", "TrainingRun", "ModelDeployment")
PLURALS = {
    "TrainingPipeline": "trainingpipelines",
    "TrainingRun": "trainingruns",
    "ModelDeployment": "modeldeployments",
}
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

Build = Callable[[str], list[dict[str, Any]]]


def script(kind: str) -> str:
    return (ARGOCD / "perennial.dev" / kind / "health.lua").read_text()


def check_status_shape(kind: str, obj: dict[str, Any]) -> None:
    """The test objects' status must be one the CRD accepts (when the CRDs exist)."""
    path = REPO / "crds" / f"{PLURALS[kind]}.perennial.dev.yaml"
    if "status" not in obj or not path.exists():
        return
    crd = yaml.safe_load(path.read_text())
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    jsonschema.Draft7Validator(schema).validate(obj["status"])


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    check_status_shape(kind, obj)
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(script(kind))
    status, message = result["status"], result["message"]
    assert status in ARGO_STATUSES
    assert isinstance(message, str) and message
    return status, message


def cond(type_: str, status: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason or ("Ok" if status else "NotOk"),
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 2,
    }


def kstatus(state: str, reason: str, message: str) -> list[dict[str, Any]]:
    return [
        cond("Ready", state == "ready", reason, message if state == "ready" else ""),
        cond("Reconciling", state == "reconciling", reason, message),
        cond("Stalled", state == "stalled", reason, message),
    ]


def obj(
    kind: str, status: dict[str, Any] | None, generation: int = 2, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "iris", "namespace": "ml", "generation": generation},
        "spec": spec,
    }
    if status is not None:
        body["status"] = {"observedGeneration": 2, **status}
    return body


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind: str) -> None:
    assert health(kind, obj(kind, None))[0] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_is_degraded_with_the_message(kind: str) -> None:
    phase = {"TrainingPipeline": "Stalled", "TrainingRun": "Pending", "ModelDeployment": "Waiting"}
    status = {
        "phase": phase[kind],
        "conditions": kstatus("stalled", "InvalidSpec", "bad estimator"),
    }
    assert health(kind, obj(kind, status)) == ("Degraded", "bad estimator")


@pytest.mark.parametrize("kind", ["TrainingPipeline", "ModelDeployment"])
def test_unobserved_generation_is_progressing(kind: str) -> None:
    status = {"conditions": kstatus("ready", "Ready", "all good")}
    state, message = health(kind, obj(kind, status, generation=3))
    assert state == "Progressing" and "generation 3" in message


def test_pipeline_states() -> None:
    tp = "TrainingPipeline"
    ready = {"phase": "Idle", "conditions": kstatus("ready", "ChampionServing", "Champion iris-3")}
    assert health(tp, obj(tp, ready)) == ("Healthy", "Champion iris-3")
    training = {
        "phase": "Training",
        "conditions": kstatus("reconciling", "RunInProgress", "iris-4"),
    }
    assert health(tp, obj(tp, training)) == ("Progressing", "iris-4")
    assert health(tp, obj(tp, ready, suspend=True))[0] == "Suspended"
    suspended = {"phase": "Suspended", "conditions": kstatus("ready", "Suspended", "suspended")}
    assert health(tp, obj(tp, suspended))[0] == "Suspended"
    not_ready = {"phase": "Idle", "conditions": [cond("Ready", False, "NoChampion", "none yet")]}
    assert health(tp, obj(tp, not_ready)) == ("Degraded", "none yet")
    assert health(tp, obj(tp, {"phase": "Idle"}))[0] == "Progressing"


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Pending", "Progressing"),
        ("Training", "Progressing"),
        ("Evaluating", "Progressing"),
        ("Succeeded", "Healthy"),
        ("Rejected", "Degraded"),
        ("Failed", "Degraded"),
    ],
)
def test_run_phases(phase: str, expected: str) -> None:
    tr = "TrainingRun"
    state = {"Succeeded": "ready", "Rejected": "ready", "Failed": "ready"}.get(phase, "reconciling")
    conditions = kstatus(state, phase, f"run is {phase}")
    if phase in {"Rejected", "Failed"}:
        conditions[0] = cond("Ready", False, phase, "gate accuracy: 0.81 < 0.90")
    result = health(tr, obj(tr, {"phase": phase, "conditions": conditions}))
    assert result[0] == expected
    if phase == "Rejected":
        assert result[1] == "Rejected by the gates: gate accuracy: 0.81 < 0.90"


def test_run_message_falls_back_to_the_status_summary() -> None:
    tr = "TrainingRun"
    conditions = [cond("Ready", False, "GateFailed", ""), *kstatus("ready", "x", "")[1:]]
    status = {"phase": "Rejected", "message": "accuracy 0.81 below 0.90", "conditions": conditions}
    assert health(tr, obj(tr, status)) == (
        "Degraded",
        "Rejected by the gates: accuracy 0.81 below 0.90",
    )


def test_deployment_states() -> None:
    md = "ModelDeployment"
    serving = {"phase": "Available", "conditions": kstatus("ready", "Serving", "Serving iris-3")}
    assert health(md, obj(md, serving)) == ("Healthy", "Serving iris-3")

    rolling = {
        "phase": "Progressing",
        "conditions": kstatus("reconciling", "CanaryStep", "Canary step 2/3 at 50%"),
    }
    assert health(md, obj(md, rolling)) == ("Progressing", "Canary step 2/3 at 50%")

    rolled_back = {
        "phase": "Degraded",
        "conditions": [
            *kstatus("ready", "Serving", "Serving iris-2"),
            cond("RolledBack", True, "AnalysisFailed", "error rate 7% > 5% at step 1"),
        ],
    }
    assert health(md, obj(md, rolled_back)) == (
        "Degraded",
        "Rolled back: error rate 7% > 5% at step 1",
    )

    degraded = {
        "phase": "Available",
        "conditions": [
            *kstatus("ready", "Serving", "Serving iris-2"),
            cond("Degraded", True, "PodsNotReady", "1/2 pods ready"),
        ],
    }
    assert health(md, obj(md, degraded)) == ("Degraded", "1/2 pods ready")

    rolled_back_by_phase = {
        "phase": "Degraded",
        "lastRollout": {
            "result": "RolledBack",
            "toRun": "iris-4",
            "reason": "AnalysisFailed",
            "message": "live accuracy 0.71 < 0.85",
        },
        "conditions": kstatus("ready", "Serving", "Serving iris-3"),
    }
    assert health(md, obj(md, rolled_back_by_phase)) == (
        "Degraded",
        "Rolled back: live accuracy 0.71 < 0.85",
    )

    waiting = {"phase": "Waiting", "conditions": [cond("Ready", False, "NoModel", "")]}
    assert health(md, obj(md, waiting))[0] == "Progressing"

    healthy_after_recovery = {
        "phase": "Available",
        "conditions": [
            *kstatus("ready", "Serving", "Serving iris-4"),
            cond("RolledBack", False, "NewModel", ""),
            cond("Degraded", False, "Healthy", ""),
        ],
    }
    assert health(md, obj(md, healthy_after_recovery))[0] == "Healthy"


def test_argocd_cm_carries_exactly_the_scripts(kustomize: Build) -> None:
    (config_map,) = kustomize("argocd")
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert config_map["metadata"]["namespace"] == "argocd"
    assert config_map["data"] == {
        f"resource.customizations.health.perennial.dev_{kind}": script(kind) for kind in KINDS
    }
