"""Timers under a real `complaintflow serve` process on SQLite, with the real clock."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from engine.service import Actor, Engine
from storage.db import Database
from storage.models import AuditEvent
from tests.conftest import FIXTURES, ROOT
from tests.system.test_serve import free_port, wait_for_health


def deploy_with_cli(url: str, cwd) -> None:
    done = subprocess.run([sys.executable, "-m", "api.cli", "deploy", "--db", url, str(FIXTURES / "timer_2s.bpmn")],
                          cwd=cwd, capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 0, done.stderr


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_serve(url: str, cwd) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--db", url],
                               cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    return process, port


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


def wait_for_fired(db: Database, instance_id: int, timeout: float = 10) -> AuditEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.unit_of_work(write=False) as uow:
            found = uow.session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id,
                                                                 AuditEvent.type == "timer_fired")).first()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"the timer of case {instance_id} did not fire within {timeout} s")


def test_a_timer_due_in_two_seconds_fires_within_one_second_of_its_due_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    deploy_with_cli(url, tmp_path)
    process, port = start_serve(url, tmp_path)
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}/api/v1/health", process)
        assert health["scheduler"] == "running"
        db = Database(url)
        # Started by another process (this test) on the same file: serve learns of it on its safety tick.
        case = Engine(db).start_case("timer_2s", {}, Actor("tester")).instance_id
        event = wait_for_fired(db, case)
        due, fired = (datetime.fromisoformat(event.data[k]) for k in ("due_at", "fired_at"))
        assert timedelta(0) <= fired - due <= timedelta(seconds=1), (due, fired)
        db.dispose()
    finally:
        stop(process)


def test_a_timer_that_fell_due_while_serve_was_stopped_fires_on_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    deploy_with_cli(url, tmp_path)
    db = Database(url)
    case = Engine(db).start_case("timer_2s", {}, Actor("tester")).instance_id
    time.sleep(2.5)  # past due with nothing running
    process, port = start_serve(url, tmp_path)
    try:
        wait_for_health(f"http://127.0.0.1:{port}/api/v1/health", process)
        answered = datetime.now(timezone.utc)
        event = wait_for_fired(db, case, timeout=5)
        due, fired = (datetime.fromisoformat(event.data[k]) for k in ("due_at", "fired_at"))
        assert fired - due >= timedelta(seconds=0.5)  # it really was missed: due 2 s in, serve started at 2.5 s
        assert fired <= answered + timedelta(seconds=3)  # caught up as the service came up (slack for a busy CI)
        assert event.at == due + timedelta(milliseconds=1)  # the case moved at its due time
    finally:
        stop(process)
        db.dispose()
