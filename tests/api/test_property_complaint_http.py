"""One property complaint from start to archive through HTTP only, as five people.

投诉WI 4.2: the front desk registers and dispatches, engineering handles, the
department head reviews, customer service visits on site with a signed receipt
(uploaded as an attachment), the cs supervisor archives. Each person's inbox is
checked before and after their step.
"""
from __future__ import annotations

import io

import pytest

from tests.conftest import BPMN_DIR

FIRST_REPORT = "2026-11-23T09:00:00+08:00"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PEOPLE = {  # username: group
    "wang.fang": "front_desk", "li.qiang": "engineering", "zhao.min": "dept_head",
    "liu.yang": "customer_service", "chen.jing": "cs_supervisor",
}


@pytest.fixture
def cast(auth, client):
    headers = {name: auth.headers(name, "staff", groups=(group,)) for name, group in PEOPLE.items()}
    headers["owner"] = auth.headers("owner", "process_owner")
    auth.create("zhang.wei", "staff", groups=("security",))  # the first receiver, named on the forms
    deployed = client.post("/api/v1/definitions", data=(BPMN_DIR / "property_complaint.bpmn").read_bytes(),
                           content_type="application/xml", headers=headers["owner"])
    assert deployed.status_code == 201, deployed.json
    return headers


def inbox(client, headers) -> list[str]:
    response = client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 200, response.json
    return [task["element_id"] for task in response.json["items"]]


def inboxes(client, cast) -> dict[str, list[str]]:
    return {name: inbox(client, cast[name]) for name in PEOPLE}


def complete(client, headers, element_id: str, data: dict) -> dict:
    [task] = [t for t in client.get("/api/v1/tasks", headers=headers).json["items"] if t["element_id"] == element_id]
    detail = client.get(f"/api/v1/tasks/{task['id']}", headers=headers)
    assert detail.status_code == 200 and detail.json["form"]["fields"], detail.json
    response = client.post(f"/api/v1/tasks/{task['id']}/complete", json={"data": data},
                           headers={**headers, "If-Match": task["etag"]})
    assert response.status_code == 200, response.json
    return response.json


def only(**expected: list[str]) -> dict[str, list[str]]:
    return {name: expected.get(name.split(".")[0], []) for name in PEOPLE}


def test_a_property_complaint_from_first_report_to_archive_over_http(client, cast):
    wang, li, zhao, liu, chen = (cast[n] for n in PEOPLE)
    assert inboxes(client, cast) == only()

    started = client.post("/api/v1/instances", headers=wang, json={"definition_key": "property_complaint", "data": {
        "first_receiver": "zhang.wei", "first_report_at": FIRST_REPORT, "complaint_channel": "phone",
        "complaint_content": "3栋电梯停在8楼不动, 业主被困10分钟"}})
    assert started.status_code == 201, started.json
    case_id = started.json["id"]
    assert inboxes(client, cast) == only(wang=["register_complaint"])

    complete(client, wang, "register_complaint", {
        "complainant": "李先生", "unit_room": "3-1201", "complainant_phone": "138 0000 0000",
        "first_report_at": FIRST_REPORT, "complaint_channel": "phone",
        "complaint_content": "3栋电梯停在8楼不动, 业主被困10分钟", "first_receiver": "zhang.wei",
        "complaint_class": "class1", "complaint_validity": "valid", "is_major_complaint": False,
        "is_important_owner": False, "apology_made": True, "can_solve_on_spot": False})
    assert inboxes(client, cast) == only(wang=["dispatch_work_order"])

    after_dispatch = complete(client, wang, "dispatch_work_order", {
        "dispatch_department": "engineering", "work_order_content": "检修3栋电梯并回复业主",
        "complainant_reassured": True})
    assert [t["group"] for t in after_dispatch["next_tasks"]] == ["engineering"]
    assert inboxes(client, cast) == only(li=["handle_complaint"])

    complete(client, li, "handle_complaint", {"handling_action": "更换电梯门机板", "handling_result": "电梯恢复运行",
                                              "handle_outcome": "resolved"})
    assert inboxes(client, cast) == only(zhao=["review_handling_result"])

    complete(client, zhao, "review_handling_result", {"head_review_result": "approved",
                                                      "head_review_opinion": "处理到位"})
    assert inboxes(client, cast) == only(wang=["return_visit_phone"])

    complete(client, wang, "return_visit_phone", {"return_visit_at": FIRST_REPORT,
                                                  "customer_satisfaction": "satisfied", "onsite_visit_needed": True})
    assert inboxes(client, cast) == only(liu=["visit_onsite"])

    receipt = client.post(f"/api/v1/instances/{case_id}/attachments", headers=liu, content_type="multipart/form-data",
                          data={"file": (io.BytesIO(PNG), "回执.png")})
    assert receipt.status_code == 201, receipt.json
    complete(client, liu, "visit_onsite", {"onsite_visit_at": "2026-11-23T15:00:00+08:00",
                                           "customer_satisfaction": "satisfied", "customer_opinion": "电梯已正常",
                                           "visit_receipt": receipt.json["items"][0]["id"]})
    assert inboxes(client, cast) == only(chen=["review_and_archive"])

    done = complete(client, chen, "review_and_archive", {"supervisor_review_opinion": "记录完整, 同意归档",
                                                         "archived": True})
    assert done["instance"]["status"] == "completed" and done["next_tasks"] == []
    assert inboxes(client, cast) == only()

    history = client.get(f"/api/v1/instances/{case_id}/history", headers=chen).json["items"]
    completed_by = [(e["element_id"], e["actor"]) for e in history if e["type"] == "task_completed"]
    assert completed_by == [
        ("register_complaint", "wang.fang"), ("dispatch_work_order", "wang.fang"),
        ("handle_complaint", "li.qiang"), ("review_handling_result", "zhao.min"),
        ("return_visit_phone", "wang.fang"), ("visit_onsite", "liu.yang"), ("review_and_archive", "chen.jing")]
    assert "attachment_added" in [e["type"] for e in history]
