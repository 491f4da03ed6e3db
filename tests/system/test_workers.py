"""`complaintflow serve --workers N`: several real processes on one port, under a supervisor."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from api.workers import Supervisor
from bench.path import KEY, START, STEPS, USERS
from bench.server import Server, add_users, login
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux's")


@pytest.fixture
def pg_url(pg_server) -> str:
    from tests.conftest import _new_pg_database

    db = _new_pg_database(pg_server)
    url = db.url.render_as_string(hide_password=False)
    db.dispose()
    add_users(url, [(name, ("staff",), (group,)) for name, group in USERS])
    return url


@pytest.fixture
def two_workers(pg_url, tmp_path):
    server = Server(pg_url, tmp_path / "serve.log", args=("--workers", "2")).start()
    yield server
    server.stop()


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def answering_workers(base: str, want: set[int], timeout: float = 20) -> set[int]:
    """The workers that answer health checks, each on a new connection, until all of `want` did (or timeout)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while not want <= seen and time.monotonic() < deadline:
        try:
            response = requests.get(f"{base}/api/v1/health", timeout=5)
        except requests.ConnectionError:
            time.sleep(0.05)
            continue
        assert response.status_code == 200, response.text
        seen.add(int(response.headers["X-Complaintflow-Worker"]))
    return seen


def work_a_case(base: str, headers: dict[str, dict[str, str]]) -> tuple[str, set[int]]:
    """Start a property complaint and complete its six tasks, each call on a new connection; (status, workers)."""
    workers = set()

    def post(path: str, user: str, body: dict, etag: str | None = None) -> dict:
        extra = {"If-Match": f'"{etag}"'} if etag else {}
        response = requests.post(f"{base}{path}", json=body, headers={**headers[user], **extra}, timeout=30)
        assert response.status_code in (200, 201), (path, response.status_code, response.text[:500])
        workers.add(int(response.headers["X-Complaintflow-Worker"]))
        return response.json()

    instance = post("/api/v1/instances", "zhang.wei", {"definition_key": KEY, "data": START})
    task = next(t for t in instance["open_tasks"] if t["element_id"] == STEPS[0][0])
    for index, (_element, group, data) in enumerate(STEPS):
        body = post(f"/api/v1/tasks/{task['id']}/complete", f"{group}_1", {"data": data}, etag=task["etag"])
        if index + 1 < len(STEPS):
            task = next(t for t in body["next_tasks"] if t["element_id"] == STEPS[index + 1][0])
    return body["instance"]["status"], workers


@pytest.mark.postgres
def test_two_workers_share_the_port_work_cases_together_and_stop_with_the_supervisor(two_workers):
    supervisor = two_workers.process
    workers = children(supervisor.pid)
    assert len(workers) == 2
    assert answering_workers(two_workers.base, workers) == workers

    headers = {name: login(two_workers.base, name) for name, _group in USERS}
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: work_a_case(two_workers.base, headers), range(4)))
    assert [status for status, _ in outcomes] == ["completed"] * 4
    # Cases hopped between processes mid-way, each seeing the other's commits.
    assert set().union(*(seen for _, seen in outcomes)) == workers

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=15) == 0
    assert not any(alive(pid) for pid in workers)


@pytest.mark.postgres
def test_a_worker_killed_with_sigkill_is_restarted_and_the_service_keeps_answering(two_workers):
    supervisor = two_workers.process
    killed, survivor = sorted(children(supervisor.pid))
    os.kill(killed, signal.SIGKILL)
    # The survivor answers at once; the replacement within its start-up time.
    assert survivor in answering_workers(two_workers.base, {survivor}, timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(children(supervisor.pid) - {killed}) < 2:
        time.sleep(0.1)
    replacement = children(supervisor.pid) - {killed, survivor}
    assert len(replacement) == 1
    assert answering_workers(two_workers.base, replacement | {survivor}) == replacement | {survivor}
    assert "restarting it" in two_workers.log_path.read_text()


def test_a_busy_port_stops_the_start_at_once_with_a_clear_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--workers", "2", "--port", str(port),
                               "--db", f"sqlite:///{tmp_path / 'serve.db'}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_the_supervisor_gives_up_on_a_worker_that_keeps_failing_to_start():
    said: list[str] = []
    supervisor = Supervisor([sys.executable, "-c", "raise SystemExit(3)"], 2, say=said.append,
                            first_backoff=0.01, max_failed_starts=3)
    began = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - began < 10
    assert "exited with code 3" in said[0] and "restarting it" in said[0]
    assert "3 times in a row; stopping" in said[-1]


def test_workers_defaults_to_one_and_refuses_zero():
    from api.cli import build_parser

    assert build_parser().parse_args(["serve"]).workers == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
