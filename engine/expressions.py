"""The helper names every BPMN expression and script can use (see BPMN-CONVENTIONS.md).

Helpers take ISO 8601 strings or `datetime`s and return ISO 8601 strings with the
business time zone's offset (`2026-10-09T09:00:00+08:00`), because that is what
case data can hold and what timer definitions read. "Now" is always
`engine.clock.now()`, so a `FakeClock` moves every deadline. A date-time string
without an offset, or a date alone, is read as business-zone local time.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from dateutil.relativedelta import relativedelta

from engine import clock
from engine.calendar import BusinessCalendar

DateTimeLike = str | datetime | date

_NUMBER = r"\d+(?:[.,]\d+)?"
_DURATION = re.compile(
    rf"P(?:(?P<weeks>{_NUMBER})W"
    rf"|(?:(?P<years>{_NUMBER})Y)?(?:(?P<months>{_NUMBER})M)?(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?=\d)(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?)"
)


def parse_iso_duration(text: str) -> relativedelta | timedelta:
    """Return the ISO 8601 duration `text` (PnYnMnDTnHnMnS or PnW) as a delta.

    A `timedelta` unless years or months are given, which need calendar
    arithmetic and give a `relativedelta`. Decimal fractions (`PT1.5H`, `PT0,5H`)
    are accepted except on years and months. Raise ValueError otherwise.
    """
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"not an ISO 8601 duration (like 'PT12H', 'P3D', 'P1W'): {text!r}")
    parts = {unit: float(value.replace(",", ".")) for unit, value in match.groupdict().items() if value}
    years, months = parts.pop("years", 0.0), parts.pop("months", 0.0)
    rest = timedelta(**parts)
    if not (years or months):
        return rest
    if not (years.is_integer() and months.is_integer()):
        raise ValueError(f"years and months must be whole numbers in a duration: {text!r}")
    return relativedelta(years=int(years), months=int(months)) + rest


def to_datetime(value: DateTimeLike, tz: tzinfo) -> datetime:
    """Return `value` as an aware datetime in `tz`; naive values and bare dates are local to `tz`."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 date-time: {value!r}") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time())
    elif not isinstance(value, datetime):
        raise TypeError(f"expected an ISO 8601 date-time, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=tz)
    return value.astimezone(tz)


def expression_functions(calendar: BusinessCalendar) -> dict[str, Callable[..., Any]]:
    """Return the helper names of BPMN-CONVENTIONS.md, working in `calendar`'s zone and days."""
    tz = calendar.tz

    def parse_datetime(value: DateTimeLike) -> datetime:
        """Return `value` as an aware datetime in the business zone."""
        return to_datetime(value, tz)

    def now() -> str:
        """Return the engine clock's current time as ISO 8601 in the business zone."""
        return clock.now().astimezone(tz).isoformat()

    def add_duration(start: DateTimeLike, duration: str | timedelta | relativedelta) -> str:
        """Return `start` plus an ISO 8601 duration, counted in business-zone wall time."""
        delta = duration if isinstance(duration, (timedelta, relativedelta)) else parse_iso_duration(duration)
        return (parse_datetime(start) + delta).isoformat()

    def add_hours(start: DateTimeLike, n: float) -> str:
        """Return `start` plus `n` hours of elapsed time."""
        moment = parse_datetime(start).astimezone(timezone.utc) + timedelta(hours=n)
        return moment.astimezone(tz).isoformat()

    def add_days(start: DateTimeLike, n: float) -> str:
        """Return `start` plus `n` calendar days, at the same local time of day."""
        return (parse_datetime(start) + timedelta(days=n)).isoformat()

    def add_working_days(start: DateTimeLike, n: int) -> str:
        """Return the moment `n` working days after `start`, same local time (see BusinessCalendar)."""
        return calendar.add_working_days(parse_datetime(start), operator.index(n)).isoformat()

    def next_day_of_month(day: int, hhmm: str = "09:00", after: DateTimeLike | None = None) -> str:
        """Return the next local `hhmm` on day `day` of a month after `after` (default: now)."""
        return calendar.next_day_of_month(day, hhmm, _after(after)).isoformat()

    def next_time_of_day(hhmm: str, after: DateTimeLike | None = None) -> str:
        """Return the next local `hhmm` strictly after `after` (default: now)."""
        return calendar.next_time_of_day(hhmm, _after(after)).isoformat()

    def next_working_time_of_day(hhmm: str, after: DateTimeLike | None = None) -> str:
        """Return the next local `hhmm` on a working day strictly after `after` (default: now)."""
        return calendar.next_working_time_of_day(hhmm, _after(after)).isoformat()

    def days_between(a: DateTimeLike, b: DateTimeLike) -> int:
        """Return the whole calendar days from `a`'s local date to `b`'s (negative if b is earlier)."""
        return (parse_datetime(b).date() - parse_datetime(a).date()).days

    def earliest(*values: DateTimeLike | None) -> str | None:
        """Return the earliest of `values` as ISO 8601, ignoring None; None if all are None."""
        moments = [parse_datetime(value) for value in values if value is not None]
        return min(moments).isoformat() if moments else None

    def latest(*values: DateTimeLike | None) -> str | None:
        """Return the latest of `values` as ISO 8601, ignoring None; None if all are None."""
        moments = [parse_datetime(value) for value in values if value is not None]
        return max(moments).isoformat() if moments else None

    def _after(after: DateTimeLike | None) -> datetime:
        return clock.now() if after is None else parse_datetime(after)

    return {
        "now": now,
        "next_day_of_month": next_day_of_month,
        "parse_datetime": parse_datetime,
        "add_duration": add_duration,
        "add_hours": add_hours,
        "add_days": add_days,
        "add_working_days": add_working_days,
        "next_time_of_day": next_time_of_day,
        "next_working_time_of_day": next_working_time_of_day,
        "days_between": days_between,
        "earliest": earliest,
        "latest": latest,
        "datetime": datetime,
        "timedelta": timedelta,
        "date": date,
    }
