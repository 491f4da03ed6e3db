"""Schema migrations carry existing rows forward (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from storage.migrate import alembic_config
from storage.models import NO_DUE_DATE


def empty_database(tmp_path, request, dialect: str, name: str) -> str:
    """A database with no schema yet (the PostgreSQL template is already at the newest)."""
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    server, admin = request.getfixturevalue("pg_server")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    return server.url(name)


def test_inbox_order_migration_fills_the_sort_key_and_primary_group(tmp_path, request):
    for dialect in ("sqlite", "postgresql"):
        url = empty_database(tmp_path, request, dialect, "cf_migration_test")
        config = alembic_config(url)
        command.upgrade(config, "0002")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO definitions (id, key, version, name, file_name, bpmn_xml, sha256, called_keys, "
                "deployment_id, deployed_at, deployed_by) VALUES (1, 'p', 1, 'p', 'p.bpmn', '<x/>', 'h', '[]', 'd', "
                ":at, 'o')"), {"at": datetime(2026, 1, 1)})
            conn.execute(text(
                "INSERT INTO instances (id, definition_id, definition_key, version, pinned, status, data, state, "
                "breaches, started_by, created_at, updated_at, lock_version) VALUES (1, 1, 'p', 1, '{}', 'running', "
                "'{}', '{}', '[]', 'o', :at, :at, 1)"), {"at": datetime(2026, 1, 1)})
            for ident, due in ((1, datetime(2026, 1, 2, 9)), (2, None)):
                conn.execute(text(
                    "INSERT INTO human_tasks (id, instance_id, definition_key, process_key, spiff_task_id, element_id, "
                    "name, group_name, status, due_at, created_at, version) VALUES (:id, 1, 'p', 'p', :sid, 'e', 'n', "
                    "'front_desk', 'open', :due, :at, 1)"), {"id": ident, "sid": f"s{ident}", "due": due,
                                                              "at": datetime(2026, 1, 1)})
                conn.execute(text("INSERT INTO task_candidates (task_id, kind, name) VALUES "
                                  "(:id, 'group', 'front_desk'), (:id, 'group', 'security')"), {"id": ident})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            keys = [row[0] for row in conn.execute(text("SELECT due_key FROM human_tasks ORDER BY id"))]
            primary = conn.execute(text("SELECT task_id, name FROM task_candidates WHERE is_primary "
                                        "ORDER BY task_id")).all()
        engine.dispose()
        as_utc = [k if getattr(k, "tzinfo", None) else datetime.fromisoformat(str(k)).replace(tzinfo=timezone.utc)
                  for k in keys]
        assert as_utc[0].replace(tzinfo=None) == datetime(2026, 1, 2, 9)
        assert as_utc[1].year == NO_DUE_DATE.year
        assert [tuple(row) for row in primary] == [(1, "front_desk"), (2, "front_desk")], dialect


def _task_indexes(engine) -> dict[str, str]:
    """The human_tasks indexes by name, each with its CREATE INDEX text."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'human_tasks'"))
        else:
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                     "AND tbl_name = 'human_tasks'"))
        return {name: definition or "" for name, definition in rows}


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_unclaimed_inbox_index_migration_goes_both_ways(tmp_path, request, dialect):
    url = empty_database(tmp_path, request, dialect, "cf_migration_0004")
    config = alembic_config(url)
    engine = create_engine(url)
    old, new = ("ix_human_tasks_status_group_name_assignee_due_key_created_at_id",
                "ix_human_tasks_group_name_due_key_created_at_id")
    try:
        command.upgrade(config, "0004")
        indexes = _task_indexes(engine)
        assert old not in indexes
        assert "WHERE" in indexes[new] and "assignee IS NULL" in indexes[new], indexes[new]
        command.downgrade(config, "0003")
        indexes = _task_indexes(engine)
        assert new not in indexes and old in indexes
        command.upgrade(config, "head")
        assert new in _task_indexes(engine)
    finally:
        engine.dispose()
