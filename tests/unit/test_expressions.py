"""Expression helpers read the engine clock and answer in the business time zone."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta

from engine.calendar import BusinessCalendar
from engine.clock import FakeClock, use_clock
from engine.expressions import expression_functions, parse_iso_duration
from engine.sandbox import SandboxedEnvironment

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def fn() -> dict[str, Callable[..., Any]]:
    return expression_functions(BusinessCalendar())


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    # Tuesday 2025-09-30 16:00 in Shanghai, the last working day before National Day.
    with use_clock(FakeClock(datetime(2025, 9, 30, 8, 0, tzinfo=timezone.utc))) as fake:
        yield fake


def test_names_match_the_conventions_table(fn: dict[str, Callable[..., Any]]) -> None:
    assert set(fn) == {
        "now", "parse_datetime", "add_duration", "add_hours", "add_days", "add_working_days",
        "next_time_of_day", "next_working_time_of_day", "next_day_of_month", "days_between", "earliest", "latest",
        "datetime", "timedelta", "date",
    }
    assert fn["datetime"] is datetime and fn["timedelta"] is timedelta and fn["date"] is date


def test_now_follows_the_fake_clock(fn: dict[str, Callable[..., Any]], clock: FakeClock) -> None:
    assert fn["now"]() == "2025-09-30T16:00:00+08:00"
    clock.advance(timedelta(hours=9, minutes=5))
    assert fn["now"]() == "2025-10-01T01:05:00+08:00"


def test_next_time_of_day_defaults_to_now(fn: dict[str, Callable[..., Any]], clock: FakeClock) -> None:
    assert fn["next_time_of_day"]("17:00") == "2025-09-30T17:00:00+08:00"
    clock.advance(timedelta(hours=1, minutes=30))  # 17:30 local
    assert fn["next_time_of_day"]("17:00") == "2025-10-01T17:00:00+08:00"
    assert fn["next_working_time_of_day"]("17:00") == "2025-10-09T17:00:00+08:00"
    assert fn["next_time_of_day"]("17:00", after="2025-10-05T08:00:00+08:00") == "2025-10-05T17:00:00+08:00"


def test_add_working_days_skips_national_day(fn: dict[str, Callable[..., Any]], clock: FakeClock) -> None:
    assert fn["add_working_days"](fn["now"](), 1) == "2025-10-09T16:00:00+08:00"
    assert fn["add_working_days"]("2025-09-30T02:00:00Z", 3) == "2025-10-11T10:00:00+08:00"
    assert fn["add_working_days"](datetime(2025, 10, 3, 9, tzinfo=SH), 0) == "2025-10-09T09:00:00+08:00"
    with pytest.raises(TypeError):
        fn["add_working_days"](fn["now"](), 1.5)


def test_add_duration(fn: dict[str, Callable[..., Any]]) -> None:
    assert fn["add_duration"]("2025-09-30T16:00:00+08:00", "PT12H") == "2025-10-01T04:00:00+08:00"
    assert fn["add_duration"]("2026-01-31T10:00:00+08:00", "P1M") == "2026-02-28T10:00:00+08:00"
    assert fn["add_duration"]("2025-09-30", "P1W") == "2025-10-07T00:00:00+08:00"
    assert fn["add_duration"]("2025-09-30T16:00:00+08:00", timedelta(minutes=5)) == "2025-09-30T16:05:00+08:00"
    with pytest.raises(ValueError, match="ISO 8601 duration"):
        fn["add_duration"]("2025-09-30T16:00:00+08:00", "12 hours")


def test_add_hours_and_days(fn: dict[str, Callable[..., Any]]) -> None:
    assert fn["add_hours"]("2025-09-30T16:00:00+08:00", 12) == "2025-10-01T04:00:00+08:00"
    assert fn["add_hours"]("2025-09-30T08:00:00Z", 1.5) == "2025-09-30T17:30:00+08:00"
    assert fn["add_days"]("2025-09-30T16:00:00+08:00", 3) == "2025-10-03T16:00:00+08:00"


def test_parse_datetime(fn: dict[str, Callable[..., Any]]) -> None:
    parse = fn["parse_datetime"]
    assert parse("2025-10-09") == datetime(2025, 10, 9, tzinfo=SH)  # date alone: local midnight
    assert parse("2025-10-09T09:00") == datetime(2025, 10, 9, 9, tzinfo=SH)  # no offset: local
    assert parse("2025-10-09T01:00:00Z") == datetime(2025, 10, 9, 9, tzinfo=SH)
    assert parse("2025-10-09T01:00:00Z").tzinfo == SH
    assert parse(date(2025, 10, 9)) == datetime(2025, 10, 9, tzinfo=SH)
    with pytest.raises(ValueError, match="not an ISO 8601 date-time"):
        parse("next Tuesday")
    with pytest.raises(TypeError, match="NoneType"):
        parse(None)


def test_days_between(fn: dict[str, Callable[..., Any]]) -> None:
    assert fn["days_between"]("2025-10-01", "2025-10-09T23:00:00+08:00") == 8
    # 23:30Z on Oct 8 is Oct 9 in Shanghai: days are counted on business-zone dates.
    assert fn["days_between"]("2025-10-01T00:00:00+08:00", "2025-10-08T23:30:00Z") == 8
    assert fn["days_between"](date(2025, 10, 9), date(2025, 10, 1)) == -8


def test_earliest_and_latest(fn: dict[str, Callable[..., Any]]) -> None:
    values = (None, "2025-10-09T09:00:00+08:00", "2025-10-09T00:30:00Z", None)
    assert fn["earliest"](*values) == "2025-10-09T08:30:00+08:00"
    assert fn["latest"](*values) == "2025-10-09T09:00:00+08:00"
    assert fn["earliest"](None, None) is None
    assert fn["latest"]() is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("PT12H", timedelta(hours=12)),
        ("PT30M", timedelta(minutes=30)),
        ("PT45S", timedelta(seconds=45)),
        ("P3D", timedelta(days=3)),
        ("P2W", timedelta(weeks=2)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT1.5H", timedelta(minutes=90)),
        ("PT0,5H", timedelta(minutes=30)),
        (" PT1H ", timedelta(hours=1)),
        ("P1Y", relativedelta(years=1)),
        ("P1M", relativedelta(months=1)),
        ("P1Y2M10DT2H30M", relativedelta(years=1, months=2, days=10, hours=2, minutes=30)),
    ],
)
def test_parse_iso_duration(text: str, expected: timedelta | relativedelta) -> None:
    assert parse_iso_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "12H", "pt1h", "-P1D", "P1W2D", "P1.5M", "PT1H30", "P1DT", "R3/PT10M"])
def test_parse_iso_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso_duration(text)


def test_timer_expressions_through_the_sandbox(fn: dict[str, Callable[..., Any]], clock: FakeClock) -> None:
    env = SandboxedEnvironment(fn)
    data = {"issued_at": "2025-09-30T10:00:00+08:00", "dispatched_at": "2025-09-30T16:00:00+08:00",
            "agreed_handling_time": None}
    # Oct 9, 10, 11 (make-up Saturday), 13, 14.
    assert env.evaluate("add_working_days(issued_at, 5)", data) == "2025-10-14T10:00:00+08:00"
    assert env.evaluate("agreed_handling_time or add_hours(dispatched_at, 12)", data) == "2025-10-01T04:00:00+08:00"
    assert env.evaluate('"R/" + next_time_of_day("17:00") + "/P1D"', data) == "R/2025-09-30T17:00:00+08:00/P1D"
    assert env.evaluate("days_between(issued_at, now()) == 0", data) is True
