"""Typed models of everything complaintflow stores.

A workflow's state lives in `Instance.state` (SpiffWorkflow's serialization,
without the spec); everything a list or an inbox needs is in indexed columns
beside it, so no query deserialises a workflow.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The sort key of a task without a due date: after every real one.
NO_DUE_DATE = datetime(9999, 12, 31, tzinfo=timezone.utc)

# BigInteger ids that are still SQLite's rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]

    roles: Mapped[list[UserRole]] = relationship(lazy="selectin", cascade="all, delete-orphan")
    groups: Mapped[list[UserGroup]] = relationship(lazy="selectin", cascade="all, delete-orphan")


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class UserGroup(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_name: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class LoginFailure(Base):
    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index(None, "username", "at"), Index(None, "address", "at"))


class Definition(Base):
    """One deployed version of one process (a BPMN process id is its key)."""

    __tablename__ = "definitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(300))
    file_name: Mapped[str] = mapped_column(String(300))
    bpmn_xml: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    called_keys: Mapped[list[Any]]
    deployment_id: Mapped[str] = mapped_column(String(36), index=True)
    deployed_at: Mapped[datetime]
    deployed_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("key", "version"), Index(None, "key", "sha256"))


class Instance(Base):
    """One case: a running (or ended) workflow of one definition version."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"))
    definition_key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    # Versions of every process this case may call, fixed when it starts.
    pinned: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]]
    # SpiffWorkflow's JSON serialization of the running workflow, without its spec.
    state: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    breaches: Mapped[list[Any]]
    started_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    lock_version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        Index(None, "definition_key", "status", "id"),
        Index(None, "status", "id"),
        Index(None, "created_at"),
    )

    __mapper_args__ = {"version_id_col": lock_version}


class HumanTask(Base):
    """A user task waiting for (or done by) a person; the inbox reads only this."""

    __tablename__ = "human_tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    definition_key: Mapped[str] = mapped_column(String(128))
    process_key: Mapped[str] = mapped_column(String(128))
    spiff_task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(300))
    group_name: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None]
    # `due_at`, or NO_DUE_DATE when there is none: the inbox's sort key, never null so an index keeps its order.
    due_key: Mapped[datetime]
    follow_up_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)

    candidates: Mapped[list[TaskCandidate]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    __table_args__ = (
        Index(None, "status", "due_at", "id"),
        Index(None, "status", "assignee", "due_key", "created_at", "id"),
        Index(None, "instance_id", "status"),
        # A group's unclaimed open tasks in inbox order (migration 0004); queries must repeat the WHERE's terms.
        Index(None, "group_name", "due_key", "created_at", "id",
              postgresql_where=text("status = 'open' AND assignee IS NULL"),
              sqlite_where=text("status = 'open' AND assignee IS NULL")),
    )


class TaskCandidate(Base):
    """A group or user allowed to claim a task (`kind` is 'group' or 'user')."""

    __tablename__ = "task_candidates"

    task_id: Mapped[int] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The task's own `group_name`: the inbox finds those through the task's index.
    is_primary: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (Index(None, "kind", "name", "task_id"), Index(None, "kind", "name", "is_primary", "task_id"))


class Timer(Base):
    """A waiting timer of a case; the scheduler fires rows, not workflows."""

    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    spiff_task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(128))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "instance_id", "status"),
    )


class AuditEvent(Base):
    """An append-only event; `hash` covers the event and its predecessor's hash."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chain: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int]
    instance_id: Mapped[int | None] = mapped_column(BigId)
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    element_id: Mapped[str | None] = mapped_column(String(128))
    task_id: Mapped[int | None] = mapped_column(BigId)
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index(None, "instance_id", "seq"),
        Index(None, "actor", "at"),
        Index(None, "at"),
    )


class AuditChain(Base):
    """The head of one hash chain; locking it orders the chain's writers."""

    __tablename__ = "audit_chains"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int]
    last_hash: Mapped[str] = mapped_column(String(64))


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigId)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime]
