"""`/api/v1/tasks`: the inbox and working a task (claim, unclaim, assign, complete)."""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from flask import Blueprint, jsonify, request
from sqlalchemy import Integer, and_, bindparam, func, literal, or_, select, tuple_, union_all

from api.auth import current_actor, led_groups
from api.errors import forbidden, invalid
from api.present import engine, instance_with, reads_all, task_dict, task_summary_in
from api.requests import cursor_arg, datetime_arg, json_body, limit_arg, optional_json_body, page
from engine.errors import Conflict, NotFound
from engine.service import ADMIN, OPEN, PROCESS_OWNER, Actor, etag_of
from storage.models import NO_DUE_DATE, HumanTask, Instance, TaskCandidate

bp = Blueprint("tasks", __name__)

def _position(task: HumanTask) -> list:
    due = task.due_at.isoformat() if task.due_at else None
    return [due, task.created_at.isoformat(), task.id]


def _after(position: list) -> dict:
    """The cursor's place in inbox order (due date, none last; creation; id) as the query's parameters."""
    try:
        due = datetime.fromisoformat(position[0]) if position[0] is not None else NO_DUE_DATE
        created, ident = datetime.fromisoformat(position[1]), int(position[2])
    except (TypeError, ValueError):
        raise invalid({"cursor": "is not a cursor this list gave out"}) from None
    if due.tzinfo is None or created.tzinfo is None:
        raise invalid({"cursor": "is not a cursor this list gave out"})
    return {"after_due": due, "after_created": created, "after_id": ident}


INBOX_ORDER = (HumanTask.due_key, HumanTask.created_at, HumanTask.id)
# A task summary's columns (task_summary_in) and the sort key: plain rows, no ORM objects or candidate loads.
INBOX_COLUMNS = (HumanTask.id, HumanTask.instance_id, HumanTask.definition_key, HumanTask.element_id, HumanTask.name,
                 HumanTask.group_name, HumanTask.assignee, HumanTask.due_at, HumanTask.created_at, HumanTask.version,
                 HumanTask.due_key)
# Written into the SQL as a literal, not a parameter: only then do SQLite and a prepared
# PostgreSQL statement match it to the partial index over unclaimed open tasks (migration 0004).
IS_OPEN = HumanTask.status == literal(OPEN, literal_execute=True)
UNCLAIMED = HumanTask.assignee.is_(None)


@lru_cache(maxsize=256)
def _inbox_query(groups: int, mine_only: bool, by_group: bool, by_definition: bool, due_bound: bool, after: bool):
    """The inbox's statement for one shape of request, built once; the request's values are bound parameters.

    Each source is one page read along an index in inbox order: the caller's own
    tasks, each group's unclaimed tasks by their primary group (a partial index),
    tasks offered to a group as a second candidate or to the caller by name. The
    pages come back as one UNION ALL, unsorted: a busy group's backlog is never sorted.
    """
    filters = []
    if by_definition:
        filters.append(HumanTask.definition_key == bindparam("definition_key"))
    if due_bound:
        # `due_key` is `due_at`, or NO_DUE_DATE (year 9999) without one: for any moment before
        # that year the two filters agree, and `due_key` bounds the index scans.
        filters.append(HumanTask.due_key < bindparam("due_before", type_=HumanTask.due_key.type))
    if after:
        filters.append(tuple_(*INBOX_ORDER) > tuple_(bindparam("after_due", type_=HumanTask.due_key.type),
                                                     bindparam("after_created", type_=HumanTask.created_at.type),
                                                     bindparam("after_id", type_=HumanTask.id.type)))
    # A task's primary group is always one of its candidates, so a group's own page needs no such test.
    offered = [select(TaskCandidate.task_id).where(TaskCandidate.task_id == HumanTask.id, TaskCandidate.kind == "group",
                                                   TaskCandidate.name == bindparam("group")).exists()] if by_group else []
    username = bindparam("username")
    sources = [(HumanTask.assignee == username, *offered)]
    if not mine_only:
        sources += [(UNCLAIMED, HumanTask.group_name == bindparam(f"group_{n}")) for n in range(groups)]
        sources.append((UNCLAIMED, HumanTask.id.in_(select(TaskCandidate.task_id).where(or_(
            and_(TaskCandidate.kind == "group", TaskCandidate.name.in_(bindparam("groups", expanding=True)),
                 TaskCandidate.is_primary.is_(False)),
            and_(TaskCandidate.kind == "user", TaskCandidate.name == username)))), *offered))
    page_size = bindparam("page_size", type_=Integer())
    return union_all(*(select(select(*INBOX_COLUMNS).where(IS_OPEN, *source, *filters)
                              .order_by(*INBOX_ORDER).limit(page_size).subquery()) for source in sources))


def inbox_rows(session, actor: Actor, *, limit: int, group: str | None = None, mine_only: bool = False,
               definition_key: str | None = None, due_before: datetime | None = None,
               after: dict | None = None) -> list:
    """Up to `limit` + 1 rows (INBOX_COLUMNS) of the actor's inbox in inbox order, in one statement.

    `group`: only tasks offered to that group; `mine_only`: only the actor's own;
    `after`: the position (`_after`) to continue from.
    """
    groups = [] if mine_only else [g for g in sorted(actor.groups) if group is None or g == group]
    params = {"username": actor.username, "page_size": limit + 1, "groups": groups,
              **{f"group_{n}": name for n, name in enumerate(groups)}, **(after or {})}
    if group is not None:
        params["group"] = group
    if definition_key is not None:
        params["definition_key"] = definition_key
    if due_before is not None:
        params["due_before"] = due_before
    query = _inbox_query(len(groups), mine_only, group is not None, definition_key is not None,
                         due_before is not None, after is not None)
    # A task offered to the caller by name may also be in a group's page.
    found = {row.id: row for row in session.execute(query, params)}
    return sorted(found.values(), key=lambda row: (row.due_key, row.created_at, row.id))[: limit + 1]


def unclaimed_counts(session, groups: list[str]) -> dict[str, int]:
    """How many unclaimed open tasks each group is offered (by its own tasks' index, then second candidates)."""
    counts: dict[str, int] = dict.fromkeys(groups, 0)
    if not groups:
        return counts
    for name, count in session.execute(select(HumanTask.group_name, func.count()).where(
            IS_OPEN, UNCLAIMED, HumanTask.group_name.in_(groups)).group_by(HumanTask.group_name)):
        counts[name] += count
    for name, count in session.execute(
            select(TaskCandidate.name, func.count()).join(HumanTask, HumanTask.id == TaskCandidate.task_id)
            .where(TaskCandidate.kind == "group", TaskCandidate.is_primary.is_(False),
                   TaskCandidate.name.in_(groups), IS_OPEN, UNCLAIMED).group_by(TaskCandidate.name)):
        counts[name] += count
    return counts


@bp.get("/tasks")
def inbox():
    """Open tasks assigned to the caller plus unclaimed ones of the caller's groups, by due date.

    `?group=` keeps tasks offered to that group, `?assignee=me` only the caller's
    own, `?due_before=` and `?overdue=true` those due before then or now.
    """
    actor = current_actor()
    limit, after = limit_arg(), cursor_arg(3)
    args = request.args
    mine_only = False
    if args.get("assignee"):
        if args["assignee"] != "me":
            raise invalid({"assignee": "only 'me' is supported"})
        mine_only = True
    due_bounds = []
    due_before = datetime_arg("due_before", engine().tz)
    if due_before is not None:
        due_bounds.append(due_before)
    if args.get("overdue"):
        if args["overdue"] not in ("true", "false"):
            raise invalid({"overdue": "use true or false"})
        if args["overdue"] == "true":
            due_bounds.append(engine().clock.now())
    with engine().read(single_statement=True) as uow:
        rows = inbox_rows(uow.session, actor, limit=limit, group=args.get("group") or None, mine_only=mine_only,
                          definition_key=args.get("definition_key") or None,
                          due_before=min(due_bounds) if due_bounds else None,
                          after=_after(after) if after is not None else None)
    return jsonify(page(rows, limit, _position, task_summary_in(engine().tz)))


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
