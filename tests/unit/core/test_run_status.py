"""perennial.core.run_status: a finished trainer -> verdict, status fields and events
(shared by the operator's run reconciler and the local runner)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from perennial.api.enums import RunPhase
from perennial.core.gates import MetricGate
from perennial.core.job_state import JobObservation, JobState
from perennial.core.run_status import (
    RESULT_GRACE_SECONDS,
    awaiting_result,
    finish_status,
    judge,
    progress_status,
    verdict_events,
)
from perennial.core.run_verdict import GateConfig
from perennial_runtime.contract import ArtifactRef, TrainResult

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=3)
ENDED = NOW - timedelta(seconds=10)
CONFIG = GateConfig(primary_metric="accuracy", metric_gates=(MetricGate("accuracy", 0.9),))
ARTIFACT = ArtifactRef(
    uri="file:///a/r", model_uri="file:///a/r/model.skops", sha256="a" * 64, size=1
)


def seen(state: JobState, text: str | None = None, **kw: Any) -> JobObservation:
    base: dict[str, Any] = {
        "reason": "Complete" if state is JobState.SUCCEEDED else "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
        "started": STARTED,
        "finished": ENDED,
        "result_text": text,
    }
    return JobObservation(state, **(base | kw))


def blessed_text(accuracy: float = 0.95) -> str:
    return TrainResult(
        status="Succeeded", metrics={"accuracy": accuracy}, artifact=ARTIFACT
    ).to_json()


def body(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "iris-00002", "generation": 1}, "status": status}


def test_a_trainer_result_decides() -> None:
    verdict = judge(seen(JobState.SUCCEEDED, blessed_text()), CONFIG, had_champion=False)
    assert verdict.phase is RunPhase.SUCCEEDED and verdict.blessed
    rejected = judge(seen(JobState.SUCCEEDED, blessed_text(0.5)), CONFIG, had_champion=False)
    assert rejected.phase is RunPhase.REJECTED


def test_a_completed_job_without_a_result_is_result_missing() -> None:
    verdict = judge(seen(JobState.SUCCEEDED, "Traceback: boom"), CONFIG, had_champion=False)
    assert (verdict.phase, verdict.reason) == (RunPhase.FAILED, "ResultMissing")
    assert verdict.message.endswith(": Traceback: boom")


def test_a_failed_trainer_report_wins_over_the_job_reason() -> None:
    report = TrainResult(status="Failed", reason="DataUnavailable", message="no file").to_json()
    verdict = judge(seen(JobState.FAILED, report), CONFIG, had_champion=True)
    assert (verdict.reason, verdict.message) == ("DataUnavailable", "no file")
    crashed = judge(seen(JobState.FAILED, "MemoryError\n"), CONFIG, had_champion=True)
    assert crashed.reason == "BackoffLimitExceeded"
    assert crashed.message.endswith("; last output: MemoryError")


@pytest.mark.parametrize(
    ("pods_listed", "exit_code", "text", "after", "waits"),
    [
        (False, None, None, RESULT_GRACE_SECONDS - 1, True),
        (False, None, None, RESULT_GRACE_SECONDS, False),
        (True, 0, None, 0, False),  # a terminated Pod's termination message is final
        (True, 0, "ok", 0, False),
        # The Pod is listed but seen still running: the Pod watch lags the Job watch.
        (True, None, None, 0, True),
        (True, None, None, RESULT_GRACE_SECONDS, False),
        (False, None, "ok", 0, True),  # unreadable text: still waiting for the Pod
    ],
)
def test_awaiting_result_within_the_grace(
    pods_listed: bool, exit_code: int | None, text: str | None, after: float, waits: bool
) -> None:
    observed = seen(JobState.SUCCEEDED, text, exit_code=exit_code)
    now = ENDED + timedelta(seconds=after)
    assert awaiting_result(observed, pods_listed=pods_listed, now=now) is waits
    readable = seen(JobState.SUCCEEDED, blessed_text())
    assert not awaiting_result(readable, pods_listed=False, now=ENDED)
    assert not awaiting_result(seen(JobState.FAILED), pods_listed=False, now=ENDED)


def test_progress_status_sets_start_time_once_training() -> None:
    pending = progress_status(body(), RunPhase.PENDING, "PodPending", "waiting", now=NOW)
    assert "startTime" not in pending and pending["jobName"] == "iris-00002"
    training = progress_status(
        body(), RunPhase.TRAINING, "Training", "training", now=NOW, started=STARTED
    )
    assert training["startTime"] == "2026-06-01T11:57:00Z"
    assert training["observedGeneration"] == 1
    again = progress_status(body(startTime="x"), RunPhase.TRAINING, "Training", "training", now=NOW)
    assert "startTime" not in again


def test_finish_status_and_events_of_a_blessed_run() -> None:
    observed = seen(JobState.SUCCEEDED, blessed_text())
    verdict = judge(observed, CONFIG, had_champion=False)
    status = finish_status(body(), verdict, observed, now=NOW)
    assert status["phase"] == "Succeeded" and status["completionTime"] == "2026-06-01T11:59:50Z"
    assert status["startTime"] == "2026-06-01T11:57:00Z"
    assert [g["name"] for g in status["gates"]] == [g.name for g in verdict.gates]
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Blessed"}
    notes = verdict_events(verdict)
    assert notes[-1].reason == "ModelBlessed" and notes[-1].type == "Normal"
    assert all(n.reason in {"GatePassed", "GateSkipped"} for n in notes[:-1])


def test_events_of_a_failed_run() -> None:
    verdict = judge(seen(JobState.FAILED), CONFIG, had_champion=False)
    status = finish_status(body(), verdict, None, now=NOW)
    assert status["completionTime"] == "2026-06-01T12:00:00Z" and "startTime" not in status
    (note,) = verdict_events(verdict)
    assert (note.reason, note.type) == ("TrainingFailed", "Warning")
    assert note.message.startswith("BackoffLimitExceeded: ")
