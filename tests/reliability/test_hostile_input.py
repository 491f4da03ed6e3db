"""Hostile input: oversized bodies, deep JSON, invalid UTF-8, XML bombs and XXE in deployed BPMN,
scripts trying to escape — each gets a clear 4xx and changes nothing."""
from __future__ import annotations

import pytest

from api import create_app, engine_of
from engine.users import save_user
from storage.models import AuditEvent, Definition, HumanTask, Instance
from tests.conftest import FIXTURES
from tests.reliability.helpers import count_rows

PASSWORD = "correct horse battery"
MODELS = (Definition, Instance, HumanTask, AuditEvent)


@pytest.fixture
def app(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'hostile.db'}", "TESTING": True,
                      "ATTACHMENT_DIR": str(tmp_path / "attachments")})
    engine = engine_of(app)
    with engine.db.unit_of_work() as uow:
        save_user(uow.session, "owner", PASSWORD, ["process_owner"], [], None, engine.clock.now())
        save_user(uow.session, "desk", PASSWORD, ["staff"], ["front_desk"], None, engine.clock.now())
        uow.commit()
    yield app
    engine.db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def token(client, username):
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['token']}"}


@pytest.fixture
def setup(app, client):
    owner, desk = token(client, "owner"), token(client, "desk")
    response = client.post("/api/v1/definitions", data=(FIXTURES / "two_step.bpmn").read_bytes(),
                           content_type="application/xml", headers=owner)
    assert response.status_code == 201, response.json
    started = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": "x"}},
                          headers=desk)
    assert started.status_code == 201, started.json
    return {"owner": owner, "desk": desk, "task": started.json["open_tasks"][0]["id"], "engine": engine_of(app)}


def refused(response, *statuses):
    assert response.status_code in statuses, (response.status_code, response.get_data()[:300])
    body = response.get_json(silent=True)
    assert body and body["error"]["code"] and body["error"]["message"], response.get_data()[:300]
    return body["error"]


def test_oversized_body_is_413(client, setup):
    before = count_rows(setup["engine"], *MODELS)
    big = b'{"definition_key": "two_step", "data": {"title": "' + b"x" * (26 * 1024 * 1024) + b'"}}'
    error = refused(client.post("/api/v1/instances", data=big, content_type="application/json",
                                headers=setup["desk"]), 413)
    assert "too large" in error["message"]
    assert count_rows(setup["engine"], *MODELS) == before


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"data": ' * 50_000 + b"1" + b"}" * 50_000])
def test_deeply_nested_json_is_400(client, setup, body):
    before = count_rows(setup["engine"], *MODELS)
    for path in ("/api/v1/instances", f"/api/v1/tasks/{setup['task']}/complete"):
        refused(client.post(path, data=body, content_type="application/json", headers=setup["desk"]), 400)
    assert count_rows(setup["engine"], *MODELS) == before


def test_invalid_utf8_is_400(client, setup):
    before = count_rows(setup["engine"], *MODELS)
    body = b'{"definition_key": "two_step", "data": {"title": "\xff\xfe\xc3\x28"}}'
    refused(client.post("/api/v1/instances", data=body, content_type="application/json",
                        headers=setup["desk"]), 400)
    refused(client.post(f"/api/v1/tasks/{setup['task']}/complete", data=b'{"data": {"decision": "\xc3\x28"}}',
                        content_type="application/json", headers=setup["desk"]), 400)
    refused(client.post("/api/v1/definitions", data=b'<?xml version="1.0" encoding="UTF-8"?><a>\xff\xfe</a>',
                        content_type="application/xml", headers=setup["owner"]), 400)
    assert count_rows(setup["engine"], *MODELS) == before


def test_lone_surrogate_escapes_are_400(client, setup):
    """`\\ud800` is valid JSON but no text: it cannot be stored or hashed, so it is refused up front."""
    before = count_rows(setup["engine"], *MODELS)
    error = refused(client.post("/api/v1/instances", data=b'{"definition_key": "two_step", "data": {"title": "a\\ud800"}}',
                                content_type="application/json", headers=setup["desk"]), 400)
    assert "text" in error["message"] or "surrogate" in error["message"], error
    refused(client.post(f"/api/v1/tasks/{setup['task']}/complete", data=b'{"data": {"\\udfff": "approve"}}',
                        content_type="application/json", headers=setup["desk"]), 400)
    assert count_rows(setup["engine"], *MODELS) == before


TWO_STEP = (FIXTURES / "two_step.bpmn").read_text(encoding="utf-8")
BILLION_LAUGHS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>""" + TWO_STEP.split("?>", 1)[1].replace('name="两步测试"', 'name="&lol9;"').replace("two_step", "bomb")
XXE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>""" + \
    TWO_STEP.split("?>", 1)[1].replace('name="两步测试"', 'name="&xxe;"').replace("two_step", "xxe")
XXE_PARAMETER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE d [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>""" + \
    TWO_STEP.split("?>", 1)[1].replace("two_step", "xxe2")


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE, XXE_PARAMETER], ids=["billion-laughs", "xxe", "xxe-param"])
def test_xml_bombs_and_external_entities_are_refused(client, setup, xml):
    before = count_rows(setup["engine"], *MODELS)
    error = refused(client.post("/api/v1/definitions", data=xml.encode("utf-8"), content_type="application/xml",
                                headers=setup["owner"]), 400)
    assert "root:x" not in str(error) and "lollol" not in str(error)
    assert count_rows(setup["engine"], *MODELS) == before


SCRIPTED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="https://complaintflow.local/test">
  <bpmn:process id="escape" name="escape" isExecutable="true" camunda:candidateStarterGroups="front_desk">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="script"/>
    <bpmn:scriptTask id="script" name="s"><bpmn:script>SCRIPT</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="script" targetRef="review"/>
    <bpmn:userTask id="review" name="r" camunda:candidateGroups="front_desk"/>
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>"""
ESCAPES = ["import os\nos.system('touch /tmp/cf-escaped')",
           "x = ().__class__.__bases__[0].__subclasses__()",
           "x = open('/etc/passwd').read()",
           "x = getattr(getattr((), '__cl' + 'ass__'), '__ba' + 'ses__')",
           "x = eval('1 + 1')",
           "x = [c for c in (1).__class__.__mro__]"]


@pytest.mark.parametrize("script", ESCAPES)
def test_scripts_trying_to_escape_are_refused(client, setup, script):
    from xml.sax.saxutils import escape

    engine = setup["engine"]
    before = count_rows(engine, *MODELS)
    xml = SCRIPTED.replace("SCRIPT", escape(script))
    response = client.post("/api/v1/definitions", data=xml.encode("utf-8"), content_type="application/xml",
                           headers=setup["owner"])
    if response.status_code == 201:
        # Deployed: running it must fail cleanly and leave no case behind.
        deployed = count_rows(engine, *MODELS)
        refused(client.post("/api/v1/instances", json={"definition_key": "escape", "data": {}},
                            headers=setup["desk"]), 400, 422)
        assert count_rows(engine, *MODELS) == deployed
    else:
        refused(response, 400)
        assert count_rows(engine, *MODELS) == before
    import os

    assert not os.path.exists("/tmp/cf-escaped")
