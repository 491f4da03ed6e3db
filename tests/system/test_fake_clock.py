"""`serve --fake-clock`: an admin moves the service's clock and due timers fire."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from api.cli import main
from tests.conftest import FIXTURES
from tests.system.test_serve import free_port, wait_for_health


def call(base: str, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, method=method, data=None if body is None else
                                     json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture
def served(tmp_path, request):
    url = f"sqlite:///{tmp_path / 'clock.db'}"
    assert main(["users", "add", "root", "--password", "root-pass-1", "--role", "admin", "--db", url]) == 0
    assert main(["users", "add", "fiona", "--password", "fiona-pass-1", "--role", "staff", "--group", "front_desk",
                 "--db", url]) == 0
    assert main(["deploy", str(FIXTURES / "two_step.bpmn"), "--db", url]) == 0
    port = free_port()
    flags = ["--fake-clock"] if request.param else []
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--db", url, *flags],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(f"{base}/api/v1/health", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def login(base: str, username: str, password: str) -> str:
    status, body = call(base, "POST", "/api/v1/auth/login", {"username": username, "password": password})
    assert status == 200, body
    return body["token"]


@pytest.mark.parametrize("served", [True], indirect=True)
def test_admin_moves_the_clock_and_the_escalation_fires(served):
    admin, staff = login(served, "root", "root-pass-1"), login(served, "fiona", "fiona-pass-1")
    status, case = call(served, "POST", "/api/v1/instances", {"definition_key": "two_step", "data": {"title": "漏水"}},
                        staff)
    assert status == 201, case
    assert call(served, "POST", "/api/v1/admin/clock", {"advance": "PT2H"}, staff)[0] == 403
    status, moved = call(served, "POST", "/api/v1/admin/clock", {"advance": "PT2H"}, admin)
    assert status == 200 and moved["fired"] == 1, moved
    status, history = call(served, "GET", f"/api/v1/instances/{case['id']}/history", token=admin)
    types = [e["type"] for e in history["items"]]
    assert "timer_fired" in types and "escalated" in types
    status, summary = call(served, "GET", f"/api/v1/instances/{case['id']}", token=admin)
    assert [b["element_id"] for b in summary["breached_deadlines"]] == ["review_late"]
    status, bad = call(served, "POST", "/api/v1/admin/clock", {"advance": "tomorrow"}, admin)
    assert status == 400 and bad["error"]["code"] == "validation_error"


@pytest.mark.parametrize("served", [False], indirect=True)
def test_the_clock_endpoint_is_absent_without_the_flag(served):
    admin = login(served, "root", "root-pass-1")
    status, body = call(served, "POST", "/api/v1/admin/clock", {"advance": "PT1H"}, admin)
    assert status == 404 and body["error"]["code"] == "not_found"
