"""A case worked on the real clock (as `serve` runs) replays to exactly what was stored."""
from __future__ import annotations


from engine.replay import replay
from engine.service import Actor, Engine
from tests.conftest import deploy_fixture


def test_a_script_calling_now_replays_to_the_stored_case_on_the_system_clock(sqlite_db):
    engine = Engine(sqlite_db)  # SystemClock
    deploy_fixture(engine, "two_step.bpmn")
    clerk = Actor("clerk", frozenset({"staff"}), frozenset({"front_desk"}))
    started = engine.start_case("two_step", {"title": "x"}, clerk)
    engine.complete_task(started.created_task_ids[0], {"decision": "approve"}, clerk)
    result = replay(engine, started.instance_id)
    assert result.matches_stored, result.differences
