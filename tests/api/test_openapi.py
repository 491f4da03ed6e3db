"""The OpenAPI document: it names every route, and the live app keeps to it (schemathesis)."""
from __future__ import annotations

import io
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api import create_app, engine_of
from api.openapi import DOCUMENT
from engine.users import save_user
from tests.conftest import FIXTURES

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        routes |= {(method.lower(), path) for method in rule.methods & METHODS}
    return routes


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in DOCUMENT["paths"].items() for method in item}


def _normalise(routes):
    # Path parameter names may differ between Flask (instance_id) and the document (id).
    return {(method, re.sub(r"\{[a-z_]+\}", "{}", path)) for method, path in routes}


def test_every_route_is_documented(app):
    assert _normalise(_routes(app)) - _normalise(_documented()) == set()


def test_every_documented_operation_exists(app):
    # /admin/clock is registered by the fake-clock feature; everything else must be a route.
    assert _normalise(_documented()) - _normalise(_routes(app)) <= {("post", "/admin/clock")}


def test_document_is_served_and_declares_bearer_auth(client, people):
    response = client.get("/api/v1/openapi.json", headers=people["desk"])
    assert response.status_code == 200 and response.json["openapi"].startswith("3.")
    assert response.json["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert response.json["paths"]["/health"]["get"]["security"] == []
    assert client.get("/api/v1/openapi.json").status_code == 401


def test_document_is_valid_openapi():
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    assert len([result.ok() for result in schema.get_all_operations()]) == sum(
        len(item) for item in DOCUMENT["paths"].values())


@pytest.fixture
def fuzz_app(tmp_path, clock):
    """An app on SQLite with an admin, a deployed definition, a case with an attachment."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'fuzz.db'}", "TESTING": True,
                      "ATTACHMENT_DIR": str(tmp_path / "files")}, clock=clock)
    engine = engine_of(app)
    with engine.db.unit_of_work() as uow:
        save_user(uow.session, "fuzzadmin", "fuzz-pass-1", ["admin"], ["front_desk"], None, engine.clock.now())
        uow.commit()
    client = app.test_client()
    token = client.post("/api/v1/auth/login", json={"username": "fuzzadmin", "password": "fuzz-pass-1"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/definitions", data=(FIXTURES / "two_step.bpmn").read_bytes(),
                       content_type="application/xml", headers=headers).status_code == 201
    case = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": "t"}},
                       headers=headers).json
    client.post(f"/api/v1/instances/{case['id']}/attachments", content_type="multipart/form-data",
                data={"file": [(io.BytesIO(b"%PDF-1.4\n"), "a.pdf")]}, headers=headers)
    yield app, headers
    engine.db.dispose()


@pytest.mark.slow
def test_fuzz_the_live_app(fuzz_app):
    """Schema-valid requests to every operation: no 500, and every response keeps to its schema."""
    app, headers = fuzz_app
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.app = app
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/auth/logout":
            continue  # it would sign the fuzzing admin out of every later call

        @settings(max_examples=20, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(base_url="http://localhost/api/v1", headers=headers,
                                   checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except Exception as error:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)
