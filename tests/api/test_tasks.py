"""The inbox, who may see a task, and completing it safely."""
from __future__ import annotations

from datetime import timedelta


def _start(client, people, title="漏水"):
    response = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": title}},
                           headers=people["desk"])
    assert response.status_code == 201, response.json
    return response.json["open_tasks"][0]


def test_task_of_another_group_is_hidden(client, people, case):
    _instance, task = case
    assert client.get("/api/v1/tasks", headers=people["super"]).json["items"] == []
    response = client.get(f"/api/v1/tasks/{task['id']}", headers=people["super"])
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_task_of_own_group_shows_with_form_and_data(client, people, case):
    _instance, task = case
    inbox = client.get("/api/v1/tasks", headers=people["desk2"]).json["items"]
    assert [t["id"] for t in inbox] == [task["id"]]
    response = client.get(f"/api/v1/tasks/{task['id']}", headers=people["desk2"])
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{task["etag"]}"'
    assert response.json["data"]["title"] == "漏水"
    field = response.json["form"]["fields"][0]
    assert field["id"] == "decision" and field["type"] == "enum" and field["required"]
    assert field["options"] == [{"id": "approve", "label": "同意"}, {"id": "reject", "label": "退回"}]


def test_auditor_sees_any_task(client, people, case):
    _instance, task = case
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=people["auditor"]).status_code == 200


def test_claimed_task_leaves_the_others_inbox(client, people, case):
    _instance, task = case
    response = client.post(f"/api/v1/tasks/{task['id']}/claim", headers=people["desk"])
    assert response.status_code == 200
    assert response.json["assignee"] == "desk"
    assert client.get("/api/v1/tasks", headers=people["desk2"]).json["items"] == []
    assert client.get("/api/v1/tasks?assignee=me", headers=people["desk"]).json["items"][0]["id"] == task["id"]
    assert client.post(f"/api/v1/tasks/{task['id']}/claim", headers=people["desk2"]).status_code == 409
    completed = client.post(f"/api/v1/tasks/{task['id']}/complete", json={"data": {"decision": "approve"}},
                            headers=people["desk2"])
    assert completed.status_code == 403


def test_complete_with_bad_data_names_the_field(client, people, case):
    _instance, task = case
    response = client.post(f"/api/v1/tasks/{task['id']}/complete", json={"data": {"decision": "maybe"}},
                           headers=people["desk"])
    assert response.status_code == 400
    assert response.json["error"]["code"] == "validation_error"
    assert "decision" in response.json["error"]["details"]


def test_complete_moves_the_case_on(client, people, case):
    instance, task = case
    response = client.post(f"/api/v1/tasks/{task['id']}/complete", json={"data": {"decision": "reject"}},
                           headers={**people["desk"], "If-Match": f'"{task["etag"]}"'})
    assert response.status_code == 200, response.json
    assert response.json["instance"]["id"] == instance["id"]
    assert [t["element_id"] for t in response.json["next_tasks"]] == ["review"]
    diagram = client.get(f"/api/v1/instances/{instance['id']}/diagram", headers=people["desk"]).json
    assert diagram["active"] == ["review"] and diagram["completed"] == ["review"]
    assert diagram["bpmn"].startswith("<?xml")


def test_stale_etag_conflicts(client, people, case):
    _instance, task = case
    assert client.post(f"/api/v1/tasks/{task['id']}/claim", headers=people["desk"]).status_code == 200
    response = client.post(f"/api/v1/tasks/{task['id']}/complete", json={"data": {"decision": "approve"}},
                           headers={**people["desk"], "If-Match": task["etag"]})
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"
    unclaim = client.post(f"/api/v1/tasks/{task['id']}/unclaim", headers={**people["desk"], "If-Match": "1.1"})
    assert unclaim.status_code == 409


def test_double_complete_conflicts(client, people, case):
    _instance, task = case
    url = f"/api/v1/tasks/{task['id']}/complete"
    assert client.post(url, json={"data": {"decision": "approve"}}, headers=people["desk"]).status_code == 200
    again = client.post(url, json={"data": {"decision": "approve"}}, headers=people["desk"])
    assert again.status_code == 409


def test_assign_by_lead_or_owner_only(client, people, case):
    _instance, task = case
    url = f"/api/v1/tasks/{task['id']}/assign"
    assert client.post(url, json={"username": "desk2"}, headers=people["desk"]).status_code == 403
    response = client.post(url, json={"username": "desk2"}, headers=people["owner"])
    assert response.status_code == 200 and response.json["assignee"] == "desk2"
    assert client.post(url, json={"username": "super"}, headers=people["owner"]).status_code == 403
    assert client.post(url, json={"username": "ghost"}, headers=people["owner"]).status_code == 404


def test_inbox_pages_in_due_order(client, people, two_step, clock):
    ids = []
    for n in range(3):
        ids.append(_start(client, people, f"case {n}")["id"])
        clock.advance(timedelta(minutes=1))
    first = client.get("/api/v1/tasks?limit=2", headers=people["desk"]).json
    assert [t["id"] for t in first["items"]] == ids[:2]
    second = client.get(f"/api/v1/tasks?limit=2&cursor={first['next_cursor']}", headers=people["desk"]).json
    assert [t["id"] for t in second["items"]] == ids[2:]
    assert second["next_cursor"] is None


def test_inbox_filters(client, people, two_step, clock):
    task = _start(client, people)
    assert client.get("/api/v1/tasks?overdue=true", headers=people["desk"]).json["items"] == []
    assert len(client.get("/api/v1/tasks?group=front_desk", headers=people["desk"]).json["items"]) == 1
    assert client.get("/api/v1/tasks?group=cs_supervisor", headers=people["desk"]).json["items"] == []
    assert client.get("/api/v1/tasks?definition_key=other", headers=people["desk"]).json["items"] == []
    due = "2026-11-23T11:30:00+08:00"
    assert len(client.get("/api/v1/tasks", query_string={"due_before": due}, headers=people["desk"]).json["items"]) == 1
    clock.advance(timedelta(hours=3))
    overdue = client.get("/api/v1/tasks?overdue=true", headers=people["desk"]).json["items"]
    assert [t["id"] for t in overdue] == [task["id"]]


def test_bad_paging_arguments(client, people):
    for query in ("limit=0", "limit=501", "limit=x", "cursor=@@@", "cursor=WzFd", "due_before=yesterday"):
        response = client.get(f"/api/v1/tasks?{query}", headers=people["desk"])
        assert response.status_code == 400, query
        assert response.json["error"]["code"] == "validation_error"
