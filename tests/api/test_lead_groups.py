"""Leads may assign the tasks of the groups they lead (api.auth.LEAD_GROUPS), and only those."""
from __future__ import annotations

import pytest

from api.auth import LAB_GROUPS, LEAD_GROUPS


def test_the_mapping_names_each_procedures_leads():
    assert set(LEAD_GROUPS) == {"cs_supervisor", "quality_manager", "division_leader", "quality_director",
                                "general_manager"}
    assert set(LEAD_GROUPS["quality_director"]) < set(LEAD_GROUPS["general_manager"]) == set(LAB_GROUPS)


@pytest.mark.parametrize("lead, status", [("cs_supervisor", 200), ("quality_manager", 403),
                                          ("division_leader", 403), ("front_desk", 403)])
def test_lead_of_the_tasks_group_may_assign(client, auth, people, case, lead, status):
    _instance, task = case  # a front_desk task
    headers = auth.headers(f"lead_{lead}", "staff", groups=(lead,))
    response = client.post(f"/api/v1/tasks/{task['id']}/assign", json={"username": "desk2"}, headers=headers)
    assert response.status_code == status, response.json
    if status == 200:
        assert response.json["assignee"] == "desk2"


def test_mapping_can_be_configured(app, client, auth, people, case):
    _instance, task = case
    app.config["LEAD_GROUPS"] = {"quality_manager": ("front_desk",)}
    url = f"/api/v1/tasks/{task['id']}/assign"
    assert client.post(url, json={"username": "desk2"}, headers=people["super"]).status_code == 403
    headers = auth.headers("qm", "staff", groups=("quality_manager",))
    assert client.post(url, json={"username": "desk2"}, headers=headers).status_code == 200


def test_lead_assigning_an_unknown_task_gets_404(client, people):
    assert client.post("/api/v1/tasks/999/assign", json={"username": "desk"}, headers=people["super"]).status_code \
        == 404
