"""The engine on a real database (SQLite and PostgreSQL): versions, forms, atomicity, races."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine import service as service_module
from engine.audit import verify_events
from engine.errors import CaseError, Conflict, Forbidden, InvalidBpmn, ValidationFailed
from storage.models import AuditEvent, HumanTask, Instance, Timer
from tests.conftest import FIXTURES, OWNER, actor, deploy_fixture

ALICE = actor("alice", "front_desk")
BOB = actor("bob", "front_desk")
EVE = actor("eve", "engineering")
BASE = (FIXTURES / "two_step.bpmn").read_text(encoding="utf-8")


def rows(db, model, **where):
    with db.unit_of_work(write=False) as uow:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(uow.session.scalars(query.order_by(model.id)))


def counts(db):
    with db.unit_of_work(write=False) as uow:
        s = uow.session
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Instance, HumanTask, Timer, AuditEvent))


def test_identical_content_is_not_a_new_version(engine):
    first = deploy_fixture(engine, "two_step.bpmn")
    again = deploy_fixture(engine, "two_step.bpmn")
    assert [(r.key, r.version, r.created) for r in first] == [("two_step", 1, True)]
    assert [(r.key, r.version, r.created) for r in again] == [("two_step", 1, False)]


def test_running_cases_keep_their_version(engine, db):
    deploy_fixture(engine, "two_step.bpmn")
    v1_case = engine.start_case("two_step", {"title": "v1 case"}, ALICE).instance_id
    changed = BASE.replace('name="审核"', 'name="审核（新版）"')
    assert engine.deploy([("two_step.bpmn", changed.encode())], OWNER)[0].version == 2
    v2_case = engine.start_case("two_step", {"title": "v2 case"}, ALICE).instance_id
    tasks = {t.instance_id: t for t in rows(db, HumanTask, status="open")}
    assert tasks[v1_case].name == "审核" and tasks[v2_case].name == "审核（新版）"
    # v1 keeps running on v1 to its end.
    engine.complete_task(tasks[v1_case].id, {"decision": "approve"}, ALICE)
    instance = rows(db, Instance, id=v1_case)[0]
    assert (instance.version, instance.data["decision"]) == (1, "approve")
    assert rows(db, Instance, id=v2_case)[0].version == 2


def test_invalid_set_deploys_nothing(engine, db):
    broken = BASE.replace('targetRef="archive"', 'targetRef="nowhere"').replace('id="two_step"', 'id="other"')
    with pytest.raises(InvalidBpmn) as raised:
        engine.deploy([("two_step.bpmn", BASE.encode()), ("other.bpmn", broken.encode())], OWNER)
    assert raised.value.problems[0].file == "other.bpmn"
    assert counts(db) == (0, 0, 0, 0)


def test_start_form_errors_name_every_field(engine, db):
    deploy_fixture(engine, "two_step.bpmn")
    with pytest.raises(ValidationFailed) as raised:
        engine.start_case("two_step", {"title": "x" * 21, "amount": -1, "colour": "red"}, ALICE)
    assert raised.value.details == {
        "title": "must be at most 20 characters", "amount": "must be at least 0",
        "colour": "is not a field of this form",
    }
    with pytest.raises(ValidationFailed) as raised:
        engine.start_case("two_step", {"amount": "3"}, ALICE)
    assert raised.value.details == {"title": "is required", "amount": "must be a whole number"}
    assert counts(db)[0] == 0


def test_task_form_is_validated_and_the_case_runs_to_its_end(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "漏水"}, ALICE)
    task = rows(db, HumanTask, status="open")[0]
    assert (task.element_id, task.group_name, task.due_at) == ("review", "front_desk", clock.now() + timedelta(hours=2))
    with pytest.raises(ValidationFailed) as raised:
        engine.complete_task(task.id, {"decision": "maybe"}, ALICE)
    assert raised.value.details == {"decision": "must be one of: approve, reject"}
    with pytest.raises(Forbidden):
        engine.complete_task(task.id, {"decision": "approve"}, EVE)
    engine.complete_task(task.id, {"decision": "approve"}, ALICE)
    instance = rows(db, Instance, id=case.instance_id)[0]
    assert instance.status == "completed"
    assert instance.data["count"] == 2 and instance.data["title"] == "漏水"
    assert [t.status for t in rows(db, Timer)] == ["cancelled"]
    types = [e.type for e in rows(db, AuditEvent, instance_id=case.instance_id)]
    assert types == ["instance_started", "task_created", "task_claimed", "task_completed", "instance_completed"]
    events = sorted(rows(db, AuditEvent), key=lambda e: (e.chain, e.seq))
    assert all(result is None for result in verify_events(events))


def test_escalation_timer_fires_once_with_the_fake_clock(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    case = engine.start_case("two_step", {"title": "t"}, ALICE)
    clock.advance(timedelta(minutes=59))
    assert engine.fire_due_timers() == 0
    clock.advance(timedelta(minutes=2))
    assert engine.fire_due_timers() == 1
    assert engine.fire_due_timers() == 0
    open_tasks = {t.element_id: t.group_name for t in rows(db, HumanTask, status="open")}
    assert open_tasks == {"review": "front_desk", "chase": "cs_supervisor"}
    instance = rows(db, Instance, id=case.instance_id)[0]
    assert [b["element_id"] for b in instance.breaches] == ["review_late"]
    types = [e.type for e in rows(db, AuditEvent, instance_id=case.instance_id)]
    assert types[-3:] == ["timer_fired", "escalated", "task_created"]


def test_claim_conflicts_and_recorded_history(engine, db):
    deploy_fixture(engine, "two_step.bpmn")
    engine.start_case("two_step", {"title": "t"}, ALICE)
    task = rows(db, HumanTask, status="open")[0]
    engine.claim_task(task.id, ALICE)
    with pytest.raises(Conflict):
        engine.claim_task(task.id, BOB)
    with pytest.raises(Forbidden):
        engine.complete_task(task.id, {"decision": "approve"}, BOB)
    engine.unclaim_task(task.id, ALICE)
    engine.complete_task(task.id, {"decision": "approve"}, BOB, etag=f"{task.id}.3")
    with pytest.raises(Conflict):
        engine.complete_task(task.id, {"decision": "approve"}, BOB)
    history = [(e.type, e.actor) for e in rows(db, AuditEvent, task_id=task.id)]
    assert history == [("task_created", "alice"), ("task_claimed", "alice"), ("task_unclaimed", "alice"),
                       ("task_claimed", "bob"), ("task_completed", "bob")]


def test_stale_etag_is_a_conflict(engine, db):
    deploy_fixture(engine, "two_step.bpmn")
    engine.start_case("two_step", {"title": "t"}, ALICE)
    task = rows(db, HumanTask, status="open")[0]
    engine.claim_task(task.id, ALICE)
    with pytest.raises(Conflict, match="changed since"):
        engine.complete_task(task.id, {"decision": "approve"}, ALICE, etag=f"{task.id}.1")


def test_an_error_after_the_state_write_leaves_nothing_behind(engine, db, monkeypatch):
    deploy_fixture(engine, "two_step.bpmn")
    engine.start_case("two_step", {"title": "t"}, ALICE)
    task = rows(db, HumanTask, status="open")[0]
    before = counts(db)
    state_before = rows(db, Instance)[0].state
    original = service_module.Engine._sync_timers

    def sync_then_fail(self, session, instance, *args):
        original(self, session, instance, *args)
        session.flush()  # the new state, task rows and events are written...
        raise RuntimeError("disk full")  # ...and then the transaction fails

    monkeypatch.setattr(service_module.Engine, "_sync_timers", sync_then_fail)
    with pytest.raises(RuntimeError):
        engine.complete_task(task.id, {"decision": "reject"}, ALICE)
    assert counts(db) == before
    after = rows(db, HumanTask, id=task.id)[0]
    assert (after.status, after.assignee, after.version) == ("open", None, 1)
    assert rows(db, Instance)[0].state == state_before


ESCAPES = [
    "x = __import__('os').system('id')",
    "x = open('/etc/hostname').read()",
    "x = ().__class__.__base__.__subclasses__()",
]


@pytest.mark.parametrize("script", ESCAPES[::2], ids=["import", "subclasses"])
def test_script_escapes_are_refused_at_deploy(engine, script):
    text = BASE.replace("count += 1</bpmn:script>", f"count += 1\n{script}</bpmn:script>")
    with pytest.raises(InvalidBpmn) as raised:
        engine.deploy([("evil.bpmn", text.encode())], OWNER)
    assert "script of 'archive'" in raised.value.problems[0].message


def test_open_fails_when_the_script_runs_and_changes_nothing(engine, db):
    text = BASE.replace("count += 1</bpmn:script>", f"count += 1\n{ESCAPES[1]}</bpmn:script>")
    engine.deploy([("evil.bpmn", text.encode())], OWNER)
    engine.start_case("two_step", {"title": "t"}, ALICE)
    task = rows(db, HumanTask, status="open")[0]
    before = counts(db)
    with pytest.raises(CaseError, match="open"):
        engine.complete_task(task.id, {"decision": "approve"}, ALICE)
    assert counts(db) == before


def test_a_failing_script_rolls_the_step_back(engine, db):
    text = BASE.replace("count += 1</bpmn:script>", "count += 1\ncount = count / 0</bpmn:script>")
    engine.deploy([("two_step.bpmn", text.encode())], OWNER)
    engine.start_case("two_step", {"title": "t"}, ALICE)
    task = rows(db, HumanTask, status="open")[0]
    before = counts(db)
    with pytest.raises(CaseError, match="division by zero"):
        engine.complete_task(task.id, {"decision": "approve"}, ALICE)
    assert counts(db) == before


@pytest.mark.postgres
def test_two_completions_of_one_task_give_one_success_and_one_conflict(pg_db, clock):
    engine = service_module.Engine(pg_db, clock)
    deploy_fixture(engine, "two_step.bpmn")
    for attempt in range(5):
        engine.start_case("two_step", {"title": f"race {attempt}"}, ALICE)
    for task in rows(pg_db, HumanTask, status="open", element_id="review"):
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def complete(who, task_id=task.id):
            barrier.wait()
            try:
                engine.complete_task(task_id, {"decision": "approve"}, who)
                outcomes.append("ok")
            except (Conflict, Forbidden) as error:
                outcomes.append(type(error).__name__)

        threads = [threading.Thread(target=complete, args=(who,)) for who in (ALICE, BOB)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes)[0] != "ok" and outcomes.count("ok") == 1, outcomes
        completed = [e for e in rows(pg_db, AuditEvent, task_id=task.id) if e.type == "task_completed"]
        assert len(completed) == 1
    assert {i.status for i in rows(pg_db, Instance)} == {"completed"}
