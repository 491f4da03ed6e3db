"""PostgreSQL's pooled connections: checked after idling, not before every transaction."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from storage import db as db_module

pytestmark = pytest.mark.postgres


@pytest.fixture
def pings(pg_db, monkeypatch):
    calls = []
    original = pg_db.engine.dialect.do_ping

    def counting(dbapi_conn):
        calls.append(1)
        return original(dbapi_conn)

    monkeypatch.setattr(pg_db.engine.dialect, "do_ping", counting)
    return calls


def read_one(db) -> int:
    with db.unit_of_work(write=False) as uow:
        return uow.session.scalar(text("SELECT 1"))


def kill_pooled_backends(pg_server, db) -> None:
    """End the server side of every connection to the test's database, as a restart would."""
    server, _admin = pg_server
    killer = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with killer.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": db.url.database})
    killer.dispose()


def test_a_connection_in_steady_use_is_not_pinged(pg_db, pings):
    for _ in range(5):
        assert read_one(pg_db) == 1
    assert pings == []


def test_an_idle_connection_is_pinged_and_replaced_when_its_server_side_is_gone(pg_db, pg_server, pings,
                                                                               monkeypatch):
    assert read_one(pg_db) == 1
    kill_pooled_backends(pg_server, pg_db)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)  # as if it had idled a while
    assert read_one(pg_db) == 1  # the dead connection was found by the ping and replaced
    assert len(pings) >= 1


def test_a_connection_lost_while_in_steady_use_fails_one_request_then_the_pool_recovers(pg_db, pg_server):
    assert read_one(pg_db) == 1
    kill_pooled_backends(pg_server, pg_db)
    with pytest.raises(OperationalError):
        read_one(pg_db)
    assert read_one(pg_db) == 1
