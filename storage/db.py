"""Database connection and the unit of work that owns each transaction."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

DEFAULT_SQLITE_FILE = "complaintflow.db"


def default_url() -> str:
    """Return the database URL from the environment, else an SQLite file here."""
    url = os.environ.get("COMPLAINTFLOW_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


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
                pool_pre_ping=True, pool_timeout=10,
            )
            self.write_engine = self.engine
            # A read of one statement needs no transaction: no BEGIN and ROLLBACK round trips.
            self.statement_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")

    def _sqlite_engine(self, echo: bool) -> Engine:
        database = self.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False})

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
