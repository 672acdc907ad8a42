from datetime import UTC, datetime, timedelta

import pytest

from perennial.core.schedule import ScheduleError, decide, next_after, validate

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


@pytest.mark.parametrize("cron", ["61 * * * *", "* * *", "every day", "* * * * * * *", ""])
def test_invalid_cron_names_field(cron: str) -> None:
    with pytest.raises(ScheduleError, match=r"triggers\.schedule\.cron"):
        validate(cron)


def test_invalid_time_zone_names_field() -> None:
    with pytest.raises(ScheduleError, match=r"triggers\.schedule\.timeZone"):
        validate("0 3 * * *", "Mars/Olympus")


def test_not_due_before_first_tick() -> None:
    d = decide("0 * * * *", at(minutes=30), last_scheduled=None, created=at(minutes=10))
    assert not d.due
    assert d.next_time == at(hours=1)


def test_due_exactly_on_the_tick() -> None:
    d = decide("0 * * * *", at(hours=1), last_scheduled=None, created=at(minutes=10))
    assert d.due
    assert d.scheduled_time == at(hours=1)
    assert d.next_time == at(hours=2)


def test_not_due_again_for_the_same_tick() -> None:
    d = decide("0 * * * *", at(hours=1, minutes=5), last_scheduled=at(hours=1), created=T0)
    assert not d.due


def test_schedule_at_creation_instant_does_not_count() -> None:
    d = decide("0 * * * *", at(minutes=1), last_scheduled=None, created=T0)
    assert not d.due


def test_missed_schedules_collapse_into_one_catch_up() -> None:
    # operator down from 01:00 to 05:30: ticks at 02, 03, 04, 05 were missed
    d = decide("0 * * * *", at(hours=5, minutes=30), last_scheduled=at(hours=1), created=T0)
    assert d.due
    assert d.scheduled_time == at(hours=5)  # the latest missed tick only
    assert "3 earlier missed schedules collapsed into one run" in d.reason
    # once that catch-up is recorded, nothing else is due
    again = decide("0 * * * *", at(hours=5, minutes=31), last_scheduled=at(hours=5), created=T0)
    assert not again.due


def test_starting_deadline_skips_a_too_late_run() -> None:
    d = decide(
        "0 * * * *",
        at(hours=5, minutes=30),
        last_scheduled=at(hours=4),
        created=T0,
        starting_deadline_seconds=600,
    )
    assert not d.due
    assert d.scheduled_time == at(hours=5)
    assert "startingDeadlineSeconds 600" in d.reason


def test_time_zone_is_respected() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter
    nxt = next_after("0 3 * * *", T0, "Europe/Berlin")
    assert nxt.astimezone(UTC) == at(hours=2)


def test_dst_spring_forward_day() -> None:
    # 2026-03-29: Berlin skips 02:00-03:00; a 02:30 schedule must still fire once that day
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    nxt = next_after("30 2 * * *", start, "Europe/Berlin")
    assert nxt.astimezone(UTC).date() == datetime(2026, 3, 29, tzinfo=UTC).date()


@pytest.mark.parametrize("cron", ["@daily", "@hourly", "*/15 * * * *", "0 3 * * 1-5"])
def test_valid_cron(cron: str) -> None:
    validate(cron)
    assert next_after(cron, T0) > T0
