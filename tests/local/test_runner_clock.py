"""The runner on a clock the test moves by hand: schedules, edits, a lost status write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from perennial.api.constants import TRAINING_PIPELINE, TRAINING_RUN
from perennial.local.clock import ManualClock
from perennial.local.runner import Runner

from .helpers import wait_for, write_manifests


def _run(runner: Runner, name: str) -> dict[str, Any]:
    return runner.store.get(TRAINING_RUN, "default", name) or {}


def _status(runner: Runner, name: str) -> dict[str, Any]:
    status: dict[str, Any] = _run(runner, name).get("status") or {}
    return status


@pytest.mark.slow
def test_schedule_edits_and_a_lost_status_write(tmp_path: Path, manifests_dir: Path) -> None:
    triggers = '    schedule: {cron: "*/10 * * * *"}'
    manifest = write_manifests(
        manifests_dir, "sched", deployment=False, triggers=triggers, policy="Replace"
    )
    clock = ManualClock()
    runner = Runner([manifest], tmp_path / "state", clock=clock, port=0).start()
    try:
        runner.tick()
        assert _run(runner, "sched-00001")["spec"]["trigger"]["type"] == "Initial"

        # The runner "crashes" after creating the run but before writing the pipeline's
        # status: the run's record of what it consumed prevents a second run.
        pipeline = runner.store.get(TRAINING_PIPELINE, "default", "sched")
        assert pipeline is not None
        pipeline["status"] = {}
        runner.store.save(pipeline)
        runner.tick()
        assert _run(runner, "sched-00002") == {}
        status = runner.store.get(TRAINING_PIPELINE, "default", "sched")["status"]
        assert status["runSequence"] == 1

        def finished() -> bool:
            runner.tick()
            return _status(runner, "sched-00001").get("phase") in ("Succeeded", "Rejected")

        wait_for("sched-00001 to finish", finished, step=0.3)
        assert _status(runner, "sched-00001")["phase"] == "Succeeded"
        status = runner.store.get(TRAINING_PIPELINE, "default", "sched")["status"]
        assert status["champion"]["run"] == "sched-00001"
        assert status["nextScheduleTime"] == "2026-01-01T00:10:00Z"

        # Nothing is due until the clock says so; ten minutes later the schedule fires.
        runner.tick()
        assert _run(runner, "sched-00002") == {}
        clock.advance(600)
        runner.tick()
        assert _run(runner, "sched-00002")["spec"]["trigger"]["type"] == "Schedule"

        # Editing the manifest is `kubectl apply`: the retrain annotation starts a run
        # (concurrencyPolicy Replace: the scheduled run is cancelled).
        text = manifest.read_text().replace(
            "  name: sched\n", '  name: sched\n  annotations: {perennial.dev/retrain: "1"}\n', 1
        )
        manifest.write_text(text)
        runner.tick()
        assert _run(runner, "sched-00003")["spec"]["trigger"]["type"] == "Manual"
        assert _status(runner, "sched-00002")["reason"] == "Replaced"

        # A spec change bumps the generation and retrains.
        manifest.write_text(text.replace("max_iter: 300", "max_iter: 400"))
        runner.tick()
        assert _run(runner, "sched-00004")["spec"]["trigger"]["type"] == "SpecChange"
        stored = runner.store.get(TRAINING_PIPELINE, "default", "sched")
        assert stored["metadata"]["generation"] == 2
        assert stored["status"]["observedGeneration"] == 2
    finally:
        runner.close()
    assert _status(runner, "sched-00004").get("phase") in ("Pending", "Training")
