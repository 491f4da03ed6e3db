"""`/api/v1/audit`: the audit trail for auditors and admins."""
from __future__ import annotations

import csv
import io
import json

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from api.auth import roles
from api.errors import invalid
from api.present import engine
from api.requests import cursor_arg, int_arg, limit_arg, page
from engine.audit import event_dict, verify_database
from engine.errors import CaseError, ValidationFailed
from engine.replay import ReplayError, replay
from engine.service import ADMIN, AUDITOR
from storage.models import AuditEvent

bp = Blueprint("audit", __name__)

CSV_COLUMNS = ("seq", "instance_id", "type", "at", "actor", "element_id", "task_id", "data", "prev_hash", "hash")


@bp.get("/audit/events")
@roles(AUDITOR, ADMIN)
def events():
    limit, after = limit_arg(), cursor_arg(1)
    instance_id, since_seq = int_arg("instance_id"), int_arg("since_seq")
    output = request.args.get("format", "json")
    if output not in ("json", "csv"):
        raise invalid({"format": "use json or csv"})
    query = select(AuditEvent).order_by(AuditEvent.id).limit(limit + 1)
    if instance_id is not None:
        query = query.where(AuditEvent.instance_id == instance_id)
    if since_seq is not None:
        query = query.where(AuditEvent.seq > since_seq)
    if after is not None:
        if not isinstance(after[0], int):
            raise invalid({"cursor": "is not a cursor this list gave out"})
        query = query.where(AuditEvent.id > after[0])
    with engine().read() as uow:
        rows = list(uow.session.scalars(query))
    result = page(rows, limit, lambda row: [row.id], event_dict)
    if output == "json":
        return jsonify(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in result["items"]:
        writer.writerow([json.dumps(item["data"], ensure_ascii=False) if name == "data" else item[name]
                         for name in CSV_COLUMNS])
    # The BOM lets spreadsheet programs read the Chinese text as UTF-8.
    response = Response("\ufeff" + buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = "attachment; filename=audit-events.csv"
    if result["next_cursor"]:
        response.headers["X-Next-Cursor"] = result["next_cursor"]
    return response


@bp.get("/instances/<int:instance_id>/replay")
@roles(AUDITOR, ADMIN)
def replay_instance(instance_id: int):
    upto_seq = int_arg("upto_seq")
    if upto_seq is not None and upto_seq < 0:
        raise invalid({"upto_seq": "must be zero or more"})
    try:
        result = replay(engine(), instance_id, upto_seq)
    except (ValidationFailed, CaseError) as error:
        # Stored events the definition no longer accepts: the history, not the request, is at fault.
        raise ReplayError(error.message) from error
    return jsonify(result.as_dict())


@bp.get("/audit/verify")
@roles(AUDITOR, ADMIN)
def verify():
    with engine().read() as uow:
        return jsonify(verify_database(uow.session).as_dict())
