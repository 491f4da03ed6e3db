"""How a step reads and writes: the live-workflow cache, deferred audit events, the statement budget."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select, text

from engine import state as state_module
from engine import service as service_module
from engine.audit import AuditLog, verify_database
from engine.service import Engine, Scan
from storage.models import AuditEvent, HumanTask, Instance, Timer
from tests.conftest import actor, deploy_fixture

ALICE = actor("alice", "front_desk")


def open_review(db, instance_id: int) -> HumanTask:
    with db.unit_of_work(write=False) as uow:
        return uow.session.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance_id, HumanTask.element_id == "review", HumanTask.status == "open")).one()


@pytest.fixture
def loads(monkeypatch):
    """Count how often a stored state is deserialised."""
    calls = []
    original = state_module.load

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(service_module.state, "load", counting)
    return calls


def test_the_next_step_uses_the_workflow_the_last_step_left(engine, db, loads):
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "t"}, ALICE).instance_id
    engine.complete_task(open_review(db, case).id, {"decision": "reject"}, ALICE)
    engine.complete_task(open_review(db, case).id, {"decision": "approve"}, ALICE)
    assert loads == [] and engine.workflows.hits == 2
    with db.unit_of_work(write=False) as uow:
        instance = uow.session.get(Instance, case)
        assert (instance.status, instance.data["decision"], instance.data["count"]) == ("completed", "approve", 2)


def test_a_case_changed_by_another_process_is_read_again(engine, db, clock, loads):
    deploy_fixture(engine, "two_step.bpmn")
    other = Engine(db, clock)  # another process: its own cache
    case = engine.start_case("two_step", {"title": "t"}, ALICE).instance_id
    other.complete_task(open_review(db, case).id, {"decision": "reject"}, ALICE)
    assert len(loads) == 1  # the other process had never seen the case
    # This process still holds the workflow as it started; the stored state moved on.
    engine.complete_task(open_review(db, case).id, {"decision": "approve"}, ALICE)
    assert len(loads) == 2 and engine.workflows.misses == 1
    with db.unit_of_work(write=False) as uow:
        events = [e.type for e in uow.session.scalars(select(AuditEvent).where(AuditEvent.instance_id == case)
                                                      .order_by(AuditEvent.seq))]
        assert uow.session.get(Instance, case).status == "completed"
    assert events.count("task_completed") == 2
    assert verify_database_ok(db)


def verify_database_ok(db) -> bool:
    with db.unit_of_work(write=False) as uow:
        return verify_database(uow.session).ok


def test_a_step_that_rolls_back_leaves_no_workflow_behind(engine, db, monkeypatch, loads):
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "t"}, ALICE).instance_id
    task = open_review(db, case)
    original = service_module.Engine._sync_timers

    def sync_then_fail(self, *args):
        original(self, *args)
        raise RuntimeError("disk full")

    monkeypatch.setattr(service_module.Engine, "_sync_timers", sync_then_fail)
    with pytest.raises(RuntimeError):
        engine.complete_task(task.id, {"decision": "approve"}, ALICE)
    monkeypatch.setattr(service_module.Engine, "_sync_timers", original)
    assert len(engine.workflows) == 0  # the half-run workflow was taken out and never put back
    # The same task completes from the stored state, which still waits on it.
    engine.complete_task(task.id, {"decision": "reject"}, ALICE)
    assert len(loads) == 1
    assert open_review(db, case).id != task.id


def test_a_deferred_audit_log_refuses_to_commit_unwritten_events(db):
    at = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
    with db.unit_of_work() as uow:
        log = AuditLog(uow.session, lock=False, deferred=True)
        log.append("system", "note", at=at, actor="t", data={"n": 1})
        log.append("system", "note", at=at, actor="t", data={"n": 2})
        with pytest.raises(RuntimeError, match="2 audit events were appended but not written"):
            uow.commit()
    with db.unit_of_work() as uow:
        log = AuditLog(uow.session, lock=False, deferred=True)
        log.append("system", "note", at=at, actor="t", data={"n": 1})
        log.append("system", "note", at=at, actor="t", data={"n": 2})
        log.write()
        uow.commit()
    with db.unit_of_work(write=False) as uow:
        assert [(e.seq, e.data["n"]) for e in uow.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))] \
            == [(1, 1), (2, 2)]
        assert verify_database(uow.session).ok


def test_timer_rows_follow_the_workflow_without_being_read(engine, db, clock):
    """Steps that keep every waiting timer do not read the timer rows; the rows still match the workflow."""
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "t"}, ALICE).instance_id
    for _ in range(3):
        engine.complete_task(open_review(db, case).id, {"decision": "reject"}, ALICE)
    with db.unit_of_work(write=False) as uow:
        instance = uow.session.get(Instance, case)
        compiled = engine.compiled_for(uow.session, instance)
        workflow = state_module.load(instance.state, compiled.spec, compiled.subprocess_specs, engine.script_engine)
        rows = {(t.spiff_task_id, t.due_at) for t in uow.session.scalars(
            select(Timer).where(Timer.instance_id == case, Timer.status == "waiting"))}
    assert rows == set(Scan.of(workflow).timers) and len(rows) == 1


def test_a_completion_stays_within_its_statement_budget(engine, db):
    """Guards the write path's cost: lock the case, read the task, write rows and events in few statements."""
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "t"}, ALICE).instance_id
    engine.complete_task(open_review(db, case).id, {"decision": "reject"}, ALICE)  # warm: parsed, cached
    task = open_review(db, case)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        engine.complete_task(task.id, {"decision": "reject"}, ALICE)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    read = [s.split(" FROM ")[1].split()[0] if " FROM " in s else s
            for s in (" ".join(s.split()) for s in statements) if s.upper().startswith("SELECT")]
    # The case (locked), the task with its candidates, the chain head. The case's other open tasks
    # are not read (none was open beside this one), nor its timer rows: the review's timer, which
    # this step ends, is known from the workflow and ended by one UPDATE.
    if db.is_postgres:
        assert read == ["instances", "human_tasks", "audit_chains"], read
    else:  # SQLite's writer lock is held from BEGIN: the task and its case come in one statement
        assert read == ["human_tasks", "audit_chains"], read
    assert sum(1 for s in statements if s.startswith("UPDATE timers")) == 1
    assert len(statements) <= 12, statements


def rows_match_workflow(engine, db, case: int) -> None:
    with db.unit_of_work(write=False) as uow:
        instance = uow.session.get(Instance, case)
        compiled = engine.compiled_for(uow.session, instance)
        workflow = state_module.load(instance.state, compiled.spec, compiled.subprocess_specs, engine.script_engine)
        tasks = {t.spiff_task_id for t in uow.session.scalars(
            select(HumanTask).where(HumanTask.instance_id == case, HumanTask.status == "open"))}
        timers = {(t.spiff_task_id, t.due_at) for t in uow.session.scalars(
            select(Timer).where(Timer.instance_id == case, Timer.status == "waiting"))}
    assert tasks == set(Scan.of(workflow).ready)
    assert timers == set(Scan.of(workflow).timers)


def test_open_task_and_timer_rows_match_the_workflow_after_every_kind_of_step(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "t"}, ALICE).instance_id
    rows_match_workflow(engine, db, case)
    clock.advance(timedelta(hours=1, minutes=1))
    assert engine.fire_due_timers() == 1  # the review is late: a chase task beside it
    rows_match_workflow(engine, db, case)
    with db.unit_of_work(write=False) as uow:
        chase = uow.session.scalars(select(HumanTask).where(HumanTask.element_id == "chase")).one()
    engine.complete_task(chase.id, {}, actor("sam", "cs_supervisor"))
    rows_match_workflow(engine, db, case)
    engine.complete_task(open_review(db, case).id, {"decision": "reject"}, ALICE)
    rows_match_workflow(engine, db, case)
    engine.complete_task(open_review(db, case).id, {"decision": "approve"}, ALICE)
    rows_match_workflow(engine, db, case)
    with db.unit_of_work(write=False) as uow:
        assert uow.session.get(Instance, case).status == "completed"


def test_sqlite_writers_of_one_process_queue_instead_of_polling(sqlite_db):
    """A second writer waits on the process's queue, not inside SQLite's busy handler, then goes in."""
    order = []
    first_in = threading.Event()
    # Runs before the engine's own hook issues BEGIN IMMEDIATE (which would block in SQLite).
    event.listen(sqlite_db.engine, "begin", lambda conn: order.append(f"{threading.current_thread().name} begins"),
                 insert=True)

    def first() -> None:
        with sqlite_db.unit_of_work() as uow:
            uow.session.execute(text("CREATE TABLE IF NOT EXISTS probe (n INTEGER)"))
            first_in.set()
            time.sleep(0.2)
            order.append("first done")
            uow.commit()

    def second() -> None:
        first_in.wait()
        with sqlite_db.unit_of_work() as uow:
            order.append("second in")
            uow.session.execute(text("INSERT INTO probe VALUES (1)"))
            uow.commit()

    threads = [threading.Thread(target=first, name="first"), threading.Thread(target=second, name="second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["first begins", "first done", "second in", "second begins"]
    with sqlite_db.unit_of_work(write=False) as uow:  # readers never queue
        assert uow.session.scalar(text("SELECT count(*) FROM probe")) == 1
