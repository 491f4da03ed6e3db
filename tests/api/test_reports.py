"""The summary report: who may read it and what it counts."""
from __future__ import annotations

from datetime import timedelta

import pytest

from api import engine_of
from engine.reports import summary
from storage.models import Definition, Instance


def _start(client, people, title):
    response = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": title}},
                           headers=people["desk"])
    assert response.status_code == 201, response.json
    return response.json


@pytest.mark.parametrize("who, status", [("desk", 403), ("super", 200), ("owner", 200), ("auditor", 200),
                                         ("admin", 200)])
def test_who_may_read_reports(client, people, who, status):
    response = client.get("/api/v1/reports/summary", headers=people[who])
    assert response.status_code == status, response.json


def test_summary_counts(app, client, people, two_step, clock):
    done = _start(client, people, "已处理")
    clock.advance(timedelta(minutes=30))
    client.post(f"/api/v1/tasks/{done['open_tasks'][0]['id']}/complete", json={"data": {"decision": "approve"}},
                headers=people["desk"])
    _start(client, people, "超时")
    _start(client, people, "也超时")
    clock.advance(timedelta(minutes=61))
    engine_of(app).fire_due_timers()
    ended = _start(client, people, "终止")
    client.post(f"/api/v1/instances/{ended['id']}/terminate", json={"reason": "重复"}, headers=people["owner"])

    report = client.get("/api/v1/reports/summary?definition_key=two_step", headers=people["auditor"]).json
    assert report["total"] == 4
    assert report["by_status"] == {"completed": 1, "running": 2, "terminated": 1}
    # Two late reviews still open, plus the chase task each escalation started.
    assert report["by_group"] == {"cs_supervisor": 2, "front_desk": 2}
    assert report["by_month"] == {"2026-11": 4}
    assert report["sla_breaches"] == {"total": 2, "instances": 2, "by_element": {"review_late": 2}}
    assert report["completed"] == 1 and report["median_time_to_complete_seconds"] == 1800
    assert report["median_time_to_complete_hours"] == 0.5
    assert "property_complaint" not in report


def test_summary_time_window_and_arguments(client, auth, people, two_step, clock):
    _start(client, people, "十一月")
    clock.advance(timedelta(days=10))
    auth.tokens.clear()  # the tokens expired meanwhile
    people = {"desk": auth.headers("desk", "staff", groups=("front_desk",)),
              "auditor": auth.headers("auditor", "auditor")}
    _start(client, people, "十二月")
    december = client.get("/api/v1/reports/summary", query_string={"from": "2026-12-01T00:00:00+08:00"},
                          headers=people["auditor"]).json
    assert december["total"] == 1 and december["by_month"] == {"2026-12": 1}
    november = client.get("/api/v1/reports/summary", query_string={"to": "2026-12-01T00:00:00+08:00"},
                          headers=people["auditor"]).json
    assert november["total"] == 1 and november["property_complaint"]["secondary_complaints"] == 0
    bad = client.get("/api/v1/reports/summary?from=soon", headers=people["auditor"])
    assert bad.status_code == 400 and "from" in bad.json["error"]["details"]
    backwards = client.get("/api/v1/reports/summary", query_string={"from": "2026-12-02", "to": "2026-12-01"},
                           headers=people["auditor"])
    assert backwards.status_code == 400 and "to" in backwards.json["error"]["details"]


def test_property_complaint_figures(app):
    """Secondary complaints and satisfaction are read from the cases' data columns."""
    engine = engine_of(app)
    now = engine.clock.now()
    with engine.db.unit_of_work() as uow:
        definition = Definition(key="property_complaint", version=1, name="投诉", file_name="p.bpmn", bpmn_xml="",
                                sha256="0" * 64, called_keys=[], deployment_id="d", deployed_at=now,
                                deployed_by="t")
        uow.session.add(definition)
        uow.session.flush()
        for data in ({"secondary_complaint_count": 1, "customer_satisfaction": "satisfied"},
                     {"secondary_complaint_count": 2, "customer_satisfaction": "not_satisfied"},
                     {"secondary_complaint_count": 0, "customer_satisfaction": "satisfied"},
                     {"secondary_complaint_count": "odd"}, {}):
            uow.session.add(Instance(definition_id=definition.id, definition_key="property_complaint", version=1,
                                     pinned={}, status="completed", data=data, state="{}", error=None, breaches=[],
                                     started_by="t", created_at=now, updated_at=now, ended_at=now))
        uow.commit()
    with engine.read() as uow:
        report = summary(uow.session, engine.tz, definition_key="property_complaint")
    assert report["property_complaint"] == {"secondary_complaints": 2, "secondary_complaint_total": 3,
                                            "satisfaction": {"not_satisfied": 1, "satisfied": 2}}
    assert report["median_time_to_complete_seconds"] == 0
