"""Timers on a real database with the fake clock: catch-up, retries, cycles, boundaries, many processes."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from engine.errors import NotFound, Unavailable, ValidationFailed
from engine.scheduler import SchedulerLease, TimerScheduler, advance_clock
from engine.service import TIMER_BACKOFF, TIMER_MAX_ATTEMPTS, Engine
from storage.models import AuditEvent, HumanTask, Instance, Timer
from tests.conftest import ROOT, actor, deploy_fixture

ALICE = actor("alice", "front_desk")


def rows(db, model, **where):
    with db.unit_of_work(write=False) as uow:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(uow.session.scalars(query.order_by(model.id)))


def events(db, type_: str, instance_id: int | None = None) -> list[AuditEvent]:
    found = rows(db, AuditEvent, type=type_)
    return [e for e in found if instance_id is None or e.instance_id == instance_id]


def test_catch_up_fires_every_missed_timer_in_due_order_recording_due_and_fired_time(engine, db, clock):
    deploy_fixture(engine, "timer_date.bpmn")
    start = clock.now()
    minutes = [30, 10, 50, 20, 40]
    cases = {engine.start_case("timer_date", {"due": (start + timedelta(minutes=m)).isoformat()},
                               ALICE).instance_id: m for m in minutes}
    # The service is down for two hours; then the clock is moved and every timer fires at once.
    result = advance_clock(engine, advance="PT2H")
    assert result["fired"] == 5 and result["next_due"] is None
    fired = sorted(events(db, "timer_fired"), key=lambda e: e.id)
    assert [cases[e.instance_id] for e in fired] == sorted(minutes)
    for event in fired:
        due = start + timedelta(minutes=cases[event.instance_id])
        assert datetime.fromisoformat(event.data["due_at"]) == due
        assert datetime.fromisoformat(event.data["fired_at"]) == clock.now()
        assert event.at == due + timedelta(milliseconds=1)  # the case moved at its due time
    assert {i.status for i in rows(db, Instance)} == {"completed"}
    assert {t.status for t in rows(db, Timer)} == {"fired"}


def test_a_failing_timer_is_retried_with_back_off_then_the_case_is_marked_error(engine, db, clock):
    deploy_fixture(engine, "timer_fail.bpmn")
    case = engine.start_case("timer_fail", {}, ALICE).instance_id
    clock.advance(timedelta(hours=1))
    waits = [timedelta(0), *TIMER_BACKOFF]
    for attempt in range(1, TIMER_MAX_ATTEMPTS + 1):
        clock.advance(waits[attempt - 1])
        assert engine.fire_due_timers() == 0
        [timer] = rows(db, Timer)
        assert timer.attempts == attempt and "ZeroDivisionError" in timer.last_error
        if attempt < TIMER_MAX_ATTEMPTS:
            assert timer.status == "waiting" and timer.next_attempt_at == clock.now() + TIMER_BACKOFF[attempt - 1]
            assert engine.fire_due_timers() == 0  # not before its back-off
            assert rows(db, Timer)[0].attempts == attempt
            assert rows(db, Instance)[0].status == "running"
    assert timer.status == "failed"
    instance = rows(db, Instance, id=case)[0]
    assert instance.status == "error" and "ZeroDivisionError" in instance.error
    [incident] = events(db, "incident", case)
    assert incident.element_id == "wait" and incident.data["attempts"] == TIMER_MAX_ATTEMPTS
    assert "ZeroDivisionError" in incident.data["error"]
    # Never a silent loop: nothing is due any more, nothing fires later.
    assert engine.next_due() is None
    clock.advance(timedelta(days=1))
    assert engine.fire_due_timers() == 0
    assert events(db, "timer_fired") == [] and len(events(db, "incident")) == 1


def test_a_database_failure_while_firing_is_not_counted_against_the_case(engine, db, clock, monkeypatch):
    deploy_fixture(engine, "timer_fail.bpmn")
    engine.start_case("timer_fail", {}, ALICE)
    clock.advance(timedelta(hours=1))

    def database_gone(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(Engine, "_fire_instance_timers", database_gone)
    with pytest.raises(Unavailable):
        engine.fire_due_timers()
    [timer] = rows(db, Timer)
    assert (timer.status, timer.attempts, timer.last_error) == ("waiting", 0, None)
    assert rows(db, Instance)[0].status == "running"


def test_a_cycle_timer_fires_its_three_rounds(engine, db, clock):
    deploy_fixture(engine, "timer_boundary.bpmn")
    case = engine.start_case("timer_boundary", {}, ALICE).instance_id
    for _ in range(5):
        clock.advance(timedelta(minutes=10))
        engine.fire_due_timers()
    reminders = [e for e in events(db, "timer_fired", case) if e.element_id == "remind"]
    assert [datetime.fromisoformat(e.data["due_at"]) - rows(db, Instance)[0].created_at for e in reminders] == \
        [timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=30)]
    assert [t.element_id for t in rows(db, Timer, status="waiting")] == ["too_late"]
    assert [t.element_id for t in rows(db, HumanTask, status="open")] == ["work"]


def test_completing_the_task_cancels_its_timers(engine, db, clock):
    deploy_fixture(engine, "timer_boundary.bpmn")
    engine.start_case("timer_boundary", {}, ALICE)
    clock.advance(timedelta(minutes=5))
    engine.complete_task(rows(db, HumanTask, status="open")[0].id, {}, ALICE)
    assert {t.status for t in rows(db, Timer)} == {"cancelled"}
    assert advance_clock(engine, advance="PT3H")["fired"] == 0
    assert events(db, "timer_fired") == []
    assert rows(db, Instance)[0].status == "completed"


def test_an_interrupting_boundary_timer_cancels_the_task_after_catching_up_the_cycle(engine, db, clock):
    deploy_fixture(engine, "timer_boundary.bpmn")
    case = engine.start_case("timer_boundary", {}, ALICE).instance_id
    assert advance_clock(engine, advance="PT61M")["fired"] == 4
    # In due order, the three reminders (10, 20, 30 min) come before the interruption at 60 min.
    assert [e.element_id for e in events(db, "timer_fired", case)] == ["remind", "remind", "remind", "too_late"]
    tasks = {t.element_id: t.status for t in rows(db, HumanTask)}
    assert tasks == {"work": "cancelled", "supervise": "open"}
    [cancelled] = events(db, "task_cancelled", case)
    assert cancelled.element_id == "work"
    assert rows(db, Timer, status="waiting") == []


def test_advance_clock_refuses_bad_input_and_a_real_clock(engine, db, clock):
    with pytest.raises(ValidationFailed):
        advance_clock(engine)
    with pytest.raises(ValidationFailed):
        advance_clock(engine, advance="PT1H", set="2030-01-01T00:00:00Z")
    with pytest.raises(ValidationFailed):
        advance_clock(engine, advance="soon")
    with pytest.raises(ValidationFailed):
        advance_clock(engine, set="2020-01-01T00:00:00+00:00")  # backwards
    with pytest.raises(ValidationFailed):
        advance_clock(engine, set="2030-01-01T00:00:00")  # no offset
    assert advance_clock(engine, set="2030-01-01T08:00:00+08:00")["now"] == "2030-01-01T00:00:00+00:00"
    with pytest.raises(NotFound):
        advance_clock(Engine(db), advance="PT1H")


def test_the_scheduler_wakes_when_a_timer_is_committed_and_one_scheduler_per_sqlite_file(sqlite_db, clock):
    engine = Engine(sqlite_db, clock)
    deploy_fixture(engine, "timer_date.bpmn")
    first = TimerScheduler(engine, safety_seconds=60).start()
    second = TimerScheduler(Engine(sqlite_db, clock), safety_seconds=60).start()
    try:
        assert (first.state, second.state) == ("running", "standby")
        assert (first.running, second.running) == (True, False)
        engine.start_case("timer_date", {"due": (clock.now() + timedelta(hours=1)).isoformat()}, ALICE)
        # Poked after commit: the wake job is set one (fake) hour ahead, not left to the safety tick.
        wake = first._aps.get_job("timers_wake")
        assert wake is not None
        ahead = (wake.next_run_time - datetime.now(wake.next_run_time.tzinfo)).total_seconds()
        assert 3500 < ahead <= 3600
        clock.advance(timedelta(hours=1, seconds=1))
        assert first.tick() == 1
        assert second.tick() == 0  # a standby never fires
    finally:
        first.shutdown()
    # The lock is gone with its holder: the standby takes over on its next tick.
    second.tick()
    assert second.state == "running"
    second.shutdown()
    assert SchedulerLease.for_database(sqlite_db).acquire()


MANY_PROCESS_WORKER = textwrap.dedent("""
    import sys
    from datetime import datetime
    from engine.clock import FakeClock
    from engine.service import Engine
    from storage.db import Database

    url, now = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    engine = Engine(Database(url, pool_size=2), FakeClock(now))
    total = 0
    while True:
        fired = engine.fire_due_timers(limit=50)
        total += fired
        due = engine.next_due()
        if fired == 0 and (due is None or due > now):
            break
    print(total)
""")


@pytest.mark.postgres
def test_two_processes_on_postgresql_fire_1000_timers_each_exactly_once(pg_db, clock):
    engine = Engine(pg_db, clock)
    deploy_fixture(engine, "timer_date.bpmn")
    due = (clock.now() + timedelta(minutes=1)).isoformat()
    for _ in range(1000):
        engine.start_case("timer_date", {"due": due}, ALICE)
    url = pg_db.url.render_as_string(hide_password=False)
    later = (clock.now() + timedelta(minutes=2)).isoformat()
    workers = [subprocess.Popen([sys.executable, "-c", MANY_PROCESS_WORKER, url, later], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _out, err in outputs]
    per_process = [int(out.split()[-1]) for out, _err in outputs]
    assert sum(per_process) == 1000, per_process
    fired = Counter(e.data["timer_id"] for e in events(pg_db, "timer_fired"))
    assert len(fired) == 1000 and set(fired.values()) == {1}
    assert {t.status for t in rows(pg_db, Timer)} == {"fired"}
    assert {i.status for i in rows(pg_db, Instance)} == {"completed"}
