"""Races on PostgreSQL: four server processes, clients that complete the same tasks at the same moment."""
from __future__ import annotations

import threading
from collections import Counter

import pytest
import requests
from sqlalchemy import select

from storage.models import HumanTask, Instance
from tests.reliability.helpers import CLERKS, FROZEN, Server, check_whole, dump, login, prepare, start_cases

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def test_four_servers_each_task_completed_once_the_rest_409_never_500(pg_server, tmp_path):
    from tests.conftest import _new_pg_database

    db = _new_pg_database(pg_server)
    url = db.url.render_as_string(hide_password=False)
    db.dispose()
    engine = prepare(url, "two_step.bpmn")
    tasks = start_cases(engine, 16)
    servers = [Server(url, tmp_path / f"serve{n}.log", args=FROZEN).start() for n in range(4)]
    try:
        headers = {name: login(servers[0].base, name) for name, _r, _g in CLERKS}
        answers: dict[int, list[tuple[int, str]]] = {task_id: [] for task_id in tasks}
        # Each task: four clients (one per server) fire at once; two send the etag, two do not.
        sessions = [requests.Session() for _ in range(4)]

        def attempt(task_id: int, n: int, barrier: threading.Barrier) -> None:
            extra = {"If-Match": f'"{task_id}.1"'} if n % 2 else {}
            barrier.wait()
            response = sessions[n].post(f"{servers[n].base}/api/v1/tasks/{task_id}/complete",
                                        json={"data": {"decision": "reject"}},
                                        headers={**headers[f"clerk{n}"], **extra}, timeout=30)
            answers[task_id].append((response.status_code, dump(response)))

        for task_id in tasks:
            barrier = threading.Barrier(4)
            threads = [threading.Thread(target=attempt, args=(task_id, n, barrier)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        statuses = {task_id: Counter(code for code, _body in got) for task_id, got in answers.items()}
        bad = {t: got for t, got in answers.items() if statuses[t] != Counter({200: 1, 409: 3})}
        assert bad == {}, bad
        with engine.read() as uow:
            states = Counter(uow.session.scalars(select(Instance.status).where(Instance.definition_key == "two_step")))
            assert uow.session.scalar(select(Instance.id).where(Instance.status == "error")) is None
            assert states == Counter({"running": len(tasks)}), states  # rejected: back to review
            done = list(uow.session.scalars(select(HumanTask).where(HumanTask.id.in_(tasks))))
            assert all(t.status == "completed" for t in done)
            instance_ids = [t.instance_id for t in done]
        check_whole(engine, instance_ids)
    finally:
        for server in servers:
            server.stop()
        engine.db.dispose()
