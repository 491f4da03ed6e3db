"""Crash: eight clients complete tasks over HTTP; the server dies (SIGKILL) mid-run and is started again."""
from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.reliability.helpers import CLERKS, FROZEN, Server, check_whole, login, prepare, start_cases

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_completions_that_got_200_survive_a_sigkill_and_every_case_is_whole(database, tmp_path, request):
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        from tests.conftest import _new_pg_database

        db = _new_pg_database(request.getfixturevalue("pg_server"))
        url = db.url.render_as_string(hide_password=False)
        db.dispose()
    engine = prepare(url, "two_step.bpmn")
    tasks = start_cases(engine, 160)
    server = Server(url, tmp_path / "serve.log", args=FROZEN).start()
    headers = {name: login(server.base, name) for name, _r, _g in CLERKS}
    acknowledged: list[int] = []
    answered: list[int] = []
    stop = threading.Event()

    def client(number: int) -> None:
        http = requests.Session()
        for task_id in tasks[number::8]:
            if stop.is_set():
                return
            try:
                response = http.post(f"{server.base}/api/v1/tasks/{task_id}/complete",
                                     json={"data": {"decision": "reject"}}, headers=headers[f"clerk{number}"],
                                     timeout=10)
            except requests.RequestException:
                return  # the server is gone
            answered.append(response.status_code)
            if response.status_code == 200:
                acknowledged.append(task_id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    assert 30 <= len(acknowledged) < len(tasks), len(acknowledged)
    assert set(answered) == {200}, answered

    server = Server(url, tmp_path / "serve.log", port=server.port, args=FROZEN).start()
    try:
        instance_ids = check_after_restart(engine, tasks, acknowledged)
        # The service carries on: the rest of the tasks complete.
        headers = login(server.base, "clerk0")
        with engine.read() as uow:
            from sqlalchemy import select

            from storage.models import HumanTask

            left = list(uow.session.scalars(select(HumanTask.id).where(HumanTask.status == "open")))
        for task_id in left[:10]:
            response = requests.post(f"{server.base}/api/v1/tasks/{task_id}/complete",
                                     json={"data": {"decision": "reject"}}, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
        check_whole(engine, instance_ids)
    finally:
        server.stop()
        engine.db.dispose()


def check_after_restart(engine, tasks, acknowledged) -> list[int]:
    from sqlalchemy import select

    from storage.models import HumanTask

    with engine.read() as uow:
        rows = {t.id: t for t in uow.session.scalars(select(HumanTask).where(HumanTask.id.in_(tasks)))}
    missing = [task_id for task_id in acknowledged if rows[task_id].status != "completed"]
    assert missing == [], f"completions answered 200 but lost: {missing}"
    instance_ids = sorted({row.instance_id for row in rows.values()})
    check_whole(engine, instance_ids)
    return instance_ids
