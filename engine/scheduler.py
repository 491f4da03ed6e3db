"""The timer scheduler: fires every timer row when it falls due.

`TimerScheduler` runs in the `complaintflow serve` process on an APScheduler
`BackgroundScheduler` with two jobs that run the same `tick`:

* a *wake* job (a date trigger) set to the earliest due time, `Engine.next_due()`
  — one indexed MIN over the waiting timers, never a scan of instances. It is
  moved after every tick and whenever this process commits a new timer (the
  engine calls `Engine.on_timers_changed` after commit);
* a *safety* job every `safety_seconds` (default 1 s, env
  `COMPLAINTFLOW_TIMER_POLL_SECONDS`) that asks `next_due()` again. It finds
  timers written by other processes (another `serve`, the CLI, a script) and
  takes over from a stopped scheduler. When nothing is due it costs one read
  query; it opens no write transaction.

A tick fires with `Engine.fire_due_timers()`: due timers in due order, batches
in one transaction each, a savepoint per case, failures retried with back-off
and finally an `incident` (see the engine).

Who fires:

* PostgreSQL: every `serve` process runs its scheduler; `fire_due_timers` takes
  timers with `SELECT … FOR UPDATE SKIP LOCKED`, so processes share the work and
  no timer fires twice.
* SQLite: one scheduler per database file. The active one holds an exclusive
  `flock` on `<database file>.scheduler.lock`; other processes serve HTTP with
  their scheduler in `standby` and try the lock again on every safety tick. The
  operating system drops the lock when its holder exits, even on a crash, so a
  standby takes over within one safety interval. (An in-memory database has no
  lock: it cannot be shared anyway.)

The clock is the engine's: with a `FakeClock` the wake time is "how far the fake
clock has to go" and `advance_clock` (the `POST /api/v1/admin/clock` endpoint)
moves the clock and fires what fell due.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from engine.clock import FakeClock
from engine.errors import NotFound, ValidationFailed
from engine.expressions import parse_iso_duration

log = logging.getLogger(__name__)

RUNNING, STANDBY, STOPPED = "running", "standby", "stopped"
# When timers stay due but none could fire (their case is locked by a request, or
# another process holds them), look again after this long instead of spinning.
RETRY_BUSY = timedelta(milliseconds=200)


def _default_safety_seconds() -> float:
    try:
        return float(os.environ.get("COMPLAINTFLOW_TIMER_POLL_SECONDS", "1"))
    except ValueError:
        return 1.0


class SchedulerLease:
    """One scheduler per SQLite file: an exclusive, non-blocking flock on `<db>.scheduler.lock`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_database(cls, db) -> SchedulerLease:
        if db.is_postgres:
            return cls(None)
        database = db.url.database
        if not database or database == ":memory:":
            return cls(None)
        return cls(Path(database).resolve().with_name(Path(database).name + ".scheduler.lock"))

    @property
    def held(self) -> bool:
        return self.path is None or self._fd is not None

    def acquire(self) -> bool:
        if self.held:
            return True
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class TimerScheduler:
    """Fires an engine's timers on time in a background thread (see the module text)."""

    def __init__(self, engine, safety_seconds: float | None = None, batch: int = 200) -> None:
        self.engine = engine
        self.safety_seconds = safety_seconds if safety_seconds is not None else _default_safety_seconds()
        self.batch = batch
        self.lease = SchedulerLease.for_database(engine.db)
        self._aps = BackgroundScheduler(timezone="UTC")
        self._tick_lock = threading.Lock()
        self._wake_lock = threading.Lock()
        self._wake_at: datetime | None = None  # real time of the pending wake job
        self._started = False
        self.last_error: str | None = None

    # --- state ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        if not self._started or not self._aps.running:
            return STOPPED
        return RUNNING if self.lease.held else STANDBY

    @property
    def running(self) -> bool:
        """True for the scheduler that fires timers (not a standby one)."""
        return self.state == RUNNING

    def start(self) -> TimerScheduler:
        self.lease.acquire()
        self._aps.add_job(self.tick, "interval", seconds=self.safety_seconds, id="timers_safety",
                          max_instances=3, coalesce=True, misfire_grace_time=None)
        self._aps.start()
        self._started = True
        self.engine.on_timers_changed = self.poke
        self._wake(datetime.now(timezone.utc))  # catch up at once
        if not self.lease.held:
            log.warning("another process holds %s: this scheduler stands by", self.lease.path)
        return self

    def shutdown(self, wait: bool = False) -> None:
        if self.engine.on_timers_changed == self.poke:
            self.engine.on_timers_changed = None
        if self._aps.running:
            self._aps.shutdown(wait=wait)
        self._started = False
        self.lease.release()

    # --- waking ----------------------------------------------------------------------

    def poke(self, due: datetime | None = None) -> None:
        """A timer due at `due` (engine clock) was committed: make sure we wake by then."""
        try:
            if self.state != RUNNING:
                return
            self._wake(self._real_time_of(due) if due is not None else datetime.now(timezone.utc))
        except Exception:  # noqa: BLE001 - never fail the committing caller
            log.exception("could not reschedule the timer scheduler")

    def _real_time_of(self, due: datetime) -> datetime:
        """The wall-clock moment the engine's clock reaches `due`."""
        ahead = due - self.engine.clock.now()
        return datetime.now(timezone.utc) + max(ahead, timedelta(0))

    def _wake(self, when: datetime) -> None:
        with self._wake_lock:
            now = datetime.now(timezone.utc)
            pending = self._wake_at is not None and self._wake_at > now
            if pending and self._wake_at <= when:
                return
            self._wake_at = when
            self._aps.add_job(self.tick, "date", run_date=when, id="timers_wake", replace_existing=True,
                              misfire_grace_time=None)

    # --- firing ------------------------------------------------------------------------

    def tick(self) -> int:
        """Fire what is due, then set the wake job to the next due time; return how many fired."""
        if not self._tick_lock.acquire(blocking=False):
            return 0  # another tick is firing; it sets the next wake when done
        try:
            if not self.lease.held and not self.lease.acquire():
                return 0
            fired = 0
            while True:
                due = self.engine.next_due()
                if due is None:
                    with self._wake_lock:
                        self._wake_at = None
                    return fired
                if due > self.engine.clock.now():
                    with self._wake_lock:
                        self._wake_at = None  # the pending wake (if any) is replaced below
                    self._wake(self._real_time_of(due))
                    return fired
                now_fired = self.engine.fire_due_timers(self.batch)
                fired += now_fired
                if now_fired == 0:
                    # Due but nothing fired: held by another process or a busy case.
                    with self._wake_lock:
                        self._wake_at = None
                    self._wake(datetime.now(timezone.utc) + RETRY_BUSY)
                    return fired
        except Exception as error:  # noqa: BLE001 - the safety tick tries again; the error is logged
            self.last_error = str(error)
            log.exception("firing timers failed")
            return 0
        finally:
            self._tick_lock.release()


def advance_clock(engine, advance: Any = None, set: Any = None) -> dict[str, Any]:  # noqa: A002 - API field name
    """Move the engine's fake clock and fire every timer that falls due; return what happened.

    `advance` is an ISO 8601 duration ("PT25H") or a timedelta; `set` an ISO
    date-time with an offset (or an aware datetime). Exactly one is given, and
    the clock only moves forward. Raises NotFound when the engine's clock is not
    a FakeClock (serve without --fake-clock) and ValidationFailed on bad input.

    Returns {"now": ISO, "fired": n, "next_due": ISO or None}.
    """
    clock = engine.clock
    if not isinstance(clock, FakeClock):
        raise NotFound("the clock can only be moved when the service runs with --fake-clock")
    if (advance is None) == (set is None):
        raise ValidationFailed("give exactly one of 'advance' or 'set'",
                               {"advance": "an ISO 8601 duration such as PT25H",
                                "set": "an ISO 8601 date-time with an offset"})
    now = clock.now()
    if advance is not None:
        if isinstance(advance, timedelta):
            delta = advance
        else:
            try:
                delta = parse_iso_duration(str(advance))
            except ValueError as error:
                raise ValidationFailed(str(error), {"advance": str(error)}) from error
        target = now + delta
        if target < now:
            raise ValidationFailed("the clock only moves forward", {"advance": "must not be negative"})
    else:
        if isinstance(set, datetime):
            target = set
        else:
            try:
                target = datetime.fromisoformat(str(set).strip().replace("Z", "+00:00"))
            except ValueError as error:
                raise ValidationFailed(f"not an ISO 8601 date-time: {set!r}", {"set": "not an ISO date-time"}) \
                    from error
        if target.tzinfo is None:
            raise ValidationFailed("the date-time needs an offset (e.g. +08:00 or Z)", {"set": "no offset"})
        if target < now:
            raise ValidationFailed("the clock only moves forward", {"set": f"earlier than now ({now.isoformat()})"})
    clock.set(target)
    fired = 0
    while True:  # timers that fall due while firing (cycles, chained timers) fire too
        now_fired = engine.fire_due_timers()
        fired += now_fired
        due = engine.next_due()
        if now_fired == 0 or due is None or due > clock.now():
            break
    due = engine.next_due()
    return {"now": clock.now().isoformat(), "fired": fired, "next_due": due.isoformat() if due else None}
