"""perennial.core.job_state: what a Job and its Pods say (table-driven, plain dicts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from perennial.core.job_state import JobState, observe, parse_time

T0 = "2026-06-01T12:00:00Z"
T1 = "2026-06-01T12:03:00Z"


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "r-00001"}, "status": status}


def cond(type_: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": T1,
    }


def pod(
    name: str = "p1",
    phase: str = "Pending",
    *,
    created: str = T0,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if state is not None or last is not None:
        status["containerStatuses"] = [
            {"name": "trainer", "image": "img:1", "state": state or {}, "lastState": last or {}}
        ]
    if conditions:
        status["conditions"] = conditions
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def terminated(code: int, message: str | None = None, reason: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"terminated": {"exitCode": code, "reason": reason}}
    if message is not None:
        out["terminated"]["message"] = message
    return out


@pytest.mark.parametrize(
    ("the_job", "pods", "state", "reason"),
    [
        (None, [], JobState.MISSING, "JobMissing"),
        (job(), [], JobState.PENDING, "JobPending"),
        (job(active=1), [pod()], JobState.PENDING, "PodPending"),
        (job(active=1, startTime=T0), [pod(phase="Running")], JobState.RUNNING, "PodRunning"),
        (job(active=1, ready=1), [], JobState.RUNNING, "PodRunning"),
        (
            job(active=1),
            [pod(state={"waiting": {"reason": "ErrImagePull", "message": "not found"}})],
            JobState.PENDING,
            "ErrImagePull",
        ),
        (
            job(active=1),
            [pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}})],
            JobState.FAILED,
            "ImagePullBackOff",
        ),
        (
            job(active=1),
            [pod(state={"waiting": {"reason": "InvalidImageName"}})],
            JobState.FAILED,
            "InvalidImageName",
        ),
        (
            job(active=1),
            [
                pod(
                    conditions=[
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient memory.",
                        }
                    ]
                )
            ],
            JobState.PENDING,
            "Unschedulable",
        ),
        (
            job(succeeded=1, completionTime=T1, conditions=[cond("Complete")]),
            [pod(phase="Succeeded", state=terminated(0, "{}"))],
            JobState.SUCCEEDED,
            "Complete",
        ),
        (
            job(failed=1, conditions=[cond("Failed", "DeadlineExceeded", "too long")]),
            [],
            JobState.FAILED,
            "DeadlineExceeded",
        ),
        (
            job(
                failed=1,
                conditions=[cond("FailureTarget", "x"), cond("Failed", "BackoffLimitExceeded")],
            ),
            [pod(phase="Failed", state=terminated(137, reason="OOMKilled"))],
            JobState.FAILED,
            "BackoffLimitExceeded",
        ),
    ],
)
def test_observe(
    the_job: dict[str, Any] | None, pods: list[dict[str, Any]], state: JobState, reason: str
) -> None:
    seen = observe(the_job, pods)
    assert (seen.state, seen.reason) == (state, reason)


def test_image_pull_messages_name_the_image_and_only_backoff_is_fatal() -> None:
    soft = observe(job(active=1), [pod(state={"waiting": {"reason": "ErrImagePull"}})])
    hard = observe(
        job(active=1), [pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "nope"}})]
    )
    assert not soft.fatal and hard.fatal
    assert "img:1" in hard.message and "nope" in hard.message


def test_the_result_comes_from_the_succeeded_pod() -> None:
    pods = [
        pod("old", "Failed", created=T0, state=terminated(1, "crash")),
        pod("new", "Succeeded", created=T1, state=terminated(0, '{"status":"Succeeded"}')),
    ]
    seen = observe(job(succeeded=1, completionTime=T1, conditions=[cond("Complete")]), pods)
    assert seen.result_text == '{"status":"Succeeded"}'
    assert seen.finished == datetime(2026, 6, 1, 12, 3, tzinfo=UTC)


def test_a_failed_job_reports_the_newest_pods_termination() -> None:
    pods = [
        pod("a", "Failed", created=T0, state=terminated(1, "first")),
        pod("b", "Failed", created=T1, last=terminated(137, "second", "OOMKilled")),
    ]
    seen = observe(job(conditions=[cond("Failed", "BackoffLimitExceeded", "limit")]), pods)
    assert seen.result_text == "second"
    assert seen.exit_code == 137
    assert "exit code 137, OOMKilled" in seen.message


def test_succeeded_without_a_condition_still_counts_when_completed() -> None:
    seen = observe(job(succeeded=1, completionTime=T1), [])
    assert seen.state is JobState.SUCCEEDED and seen.result_text is None


@pytest.mark.parametrize("value", [None, "", "yesterday", 5])
def test_parse_time_tolerates_garbage(value: Any) -> None:
    assert parse_time(value) is None
