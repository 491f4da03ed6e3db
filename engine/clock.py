"""One clock for the engine, the scheduler and the business calendar.

Tests and `serve --fake-clock` swap in a `FakeClock`. SpiffWorkflow reads
`datetime.now()` inside its timer definitions; `install_spiff_clock()` makes that
call read the clock of the current context, so a workflow's timers and our own
deadline arithmetic always agree.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from datetime import datetime, timedelta, timezone
from typing import Iterator, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(timezone.utc).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FakeClock.set needs a timezone-aware time")
        with self._lock:
            self._now = when.astimezone(timezone.utc)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now = self._now + delta
            return self._now


_SYSTEM = SystemClock()
_current: contextvars.ContextVar[Clock] = contextvars.ContextVar("complaintflow_clock", default=_SYSTEM)


def current_clock() -> Clock:
    return _current.get()


def now() -> datetime:
    return _current.get().now()


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make `clock` the current clock for the code inside the block."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)


class _ClockedDatetime(datetime):
    """`datetime` whose `now()` reads the current context's clock."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        value = _current.get().now()
        return value.astimezone(tz) if tz is not None else value.astimezone().replace(tzinfo=None)


_installed = False


def install_spiff_clock() -> None:
    """Route SpiffWorkflow's timer arithmetic through `current_clock()` (idempotent)."""
    global _installed
    if _installed:
        return
    from SpiffWorkflow.bpmn.specs.event_definitions import timer

    timer.datetime = _ClockedDatetime
    _installed = True
