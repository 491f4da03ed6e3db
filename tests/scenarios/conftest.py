"""Scenario harness: people working real cases of the project's BPMN files.

A scenario reads like the procedure: `case.complete("dispatch_work_order",
{...}, by=front_desk)`. Every case is checked at the end of the test: its audit
chain verifies and a replay from its events matches the stored case.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.audit import verify_database
from engine.replay import replay
from engine.clock import FakeClock
from engine.service import Actor, Engine, SpecCache
from storage.db import Database
from storage.models import AuditEvent, HumanTask, Instance, Timer
from tests.conftest import BPMN_DIR, OWNER

# The clock fixture's start (tests/conftest.py): the template's deployment and its
# waiting monthly case are made at that moment.
START = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


SPECS = SpecCache()


@pytest.fixture(scope="session")
def deployed_template(tmp_path_factory) -> Path:
    """An SQLite file with the project's BPMN deployed once; each scenario gets a copy."""
    path = tmp_path_factory.mktemp("scenario-template") / "template.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    engine = Engine(database, FakeClock(START), specs=SPECS)
    files = sorted(BPMN_DIR.glob("*.bpmn"))
    engine.deploy([(f.name, f.read_bytes()) for f in files], OWNER)
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


@pytest.fixture
def db(tmp_path, deployed_template) -> Database:
    """Scenarios run on SQLite; the engine's behaviour on PostgreSQL is covered by the integration tests."""
    shutil.copyfile(deployed_template, tmp_path / "scenario.db")
    database = Database(f"sqlite:///{tmp_path / 'scenario.db'}")
    database.upgrade()
    yield database
    database.dispose()


def person(group: str, number: int = 1, *, roles: tuple[str, ...] = ("staff",)) -> Actor:
    """A member of one group, named after it (`engineering_1`)."""
    return Actor(f"{group}_{number}", frozenset(roles), frozenset({group}))


class Case:
    def __init__(self, desk: Desk, instance_id: int) -> None:
        self.desk = desk
        self.id = instance_id

    def _rows(self, model, **where):
        with self.desk.db.unit_of_work(write=False) as uow:
            query = select(model).where(model.instance_id == self.id)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return list(uow.session.scalars(query.order_by(model.id)))

    @property
    def instance(self) -> Instance:
        with self.desk.db.unit_of_work(write=False) as uow:
            return uow.session.get(Instance, self.id)

    @property
    def status(self) -> str:
        return self.instance.status

    @property
    def data(self) -> dict[str, Any]:
        return self.instance.data

    def open_tasks(self) -> list[str]:
        """Element ids of the open tasks, in creation order."""
        return [t.element_id for t in self._rows(HumanTask, status="open")]

    def task(self, element_id: str) -> HumanTask:
        found = self._rows(HumanTask, status="open", element_id=element_id)
        assert found, f"no open task '{element_id}'; open: {self.open_tasks()}"
        assert len(found) == 1, f"{len(found)} open tasks '{element_id}'"
        return found[0]

    def complete(self, element_id: str, data: dict[str, Any], *, by: Actor) -> None:
        self.desk.engine.complete_task(self.task(element_id).id, data, by)

    def claim(self, element_id: str, *, by: Actor) -> None:
        self.desk.engine.claim_task(self.task(element_id).id, by)

    def waiting_timers(self) -> list[str]:
        return [t.element_id for t in self._rows(Timer, status="waiting")]

    def history(self) -> list[tuple[str, str, str | None]]:
        """(type, actor, element id) of every audit event, in order."""
        return [(e.type, e.actor, e.element_id) for e in
                sorted(self._rows(AuditEvent), key=lambda e: e.seq)]

    def work(self) -> list[tuple[str, str]]:
        """Who completed which task, in order: the case as the people did it."""
        return [(element, actor) for kind, actor, element in self.history() if kind == "task_completed"]

    def escalations(self) -> list[str]:
        return [element for kind, _actor, element in self.history() if kind == "escalated"]


@dataclass
class Desk:
    engine: Engine
    db: Database
    clock: Any

    def start(self, key: str, data: dict[str, Any], *, by: Actor) -> Case:
        case = Case(self, self.engine.start_case(key, data, by).instance_id)
        self.cases.append(case)
        return case

    def advance(self, **delta: float) -> int:
        """Move the clock and fire every timer that falls due, as the scheduler would."""
        self.clock.advance(timedelta(**delta))
        return self.engine.fire_due_timers()

    def __post_init__(self) -> None:
        self.cases: list[Case] = []


@pytest.fixture
def desk(db, clock) -> Desk:
    engine = Engine(db, clock, specs=SPECS)
    desk = Desk(engine, db, clock)
    yield desk
    # Every case a scenario ran must prove itself from its history.
    with db.unit_of_work(write=False) as uow:
        assert verify_database(uow.session).ok
    for case in desk.cases:
        result = replay(engine, case.id)
        assert result.matches_stored, (case.id, result.differences)
