"""`/api/v1/instances`: starting, listing, reading and terminating cases."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from api.auth import current_actor, roles
from api.errors import forbidden, invalid
from api.present import (engine, instance_dict, instance_summary, instance_visibility, instance_with,
                         may_read_instance)
from api.requests import INT_RANGE, cursor_arg, json_body, limit_arg, optional_json_body, page
from engine.audit import event_dict
from engine.errors import NotFound
from engine.service import ADMIN, COMPLETED, ERROR, OPEN, PROCESS_OWNER, RUNNING, TERMINATED, audit_events
from storage.models import Definition, HumanTask, Instance

bp = Blueprint("instances", __name__)

STATUSES = (RUNNING, COMPLETED, TERMINATED, ERROR)
# Events whose element the diagram shows as done.
DONE_EVENTS = {"task_completed", "timer_fired", "escalated"}


def _readable(session, instance_id: int) -> Instance:
    """The instance when the caller may read it; 404 when it does not exist, 403 when hidden."""
    instance = session.get(Instance, instance_id)
    if instance is None:
        raise NotFound(f"no instance {instance_id}")
    if not may_read_instance(session, current_actor(), instance_id):
        raise forbidden(f"you may not read instance {instance_id}")
    return instance


def _may_start(start_groups) -> bool:
    actor = current_actor()
    return bool(actor.roles & {PROCESS_OWNER, ADMIN}) or bool(actor.groups & set(start_groups))


@bp.post("/instances")
def start():
    body = json_body()
    key, version, data = body.get("definition_key"), body.get("version"), body.get("data", {})
    problems = {}
    if not isinstance(key, str) or not key:
        problems["definition_key"] = "a definition key is required"
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)
                                or not 1 <= version <= INT_RANGE[1]):
        problems["version"] = "must be a positive whole number"
    if data is not None and not isinstance(data, dict):
        problems["data"] = "must be an object"
    if problems:
        raise invalid(problems)
    def authorize(model) -> None:
        if not _may_start(model.start_groups):
            raise forbidden(f"only members of {', '.join(model.start_groups) or 'no group'}, process owners and "
                            f"admins may start '{key}'")

    result = engine().start_case(key, data or {}, current_actor(), version, authorize=authorize)
    return jsonify(instance_with(result.instance, result.open_tasks, result.waiting_timers)), 201


@bp.get("/instances")
def list_instances():
    limit, after = limit_arg(), cursor_arg(1)
    status = request.args.get("status")
    if status and status not in STATUSES:
        raise invalid({"status": f"use one of {', '.join(STATUSES)}"})
    query = select(Instance).order_by(Instance.id.desc()).limit(limit + 1)
    if request.args.get("definition_key"):
        query = query.where(Instance.definition_key == request.args["definition_key"])
    if status:
        query = query.where(Instance.status == status)
    visible = instance_visibility(current_actor())
    if visible is not None:
        query = query.where(visible)
    if after is not None:
        if not isinstance(after[0], int):
            raise invalid({"cursor": "is not a cursor this list gave out"})
        query = query.where(Instance.id < after[0])
    with engine().read() as uow:
        rows = list(uow.session.scalars(query))
    return jsonify(page(rows, limit, lambda row: [row.id], instance_summary))


@bp.get("/instances/<int:instance_id>")
def get_instance(instance_id: int):
    with engine().read() as uow:
        return jsonify(instance_dict(uow.session, _readable(uow.session, instance_id)))


@bp.post("/instances/<int:instance_id>/terminate")
@roles(PROCESS_OWNER, ADMIN)
def terminate(instance_id: int):
    reason = optional_json_body().get("reason", "")
    if not isinstance(reason, str):
        raise invalid({"reason": "must be a string"})
    engine().terminate(instance_id, reason, current_actor())
    with engine().read() as uow:
        return jsonify(instance_dict(uow.session, uow.session.get(Instance, instance_id)))


@bp.get("/instances/<int:instance_id>/history")
def history(instance_id: int):
    with engine().read() as uow:
        _readable(uow.session, instance_id)
        return jsonify({"items": [event_dict(e) for e in audit_events(uow.session, instance_id)]})


@bp.get("/instances/<int:instance_id>/diagram")
def diagram(instance_id: int):
    with engine().read() as uow:
        session = uow.session
        instance = _readable(session, instance_id)
        definition = session.get(Definition, instance.definition_id)
        tasks = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)
                                     .order_by(HumanTask.id)))
        events = audit_events(session, instance_id)
    active = [t.element_id for t in tasks if t.status == OPEN]
    done = [e.element_id for e in events if e.type in DONE_EVENTS and e.element_id]
    return jsonify({"bpmn": definition.bpmn_xml, "active": list(dict.fromkeys(active)),
                    "completed": list(dict.fromkeys(done))})
