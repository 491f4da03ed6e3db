"""Audit history that proves itself: append-only, verified chains, replay, export."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from api.cli import main
from engine.audit import export_lines, export_query, verify_database
from engine.replay import replay
from storage.models import HumanTask
from tests.conftest import FIXTURES, OWNER, actor, deploy_fixture

ALICE = actor("alice", "front_desk")
SUPERVISOR = actor("sam", "cs_supervisor")
BASE = (FIXTURES / "two_step.bpmn").read_text(encoding="utf-8")


def open_task(db, element_id):
    with db.unit_of_work(write=False) as uow:
        return uow.session.scalars(select(HumanTask).where(HumanTask.status == "open",
                                                           HumanTask.element_id == element_id)).first()


def run_case(engine, db, clock) -> int:
    """A case with a send-back, a claim, an escalation timer and an end."""
    case = engine.start_case("two_step", {"title": "电梯故障", "amount": 2}, ALICE).instance_id
    engine.complete_task(open_task(db, "review").id, {"decision": "reject"}, ALICE)
    clock.advance(timedelta(minutes=70))
    engine.fire_due_timers()
    engine.claim_task(open_task(db, "chase").id, SUPERVISOR)
    engine.complete_task(open_task(db, "review").id, {"decision": "approve"}, ALICE)
    return case


def with_triggers_off(db, statements):
    """Tamper as a database administrator would, past the append-only guard."""
    with db.engine.begin() as conn:
        if db.is_postgres:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        for statement in statements:
            conn.execute(text(statement))
        if db.is_postgres:
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))


def verify(db, **kwargs):
    with db.unit_of_work(write=False) as uow:
        return verify_database(uow.session, **kwargs)


def test_events_cannot_be_changed_or_deleted(engine, db):
    deploy_fixture(engine, "two_step.bpmn")
    engine.start_case("two_step", {"title": "t"}, ALICE)
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text(statement))
    assert verify(db).ok


def test_replay_matches_the_stored_case_at_every_step(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    case = run_case(engine, db, clock)
    result = replay(engine, case)
    assert result.matches_stored, result.differences
    assert result.status == "running"  # the supervisor's chase task is still open
    assert [t["element_id"] for t in result.open_tasks] == ["chase"]
    # Step through: after the start only the review is open and the 1-hour timer waits.
    first = replay(engine, case, upto_seq=2)
    assert first.matches_stored is None
    assert [t["element_id"] for t in first.open_tasks] == ["review"]
    assert [t["element_id"] for t in first.waiting_timers] == ["review_late"]
    assert first.data["title"] == "电梯故障" and "decision" not in first.data


def test_replay_reports_a_stored_state_that_does_not_follow(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    case = run_case(engine, db, clock)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE instances SET data = :d WHERE id = :i"),
                     {"d": json.dumps({"title": "篡改"}), "i": case})
    result = replay(engine, case)
    assert result.matches_stored is False
    fields = {d["field"] for d in result.differences}
    assert "data.title" in fields and "data.decision" in fields


def test_replay_uses_the_version_the_case_started_on(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    case = run_case(engine, db, clock)
    changed = BASE.replace("count += 1", "count += 100")
    assert engine.deploy([("two_step.bpmn", changed.encode())], OWNER)[0].version == 2
    result = replay(engine, case)
    assert result.matches_stored and result.data["count"] == 2


TAMPERING = {
    "edit data": ["UPDATE audit_events SET data = '{\"submitted\": {\"decision\": \"approve\"}}' "
                  "WHERE chain = 'instance:1' AND seq = 4"],
    "swap order": ["UPDATE audit_events SET seq = -1 WHERE chain = 'instance:1' AND seq = 3",
                   "UPDATE audit_events SET seq = 3 WHERE chain = 'instance:1' AND seq = 4",
                   "UPDATE audit_events SET seq = 4 WHERE chain = 'instance:1' AND seq = -1"],
    "delete one": ["DELETE FROM audit_events WHERE chain = 'instance:1' AND seq = 3"],
    "insert one": ["UPDATE audit_events SET seq = seq + 1000 WHERE chain = 'instance:1' AND seq >= 3",
                   "UPDATE audit_events SET seq = seq - 999 WHERE chain = 'instance:1' AND seq >= 1003",
                   "INSERT INTO audit_events (chain, seq, instance_id, type, at, actor, data, prev_hash, hash) "
                   "SELECT chain, 3, instance_id, 'task_claimed', at, 'mallory', data, prev_hash, hash "
                   "FROM audit_events WHERE chain = 'instance:1' AND seq = 2"],
    "delete the last": ["DELETE FROM audit_events WHERE chain = 'instance:1' AND seq = "
                        "(SELECT max(seq) FROM audit_events WHERE chain = 'instance:1')"],
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampering_is_detected_and_the_first_broken_event_named(how, engine, db, clock, capsys):
    deploy_fixture(engine, "two_step.bpmn")
    case = run_case(engine, db, clock)
    assert case == 1 and verify(db).ok
    with_triggers_off(db, TAMPERING[how])
    report = verify(db)
    assert not report.ok
    assert report.first_broken.instance_id == 1
    expected_seq = {"edit data": 4, "swap order": 3, "delete one": 4, "insert one": 3}.get(how)
    if expected_seq is not None:
        assert report.first_broken.seq == expected_seq, report.first_broken
    url = db.url.render_as_string(hide_password=False)
    assert main(["audit", "verify", "--db", url]) == 1
    assert "instance 1" in capsys.readouterr().out


def test_verify_and_replay_from_the_command_line(engine, db, clock, capsys):
    deploy_fixture(engine, "two_step.bpmn")
    case = run_case(engine, db, clock)
    url = db.url.render_as_string(hide_password=False)
    assert main(["audit", "verify", "--db", url]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["replay", str(case), "--db", url]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["matches_stored"] is True
    assert main(["replay", "999", "--db", url]) == 1


def test_export_csv_has_a_bom_and_filters(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    run_case(engine, db, clock)
    with db.unit_of_work(write=False) as uow:
        text_csv = "".join(export_lines(uow.session, export_query(actor="sam"), "csv"))
        lines = "".join(export_lines(uow.session, export_query(instance_id=1), "jsonl")).splitlines()
    assert text_csv.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text_csv.lstrip("\ufeff"))))
    assert [r["type"] for r in rows] == ["task_claimed"]
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["data"]["data"]["title"] == "电梯故障"
