from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from perennial.core.schedule import decide
from perennial.core.triggers import (
    DecaySignal,
    DriftSignal,
    TriggerInputs,
    TriggerType,
    due_triggers,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BASE = TriggerInputs(now=NOW, spec_hash="abc", last_spec_hash="abc", run_count=3)


def types(inputs: TriggerInputs) -> list[TriggerType]:
    return [t.type for t in due_triggers(inputs)]


def drift(score: float | None, samples: int = 500, last: datetime | None = None) -> DriftSignal:
    return DriftSignal(
        score=score,
        samples=samples,
        threshold=0.25,
        min_samples=100,
        cooldown_seconds=3600,
        last_fired=last,
    )


def decay(
    value: float | None, metric: str = "accuracy", threshold: float = 0.85, samples: int = 200
) -> DecaySignal:
    return DecaySignal(
        metric=metric,
        value=value,
        samples=samples,
        threshold=threshold,
        min_samples=100,
        cooldown_seconds=3600,
        last_fired=None,
    )


def test_nothing_due_in_steady_state() -> None:
    assert due_triggers(BASE) == []


def test_initial_run_for_a_new_pipeline() -> None:
    inputs = replace(BASE, run_count=0, last_spec_hash=None)
    assert types(inputs) == [TriggerType.INITIAL]


def test_spec_change() -> None:
    (trigger,) = due_triggers(replace(BASE, spec_hash="def"))
    assert trigger.type is TriggerType.SPEC_CHANGE
    assert "abc" in trigger.reason and "def" in trigger.reason


def test_spec_change_can_be_disabled() -> None:
    assert due_triggers(replace(BASE, spec_hash="def", on_spec_change=False)) == []


@pytest.mark.parametrize(
    ("token", "last", "due"),
    [("1", None, True), ("2", "1", True), ("2", "2", False), (None, "1", False), ("", None, False)],
)
def test_manual_annotation(token: str | None, last: str | None, due: bool) -> None:
    inputs = replace(BASE, manual_token=token, last_manual_token=last)
    assert (TriggerType.MANUAL in types(inputs)) is due


def test_schedule() -> None:
    decision = decide(
        "0 * * * *", NOW, last_scheduled=NOW - timedelta(hours=1), created=NOW - timedelta(days=1)
    )
    assert types(replace(BASE, schedule=decision)) == [TriggerType.SCHEDULE]


@pytest.mark.parametrize(
    ("new", "old", "due"),
    [("f2", "f1", True), ("f1", "f1", False), ("f1", None, False), (None, "f1", False)],
)
def test_data_change(new: str | None, old: str | None, due: bool) -> None:
    inputs = replace(BASE, data_fingerprint=new, last_data_fingerprint=old)
    assert (TriggerType.DATA_CHANGE in types(inputs)) is due


@pytest.mark.parametrize(
    ("signal", "due"),
    [
        (drift(0.30), True),
        (drift(0.25), True),  # the threshold itself fires
        (drift(0.24), False),
        (drift(None), False),
        (drift(0.9, samples=50), False),  # too few samples for a verdict
        (drift(0.9, last=NOW - timedelta(minutes=30)), False),  # cooling down
        (drift(0.9, last=NOW - timedelta(hours=1)), True),  # cool-down just over
    ],
)
def test_drift(signal: DriftSignal, due: bool) -> None:
    assert (TriggerType.DRIFT in types(replace(BASE, drift=signal))) is due


@pytest.mark.parametrize(
    ("signal", "due"),
    [
        (decay(0.80), True),
        (decay(0.85), False),
        (decay(0.90), False),
        (decay(0.5, samples=10), False),
        (decay(60.0, metric="rmse", threshold=50.0), True),  # lower is better
        (decay(40.0, metric="rmse", threshold=50.0), False),
        (decay(None), False),
    ],
)
def test_performance_decay(signal: DecaySignal, due: bool) -> None:
    assert (TriggerType.PERFORMANCE_DECAY in types(replace(BASE, decay=signal))) is due


def test_priority_when_several_fire_together() -> None:
    decision = decide(
        "0 * * * *", NOW, last_scheduled=NOW - timedelta(hours=1), created=NOW - timedelta(days=1)
    )
    inputs = replace(
        BASE,
        spec_hash="new",
        manual_token="go",
        schedule=decision,
        drift=drift(0.5),
        decay=decay(0.5),
        data_fingerprint="f2",
        last_data_fingerprint="f1",
    )
    assert types(inputs) == [
        TriggerType.MANUAL,
        TriggerType.SPEC_CHANGE,
        TriggerType.DRIFT,
        TriggerType.PERFORMANCE_DECAY,
        TriggerType.DATA_CHANGE,
        TriggerType.SCHEDULE,
    ]


def test_backoff_cooldown_doubles_per_rejection_up_to_16_times() -> None:
    from perennial.core.triggers import backoff_cooldown

    assert [backoff_cooldown(600, n) for n in (0, 1, 2, 3, 4, 5, 40)] == [
        600, 1200, 2400, 4800, 9600, 9600, 9600
    ]  # fmt: skip
