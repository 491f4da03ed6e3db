"""`complaintflow serve --demo`: demo users (one per group and one per role) and a few sample cases.

Every demo user's password is DEMO_PASSWORD; the README lists them ("Demo users").
Seeding is idempotent: existing users are left as they are, and sample cases are
started only when no demo user has started a case yet.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from engine import accounts
from engine.errors import EngineError
from engine.service import Actor, Engine
from storage.models import Instance, User

log = logging.getLogger(__name__)

DEMO_PASSWORD = "demo-pass-2026"

# The lanes and candidate groups of the four procedures (workflows/bpmn).
GROUPS = (
    "front_desk", "customer_service", "engineering", "security", "dept_head", "cs_supervisor", "center_lead",
    "sales", "sales_manager", "after_sales", "product_manager", "quality", "quality_manager", "responsible_dept",
    "production", "warehouse", "materials", "planning", "quality_service", "quality_director", "technical_manager",
    "project_manager", "executor", "general_manager", "records_clerk", "cs_head", "division_leader", "finance",
    "traveler", "traveler_head",
)

# username → (roles, groups, display name)
ROLE_USERS: dict[str, tuple[list[str], list[str], str]] = {
    "admin": (["admin"], [], "系统管理员"),
    "owner": (["process_owner"], [], "流程负责人"),
    "auditor": (["auditor"], [], "审计员"),
    "staff": (["staff"], ["front_desk", "customer_service"], "客服人员"),
}


def demo_users() -> dict[str, tuple[list[str], list[str], str]]:
    """Every demo user: one staff member per group (named after it) and one per role."""
    return {**{group: (["staff"], [group], group) for group in GROUPS}, **ROLE_USERS}


def _sample_cases(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(starting user, definition key, start data) of the sample cases."""
    today = now.date().isoformat()
    return [
        ("front_desk", "property_complaint", {
            "first_receiver": "front_desk", "first_report_at": now.isoformat(), "complaint_channel": "phone",
            "complaint_content": "3号楼2单元电梯频繁停运, 业主要求尽快维修"}),
        ("front_desk", "property_complaint", {
            "first_receiver": "front_desk", "first_report_at": now.isoformat(), "complaint_channel": "visit",
            "complaint_content": "小区东门夜间施工噪音扰民"}),
        ("customer_service", "lab_appeal", {
            "kind": "complaint", "channel": "written", "source": "customer", "complainant_name": "张先生",
            "filed_date": today, "content": "对检测报告的结论有异议, 申请复检"}),
        ("customer_service", "complaint_travel", {}),
    ]


def seed(engine: Engine) -> dict[str, int]:
    """Add the missing demo users and, on an empty database, the sample cases; return how many of each."""
    users = demo_users()
    now = engine.clock.now()
    created = 0
    with engine.db.unit_of_work() as uow:
        existing = set(uow.session.scalars(select(User.username).where(User.username.in_(list(users)))))
        for username, (roles, groups, display_name) in users.items():
            if username in existing:
                continue
            accounts.create_user(uow.session, {"username": username, "password": DEMO_PASSWORD, "roles": roles,
                                               "groups": groups, "display_name": display_name},
                                 actor="demo", now=now, lock=engine.db.is_postgres)
            created += 1
        uow.commit()
    with engine.read() as uow:
        # Cases started on a timer (the monthly statistics) do not count: only people's cases.
        has_cases = uow.session.scalar(select(func.count()).select_from(Instance)
                                       .where(Instance.started_by.in_(list(users)))) > 0
    started = 0
    if not has_cases:
        for username, key, data in _sample_cases(now.astimezone(engine.tz)):
            roles, groups, _name = users[username]
            try:
                engine.start_case(key, data, Actor(username, frozenset(roles), frozenset(groups)))
                started += 1
            except EngineError as error:  # a procedure that is not deployed just has no sample
                log.warning("demo case of %s not started: %s", key, error.message)
    return {"users": created, "cases": started}
