"""Working days in England: Monday to Friday, except the bank holidays of England and Wales
(from the `holidays` package, which follows the announced ones: substitute days, a jubilee, a
coronation). Pure: no I/O.

A reminder "N working days before a deadline" goes at the reminder time (09:00 unless
CBFLOW_REMINDER_TIME says otherwise), local time, on the Nth working day before the deadline's
date. The deadline's date is the last day the window is open: a deadline at midnight ends the
day before (one closing at the end of Wednesday, or at 23:59:59 on it, is reminded of one
working day before on Tuesday at 09:00; three working days before a Tuesday deadline is the
Thursday before).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays


@cache
def _bank_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def bank_holidays(years: Iterable[int]) -> frozenset[date]:
    """England's (and Wales's) bank holidays in those years."""
    found: frozenset[date] = frozenset()
    for year in years:
        found |= _bank_holidays(year)
    return found


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def working_days_before(day: date, count: int) -> date:
    """The `count`th working day before `day` (1: the working day before it)."""
    if count < 1:
        raise ValueError("count working days from 1")
    found = day
    while count:
        found -= timedelta(days=1)
        if is_working_day(found):
            count -= 1
    return found


def deadline_day(deadline: datetime, zone: ZoneInfo) -> date:
    """The last day a window closing at `deadline` is open, in the round's time zone: a deadline
    at midnight closes the day before it."""
    return (deadline.astimezone(zone) - timedelta(microseconds=1)).date()


def parse_time_of_day(value: str) -> time:
    """'09:00' as a time of day; anything else is refused."""
    try:
        parsed = time.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a time of day written like 09:00") from exc
    if parsed.tzinfo is not None:
        raise ValueError(f"{value!r}: give the local time without a time zone")
    return parsed


def reminder_moment(deadline: datetime, days: int, zone: ZoneInfo, at: time) -> datetime:
    """When the reminder `days` working days before `deadline` goes: `at`, local time, on the
    `days`th working day before the deadline's date."""
    day = working_days_before(deadline_day(deadline, zone), days)
    return datetime.combine(day, at, tzinfo=zone)
