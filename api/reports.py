"""`/api/v1/reports`: summary figures for those who oversee the procedures.

Readers: auditors, admins, process owners, and members of the lead groups (the
keys of `api.auth.LEAD_GROUPS`, e.g. cs_supervisor), who answer for their
teams' figures. Other staff see cases only through their inbox.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from api.auth import current_actor, lead_groups
from api.errors import forbidden, invalid
from api.present import engine
from api.requests import datetime_arg
from engine import reports
from engine.service import ADMIN, AUDITOR, PROCESS_OWNER

bp = Blueprint("reports", __name__)

REPORT_ROLES = frozenset({AUDITOR, ADMIN, PROCESS_OWNER})


@bp.get("/reports/summary")
def summary():
    actor = current_actor()
    if not (actor.roles & REPORT_ROLES or actor.groups & set(lead_groups())):
        raise forbidden("reports are for auditors, admins, process owners and group leads")
    tz = engine().tz
    since, until = datetime_arg("from", tz), datetime_arg("to", tz)
    if since is not None and until is not None and since >= until:
        raise invalid({"to": "must be later than from"})
    with engine().read() as uow:
        return jsonify(reports.summary(uow.session, tz, definition_key=request.args.get("definition_key") or None,
                                       since=since, until=until))
