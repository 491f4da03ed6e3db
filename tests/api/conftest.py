"""Fixtures for the HTTP API: the app on the test database, a client, signed-in users."""
from __future__ import annotations

import pytest

from api import create_app, engine_of
from engine.users import save_user
from tests.conftest import FIXTURES

PASSWORD = "correct horse battery"


@pytest.fixture
def app(db, clock, tmp_path):
    app = create_app({"DATABASE_URL": db.url.render_as_string(hide_password=False), "TESTING": True,
                      "ATTACHMENT_DIR": str(tmp_path / "attachments")}, clock=clock)
    yield app
    engine_of(app).db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class AuthActions:
    """Create users and sign them in; `headers(name)` gives their Authorization header."""

    def __init__(self, app, client) -> None:
        self.app, self.client = app, client
        self.tokens: dict[str, str] = {}

    def create(self, username: str, *roles: str, groups: tuple[str, ...] = ()) -> None:
        engine = engine_of(self.app)
        with engine.db.unit_of_work() as uow:
            save_user(uow.session, username, PASSWORD, roles or ("staff",), groups, None, engine.clock.now())
            uow.commit()

    def login(self, username: str, password: str = PASSWORD):
        return self.client.post("/api/v1/auth/login", json={"username": username, "password": password})

    def headers(self, username: str, *roles: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
        """Create (once) and sign in the user; return the bearer header."""
        if username not in self.tokens:
            self.create(username, *roles, groups=groups)
            response = self.login(username)
            assert response.status_code == 200, response.json
            self.tokens[username] = response.json["token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}


@pytest.fixture
def auth(app, client) -> AuthActions:
    return AuthActions(app, client)


@pytest.fixture
def people(auth):
    """The usual cast: one user per role, staff in front_desk and cs_supervisor."""
    return {
        "desk": auth.headers("desk", "staff", groups=("front_desk",)),
        "desk2": auth.headers("desk2", "staff", groups=("front_desk",)),
        "super": auth.headers("super", "staff", groups=("cs_supervisor",)),
        "owner": auth.headers("owner", "process_owner"),
        "auditor": auth.headers("auditor", "auditor"),
        "admin": auth.headers("admin", "admin"),
    }


@pytest.fixture
def two_step(client, people):
    response = client.post("/api/v1/definitions", data=(FIXTURES / "two_step.bpmn").read_bytes(),
                           content_type="application/xml", headers=people["owner"])
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def case(client, people, two_step):
    """A started two_step case; returns (instance, review task summary)."""
    response = client.post("/api/v1/instances", json={"definition_key": "two_step", "data": {"title": "漏水"}},
                           headers=people["desk"])
    assert response.status_code == 201, response.json
    return response.json, response.json["open_tasks"][0]
