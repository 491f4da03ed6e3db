"""Every endpoint × every kind of user → the status the rules promise.

Kinds: `anon` (no token), `desk` (staff of front_desk, the fixture's start and task
group), `eng` (staff of another group), `owner` (process_owner), `auditor`, `admin`.
Each request acts on a case made for it, so a change by one user cannot decide
another's answer. A new route without a row fails `test_every_route_has_a_row`.
"""
from __future__ import annotations

import io

import pytest

from tests.conftest import FIXTURES

KINDS = ("anon", "desk", "eng", "owner", "auditor", "admin")
TWO_STEP = (FIXTURES / "two_step.bpmn").read_text(encoding="utf-8")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

# (method, rule, expected status per kind in KINDS order)
MATRIX = [
    ("POST", "/api/v1/admin/clock", (401, 403, 403, 403, 403, 404)),  # 404: no --fake-clock here
    ("GET", "/api/v1/attachments/<int:attachment_id>", (401, 200, 403, 200, 200, 200)),
    ("GET", "/api/v1/audit/events", (401, 403, 403, 403, 200, 200)),
    ("GET", "/api/v1/audit/verify", (401, 403, 403, 403, 200, 200)),
    ("POST", "/api/v1/auth/logout", (401, 204, 204, 204, 204, 204)),
    ("GET", "/api/v1/definitions", (401, 200, 200, 200, 200, 200)),
    ("POST", "/api/v1/definitions", (401, 403, 403, 201, 403, 201)),
    ("GET", "/api/v1/definitions/<key>", (401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/definitions/<key>/versions/<int:version>/bpmn", (401, 200, 200, 200, 200, 200)),
    ("POST", "/api/v1/instances", (401, 201, 403, 201, 403, 201)),
    ("GET", "/api/v1/instances", (401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/instances/<int:instance_id>", (401, 200, 403, 200, 200, 200)),
    ("POST", "/api/v1/instances/<int:instance_id>/attachments", (401, 201, 403, 201, 403, 201)),
    ("GET", "/api/v1/instances/<int:instance_id>/attachments", (401, 200, 403, 200, 200, 200)),
    ("GET", "/api/v1/instances/<int:instance_id>/diagram", (401, 200, 403, 200, 200, 200)),
    ("GET", "/api/v1/instances/<int:instance_id>/history", (401, 200, 403, 200, 200, 200)),
    ("GET", "/api/v1/instances/<int:instance_id>/replay", (401, 403, 403, 403, 200, 200)),
    ("POST", "/api/v1/instances/<int:instance_id>/terminate", (401, 403, 403, 200, 403, 200)),
    ("GET", "/api/v1/me", (401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/openapi.json", (401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/reports/summary", (401, 403, 403, 200, 200, 200)),
    ("GET", "/api/v1/tasks", (401, 200, 200, 200, 200, 200)),
    ("GET", "/api/v1/tasks/<int:task_id>", (401, 200, 403, 200, 200, 200)),
    ("POST", "/api/v1/tasks/<int:task_id>/assign", (401, 403, 403, 200, 403, 200)),
    ("POST", "/api/v1/tasks/<int:task_id>/claim", (401, 200, 403, 403, 403, 200)),
    ("POST", "/api/v1/tasks/<int:task_id>/complete", (401, 200, 403, 403, 403, 200)),
    # Held by desk: anyone else is told another user holds it (API.md: 409).
    ("POST", "/api/v1/tasks/<int:task_id>/unclaim", (401, 200, 409, 409, 409, 200)),
    ("GET", "/api/v1/users", (401, 403, 403, 403, 403, 200)),
    ("POST", "/api/v1/users", (401, 403, 403, 403, 403, 201)),
    ("GET", "/api/v1/users/<username>", (401, 403, 403, 403, 403, 200)),
    ("PATCH", "/api/v1/users/<username>", (401, 403, 403, 403, 403, 200)),
]
PUBLIC = {("POST", "/api/v1/auth/login"), ("GET", "/api/v1/health")}


@pytest.fixture
def users(auth):
    headers = {
        "anon": {},
        "desk": auth.headers("desk", "staff", groups=("front_desk",)),
        "eng": auth.headers("eng", "staff", groups=("engineering",)),
        "owner": auth.headers("owner", "process_owner"),
        "auditor": auth.headers("auditor", "auditor"),
        "admin": auth.headers("admin", "admin"),
    }
    auth.create("desk2", "staff", groups=("front_desk",))
    return headers


def fresh_case(client, users) -> tuple[int, int, int]:
    """A case started by desk with its review task claimed by desk, and a file on it: (case, task, file)."""
    started = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": "噪音"}},
                          headers=users["desk"])
    case_id = started.json["id"]
    task_id = started.json["open_tasks"][0]["id"]
    assert client.post(f"/api/v1/tasks/{task_id}/claim", headers=users["desk"]).status_code == 200
    upload = client.post(f"/api/v1/instances/{case_id}/attachments", content_type="multipart/form-data",
                         data={"file": (io.BytesIO(PNG), "photo.png")}, headers=users["desk"])
    return case_id, task_id, upload.json["items"][0]["id"]


def request_for(method: str, rule: str, kind: str, case: tuple[int, int, int]) -> dict:
    case_id, task_id, file_id = case
    path = (rule.replace("<int:attachment_id>", str(file_id)).replace("<int:instance_id>", str(case_id))
            .replace("<int:task_id>", str(task_id)).replace("<key>", "two_step").replace("<int:version>", "1")
            .replace("<username>", "desk2"))
    body = {
        "/api/v1/admin/clock": {"json": {"advance": "PT1H"}},
        "/api/v1/definitions": {"data": TWO_STEP.replace('name="审核"', f'name="审核 {kind}"').encode(),
                                "content_type": "application/xml"},
        "/api/v1/instances": {"json": {"definition_key": "two_step", "data": {"title": "漏水"}}},
        "/api/v1/instances/<int:instance_id>/attachments": {
            "content_type": "multipart/form-data", "data": {"file": (io.BytesIO(PNG), "more.png")}},
        "/api/v1/instances/<int:instance_id>/terminate": {"json": {"reason": "重复"}},
        "/api/v1/tasks/<int:task_id>/assign": {"json": {"username": "desk2"}},
        "/api/v1/tasks/<int:task_id>/complete": {"json": {"data": {"decision": "approve"}}},
        "/api/v1/users": {"json": {"username": f"new_{kind}", "password": "long enough pw", "roles": ["staff"],
                                   "groups": ["front_desk"]}},
        "/api/v1/users/<username>": {"json": {"display_name": "前台二"}},
    }.get(rule, {}) if method in {"POST", "PATCH"} else {}
    return {"method": method, "path": path, **body}


@pytest.mark.parametrize("method, rule, expected", MATRIX, ids=[f"{m} {r}" for m, r, _ in MATRIX])
def test_each_kind_of_user_gets_the_promised_status(client, auth, users, two_step_deployed, method, rule,
                                                   expected):
    answers = {}
    for kind in KINDS:
        case = fresh_case(client, users)
        # Work done by someone other than the assignee needs the task free first.
        if rule.endswith(("/complete", "/claim")) and kind not in ("desk", "anon"):
            client.post(f"/api/v1/tasks/{case[1]}/unclaim", headers=users["desk"])
        spec = request_for(method, rule, kind, case)
        response = client.open(spec.pop("path"), method=spec.pop("method"), headers=users[kind], **spec)
        answers[kind] = response.status_code
        assert response.status_code != 500
        if rule.endswith("/logout") and kind != "anon":
            users[kind] = {"Authorization": f"Bearer {auth.login(kind).json['token']}"}
    assert answers == dict(zip(KINDS, expected))


@pytest.fixture
def two_step_deployed(client, users):
    response = client.post("/api/v1/definitions", data=TWO_STEP.encode(), content_type="application/xml",
                           headers=users["owner"])
    assert response.status_code == 201, response.json


def test_every_route_has_a_row(app):
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes - PUBLIC == {(method, rule) for method, rule, _ in MATRIX}
