"""Signing in and out, tokens, the login rate limit, and 401 on every endpoint."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.conftest import PASSWORD


def test_login_returns_token_and_user(auth):
    auth.create("desk", "staff", groups=("front_desk",))
    response = auth.login("desk")
    assert response.status_code == 200
    assert len(response.json["token"]) >= 40
    assert response.json["user"] == {"username": "desk", "display_name": "desk", "roles": ["staff"],
                                     "groups": ["front_desk"]}


def test_me(client, auth):
    headers = auth.headers("olivia", "process_owner", "staff", groups=("cs_supervisor",))
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 200
    assert response.json["roles"] == ["process_owner", "staff"]
    assert response.json["groups"] == ["cs_supervisor"]


def test_wrong_password_and_unknown_user_get_the_same_answer(auth):
    auth.create("desk")
    wrong = auth.login("desk", "not the password")
    unknown = auth.login("nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert wrong.json["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("body", [{}, {"username": "desk"}, {"username": "", "password": "x"},
                                  {"username": 3, "password": "x"}])
def test_login_needs_username_and_password(client, body):
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "validation_error"


def test_repeated_failures_are_rate_limited(auth, clock):
    auth.create("desk")
    for _ in range(5):
        assert auth.login("desk", "guess").status_code == 401
    blocked = auth.login("desk")  # even the right password, while blocked
    assert blocked.status_code == 429
    assert blocked.json["error"]["code"] == "too_many_requests"
    clock.advance(timedelta(minutes=16))
    assert auth.login("desk").status_code == 200


def test_failures_from_one_address_are_rate_limited(app, auth):
    app.config["LOGIN_FAILURES_PER_ADDRESS"] = 3
    auth.create("desk")
    for name in ("a", "b", "c"):
        assert auth.login(name, "guess").status_code == 401
    assert auth.login("desk").status_code == 429


def test_token_expires(client, auth, clock):
    headers = auth.headers("desk")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    clock.advance(timedelta(hours=12, seconds=1))
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"


def test_logout_revokes_the_token(client, auth):
    headers = auth.headers("desk")
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def _protected_routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.endpoint in {"health.health", "v1.auth.login"}:
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "1").replace(f"<int:{argument}>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, path


@pytest.mark.parametrize("token", [None, "Bearer not-a-token", "Basic ZGVzazpwdw=="])
def test_every_endpoint_but_health_and_login_needs_a_token(app, client, token):
    headers = {"Authorization": token} if token else {}
    routes = list(_protected_routes(app))
    assert len(routes) >= 15
    for method, path in routes:
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.json["error"]["code"] == "unauthenticated"
    assert client.get("/api/v1/health").status_code == 200
