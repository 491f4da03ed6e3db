"""Who may deploy, start, terminate and read the audit trail."""
from __future__ import annotations

import pytest

from tests.conftest import FIXTURES

TWO_STEP = (FIXTURES / "two_step.bpmn").read_bytes()


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 201), ("auditor", 403), ("admin", 201)])
def test_deploy(client, people, who, status):
    response = client.post("/api/v1/definitions", data=TWO_STEP, content_type="application/xml",
                           headers=people[who])
    assert response.status_code == status, response.json


@pytest.mark.parametrize("who, status", [("desk", 201), ("super", 403), ("owner", 201), ("auditor", 403),
                                         ("admin", 201)])
def test_start(client, people, two_step, who, status):
    response = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": "噪音"}},
                           headers=people[who])
    assert response.status_code == status, response.json


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 200), ("auditor", 403), ("admin", 200)])
def test_terminate(client, people, case, who, status):
    instance, _task = case
    response = client.post(f"/api/v1/instances/{instance['id']}/terminate", json={"reason": "重复投诉"},
                           headers=people[who])
    assert response.status_code == status, response.json
    if status == 200:
        assert response.json["status"] == "terminated"
        assert response.json["open_tasks"] == []


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 403), ("auditor", 200), ("admin", 200)])
def test_audit_events(client, people, case, who, status):
    response = client.get("/api/v1/audit/events", headers=people[who])
    assert response.status_code == status, response.json
    if status == 403:
        assert response.json["error"]["code"] == "forbidden"


def test_terminating_twice_conflicts(client, people, case):
    instance, _task = case
    url = f"/api/v1/instances/{instance['id']}/terminate"
    assert client.post(url, json={"reason": "x"}, headers=people["owner"]).status_code == 200
    assert client.post(url, json={"reason": "x"}, headers=people["owner"]).status_code == 409
