"""`serve --demo`: demo users per group and role, sample cases, and running it twice."""
from __future__ import annotations

from api import engine_of
from api.demo import DEMO_PASSWORD, GROUPS, ROLE_USERS, seed
from engine.service import Actor
from tests.conftest import BPMN_DIR


def test_demo_users_and_cases(app, client):
    engine = engine_of(app)
    engine.deploy([(f.name, f.read_bytes()) for f in sorted(BPMN_DIR.glob("*.bpmn"))], Actor("system"))
    assert seed(engine) == {"users": len(GROUPS) + len(ROLE_USERS), "cases": 4}
    desk = client.post("/api/v1/auth/login", json={"username": "front_desk", "password": DEMO_PASSWORD})
    assert desk.status_code == 200 and desk.json["user"]["groups"] == ["front_desk"]
    inbox = client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {desk.json['token']}"}).json["items"]
    assert {t["definition_key"] for t in inbox} == {"property_complaint"}
    admin = client.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD}).json
    headers = {"Authorization": f"Bearer {admin['token']}"}
    cases = client.get("/api/v1/instances", headers=headers).json["items"]
    started = sorted(c["definition_key"] for c in cases if c["started_by"] != "system")
    assert started == ["complaint_travel", "lab_appeal", "property_complaint", "property_complaint"]
    assert client.get("/api/v1/audit/verify", headers=headers).json["ok"] is True
    assert seed(engine) == {"users": 0, "cases": 0}


def test_demo_without_definitions_adds_users_only(app):
    assert seed(engine_of(app)) == {"users": len(GROUPS) + len(ROLE_USERS), "cases": 0}
