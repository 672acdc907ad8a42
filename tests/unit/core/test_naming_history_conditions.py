import re
from datetime import UTC, datetime, timedelta

import pytest

from perennial.core import conditions
from perennial.core.history import RunRecord, runs_to_prune
from perennial.core.naming import canary_name, job_name, run_name, serving_name
from perennial.core.spec_hash import spec_hash

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("pipeline", ["iris", "a" * 80, "Churn_Model.v2", "x-" * 40])
def test_names_are_valid_labels_and_deterministic(pipeline: str) -> None:
    for name in (run_name(pipeline, 7), serving_name(pipeline), canary_name(pipeline)):
        assert len(name) <= 63
        assert DNS1123.match(name), name
    assert run_name(pipeline, 7) == run_name(pipeline, 7)
    assert run_name(pipeline, 7) != run_name(pipeline, 8)
    assert job_name(run_name(pipeline, 7)) == run_name(pipeline, 7)


def test_run_name_shape_and_long_names_stay_distinct() -> None:
    assert run_name("iris", 42) == "iris-00042"
    assert run_name("a" * 70 + "x", 1) != run_name("a" * 70 + "y", 1)
    with pytest.raises(ValueError, match="starts at 1"):
        run_name("iris", 0)


def rec(name: str, phase: str, minutes: int) -> RunRecord:
    return RunRecord(name, phase, T0 + timedelta(minutes=minutes))


def test_prune_keeps_limits_newest_first_and_protects_champion() -> None:
    runs = [
        rec("r1", "Succeeded", 1),
        rec("r2", "Rejected", 2),
        rec("r3", "Succeeded", 3),
        rec("r4", "Failed", 4),
        rec("r5", "Failed", 5),
        rec("r6", "Succeeded", 6),
        RunRecord("r7", "Training", None),
    ]
    assert runs_to_prune(runs, successful_limit=2, failed_limit=1) == ["r1", "r2", "r4"]
    # the champion r1 is never pruned and does not use up the limit
    assert runs_to_prune(runs, successful_limit=2, failed_limit=1, protected={"r1"}) == [
        "r2",
        "r4",
    ]
    assert runs_to_prune(runs, successful_limit=10, failed_limit=0) == ["r4", "r5"]


def test_conditions_transition_time_only_changes_with_status() -> None:
    c1 = conditions.set_condition([], "Blessed", True, "GatesPassed", "ok", now=T0, generation=1)
    later = T0 + timedelta(hours=1)
    c2 = conditions.set_condition(c1, "Blessed", True, "GatesPassed", "still ok", now=later)
    assert c2[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert c2[0]["message"] == "still ok"
    c3 = conditions.set_condition(c2, "Blessed", False, "GateFailed", "no", now=later)
    assert c3[0]["lastTransitionTime"] == "2026-01-01T01:00:00Z"


@pytest.mark.parametrize(
    ("state", "ready", "reconciling", "stalled"),
    [
        ("ready", "True", "False", "False"),
        ("reconciling", "False", "True", "False"),
        ("stalled", "False", "False", "True"),
    ],
)
def test_kstatus_states(state: str, ready: str, reconciling: str, stalled: str) -> None:
    conds = conditions.kstatus([], state=state, reason="Why", message="m", now=T0, generation=3)
    assert [c["type"] for c in conds] == ["Ready", "Reconciling", "Stalled"]
    assert [c["status"] for c in conds] == [ready, reconciling, stalled]
    assert all(c["observedGeneration"] == 3 for c in conds)
    with pytest.raises(ValueError, match="unknown kstatus state"):
        conditions.kstatus([], state="weird", reason="r", message="m", now=T0)


def test_spec_hash_ignores_triggers_and_key_order() -> None:
    spec = {"data": {"uri": "sklearn://iris", "target": "target"}, "model": {"task": "c"}}
    same = {"model": {"task": "c"}, "data": {"target": "target", "uri": "sklearn://iris"}}
    with_triggers = {**spec, "triggers": {"schedule": {"cron": "0 * * * *"}}, "suspend": True}
    assert spec_hash(spec) == spec_hash(same) == spec_hash(with_triggers)
    changed = {**spec, "model": {"task": "r"}}
    assert spec_hash(changed) != spec_hash(spec)


def test_object_kstatus_uses_the_objects_conditions_and_generation() -> None:
    body = {
        "metadata": {"generation": 7},
        "status": {
            "conditions": conditions.kstatus([], state="ready", reason="R", message="m", now=T0)
        },
    }
    later = T0 + timedelta(minutes=5)
    out = conditions.object_kstatus(
        body,
        ready=False,
        reconciling=False,
        stalled=False,
        reason="Suspended",
        message="s",
        now=later,
    )
    assert [(c["type"], c["status"], c["observedGeneration"]) for c in out] == [
        ("Ready", "False", 7),
        ("Reconciling", "False", 7),
        ("Stalled", "False", 7),
    ]
    ready, reconciling, _ = out
    assert ready["lastTransitionTime"] == "2026-01-01T00:05:00Z"  # True -> False
    assert reconciling["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # unchanged
    assert reconciling["reason"] == "Idle"
