"""Helpers for the fault tests: real `serve` processes, a PostgreSQL that can be stopped and started
again, and the checks that a database is whole after a fault."""
from __future__ import annotations

from sqlalchemy import func, select

from bench.common import create_database
from bench.server import PASSWORD, Server, add_users, dump, free_port, login  # noqa: F401 - re-exported
from engine.audit import verify_database
from engine.replay import replay
from engine.service import Actor, Engine
from storage.db import Database
from storage.models import AuditEvent, HumanTask, Instance
from tests.conftest import FIXTURES
from tests.pgserver import PgServer, _bin

OWNER = Actor("owner", frozenset({"process_owner"}))
CLERKS = [(f"clerk{n}", ("staff",), ("front_desk",)) for n in range(8)]


class PausablePg(PgServer):
    """A PgServer of its own that can be stopped and started again on the same data and socket."""

    def start(self) -> PausablePg:
        super().start()
        self._options = (f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync=off "
                         "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        return self

    def pause(self) -> None:
        """Stop the server (fast shutdown: connections are cut), keeping its data."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", self._options, "-w", "-l", str(self.base / "log"),
                  "start")

    def new_database(self, name: str) -> str:
        return create_database(self, name)


# The known replay drift on the real clock (see test_replay_clock.py) would fail every replay
# check, so the crash and race tests run `serve --fake-clock` (frozen) and a frozen clock here.
FROZEN = ("--fake-clock",)


def prepare(url: str, *fixtures: str, users=CLERKS, frozen: bool = True) -> Engine:
    """Schema, users and the fixture processes deployed; returns an engine on the database."""
    from engine.clock import FakeClock

    add_users(url, list(users))
    engine = Engine(Database(url, pool_size=2), FakeClock() if frozen else None)
    engine.deploy([(name, (FIXTURES / name).read_bytes()) for name in fixtures], OWNER)
    return engine


def start_cases(engine: Engine, count: int, by: str = "clerk0") -> list[int]:
    """Start two_step cases; return their open review task ids."""
    clerk = Actor(by, frozenset({"staff"}), frozenset({"front_desk"}))
    return [engine.start_case("two_step", {"title": f"case {n}"}, clerk).created_task_ids[0] for n in range(count)]


def check_whole(engine: Engine, instance_ids, replays: bool = True) -> None:
    """Audit chains verify; each case's state, task rows and events agree; replay matches."""
    with engine.read() as uow:
        s = uow.session
        report = verify_database(s)
        assert report.ok, report.first_broken
        for instance_id in instance_ids:
            instance = s.get(Instance, instance_id)
            assert instance.status in ("running", "completed"), (instance_id, instance.status, instance.error)
            tasks = list(s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)))
            events = list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)))
            created = {e.task_id for e in events if e.type == "task_created"}
            done = {e.task_id for e in events if e.type == "task_completed"}
            assert created == {t.id for t in tasks}, instance_id
            assert done == {t.id for t in tasks if t.status == "completed"}, instance_id
            open_tasks = [t for t in tasks if t.status == "open"]
            if instance.status == "completed":
                assert not open_tasks and any(e.type == "instance_completed" for e in events), instance_id
            else:
                assert [t.element_id for t in open_tasks] == ["review"], (instance_id, open_tasks)
    for instance_id in instance_ids if replays else ():
        result = replay(engine, instance_id)
        assert result.matches_stored, (instance_id, result.differences)


def count_rows(engine: Engine, *models) -> tuple[int, ...]:
    with engine.read() as uow:
        return tuple(uow.session.scalar(select(func.count()).select_from(m)) for m in models)
