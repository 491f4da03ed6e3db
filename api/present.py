"""How stored rows look in the API (shapes from shared/API.md) and who may see them."""
from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Callable, Iterable

from flask import current_app
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from engine.service import ADMIN, AUDITOR, OPEN, PROCESS_OWNER, WAITING, Actor, etag_of
from storage.models import Definition, HumanTask, Instance, TaskCandidate, Timer

# Roles that may read every case and task.
READ_ALL = frozenset({ADMIN, AUDITOR, PROCESS_OWNER})


def engine():
    from api import engine_of

    return engine_of(current_app)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(engine().tz).isoformat() if value is not None else None


def reads_all(actor: Actor) -> bool:
    return bool(actor.roles & READ_ALL)


def definition_dict(row: Definition) -> dict[str, Any]:
    return {"key": row.key, "name": row.name, "version": row.version, "deployed_at": iso(row.deployed_at),
            "deployed_by": row.deployed_by, "sha256": row.sha256}


def task_dict(task: HumanTask) -> dict[str, Any]:
    return {"id": task.id, "instance_id": task.instance_id, "definition_key": task.definition_key,
            "element_id": task.element_id, "name": task.name, "group": task.group_name,
            "assignee": task.assignee, "due_at": iso(task.due_at), "created_at": iso(task.created_at),
            "etag": etag_of(task)}


def task_summary_in(tz: tzinfo) -> Callable[[Any], dict[str, Any]]:
    """task_dict for a page of rows (the inbox's, with the same columns): the time zone is looked up once."""

    def summary(task) -> dict[str, Any]:
        due = task.due_at
        return {"id": task.id, "instance_id": task.instance_id, "definition_key": task.definition_key,
                "element_id": task.element_id, "name": task.name, "group": task.group_name,
                "assignee": task.assignee, "due_at": due.astimezone(tz).isoformat() if due is not None else None,
                "created_at": task.created_at.astimezone(tz).isoformat(), "etag": etag_of(task)}

    return summary


def instance_summary(instance: Instance) -> dict[str, Any]:
    return {"id": instance.id, "definition_key": instance.definition_key, "version": instance.version,
            "status": instance.status, "data": instance.data, "created_at": iso(instance.created_at),
            "updated_at": iso(instance.updated_at), "started_by": instance.started_by}


def instance_dict(session: Session, instance: Instance) -> dict[str, Any]:
    """The full instance: its summary, open tasks and waiting timers."""
    tasks = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id, HumanTask.status == OPEN)
                            .order_by(HumanTask.id))
    timers = session.execute(select(Timer.due_at, Timer.element_id).where(
        Timer.instance_id == instance.id, Timer.status == WAITING).order_by(Timer.due_at, Timer.id))
    return instance_with(instance, tasks, timers)


def instance_with(instance: Instance, open_tasks: Iterable[HumanTask],
                  waiting_timers: Iterable[tuple[datetime, str]]) -> dict[str, Any]:
    """The full instance from rows at hand: open tasks by id, waiting timers as (due, element id) by due."""
    return {**instance_summary(instance), "open_tasks": [task_dict(t) for t in open_tasks],
            "waiting_timers": [{"element_id": element_id, "due_at": iso(due)} for due, element_id in waiting_timers],
            # Deadlines that passed and escalated (SLA breaches), and why a case is in error.
            "breached_deadlines": list(instance.breaches), "error": instance.error}


def _candidate_of(actor: Actor):
    return select(TaskCandidate.task_id).where(or_(
        and_(TaskCandidate.kind == "group", TaskCandidate.name.in_(sorted(actor.groups))),
        and_(TaskCandidate.kind == "user", TaskCandidate.name == actor.username),
    ))


def instance_visibility(actor: Actor):
    """Cases a staff member may read: ones they started or whose tasks are (were) theirs or their groups'."""
    if reads_all(actor):
        return None
    involved = select(HumanTask.id).where(HumanTask.instance_id == Instance.id, or_(
        HumanTask.assignee == actor.username, HumanTask.completed_by == actor.username,
        HumanTask.id.in_(_candidate_of(actor)),
    )).exists()
    return or_(Instance.started_by == actor.username, involved)


def may_read_instance(session: Session, actor: Actor, instance_id: int) -> bool:
    clause = instance_visibility(actor)
    if clause is None:
        return True
    return session.scalar(select(Instance.id).where(Instance.id == instance_id, clause)) is not None
