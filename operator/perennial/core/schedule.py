"""Cron schedules: when is the next run due, and did we miss one?

Like a CronJob: missed schedules while the operator was down start at most one catch-up
run (the latest missed time), and none at all if that time is older than the starting
deadline. Time is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class ScheduleError(ValueError):
    """The cron expression or time zone is not valid."""


@dataclass(frozen=True)
class ScheduleDecision:
    due: bool
    scheduled_time: datetime | None  # the (latest missed) time this run is for
    next_time: datetime
    reason: str


MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


def validate(cron: str, time_zone: str | None = None) -> None:
    fields = cron.split()
    well_formed = cron.strip() in MACROS or len(fields) == 5
    if not well_formed or not croniter.is_valid(cron):
        raise ScheduleError(
            f"triggers.schedule.cron {cron!r} is not a valid 5-field cron expression "
            "(minute hour day-of-month month day-of-week) or a macro such as '@daily', "
            "e.g. '0 3 * * *'"
        )
    _zone(time_zone)


def _zone(time_zone: str | None) -> ZoneInfo | None:
    if not time_zone:
        return None
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"triggers.schedule.timeZone {time_zone!r} is not a known IANA time zone, "
            "e.g. 'Europe/Berlin' or 'UTC'"
        ) from exc


def next_after(cron: str, after: datetime, time_zone: str | None = None) -> datetime:
    validate(cron, time_zone)
    zone = _zone(time_zone)
    start = after.astimezone(zone) if zone else after
    result: datetime = croniter(cron, start).get_next(datetime)
    return result


def latest_at_or_before(cron: str, moment: datetime, time_zone: str | None = None) -> datetime:
    zone = _zone(time_zone)
    start = moment.astimezone(zone) if zone else moment
    # croniter's get_prev is strictly before; nudge so an exact match counts.
    result: datetime = croniter(cron, start + timedelta(seconds=1)).get_prev(datetime)
    return result


def decide(
    cron: str,
    now: datetime,
    *,
    last_scheduled: datetime | None,
    created: datetime,
    time_zone: str | None = None,
    starting_deadline_seconds: int | None = None,
) -> ScheduleDecision:
    """Is a scheduled run due at ``now``?

    ``last_scheduled`` is the schedule time of the last run we started for the schedule
    (``None`` before the first); schedules before ``created`` never count.
    """
    validate(cron, time_zone)
    since = last_scheduled or created
    next_time = next_after(cron, now, time_zone)
    latest = latest_at_or_before(cron, now, time_zone)
    if latest <= since:
        return ScheduleDecision(False, None, next_time, "not due yet")
    missed = 0
    probe = next_after(cron, since, time_zone)
    while probe < latest and missed < 100:
        missed += 1
        probe = next_after(cron, probe, time_zone)
    if starting_deadline_seconds is not None:
        late = (now - latest).total_seconds()
        if late > starting_deadline_seconds:
            return ScheduleDecision(
                False,
                latest,
                next_time,
                f"missed schedule {latest.isoformat()} by {late:.0f}s "
                f"(startingDeadlineSeconds {starting_deadline_seconds}); skipped",
            )
    reason = f"schedule {cron!r} due at {latest.isoformat()}"
    if missed:
        more = "+" if missed >= 100 else ""
        reason += f" (catch-up: {missed}{more} earlier missed schedules collapsed into one run)"
    return ScheduleDecision(True, latest, next_time, reason)
