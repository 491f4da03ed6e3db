"""Database connection and the unit of work that owns each transaction."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session

DEFAULT_SQLITE_FILE = "complaintflow.db"

# Compact JSON, text as is, keys in the order given. The audit log hands in data
# with its keys already sorted, so an event's stored text is the canonical JSON
# its hash covers, and `audit verify` can hash that text without parsing it.
_json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def default_url() -> str:
    """Return the database URL from the environment, else an SQLite file here."""
    url = os.environ.get("COMPLAINTFLOW_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


# A pooled connection idle longer than this is checked before use; one in steady use is not.
PING_AFTER_IDLE_S = 2.0


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use when it has been idle: a database restarted meanwhile
    costs no request then. A connection in steady use skips the round trip (`pool_pre_ping` would
    ping before every transaction); if the database went away just now, that request fails with
    503 and the pool starts afresh.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn, record, *_args) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # noqa: BLE001 - any failure means: use another connection
            raise DisconnectionError(f"pooled connection is gone: {error}") from error


class Database:
    """One database: an engine for reads and one for writes.

    On SQLite the write engine opens transactions with BEGIN IMMEDIATE, so a
    write transaction holds the database's single writer lock from its first
    read: two writers never decide on the same stale row. PostgreSQL uses the
    same engine for both; writers lock rows with SELECT … FOR UPDATE.
    """

    def __init__(self, url: str | None = None, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = make_url(url or default_url())
        self.dialect = self.url.get_backend_name()
        # SQLite lets one writer in at a time, and a writer that finds it taken
        # sleeps and polls (up to 100 ms a time), so under load some requests
        # wait far longer than others. Writers of this process queue on a lock
        # instead and go in as soon as the one before is done; other processes
        # still meet SQLite's own lock.
        self.writers: threading.RLock | None = None
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine(echo)
            self.write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            self.writers = threading.RLock()
            self.statement_engine = self.engine  # BEGIN costs SQLite no round trip
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                pool_timeout=10, json_serializer=_json_text,
            )
            self.write_engine = self.engine
            _ping_idle_connections(self.engine)
            # A read of one statement needs no transaction: no BEGIN and ROLLBACK round trips.
            self.statement_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")

    def _sqlite_engine(self, echo: bool) -> Engine:
        database = self.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False},
                               json_serializer=_json_text)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no branch - wiring
            # Leave transaction control to the "begin" hook below.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def unit_of_work(self, *, write: bool = True, single_statement: bool = False) -> UnitOfWork:
        """A transaction; `single_statement`: a read of one statement, run without a transaction."""
        return UnitOfWork(self, write=write, single_statement=single_statement)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        from storage.migrate import upgrade

        upgrade(self)

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """A transaction: `with db.unit_of_work() as uow: ...; uow.commit()`.

    Leaving the block without `commit()` rolls everything back, so a failure
    anywhere leaves no state, task or audit change behind.
    """

    def __init__(self, db: Database, *, write: bool, single_statement: bool = False) -> None:
        self.db = db
        self.write = write
        self.single_statement = single_statement and not write
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        bind = (self.db.write_engine if self.write else
                self.db.statement_engine if self.single_statement else self.db.engine)
        self._queued = self.write and self.db.writers is not None
        if self._queued:
            self.db.writers.acquire()
        try:
            self.session = Session(bind=bind, expire_on_commit=False, autoflush=False)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        # close() rolls back whatever was not committed; unlike rollback() it
        # leaves loaded objects readable (detached) for the caller.
        try:
            self.session.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._queued:
            self._queued = False
            self.db.writers.release()

    def commit(self) -> None:
        self.session.commit()

    @property
    def is_postgres(self) -> bool:
        return self.db.is_postgres
