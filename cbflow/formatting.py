"""Money, dates and times as pages and documents print them, in one place.

Pages and documents read the same words: `£1,234.00`, `10 November 2011`, `12:00 on 10 November
2011`, and a deadline at midnight as `the end of 9 November 2011` (the day it closes, not the
next). Moments are stored in UTC and printed in the round's time zone (Europe/London by default),
with the zone's name where a page shows a moment to the minute. Month names are spelled out
here, because strftime's %B follows the process's locale and cbflow writes en-GB.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Protocol
from zoneinfo import ZoneInfo

from cbflow.settings import get_settings

PENNY = Decimal("0.01")

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Zoned(Protocol):
    """Anything with a time zone its moments are read in: a prospectus."""

    @property
    def zone(self) -> ZoneInfo: ...


# ---------------------------------------------------------------------------------------------
# money: stored as whole pence (int), printed in pounds


def pence_to_money(pence: int) -> Decimal:
    """Whole pence as an exact amount of pounds: 123456 -> Decimal('1234.56')."""
    return (Decimal(pence) / 100).quantize(PENNY)


def money(pence: int | None) -> str:
    """Pence as pounds with their pence: `£1,234.56`; nothing is `£0.00`."""
    return f"£{pence_to_money(pence or 0):,.2f}"


def money_or_blank(pence: int | None) -> str:
    """As `money`, but an amount nobody gave is blank rather than `£0.00` (a table's cell)."""
    return "" if pence is None else money(pence)


def pounds(value: Decimal | int | str) -> str:
    """An amount of pounds (a Decimal, an int or a string holding a plain number) as
    `£1,234,567.00`, rounded half up to the penny; anything else is refused."""
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not an amount of money: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount of money: {value!r}")
    pence = amount.quantize(PENNY, ROUND_HALF_UP)
    sign = "-" if pence < 0 else ""
    return f"{sign}£{abs(pence):,}"


# ---------------------------------------------------------------------------------------------
# dates and times


def in_zone(value: datetime, zone: ZoneInfo | None = None) -> datetime:
    """A moment in `zone` (default: the configured time zone, CBFLOW_TIMEZONE). A naive
    moment is refused: printed, it would show the wrong hour half the year."""
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no time zone")
    return value.astimezone(zone or ZoneInfo(get_settings().timezone))


def _at_midnight(moment: datetime) -> bool:
    return (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)


def long_date(value: date | str, zone: ZoneInfo | None = None) -> str:
    """`10 November 2011`: a date, an ISO date string, or a moment taken to `zone` first."""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    day = in_zone(value, zone) if isinstance(value, datetime) else value
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def long_moment(value: datetime, zone: ZoneInfo | None = None) -> str:
    """A moment as a letter gives it: `12:00 on 10 November 2011`; a moment at the start of a
    day is that day alone (`17 October 2011`), never `00:00 on 17 October 2011`."""
    moment = in_zone(value, zone)
    if _at_midnight(moment):
        return long_date(moment)
    return f"{moment:%H:%M} on {long_date(moment)}"


def long_deadline(value: datetime, zone: ZoneInfo | None = None) -> str:
    """A deadline as people say it, to follow "by" or "due by": `12:00 on 10 November 2011`, or,
    when it falls at midnight, `the end of 9 November 2011` (the day it closes, not the next)."""
    moment = in_zone(value, zone)
    if _at_midnight(moment):
        return f"the end of {long_date(moment - timedelta(days=1))}"
    return long_moment(moment)


def local_time(moment: datetime, where: Zoned) -> str:
    """A moment as a round's staff and councils read it on a page, to the minute with the
    zone's name: `12:00 on 10 November 2011 (GMT)`."""
    local = moment.astimezone(where.zone)
    return f"{local:%H:%M} on {long_date(local)} ({local:%Z})"


def local_when(moment: datetime | None, where: Zoned) -> str:
    """As `local_time`, blank for a moment that has not happened."""
    return local_time(moment, where) if moment is not None else ""


def local_deadline(moment: datetime, where: Zoned) -> str:
    """A deadline on a page: midnight is `the end of 9 December 2011`, not `00:00 on 10
    December`, which reads as a day later than meant."""
    local = moment.astimezone(where.zone)
    if _at_midnight(local.replace(microsecond=0)):
        return f"the end of {long_date(local - timedelta(days=1))}"
    return local_time(moment, where)


# ---------------------------------------------------------------------------------------------
# the documents' Jinja filters: strings pass through (a template may be given words instead)


def money_filter(value: Decimal | int | str) -> str:
    """Pounds as `£1,234,567.00`; strings must hold a plain number of pounds."""
    return pounds(value)


def date_filter(value: date | str) -> str:
    """`10 November 2011`, in the configured time zone for moments; strings pass through."""
    return value if isinstance(value, str) else long_date(value)


def datetime_filter(value: datetime | str) -> str:
    """`12:00 on 10 November 2011` in the configured time zone (a moment at midnight: the date
    alone); strings pass through."""
    return value if isinstance(value, str) else long_moment(value)


def deadline_filter(value: datetime | str) -> str:
    """`12:00 on 10 November 2011`, or `the end of 9 November 2011` for a midnight deadline;
    strings pass through."""
    return value if isinstance(value, str) else long_deadline(value)


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (CSV injection): text that starts as a
    formula would is kept as text behind a quote mark."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
