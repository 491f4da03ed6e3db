"""BusinessCalendar around real mainland-China holidays, day by day."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.calendar import BusinessCalendar, parse_hhmm

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar()


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


# National Day 2025: Oct 1-8 off; Sunday Sep 28 and Saturday Oct 11 are make-up working days.
NATIONAL_DAY_2025 = {
    date(2025, 9, 26): True,   # Friday
    date(2025, 9, 27): False,  # Saturday
    date(2025, 9, 28): True,   # Sunday, make-up working day
    date(2025, 9, 29): True,
    date(2025, 9, 30): True,
    **{date(2025, 10, d): False for d in range(1, 9)},
    date(2025, 10, 9): True,
    date(2025, 10, 10): True,
    date(2025, 10, 11): True,  # Saturday, make-up working day
    date(2025, 10, 12): False,  # Sunday
    date(2025, 10, 13): True,
}

# Spring Festival 2026: Feb 15-23 off; Saturdays Feb 14 and Feb 28 are make-up working days.
SPRING_FESTIVAL_2026 = {
    date(2026, 2, 13): True,
    date(2026, 2, 14): True,   # Saturday, make-up working day
    **{date(2026, 2, d): False for d in range(15, 24)},
    date(2026, 2, 24): True,
    date(2026, 2, 27): True,
    date(2026, 2, 28): True,   # Saturday, make-up working day
    date(2026, 3, 1): False,   # Sunday
}


@pytest.mark.parametrize("day,working", sorted({**NATIONAL_DAY_2025, **SPRING_FESTIVAL_2026}.items()))
def test_is_working_day_around_holidays(cal: BusinessCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_is_working_day_takes_local_date_of_aware_datetime(cal: BusinessCalendar) -> None:
    # 2025-09-30T17:00Z is already Oct 1, 01:00 in Shanghai: a holiday.
    assert cal.is_working_day(datetime(2025, 9, 30, 17, 0, tzinfo=timezone.utc)) is False
    assert cal.is_working_day(datetime(2025, 9, 30, 15, 59, tzinfo=timezone.utc)) is True


@pytest.mark.parametrize(
    "start,n,expected",
    [
        (at(2025, 9, 30), 0, at(2025, 9, 30)),
        (at(2025, 9, 30), 1, at(2025, 10, 9)),
        (at(2025, 9, 30), 2, at(2025, 10, 10)),
        (at(2025, 9, 30), 3, at(2025, 10, 11)),  # make-up Saturday counts
        (at(2025, 9, 30), 4, at(2025, 10, 13)),  # Sunday Oct 12 does not
        (at(2025, 9, 26, 15), 1, at(2025, 9, 28, 15)),  # make-up Sunday counts
        (at(2025, 9, 29, 9, 30), 5, at(2025, 10, 13, 9, 30)),
        # Starting on a non-working day: counting begins at the next working day.
        (at(2025, 10, 3, 14), 0, at(2025, 10, 9, 14)),
        (at(2025, 10, 3, 14), 1, at(2025, 10, 10, 14)),
        (at(2025, 9, 27, 11), 1, at(2025, 9, 29, 11)),
        (at(2026, 2, 13, 9), 1, at(2026, 2, 14, 9)),
        (at(2026, 2, 13, 9), 2, at(2026, 2, 24, 9)),
        (at(2026, 2, 20, 16), 1, at(2026, 2, 25, 16)),
    ],
)
def test_add_working_days(cal: BusinessCalendar, start: datetime, n: int, expected: datetime) -> None:
    result = cal.add_working_days(start, n)
    assert result == expected
    assert result.tzinfo is not None and result.utcoffset() == timedelta(hours=8)


def test_add_working_days_converts_aware_input_to_business_zone(cal: BusinessCalendar) -> None:
    # 2025-09-30T17:30Z is Oct 1, 01:30 local (holiday): n=0 lands on Oct 9, 01:30.
    result = cal.add_working_days(datetime(2025, 9, 30, 17, 30, tzinfo=timezone.utc), 0)
    assert result == at(2025, 10, 9, 1, 30)
    assert result.tzinfo == SH


def test_add_working_days_refuses_negative(cal: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="n >= 0"):
        cal.add_working_days(at(2025, 9, 30), -1)


@pytest.mark.parametrize(
    "after,expected",
    [
        (at(2025, 9, 30, 16, 59), at(2025, 9, 30, 17)),
        (at(2025, 9, 30, 17, 0), at(2025, 10, 1, 17)),  # strictly after
        (at(2025, 9, 30, 17, 1), at(2025, 10, 1, 17)),
        (datetime(2025, 9, 30, 8, 0, tzinfo=timezone.utc), at(2025, 9, 30, 17)),  # 16:00 local
        (datetime(2025, 9, 30, 9, 30, tzinfo=timezone.utc), at(2025, 10, 1, 17)),  # 17:30 local
    ],
)
def test_next_time_of_day(cal: BusinessCalendar, after: datetime, expected: datetime) -> None:
    assert cal.next_time_of_day("17:00", after) == expected


@pytest.mark.parametrize(
    "after,expected",
    [
        (at(2025, 9, 30, 16), at(2025, 9, 30, 17)),
        (at(2025, 9, 30, 18), at(2025, 10, 9, 17)),  # skips the whole National Day break
        (at(2025, 10, 4, 9), at(2025, 10, 9, 17)),
        (at(2025, 9, 26, 18), at(2025, 9, 28, 17)),  # make-up Sunday
        (at(2025, 10, 10, 17, 30), at(2025, 10, 11, 17)),  # make-up Saturday
        (at(2025, 10, 11, 17, 30), at(2025, 10, 13, 17)),
    ],
)
def test_next_working_time_of_day(cal: BusinessCalendar, after: datetime, expected: datetime) -> None:
    assert cal.next_working_time_of_day("17:00", after) == expected


@pytest.mark.parametrize("text", ["25:00", "5pm", "17", "17:60", "", "17:00+08:00"])
def test_parse_hhmm_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="17:00"):
        parse_hhmm(text)


def test_parse_hhmm() -> None:
    assert parse_hhmm("9:05") == time(9, 5)
    assert parse_hhmm(" 23:59 ") == time(23, 59)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (date(2025, 9, 30), date(2025, 10, 9), 1),
        (date(2025, 10, 9), date(2025, 9, 30), -1),
        (date(2025, 9, 30), date(2025, 9, 30), 0),
        (date(2025, 9, 26), date(2025, 10, 13), 7),  # Sep 28, 29, 30, Oct 9, 10, 11, 13
        (at(2026, 2, 13), at(2026, 2, 24, 8), 2),
    ],
)
def test_working_days_between(cal: BusinessCalendar, a: date, b: date, expected: int) -> None:
    assert cal.working_days_between(a, b) == expected


def test_is_working_time(cal: BusinessCalendar) -> None:
    assert cal.is_working_time(at(2025, 10, 9, 9, 0))
    assert not cal.is_working_time(at(2025, 10, 9, 18, 0))
    assert not cal.is_working_time(at(2025, 10, 1, 10, 0))


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.add_working_days(datetime(2025, 9, 30, 10), 1),
        lambda c: c.next_time_of_day("17:00", datetime(2025, 9, 30, 10)),
        lambda c: c.next_working_time_of_day("17:00", datetime(2025, 9, 30, 10)),
        lambda c: c.working_days_between(datetime(2025, 9, 30, 10), date(2025, 10, 9)),
        lambda c: c.is_working_day(datetime(2025, 9, 30, 10)),
    ],
)
def test_naive_datetimes_are_refused(cal: BusinessCalendar, call) -> None:
    with pytest.raises(ValueError, match="naive"):
        call(cal)


def test_a_year_without_an_announced_table_uses_the_statutory_holidays(caplog: pytest.LogCaptureFixture) -> None:
    cal = BusinessCalendar()
    with caplog.at_level(logging.WARNING, logger="engine.calendar"):
        # chinesecalendar has no table for 2027: the law's holidays still count, weekends are off.
        assert cal.is_working_day(date(2027, 1, 1)) is False  # New Year's Day, a Friday
        assert cal.is_working_day(date(2027, 1, 4)) is True  # Monday
        assert cal.is_working_day(date(2027, 1, 2)) is False  # Saturday
        assert [cal.is_working_day(date(2027, 10, d)) for d in range(1, 9)] == \
            [False, False, False, False, False, True, True, True]  # National Day Fri 1 – Tue 5
        assert cal.add_working_days(datetime(2027, 9, 30, 10, tzinfo=SH), 1) == datetime(2027, 10, 6, 10, tzinfo=SH)
    warnings = [r for r in caplog.records if "2027" in r.getMessage()]
    assert len(warnings) == 1  # once per year, not once per date


def test_extra_holidays_and_workdays_patch_the_package() -> None:
    cal = BusinessCalendar(
        extra_holidays={date(2099, 1, 1)},
        extra_workdays={date(2099, 1, 3), date(2025, 10, 8)},
    )
    assert cal.is_working_day(date(2099, 1, 1)) is False
    assert cal.is_working_day(date(2099, 1, 3)) is True
    assert cal.is_working_day(date(2025, 10, 8)) is True  # overrides the package too
    assert cal.add_working_days(datetime(2025, 9, 30, 10, tzinfo=SH), 1) == at(2025, 10, 8)


def test_date_both_holiday_and_workday_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        BusinessCalendar(extra_holidays={date(2099, 1, 1)}, extra_workdays={date(2099, 1, 1)})


def test_custom_holiday_source() -> None:
    class EvenDaysOnly:
        def is_workday(self, day: date) -> bool:
            return day.day % 2 == 0

    cal = BusinessCalendar(holiday_source=EvenDaysOnly())
    assert cal.add_working_days(at(2025, 10, 1), 1) == at(2025, 10, 4)


def test_other_time_zone() -> None:
    cal = BusinessCalendar(tz="UTC")
    # 2025-10-09T00:30+08:00 is still Oct 8 in UTC, a holiday there too.
    result = cal.next_working_time_of_day("17:00", at(2025, 10, 9, 0, 30))
    assert result == datetime(2025, 10, 9, 17, 0, tzinfo=ZoneInfo("UTC"))


def test_next_day_of_month_rolls_over_and_uses_short_months_last_day():
    cal = BusinessCalendar()
    shanghai = ZoneInfo("Asia/Shanghai")
    after = datetime(2026, 1, 20, 9, 0, tzinfo=shanghai)
    assert cal.next_day_of_month(20, "09:00", after) == datetime(2026, 2, 20, 9, 0, tzinfo=shanghai)
    assert cal.next_day_of_month(31, "09:00", after) == datetime(2026, 1, 31, 9, 0, tzinfo=shanghai)
    assert cal.next_day_of_month(30, "09:00", datetime(2026, 2, 1, tzinfo=shanghai)) == \
        datetime(2026, 2, 28, 9, 0, tzinfo=shanghai)
    assert cal.next_day_of_month(20, "09:00", datetime(2026, 12, 21, tzinfo=shanghai)) == \
        datetime(2027, 1, 20, 9, 0, tzinfo=shanghai)
