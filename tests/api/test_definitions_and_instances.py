"""Deploying BPMN, reading definitions and cases, and request-shape errors."""
from __future__ import annotations

import io

from tests.conftest import FIXTURES

TWO_STEP = (FIXTURES / "two_step.bpmn").read_bytes()
BROKEN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
  <bpmn:process id="broken" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="nowhere"/>
  </bpmn:process>
"""


def test_invalid_bpmn_lists_problems_with_lines(client, people):
    response = client.post("/api/v1/definitions", data=BROKEN, content_type="application/xml",
                           headers=people["owner"])
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "invalid_bpmn"
    assert error["details"] and all({"line", "message"} <= set(p) for p in error["details"])
    assert any(isinstance(p["line"], int) for p in error["details"])
    assert client.get("/api/v1/definitions", headers=people["owner"]).json["items"] == []


def test_multipart_deploy_and_identical_redeploy(client, people):
    def upload():
        return client.post("/api/v1/definitions", data={"file": (io.BytesIO(TWO_STEP), "two_step.bpmn")},
                           content_type="multipart/form-data", headers=people["admin"])

    first = upload()
    assert first.status_code == 201
    assert first.json == {"deployed": [{"key": "two_step", "version": 1}]}
    again = upload()
    assert again.status_code == 200
    assert again.json == first.json


def test_deploy_needs_xml_or_multipart(client, people):
    response = client.post("/api/v1/definitions", data=TWO_STEP, content_type="text/plain",
                           headers=people["owner"])
    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_definition_views(client, people, two_step):
    listed = client.get("/api/v1/definitions", headers=people["desk"]).json
    assert [d["key"] for d in listed["items"]] == ["two_step"]
    one = client.get("/api/v1/definitions/two_step", headers=people["desk"]).json
    assert one["versions"] == [1] and one["start_groups"] == ["front_desk"]
    assert [f["id"] for f in one["start_form"]["fields"]] == ["title", "amount"]
    xml = client.get("/api/v1/definitions/two_step/versions/1/bpmn", headers=people["desk"])
    assert xml.mimetype == "application/xml" and xml.data == TWO_STEP
    missing = client.get("/api/v1/definitions/nope", headers=people["desk"])
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_start_form_errors(client, people, two_step):
    response = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"amount": -1}},
                           headers=people["desk"])
    assert response.status_code == 400
    assert set(response.json["error"]["details"]) >= {"title", "amount"}


def test_instance_detail_history_and_visibility(client, people, case):
    instance, task = case
    detail = client.get(f"/api/v1/instances/{instance['id']}", headers=people["desk2"]).json
    assert detail["status"] == "running"
    assert [t["id"] for t in detail["open_tasks"]] == [task["id"]]
    assert detail["waiting_timers"] == [{"element_id": "review_late", "due_at": "2026-11-23T10:00:00+08:00"}]
    history = client.get(f"/api/v1/instances/{instance['id']}/history", headers=people["auditor"]).json
    assert [e["type"] for e in history["items"]][:2] == ["instance_started", "task_created"]
    assert client.get(f"/api/v1/instances/{instance['id']}", headers=people["super"]).status_code == 403
    assert client.get("/api/v1/instances", headers=people["super"]).json["items"] == []
    assert client.get("/api/v1/instances/999", headers=people["owner"]).status_code == 404


def test_instance_list_filters_and_pages(client, people, two_step):
    ids = [client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": str(n)}},
                       headers=people["desk"]).json["id"] for n in range(3)]
    first = client.get("/api/v1/instances?limit=2&status=running", headers=people["owner"]).json
    second = client.get(f"/api/v1/instances?limit=2&cursor={first['next_cursor']}", headers=people["owner"]).json
    assert [i["id"] for i in first["items"] + second["items"]] == sorted(ids, reverse=True)
    assert client.get("/api/v1/instances?status=completed", headers=people["owner"]).json["items"] == []
    assert client.get("/api/v1/instances?status=bogus", headers=people["owner"]).status_code == 400


def test_audit_csv_has_bom(client, people, case):
    response = client.get("/api/v1/audit/events?format=csv", headers=people["auditor"])
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.data.decode("utf-8")
    assert text.startswith("\ufeffseq,instance_id,type")
    assert "instance_started" in text


def test_json_body_must_be_json(client, people, two_step):
    wrong_type = client.post("/api/v1/instances", data="definition_key=two_step", headers=people["desk"],
                             content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415
    assert wrong_type.json["error"]["code"] == "unsupported_media_type"
    malformed = client.post("/api/v1/instances", data="{not json", content_type="application/json",
                            headers=people["desk"])
    assert malformed.status_code == 400
    assert set(malformed.json["error"]) >= {"code", "message"}


def test_unknown_path_and_method_are_json(client, people):
    missing = client.get("/api/v1/nothing-here", headers=people["desk"])
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    wrong = client.delete("/api/v1/tasks", headers=people["desk"])
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"


def test_unexpected_errors_hide_the_trace(app, client):
    def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom", "boom", boom)
    response = client.get("/boom")
    assert response.status_code == 500
    assert response.json == {"error": {"code": "internal_error", "message": "something went wrong on our side"}}


def test_too_large_body(app, client, people):
    app.config["MAX_CONTENT_LENGTH"] = 100
    response = client.post("/api/v1/definitions", data=TWO_STEP, content_type="application/xml",
                           headers=people["owner"])
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"
