"""`/api/v1/tasks`: the inbox and working a task (claim, unclaim, assign, complete)."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, jsonify, request
from sqlalchemy import and_, literal, or_, select, tuple_

from api.auth import current_actor, led_groups
from api.errors import forbidden, invalid
from api.present import engine, instance_with, reads_all, task_dict
from api.requests import cursor_arg, datetime_arg, json_body, limit_arg, optional_json_body, page
from engine.errors import Conflict, NotFound
from engine.service import ADMIN, OPEN, PROCESS_OWNER, etag_of
from storage.models import NO_DUE_DATE, HumanTask, Instance, TaskCandidate

bp = Blueprint("tasks", __name__)

def _position(task: HumanTask) -> list:
    due = task.due_at.isoformat() if task.due_at else None
    return [due, task.created_at.isoformat(), task.id]


def _after(position: list):
    """Rows after the cursor in inbox order: due date (none last), creation, id."""
    try:
        due = datetime.fromisoformat(position[0]) if position[0] is not None else NO_DUE_DATE
        created, ident = datetime.fromisoformat(position[1]), int(position[2])
    except (TypeError, ValueError):
        raise invalid({"cursor": "is not a cursor this list gave out"}) from None
    if due.tzinfo is None or created.tzinfo is None:
        raise invalid({"cursor": "is not a cursor this list gave out"})
    return tuple_(*INBOX_ORDER) > tuple_(literal(due, HumanTask.due_key.type),
                                         literal(created, HumanTask.created_at.type), literal(ident))


INBOX_ORDER = (HumanTask.due_key, HumanTask.created_at, HumanTask.id)


@bp.get("/tasks")
def inbox():
    """Open tasks assigned to the caller plus unclaimed ones of the caller's groups, by due date.

    Each source is read along an index in inbox order and stops after one page:
    the caller's own tasks, each group's tasks by their primary group, tasks
    offered to a group as a second candidate, tasks offered to the caller by name.
    The pages are merged here, so a busy group's thousands of tasks are never sorted.
    """
    actor = current_actor()
    limit, after = limit_arg(), cursor_arg(3)
    args = request.args
    filters = [HumanTask.status == OPEN]
    groups = sorted(actor.groups)
    if args.get("group"):
        groups = [g for g in groups if g == args["group"]]
        filters.append(HumanTask.id.in_(select(TaskCandidate.task_id).where(
            TaskCandidate.kind == "group", TaskCandidate.name == args["group"])))
    mine_only = False
    if args.get("assignee"):
        if args["assignee"] != "me":
            raise invalid({"assignee": "only 'me' is supported"})
        mine_only = True
    if args.get("definition_key"):
        filters.append(HumanTask.definition_key == args["definition_key"])
    due_before = datetime_arg("due_before", engine().tz)
    if due_before is not None:
        filters.append(HumanTask.due_at < due_before)
    if args.get("overdue"):
        if args["overdue"] not in ("true", "false"):
            raise invalid({"overdue": "use true or false"})
        if args["overdue"] == "true":
            filters.append(HumanTask.due_at < engine().clock.now())
    if after is not None:
        filters.append(_after(after))
    unclaimed = HumanTask.assignee.is_(None)
    sources = [HumanTask.assignee == actor.username]
    if not mine_only:
        sources += [and_(unclaimed, HumanTask.group_name == group) for group in groups]
        sources.append(and_(unclaimed, HumanTask.id.in_(select(TaskCandidate.task_id).where(or_(
            and_(TaskCandidate.kind == "group", TaskCandidate.name.in_(groups), TaskCandidate.is_primary.is_(False)),
            and_(TaskCandidate.kind == "user", TaskCandidate.name == actor.username))))))
    found: dict[int, HumanTask] = {}
    with engine().read() as uow:
        for source in sources:
            query = select(HumanTask).where(source, *filters).order_by(*INBOX_ORDER).limit(limit + 1)
            for task in uow.session.scalars(query):
                found[task.id] = task
    rows = sorted(found.values(), key=lambda t: (t.due_key, t.created_at, t.id))[: limit + 1]
    return jsonify(page(rows, limit, _position, task_dict))


def _task(session, task_id: int) -> HumanTask:
    """The task when the caller may see it: those who read everything, or who may work it."""
    task = session.get(HumanTask, task_id)
    if task is None:
        raise NotFound(f"no task {task_id}")
    actor = current_actor()
    if not (reads_all(actor) or engine().may_work(task, actor) or task.completed_by == actor.username):
        raise forbidden(f"task {task_id} is not in your inbox")
    return task


def _check_etag(task_id: int) -> None:
    """Refuse with 409 when If-Match names an older version of the task."""
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    with engine().read() as uow:
        task = _task(uow.session, task_id)
        if wanted.strip('"') != etag_of(task):
            raise Conflict(f"task {task_id} changed since it was read (etag {etag_of(task)})")


def _task_response(task_id: int):
    with engine().read() as uow:
        task = uow.session.get(HumanTask, task_id)
        response = jsonify(task_dict(task))
    response.headers["ETag"] = f'"{etag_of(task)}"'
    return response


@bp.get("/tasks/<int:task_id>")
def get_task(task_id: int):
    with engine().read() as uow:
        session = uow.session
        task = _task(session, task_id)
        instance = session.get(Instance, task.instance_id)
        model = engine().task_model(session, task, instance)
        response = jsonify({**task_dict(task), "status": task.status, "form": model.form.as_dict(),
                            "data": instance.data})
    response.headers["ETag"] = f'"{etag_of(task)}"'
    return response


@bp.post("/tasks/<int:task_id>/claim")
def claim(task_id: int):
    _check_etag(task_id)
    engine().claim_task(task_id, current_actor())
    return _task_response(task_id)


@bp.post("/tasks/<int:task_id>/unclaim")
def unclaim(task_id: int):
    _check_etag(task_id)
    engine().unclaim_task(task_id, current_actor())
    return _task_response(task_id)


@bp.post("/tasks/<int:task_id>/assign")
def assign(task_id: int):
    actor = current_actor()
    if not actor.roles & {PROCESS_OWNER, ADMIN}:
        with engine().read() as uow:
            task = uow.session.get(HumanTask, task_id)
            if task is None:
                raise NotFound(f"no task {task_id}")
            groups = {c.name for c in task.candidates if c.kind == "group"}
        if not groups & led_groups(actor):
            raise forbidden("only leads of the task's group, process owners and admins may assign it")
    username = json_body().get("username")
    if not isinstance(username, str) or not username:
        raise invalid({"username": "a username is required"})
    _check_etag(task_id)
    engine().assign_task(task_id, username, actor)
    return _task_response(task_id)


@bp.post("/tasks/<int:task_id>/complete")
def complete(task_id: int):
    data = optional_json_body().get("data", {})
    if not isinstance(data, dict):
        raise invalid({"data": "must be an object"})
    result = engine().complete_task(task_id, data, current_actor(), etag=request.headers.get("If-Match"))
    # The step's own rows, as committed: no second read.
    created = set(result.created_task_ids)
    return jsonify({"instance": instance_with(result.instance, result.open_tasks, result.waiting_timers),
                    "next_tasks": [task_dict(t) for t in result.open_tasks if t.id in created]})
