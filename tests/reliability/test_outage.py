"""Database outage: PostgreSQL stops mid-run; requests get 503, timers wait, and after it comes back
the service carries on with nothing lost."""
from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import select

from storage.models import HumanTask, Instance, Timer
from tests.reliability.helpers import PausablePg, Server, check_whole, dump, login, prepare, start_cases

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


@pytest.fixture
def pg():
    server = PausablePg().start()
    yield server
    server.stop()


def test_postgres_outage_gives_503_timers_wait_and_nothing_is_lost(pg, tmp_path):
    url = pg.new_database("outage")
    engine = prepare(url, "two_step.bpmn", "timer_2s.bpmn", frozen=False)  # the timer needs the real clock
    tasks = start_cases(engine, 6)
    server = Server(url, tmp_path / "serve.log").start()
    try:
        headers = login(server.base, "clerk0")
        http = requests.Session()

        def complete(task_id: int) -> requests.Response:
            return http.post(f"{server.base}/api/v1/tasks/{task_id}/complete",
                             json={"data": {"decision": "reject"}}, headers=headers, timeout=30)

        assert complete(tasks[0]).status_code == 200
        # A case whose timer falls due while the database is down.
        from engine.service import SYSTEM

        timer_case = engine.start_case("timer_2s", {}, SYSTEM).instance_id
        engine.db.dispose()
        pg.pause()
        try:
            began = time.monotonic()
            response = complete(tasks[1])
            assert response.status_code == 503, (response.status_code, dump(response))
            assert time.monotonic() - began < 15, "a request waited too long for the database"
            health = http.get(f"{server.base}/api/v1/health", timeout=30)
            assert health.status_code == 503 and health.json()["status"] == "database_unavailable"
            time.sleep(3)  # the 2 s timer falls due while the database is down
            assert server.process.poll() is None, "the server died with its database"
        finally:
            pg.resume()
        # Back: the task refused during the outage completes now, the timer fires, nothing is lost.
        deadline = time.monotonic() + 20
        while True:
            response = complete(tasks[1])
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 200, dump(response)
        for task_id in tasks[2:]:
            assert complete(task_id).status_code == 200
        while time.monotonic() < deadline:
            with engine.read() as uow:
                if uow.session.get(Instance, timer_case).status == "completed":
                    break
            time.sleep(0.2)
        with engine.read() as uow:
            s = uow.session
            assert s.get(Instance, timer_case).status == "completed", s.get(Instance, timer_case).error
            assert [t.status for t in s.scalars(select(Timer).where(Timer.instance_id == timer_case))] == ["fired"]
            done = list(s.scalars(select(HumanTask).where(HumanTask.id.in_(tasks))))
            assert {t.status for t in done} == {"completed"}
            instance_ids = [t.instance_id for t in done]
        # Real clock: replay drifts by milliseconds (test_replay_clock.py), so no replay check here.
        check_whole(engine, instance_ids, replays=False)
    finally:
        server.stop()
        engine.db.dispose()


def test_outage_answers_503_with_a_clear_error(pg, tmp_path):
    url = pg.new_database("outage503")
    engine = prepare(url, "two_step.bpmn")
    tasks = start_cases(engine, 1)
    engine.db.dispose()
    server = Server(url, tmp_path / "serve.log").start()
    try:
        headers = login(server.base, "clerk0")
        pg.pause()
        try:
            answers = [requests.post(f"{server.base}/api/v1/tasks/{tasks[0]}/complete",
                                     json={"data": {"decision": "reject"}}, headers=headers, timeout=30),
                       requests.get(f"{server.base}/api/v1/tasks", headers=headers, timeout=30),
                       requests.post(f"{server.base}/api/v1/auth/login",
                                     json={"username": "clerk0", "password": "x"}, timeout=30)]
        finally:
            pg.resume()
        got = [(r.status_code, dump(r)) for r in answers]
        assert all(r.status_code == 503 and r.json()["error"]["code"] == "unavailable" for r in answers), got
    finally:
        server.stop()
