"""Managing users over HTTP: admins only, every change in the system audit chain."""
from __future__ import annotations

import pytest

from api import engine_of
from engine.audit import SYSTEM_CHAIN
from storage.models import AuditEvent

NEW = {"username": "li.na", "password": "s3cret-pass", "roles": ["staff"], "groups": ["front_desk"],
       "display_name": "李娜"}


def _user_events(app) -> list[dict]:
    with engine_of(app).read() as uow:
        return [e.data for e in uow.session.query(AuditEvent).filter(AuditEvent.chain == SYSTEM_CHAIN,
                                                                      AuditEvent.type == "user_changed")
                .order_by(AuditEvent.seq)]


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 403), ("auditor", 403), ("admin", 200)])
def test_list_users_is_for_admins(client, people, who, status):
    response = client.get("/api/v1/users", headers=people[who])
    assert response.status_code == status
    if status == 200:
        names = [u["username"] for u in response.json["items"]]
        assert names == sorted(names) and "desk" in names
        assert response.json["items"][0].keys() >= {"username", "roles", "groups", "is_active", "created_at"}


@pytest.mark.parametrize("who, status", [("desk", 403), ("owner", 403), ("auditor", 403), ("admin", 201)])
def test_create_user_is_for_admins(client, people, who, status):
    response = client.post("/api/v1/users", json=NEW, headers=people[who])
    assert response.status_code == status, response.json


def test_created_user_signs_in_and_is_audited_without_password(app, client, people):
    created = client.post("/api/v1/users", json=NEW, headers=people["admin"])
    assert created.status_code == 201
    assert created.json == {**{k: NEW[k] for k in ("username", "roles", "groups", "display_name")},
                            "is_active": True, "created_at": created.json["created_at"]}
    login = client.post("/api/v1/auth/login", json={"username": "li.na", "password": "s3cret-pass"})
    assert login.status_code == 200 and login.json["user"]["display_name"] == "李娜"
    [event] = _user_events(app)
    assert event["username"] == "li.na" and event["action"] == "created"
    assert "s3cret-pass" not in str(event) and event["changes"]["password_set"] is True
    assert client.get("/api/v1/audit/verify", headers=people["auditor"]).json["ok"] is True


@pytest.mark.parametrize("body, details", [
    ({}, {"username": "is required", "password": "is required", "roles": "is required"}),
    ({**NEW, "username": "有 空格"}, {"username": "use 1-64 letters, digits, '.', '_' or '-'"}),
    ({**NEW, "password": "short"}, {"password": "must be a string of at least 8 characters"}),
    ({**NEW, "roles": ["boss"]}, {"roles": "unknown role(s) boss; use staff, process_owner, auditor, admin"}),
    ({**NEW, "roles": []}, {"roles": "give a list of one or more of staff, process_owner, auditor, admin"}),
    ({**NEW, "groups": "front_desk"}, {"groups": "give a list of group names of 1-64 characters"}),
    ({**NEW, "display_name": 7}, {"display_name": "must be a string of at most 200 characters"}),
    ({**NEW, "is_active": "yes"}, {"is_active": "must be true or false"}),
    ({**NEW, "shoe_size": 42}, {"shoe_size": "is not a field of a user"}),
])
def test_create_user_validation(client, people, body, details):
    response = client.post("/api/v1/users", json=body, headers=people["admin"])
    assert response.status_code == 400
    assert response.json["error"]["code"] == "validation_error" and response.json["error"]["details"] == details


def test_taken_username_conflicts(client, people):
    response = client.post("/api/v1/users", json={**NEW, "username": "desk"}, headers=people["admin"])
    assert response.status_code == 409 and response.json["error"]["code"] == "conflict"


def test_patch_changes_fields_and_records_them(app, client, people):
    response = client.patch("/api/v1/users/desk", json={"roles": ["staff", "process_owner"],
                                                        "groups": ["front_desk", "cs_supervisor"],
                                                        "display_name": "前台小王"}, headers=people["admin"])
    assert response.status_code == 200, response.json
    assert response.json["roles"] == ["process_owner", "staff"]
    assert response.json["groups"] == ["cs_supervisor", "front_desk"]
    assert client.get("/api/v1/users/desk", headers=people["admin"]).json["display_name"] == "前台小王"
    [event] = _user_events(app)
    assert event["action"] == "updated"
    assert event["changes"]["roles"] == {"from": ["staff"], "to": ["process_owner", "staff"]}


def test_deactivating_revokes_tokens_and_blocks_sign_in(client, people, auth):
    assert client.get("/api/v1/me", headers=people["desk"]).status_code == 200
    response = client.patch("/api/v1/users/desk", json={"is_active": False}, headers=people["admin"])
    assert response.status_code == 200 and response.json["is_active"] is False
    assert client.get("/api/v1/me", headers=people["desk"]).status_code == 401
    assert auth.login("desk").status_code == 401
    client.patch("/api/v1/users/desk", json={"is_active": True}, headers=people["admin"])
    # The old token stays revoked; signing in again works.
    assert client.get("/api/v1/me", headers=people["desk"]).status_code == 401
    assert auth.login("desk").status_code == 200


def test_new_password_revokes_tokens(client, people):
    response = client.patch("/api/v1/users/desk", json={"password": "another-pass"}, headers=people["admin"])
    assert response.status_code == 200
    assert client.get("/api/v1/me", headers=people["desk"]).status_code == 401
    login = client.post("/api/v1/auth/login", json={"username": "desk", "password": "another-pass"})
    assert login.status_code == 200


@pytest.mark.parametrize("body, field", [({"username": "x"}, "username"), ({"roles": "admin"}, "roles"),
                                         ({"is_active": 0}, "is_active"), ({"password": ""}, "password")])
def test_patch_validation(client, people, body, field):
    response = client.patch("/api/v1/users/desk", json=body, headers=people["admin"])
    assert response.status_code == 400 and field in response.json["error"]["details"]


def test_patch_unknown_user_and_non_admin(client, people):
    assert client.patch("/api/v1/users/ghost", json={"is_active": False}, headers=people["admin"]).status_code == 404
    assert client.patch("/api/v1/users/desk2", json={"is_active": False}, headers=people["desk"]).status_code == 403
    assert client.get("/api/v1/users/ghost", headers=people["admin"]).status_code == 404
