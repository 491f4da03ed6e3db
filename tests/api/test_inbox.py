"""The inbox over all its sources: own tasks, a group's, second candidate groups, tasks offered by name."""
from __future__ import annotations

import re
from datetime import timedelta

import psycopg.sql
import pytest
from sqlalchemy import event

from api import engine_of

# One case offers four tasks at once: a front desk task due in 2 h, one for security with the
# front desk as second candidate (no due date), one offered to `lone` by name only (due in 1 h)
# and a front desk task also offered to `lone` by name (due in 3 h).
FAN_OUT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs_fan_out" targetNamespace="https://complaintflow.local/test">
  <bpmn:process id="fan_out" name="分派测试" isExecutable="true" camunda:candidateStarterGroups="front_desk">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="split"/>
    <bpmn:parallelGateway id="split"/>
    <bpmn:sequenceFlow id="f_desk" sourceRef="split" targetRef="desk"/>
    <bpmn:sequenceFlow id="f_shared" sourceRef="split" targetRef="shared"/>
    <bpmn:sequenceFlow id="f_named" sourceRef="split" targetRef="named"/>
    <bpmn:sequenceFlow id="f_both" sourceRef="split" targetRef="both"/>
    <bpmn:userTask id="desk" name="前台" camunda:candidateGroups="front_desk" camunda:dueDate="PT2H"/>
    <bpmn:userTask id="shared" name="安保" camunda:candidateGroups="security,front_desk"/>
    <bpmn:userTask id="named" name="点名" camunda:candidateUsers="lone" camunda:dueDate="PT1H"/>
    <bpmn:userTask id="both" name="前台点名" camunda:candidateGroups="front_desk" camunda:candidateUsers="lone"
        camunda:dueDate="PT3H"/>
    <bpmn:sequenceFlow id="j_desk" sourceRef="desk" targetRef="join"/>
    <bpmn:sequenceFlow id="j_shared" sourceRef="shared" targetRef="join"/>
    <bpmn:sequenceFlow id="j_named" sourceRef="named" targetRef="join"/>
    <bpmn:sequenceFlow id="j_both" sourceRef="both" targetRef="join"/>
    <bpmn:parallelGateway id="join"/>
    <bpmn:sequenceFlow id="f_end" sourceRef="join" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def staff(auth, people):
    return {**people, "sec": auth.headers("sec", "staff", groups=("security",)),
            "lone": auth.headers("lone", "staff", groups=("front_desk",)),
            "nobody": auth.headers("nobody", "staff")}


@pytest.fixture
def fan_out(client, staff):
    """Start fan_out cases, a minute apart; returns a function giving {element id: task id} per case."""
    response = client.post("/api/v1/definitions", data=FAN_OUT.encode(), content_type="application/xml",
                           headers=staff["owner"])
    assert response.status_code == 201, response.json

    def start() -> dict[str, int]:
        response = client.post("/api/v1/instances", json={"definition_key": "fan_out", "data": {}},
                               headers=staff["desk"])
        assert response.status_code == 201, response.json
        return {t["element_id"]: t["id"] for t in response.json["open_tasks"]}

    return start


def _inbox(client, headers, query: str = "") -> list[int]:
    response = client.get(f"/api/v1/tasks?limit=500&{query}", headers=headers)
    assert response.status_code == 200, response.json
    return [t["id"] for t in response.json["items"]]


def test_each_user_sees_exactly_their_sources_in_due_order(client, staff, fan_out):
    case = fan_out()
    assert _inbox(client, staff["desk"]) == [case["desk"], case["both"], case["shared"]]
    assert _inbox(client, staff["sec"]) == [case["shared"]]
    # Offered by name and through the group at once: listed once.
    assert _inbox(client, staff["lone"]) == [case["named"], case["desk"], case["both"], case["shared"]]
    assert _inbox(client, staff["super"]) == []
    assert _inbox(client, staff["nobody"]) == []


def test_a_claimed_task_stays_only_with_its_holder(client, staff, fan_out):
    case = fan_out()
    assert client.post(f"/api/v1/tasks/{case['shared']}/claim", headers=staff["sec"]).status_code == 200
    assert client.post(f"/api/v1/tasks/{case['both']}/claim", headers=staff["desk"]).status_code == 200
    assert _inbox(client, staff["sec"]) == [case["shared"]]
    assert _inbox(client, staff["desk"]) == [case["desk"], case["both"]]
    assert _inbox(client, staff["lone"]) == [case["named"], case["desk"]]
    assert _inbox(client, staff["desk"], "assignee=me") == [case["both"]]
    assert _inbox(client, staff["lone"], "assignee=me") == []


def test_group_filter_keeps_tasks_offered_to_that_group(client, staff, fan_out):
    case = fan_out()
    assert _inbox(client, staff["lone"], "group=front_desk") == [case["desk"], case["both"], case["shared"]]
    assert _inbox(client, staff["sec"], "group=security") == [case["shared"]]
    # Only groups of one's own: a task offered to a group one is not in stays hidden.
    assert _inbox(client, staff["sec"], "group=front_desk") == []
    assert _inbox(client, staff["desk"], "group=security") == []
    assert client.post(f"/api/v1/tasks/{case['shared']}/claim", headers=staff["desk"]).status_code == 200
    assert _inbox(client, staff["desk"], "group=security") == [case["shared"]]


def test_due_filters_leave_out_tasks_without_a_due_date(client, staff, fan_out, clock):
    case = fan_out()
    due = (clock.now() + timedelta(hours=2, minutes=30)).isoformat()
    assert _inbox(client, staff["lone"], "overdue=true") == []
    assert _inbox(client, staff["lone"], f"due_before={due.replace('+', '%2B')}") == [case["named"], case["desk"]]
    clock.advance(timedelta(hours=2, minutes=30))
    assert _inbox(client, staff["lone"], "overdue=true") == [case["named"], case["desk"]]
    assert _inbox(client, staff["lone"], "overdue=true&definition_key=two_step") == []


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_paging_walks_the_merged_sources_once(client, staff, fan_out, clock, limit):
    for _ in range(3):
        fan_out()
        clock.advance(timedelta(minutes=1))
    everything = _inbox(client, staff["lone"])
    assert len(everything) == 12
    seen, cursor = [], None
    while True:
        query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"/api/v1/tasks?{query}", headers=staff["lone"]).json
        assert len(body["items"]) <= limit
        seen += [t["id"] for t in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == everything


def test_an_inbox_item_is_the_task_summary(client, staff, fan_out):
    fan_out()
    for item in client.get("/api/v1/tasks", headers=staff["lone"]).json["items"]:
        task = client.get(f"/api/v1/tasks/{item['id']}", headers=staff["lone"]).json
        assert item == {key: task[key] for key in item}
        assert set(task) - set(item) == {"status", "form", "data"}


def _number(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name) + 1


def test_a_groups_page_is_read_along_the_partial_index(app, client, staff, db):
    """The group's page must match the index's WHERE (status as a literal), or a busy group is sorted whole."""
    sql_engine = engine_of(app).db.engine
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(sql_engine, "before_cursor_execute", record)
    try:
        assert client.get("/api/v1/tasks", headers=staff["desk"]).status_code == 200
    finally:
        event.remove(sql_engine, "before_cursor_execute", record)
    statement, parameters = next((s, p) for s, p in statements if "UNION ALL" in s)
    with sql_engine.connect() as conn:
        if db.is_postgres:
            # The plan a prepared statement settles on (psycopg prepares a statement run five times).
            names: list[str] = []
            numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${_number(names, m.group(1))}", statement)
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            conn.exec_driver_sql(f"PREPARE inbox_page AS {numbered}")
            arguments = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(parameters[name]) for name in names)
            arguments = arguments.as_string(conn.connection.driver_connection)
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN EXECUTE inbox_page({arguments})"))
            conn.exec_driver_sql("DEALLOCATE inbox_page")
        else:
            plan = "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "ix_human_tasks_group_name_due_key_created_at_id" in plan, plan


def test_unclaimed_counts_per_group_include_second_candidates_and_leave_out_claimed(app, client, staff, fan_out):
    from api.tasks import unclaimed_counts

    fan_out()
    fan_out()
    case = fan_out()
    assert client.post(f"/api/v1/tasks/{case['desk']}/claim", headers=staff["desk"]).status_code == 200
    with engine_of(app).read() as uow:
        # front desk: desk, both (its own) and shared (second candidate) per case, less the claimed one
        assert unclaimed_counts(uow.session, ["front_desk", "security", "cs_supervisor"]) == {
            "front_desk": 8, "security": 3, "cs_supervisor": 0}
        assert unclaimed_counts(uow.session, []) == {}
