from datetime import UTC, datetime, timedelta
from typing import Any

from perennial.api.pipeline import TrainingPipelineSpec, TrainingPipelineStatus
from perennial.core.timers import data_poll_due, next_due

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**triggers: Any) -> TrainingPipelineSpec:
    return TrainingPipelineSpec.model_validate(
        {
            "data": {"uri": "sklearn://iris", "target": "target"},
            "model": {"task": "classification", "estimator": "LogisticRegression"},
            "artifacts": {"uri": "file:///artifacts"},
            "runTemplate": {"image": "registry.example/runtime:1"},
            "triggers": triggers,
        }
    )


def status(**fields: Any) -> TrainingPipelineStatus:
    return TrainingPipelineStatus.model_validate(fields)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_only_watch_events_wake_a_pipeline_without_timed_triggers() -> None:
    assert next_due(spec(), status(), T0) is None


def test_the_next_schedule_is_due() -> None:
    later = T0 + timedelta(hours=3)
    found = next_due(spec(schedule={"cron": "0 15 * * *"}), status(nextScheduleTime=iso(later)), T0)
    assert found == later


def test_the_earliest_of_schedule_and_data_poll() -> None:
    triggers = {
        "schedule": {"cron": "0 15 * * *"},
        "dataChange": {"enabled": True, "pollIntervalSeconds": 60},
    }
    state = status(nextScheduleTime=iso(T0 + timedelta(hours=3)), lastDataCheckTime=iso(T0))
    assert next_due(spec(**triggers), state, T0) == T0 + timedelta(seconds=60)


def test_a_data_poll_is_due_at_once_when_never_polled() -> None:
    triggers = {"dataChange": {"enabled": True, "pollIntervalSeconds": 60}}
    assert data_poll_due(spec(**triggers), status(), T0)
    polled = status(lastDataCheckTime=iso(T0))
    assert not data_poll_due(spec(**triggers), polled, T0 + timedelta(seconds=59))
    assert data_poll_due(spec(**triggers), polled, T0 + timedelta(seconds=60))
    assert not data_poll_due(spec(), polled, T0 + timedelta(days=1))


def test_the_end_of_a_drift_cooldown_wakes_the_pipeline() -> None:
    triggers = {"drift": {"deploymentRef": {"name": "md"}, "cooldownSeconds": 600}}
    fired = status(lastTriggers={"Drift": iso(T0)})
    assert next_due(spec(**triggers), fired, T0 + timedelta(seconds=100)) == T0 + timedelta(
        seconds=600
    )
    assert next_due(spec(**triggers), fired, T0 + timedelta(seconds=700)) is None


def test_a_passed_instant_held_back_by_a_run_is_no_reason_to_wake() -> None:
    past = T0 - timedelta(minutes=5)
    assert (
        next_due(spec(schedule={"cron": "0 * * * *"}), status(nextScheduleTime=iso(past)), T0)
        is None
    )


def test_a_suspended_pipeline_sleeps_until_its_spec_changes() -> None:
    triggers = spec(schedule={"cron": "0 15 * * *"}).model_copy(update={"suspend": True})
    assert next_due(triggers, status(nextScheduleTime=iso(T0 + timedelta(hours=1))), T0) is None


def test_a_backed_off_cooldown_wakes_the_pipeline_at_its_own_end() -> None:
    # Two decay retrains in a row were rejected: the cool-down is 4 x 600 s; the pipeline
    # must still wake when it ends (not sleep until some watch event comes by).
    triggers = {
        "performanceDecay": {
            "deploymentRef": {"name": "md"},
            "threshold": 0.8,
            "cooldownSeconds": 600,
        }
    }
    fired = status(lastTriggers={"PerformanceDecay": iso(T0)})
    later = T0 + timedelta(seconds=700)
    assert next_due(spec(**triggers), fired, later) is None
    rejected = {"PerformanceDecay": 2}
    assert next_due(spec(**triggers), fired, later, rejected) == T0 + timedelta(seconds=2400)
