"""Working days and times of day in the business time zone.

Working days follow the mainland-China statutory calendar from the
`chinesecalendar` package: public holidays are off, and the make-up working days
(调休, usually a Saturday or Sunday next to a holiday) are on. The package ships
one table per year, published after the State Council's notice, and knows no
later year (version 1.11 covers 2004–2026). For such a year the calendar takes the
statutory holidays the `holidays` package computes from the law (China), with
weekends off, and logs a warning once per year: the make-up working days of that
year are not known until they are announced. Operators patch a missing or changed
year with `extra_holidays` / `extra_workdays`, which win over both packages.

Every datetime taken must be timezone-aware (it is converted to the calendar's
zone); naive datetimes are refused with `ValueError`. Every datetime returned is
aware, in the calendar's zone.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import chinese_calendar
import holidays

log = logging.getLogger(__name__)

_HHMM = re.compile(r"(?P<hour>[01]?\d|2[0-3]):(?P<minute>[0-5]\d)")


class HolidaySource(Protocol):
    def is_workday(self, day: date) -> bool:
        """Return whether `day` is a working day; raise for years the source has no data for."""


class BusinessCalendar:
    """Working-day arithmetic for one time zone and one statutory calendar.

    `holiday_source` defaults to the `chinese_calendar` module. A date listed in
    `extra_holidays` is never a working day and one in `extra_workdays` always is,
    whatever the source says; a date in both is refused.
    """

    def __init__(
        self,
        tz: str = "Asia/Shanghai",
        work_start: time = time(9, 0),
        work_end: time = time(18, 0),
        holiday_source: HolidaySource | None = None,
        extra_holidays: Collection[date] = frozenset(),
        extra_workdays: Collection[date] = frozenset(),
    ) -> None:
        if work_start >= work_end:
            raise ValueError(f"work_start {work_start} must be before work_end {work_end}")
        clash = set(extra_holidays) & set(extra_workdays)
        if clash:
            raise ValueError(f"dates listed both as holiday and as workday: {sorted(clash)}")
        self.tz = ZoneInfo(tz)
        self.work_start = work_start
        self.work_end = work_end
        self._source: HolidaySource = holiday_source or chinese_calendar
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_workdays = frozenset(extra_workdays)
        # The package re-scans its whole table on every call; deadlines ask about
        # the same few dates again and again.
        self._cache: dict[date, bool] = {}
        self._warned_years: set[int] = set()
        self._statutory_years: dict[int, object] = {}

    def is_working_day(self, day: date) -> bool:
        """Return whether `day` (a date, or an aware datetime's local date) is a working day."""
        if isinstance(day, datetime):
            day = self.localize(day).date()
        cached = self._cache.get(day)
        if cached is None:
            cached = self._cache[day] = self._lookup(day)
        return cached

    def is_working_time(self, when: datetime) -> bool:
        """Return whether `when` falls on a working day within [work_start, work_end)."""
        local = self.localize(when)
        return self.is_working_day(local.date()) and self.work_start <= local.time() < self.work_end

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """Return the moment `n` working days after `start`, at the same local time of day.

        Rule: if `start` falls on a non-working day, counting begins at the next
        working day at the same time of day (so n=0 gives that moment, and a
        complaint received on Saturday with n=1 is due on Tuesday when Monday is a
        working day). `n` must not be negative.
        """
        if n < 0:
            raise ValueError(f"add_working_days needs n >= 0, got {n}")
        local = self.localize(start)
        day = self._next_working_day(local.date())
        for _ in range(n):
            day = self._next_working_day(day + timedelta(days=1))
        return self._at(day, local.time())

    def next_time_of_day(self, hhmm: str, after: datetime) -> datetime:
        """Return the first local `hhmm` ("17:00") strictly after `after`."""
        at = parse_hhmm(hhmm)
        local = self.localize(after)
        candidate = self._at(local.date(), at)
        if candidate <= local:
            candidate = self._at(local.date() + timedelta(days=1), at)
        return candidate

    def next_day_of_month(self, day: int, hhmm: str, after: datetime) -> datetime:
        """Return the first local `hhmm` on day `day` of a month strictly after `after`.

        Months too short for `day` use their last day.
        """
        if not 1 <= day <= 31:
            raise ValueError(f"day of month must be 1-31, got {day}")
        at = parse_hhmm(hhmm)
        local = self.localize(after)
        year, month = local.year, local.month
        while True:
            last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
            candidate = self._at(date(year, month, min(day, last)), at)
            if candidate > local:
                return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def next_working_time_of_day(self, hhmm: str, after: datetime) -> datetime:
        """Return the first local `hhmm` on a working day strictly after `after`."""
        candidate = self.next_time_of_day(hhmm, after)
        day = self._next_working_day(candidate.date())
        return candidate if day == candidate.date() else self._at(day, parse_hhmm(hhmm))

    def working_days_between(self, a: date | datetime, b: date | datetime) -> int:
        """Return the number of working days d with a < d <= b (local dates); negative if b < a.

        So Friday to the following Monday is 1, and a day to itself is 0.
        """
        start, end = self._local_date(a), self._local_date(b)
        sign = 1
        if end < start:
            start, end, sign = end, start, -1
        count = sum(
            1 for offset in range(1, (end - start).days + 1)
            if self.is_working_day(start + timedelta(days=offset))
        )
        return sign * count

    def localize(self, when: datetime) -> datetime:
        """Return aware `when` in the calendar's zone; refuse naive datetimes."""
        if not isinstance(when, datetime):
            raise TypeError(f"expected a datetime, got {type(when).__name__}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"naive datetime {when.isoformat()} refused: give a timezone-aware datetime")
        return when.astimezone(self.tz)

    def _lookup(self, day: date) -> bool:
        if day in self._extra_holidays:
            return False
        if day in self._extra_workdays:
            return True
        try:
            return self._source.is_workday(day)
        except NotImplementedError:
            if day.year not in self._warned_years:
                self._warned_years.add(day.year)
                log.warning("no announced holiday table for %s: using the statutory holidays, weekends off, "
                            "no make-up working days", day.year)
            return day.weekday() < 5 and day not in self._statutory(day.year)

    def _statutory(self, year: int):
        found = self._statutory_years.get(year)
        if found is None:
            found = self._statutory_years[year] = holidays.China(years=year)
        return found

    def _next_working_day(self, day: date) -> date:
        # Chinese holiday runs are at most 9 days long; a year without any working
        # day would mean a broken source, so stop rather than loop forever.
        for offset in range(366):
            candidate = day + timedelta(days=offset)
            if self.is_working_day(candidate):
                return candidate
        raise RuntimeError(f"no working day within a year after {day}")

    def _local_date(self, value: date | datetime) -> date:
        return self.localize(value).date() if isinstance(value, datetime) else value

    def _at(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.tz)


def parse_hhmm(hhmm: str) -> time:
    """Return the time of an "HH:MM" string (24-hour clock); raise ValueError otherwise."""
    match = _HHMM.fullmatch(hhmm.strip()) if isinstance(hhmm, str) else None
    if match is None:
        raise ValueError(f"expected a time of day like '17:00', got {hhmm!r}")
    return time(int(match["hour"]), int(match["minute"]))
