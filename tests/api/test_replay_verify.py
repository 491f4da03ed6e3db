"""Replaying a case and verifying the hash chains over HTTP."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from api import engine_of


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 403), ("auditor", 200), ("admin", 200)])
def test_replay_roles(client, people, case, who, status):
    instance, _task = case
    response = client.get(f"/api/v1/instances/{instance['id']}/replay", headers=people[who])
    assert response.status_code == status, response.json


def test_replay_rebuilds_the_case(client, people, case):
    instance, task = case
    client.post(f"/api/v1/tasks/{task['id']}/complete", json={"data": {"decision": "approve"}},
                headers=people["desk"])
    url = f"/api/v1/instances/{instance['id']}/replay"
    whole = client.get(url, headers=people["auditor"]).json
    assert whole["status"] == "completed" and whole["matches_stored"] is True
    assert whole["data"]["title"] == "漏水" and whole["open_tasks"] == []
    first = client.get(f"{url}?upto_seq=2", headers=people["auditor"]).json
    assert first["upto_seq"] == 2 and first["status"] == "running"
    assert [t["element_id"] for t in first["open_tasks"]] == ["review"]
    assert first["matches_stored"] is None


def test_replay_arguments_and_unknown_case(client, people, case):
    instance, _task = case
    bad = client.get(f"/api/v1/instances/{instance['id']}/replay?upto_seq=x", headers=people["auditor"])
    assert bad.status_code == 400 and bad.json["error"]["details"] == {"upto_seq": "must be a whole number"}
    missing = client.get("/api/v1/instances/999/replay", headers=people["auditor"])
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_replay_of_events_that_do_not_fit_is_422(app, client, people, case):
    instance, _task = case
    engine = engine_of(app)
    with engine.db.engine.begin() as connection:
        # Audit rows are append-only for the service; a test plays the tamperer by renaming
        # an element through a connection that bypasses the API.
        if engine.db.is_postgres:
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            triggers = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
            for name in triggers.all():
                connection.execute(text(f"DROP TRIGGER {name}"))
        connection.execute(text("UPDATE audit_events SET element_id = 'nowhere' WHERE type = 'task_created'"))
    response = client.get(f"/api/v1/instances/{instance['id']}/replay", headers=people["auditor"])
    assert response.status_code == 422 and response.json["error"]["code"] == "replay_failed"
    verify = client.get("/api/v1/audit/verify", headers=people["auditor"]).json
    assert verify["ok"] is False
    assert verify["first_broken"]["instance_id"] == instance["id"] and verify["first_broken"]["seq"] == 2


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 403), ("auditor", 200), ("admin", 200)])
def test_verify_roles_and_intact_chains(client, people, case, who, status):
    response = client.get("/api/v1/audit/verify", headers=people[who])
    assert response.status_code == status, response.json
    if status == 200:
        assert response.json["ok"] is True and response.json["first_broken"] is None
        assert response.json["events_checked"] >= 3
