"""Shared fixtures: databases (SQLite and a real PostgreSQL), a fake clock, the engine."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.clock import FakeClock
from engine.service import Actor, Engine
from storage.db import Database
from tests.pgserver import PgServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BPMN_DIR = ROOT / "workflows" / "bpmn"
EXTERNAL_BPMN = ROOT.parent / "shared" / "external-bpmn"

_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    """Hash test users' passwords with a small scrypt cost: the suite signs in thousands of times.

    The cost is stored in each hash, so checking stays correct; production keeps its cost.
    """
    import engine.users

    saved = engine.users._N
    engine.users._N = 2**8
    yield
    engine.users._N = saved


@pytest.fixture(scope="session")
def pg_server():
    server = PgServer().start()
    template = Database(server.url("cf_template"), pool_size=1)
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE cf_template"))
    template.upgrade()
    template.dispose()
    yield server, admin
    admin.dispose()
    server.stop()


def _new_pg_database(pg_server) -> Database:
    server, admin = pg_server
    name = f"cf_test_{next(_counter)}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE cf_template"))
    return Database(server.url(name))


@pytest.fixture
def sqlite_db(tmp_path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'test.db'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def pg_db(pg_server) -> Database:
    db = _new_pg_database(pg_server)
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> Database:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'test.db'}")
        database.upgrade()
    else:
        database = _new_pg_database(request.getfixturevalue("pg_server"))
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    # A Monday morning in Shanghai.
    return FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))


@pytest.fixture
def engine(db, clock) -> Engine:
    return Engine(db, clock)


OWNER = Actor("olivia", frozenset({"process_owner"}))
ADMIN = Actor("root", frozenset({"admin"}))


def actor(username: str, *groups: str, roles: tuple[str, ...] = ("staff",)) -> Actor:
    return Actor(username, frozenset(roles), frozenset(groups))


def deploy_fixture(engine: Engine, *names: str):
    return engine.deploy([(name, (FIXTURES / name).read_bytes()) for name in names], OWNER)
