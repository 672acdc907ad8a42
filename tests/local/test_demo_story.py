"""`make demo`, shortened: every outcome of the story, decided by the operator's core.

The core functions are wrapped in spies that call through, so the test sees that every
trigger, gate verdict and rollout step the runner recorded was produced by the same
functions the operator calls (``perennial.core.*``), not by a copy.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from perennial.core import (
    deployment_status,
    gates,
    job_state,
    model_source,
    pipeline_plan,
    rollout,
    run_verdict,
    triggers,
    workload,
)
from perennial.core.rollout import Action
from perennial.local.demo.scenario import DemoSettings, run_demo


@dataclass
class Spy:
    calls: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = field(default_factory=list)

    def results(self) -> list[Any]:
        return [result for _, _, result in self.calls]


def spy_on(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> Spy:
    original: Callable[..., Any] = getattr(module, name)
    spy = Spy()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        spy.calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(module, name, wrapper)
    return spy


@pytest.mark.slow
def test_the_demo_story_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plans = spy_on(monkeypatch, pipeline_plan, "plan")
    due = spy_on(monkeypatch, pipeline_plan, "due_triggers")  # as bound in pipeline_plan
    verdicts = spy_on(monkeypatch, run_verdict, "verdict_from_result")
    gate_verdicts = spy_on(monkeypatch, run_verdict, "evaluate_gates")
    decisions = spy_on(monkeypatch, rollout, "plan")
    desired = spy_on(monkeypatch, model_source, "desired_model")
    statuses = spy_on(monkeypatch, deployment_status, "next_status")
    jobs = spy_on(monkeypatch, job_state, "observe")
    serving = spy_on(monkeypatch, workload, "workload_state")

    out = io.StringIO()
    result = run_demo(DemoSettings.quick(tmp_path / "demo"), out)
    text = out.getvalue()

    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.passed]
    assert result.passed, f"{failed}\n{result.failure}\n{text[-3000:]}"
    assert "\x1b[" not in text  # not a terminal: no escape codes in the log

    runs = {r["metadata"]["name"]: r for r in result.runs}
    assert sorted(runs) == [f"stream-0000{i}" for i in range(1, 6)]
    trigger = {name: body["spec"]["trigger"]["type"] for name, body in runs.items()}
    phase = {name: body["status"]["phase"] for name, body in runs.items()}
    assert trigger["stream-00001"] == "Initial"
    assert trigger["stream-00002"] in {"Drift", "PerformanceDecay", "DataChange"}
    assert trigger["stream-00003"] == "DataChange"
    assert phase == {
        "stream-00001": "Succeeded",
        "stream-00002": "Succeeded",
        "stream-00003": "Rejected",
        "stream-00004": "Succeeded",
        "stream-00005": "Succeeded",
    }
    v2 = runs["stream-00002"]["status"]["primaryMetric"]
    assert v2["candidate"] > v2["champion"]

    # Every run the runner created was the plan of pipeline_plan.plan, with its trigger,
    # and the triggers themselves came from triggers.due_triggers.
    created = [p.create for p in plans.results() if p.create is not None]
    assert [c.name for c in created] == sorted(runs)
    assert [c.trigger.type.value for c in created] == [trigger[n] for n in sorted(runs)]
    assert due.calls and all(isinstance(t, triggers.Trigger) for r in due.results() for t in r)

    # Every verdict recorded on a run is the one run_verdict computed (gates via
    # gates.evaluate_gates).
    by_reason = [(v.phase.value, v.reason, v.message) for v in verdicts.results()]
    for body in runs.values():
        status = body["status"]
        assert (status["phase"], status["reason"], status["message"]) in by_reason
    assert len(gate_verdicts.calls) >= 5
    assert all(isinstance(v, gates.GateVerdict) for v in gate_verdicts.results())
    rejected = runs["stream-00003"]["status"]["gates"]
    assert any(g["name"] == "accuracy.threshold" and not g["passed"] for g in rejected)

    # Every rollout step came from rollout.plan: the rollback of the broken model too.
    actions = [d.action for d in decisions.results()]
    assert actions.count(Action.SUCCEED) == 3  # v1, v2, v5
    rollbacks = [d for d in decisions.results() if d.action is Action.ROLLBACK]
    assert [d.target.run for d in rollbacks if d.target] == ["stream-00004"]
    assert "smoke test failed" in rollbacks[0].message
    assert desired.calls and statuses.calls and jobs.calls and serving.calls
    last_status = statuses.results()[-1].status
    assert last_status["currentModel"]["run"] == "stream-00005"
    assert last_status["rolledBackRuns"] == ["stream-00004"]

    # The summary, its JSON twin and the plot are on disk.
    summary = json.loads((result.workdir / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["traffic"]["failed"] == 0
    assert [r["target"] for r in summary["rollouts"]] == [
        "stream-00001",
        "stream-00002",
        "stream-00004",
        "stream-00005",
    ]
    assert result.plot is not None and result.plot.read_bytes()[:4] == b"\x89PNG"
    assert "Expected outcomes" in (result.workdir / "summary.txt").read_text()
