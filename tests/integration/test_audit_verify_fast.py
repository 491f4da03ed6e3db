"""`audit verify` hashes stored text where it can, falls back where it must, and splits work exactly."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

import engine.audit as audit
from engine.audit import AuditLog, canonical_json, instance_chain, verify_database
from tests.conftest import deploy_fixture
from tests.integration.test_audit import run_case, verify, with_triggers_off


def stored_data(db) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT CAST(data AS TEXT) FROM audit_events ORDER BY chain, seq")).scalars())


def sql_text(value: str) -> str:
    """A JSON text to quote in a statement that `text()` would otherwise read `:name` in as parameters."""
    assert "'" not in value
    return value.replace(":", "\\:")


def count_slow_hashes(monkeypatch) -> list[tuple[str, int]]:
    """Record the events (chain, seq) the fast path could not prove."""
    calls = []
    slowly = audit._hashes_slowly

    def counted(connection, row):
        calls.append((row[0], row[1]))
        return slowly(connection, row)

    monkeypatch.setattr(audit, "_hashes_slowly", counted)
    return calls


def test_new_events_store_the_canonical_json_their_hash_covers(engine, db, clock, monkeypatch):
    deploy_fixture(engine, "two_step.bpmn")
    run_case(engine, db, clock)
    stored = stored_data(db)
    assert stored and all(value == canonical_json(json.loads(value)) for value in stored)
    assert any("电梯故障" in value for value in stored)  # text as is, not \u escapes
    slow = count_slow_hashes(monkeypatch)
    report = verify(db)
    assert report.ok and report.events_checked == len(stored)
    assert slow == []


def test_events_stored_before_data_was_canonical_still_verify(engine, db, clock, monkeypatch):
    deploy_fixture(engine, "two_step.bpmn")
    run_case(engine, db, clock)
    values = set(stored_data(db))
    # As the default serializer wrote them: spaces after separators, non-ASCII escaped.
    with_triggers_off(db, [f"UPDATE audit_events SET data = '{sql_text(json.dumps(json.loads(value)))}' "
                           f"WHERE CAST(data AS TEXT) = '{sql_text(value)}'" for value in values])
    legacy = [value for value in stored_data(db) if value != canonical_json(json.loads(value))]
    assert legacy  # every event's but an empty `{}`
    slow = count_slow_hashes(monkeypatch)
    assert verify(db).ok
    assert len(slow) == len(legacy)


def test_data_replaced_by_other_canonical_text_is_a_break(engine, db, clock):
    deploy_fixture(engine, "two_step.bpmn")
    run_case(engine, db, clock)
    with_triggers_off(db, ["UPDATE audit_events SET data = '{\"submitted\":{\"decision\":\"approve\"}}' "
                           "WHERE chain = 'instance:1' AND seq = 4"])
    broken = verify(db).first_broken
    assert (broken.chain, broken.seq, broken.reason) == ("instance:1", 4, "hash does not match the event's content")


@pytest.mark.parametrize("spelling, intact", [
    ("substr(at, 1, 10) || 'T' || substr(at, 12)", True),  # reads back as the same time
    ("substr(at, 1, 19)", True),  # the same, without zero microseconds
    ("substr(at, 1, 19) || '.5'", False),  # half a second later
])
def test_a_time_stored_in_another_spelling_is_judged_as_it_reads_back(spelling, intact, engine, db, clock):
    if db.is_postgres:
        pytest.skip("PostgreSQL stores a timestamp, not its spelling")
    deploy_fixture(engine, "two_step.bpmn")
    run_case(engine, db, clock)
    with_triggers_off(db, [f"UPDATE audit_events SET at = {spelling} WHERE chain = 'instance:1' AND seq = 2"])
    report = verify(db)
    assert report.ok is intact
    if not intact:
        assert (report.first_broken.chain, report.first_broken.seq) == ("instance:1", 2)


def test_text_in_an_integer_column_is_a_break_though_it_spells_the_same(engine, db, clock):
    if db.is_postgres:
        pytest.skip("PostgreSQL keeps integer columns integers")
    deploy_fixture(engine, "two_step.bpmn")
    run_case(engine, db, clock)
    with db.engine.connect() as conn:
        seq = conn.execute(text("SELECT min(seq) FROM audit_events WHERE chain = 'instance:1' "
                                "AND task_id IS NULL")).scalar()
    # 'null' reads back as a string, which the hash spells "null", not null.
    with_triggers_off(db, [f"UPDATE audit_events SET task_id = 'null' WHERE chain = 'instance:1' AND seq = {seq}"])
    broken = verify(db).first_broken
    assert (broken.chain, broken.seq, broken.reason) == ("instance:1", seq, "hash does not match the event's content")


def write_chains(db, chains: int, events: int) -> None:
    """Append `events` events to each of `chains` case chains, through the audit log."""
    start = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
    with db.unit_of_work() as uow:
        log = AuditLog(uow.session, lock=False)
        for case in range(1, chains + 1):
            for step in range(events):
                at = start + timedelta(seconds=step, microseconds=case)
                log.append(instance_chain(case), "task_completed", at=at, actor=f"user{case % 7}", instance_id=case,
                           element_id="handle", task_id=case * 100 + step,
                           data={"submitted": {"结果": "已处理", "step": step, "note": None}})
        uow.commit()


CHAIN_TAMPERING = {
    "intact": [],
    "a late chain edited": ["UPDATE audit_events SET actor = 'mallory' WHERE chain = 'instance:9' AND seq = 3"],
    "an early and a late chain edited": [
        "UPDATE audit_events SET actor = 'mallory' WHERE chain = 'instance:9' AND seq = 2",
        "UPDATE audit_events SET data = '{}' WHERE chain = 'instance:10' AND seq = 4"],
    "an early tail cut, a late event deleted": [
        "DELETE FROM audit_events WHERE chain = 'instance:1' AND seq = 5",
        "DELETE FROM audit_events WHERE chain = 'instance:8' AND seq = 2"],
    "only tails cut": [
        "DELETE FROM audit_events WHERE chain = 'instance:7' AND seq = 5",
        "DELETE FROM audit_events WHERE chain = 'instance:30'"],
}
FIRST_BROKEN = {"intact": None, "a late chain edited": ("instance:9", 3),
                "an early and a late chain edited": ("instance:10", 4),
                "an early tail cut, a late event deleted": ("instance:8", 3),
                "only tails cut": ("instance:30", 1)}


@pytest.mark.parametrize("how", list(CHAIN_TAMPERING))
def test_workers_name_the_break_one_process_names(how, db):
    write_chains(db, chains=40, events=5)
    with_triggers_off(db, CHAIN_TAMPERING[how])
    counts = []
    with db.unit_of_work(write=False) as uow:
        serial = verify_database(uow.session, workers=1)
        parallel = verify_database(uow.session, workers=2, progress=counts.append)
    assert parallel.as_dict() == serial.as_dict()
    broken = parallel.first_broken
    assert (None if broken is None else (broken.chain, broken.seq)) == FIRST_BROKEN[how]
    assert counts == sorted(counts) and len(counts) > 2 and counts[-1] == serial.events_checked


def test_a_large_audit_log_is_shared_between_processes(db, monkeypatch):
    if audit._cpus() < 2:
        pytest.skip("one CPU")
    write_chains(db, chains=12, events=3)
    monkeypatch.setattr(audit, "PARALLEL_MIN_EVENTS", 30)
    shared = []
    in_parallel = audit._scan_in_parallel

    def counted(session, workers, *args):
        shared.append(workers)
        return in_parallel(session, workers, *args)

    monkeypatch.setattr(audit, "_scan_in_parallel", counted)
    with db.unit_of_work(write=False) as uow:
        report = verify_database(uow.session)
    assert report.ok and report.events_checked == 36
    assert shared == [audit._cpus()]


def test_a_threaded_caller_spawns_workers_that_agree(db):
    write_chains(db, chains=10, events=4)
    with_triggers_off(db, ["DELETE FROM audit_events WHERE chain = 'instance:3' AND seq = 2"])
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert audit._process_context().get_start_method() == "spawn"
        with db.unit_of_work(write=False) as uow:
            parallel = verify_database(uow.session, workers=2)
    finally:
        release.set()
        other.join()
    with db.unit_of_work(write=False) as uow:
        assert parallel.as_dict() == verify_database(uow.session, workers=1).as_dict()
    assert (parallel.first_broken.chain, parallel.first_broken.seq) == ("instance:3", 3)
