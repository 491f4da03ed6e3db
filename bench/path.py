"""The property_complaint happy path, as the scenario tests drive it (shared by the benchmarks)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from engine.service import Actor

ROOT = Path(__file__).resolve().parent.parent
BPMN = ROOT / "workflows" / "bpmn" / "property_complaint.bpmn"
KEY = "property_complaint"
FIRST_REPORT = datetime(2026, 11, 23, 9, 0, tzinfo=timezone(timedelta(hours=8))).isoformat()

# Users that `user` form fields name, and the people who work the path: (username, group).
USERS = [("zhang.wei", "security"), ("front_desk_1", "front_desk"), ("engineering_1", "engineering"),
         ("dept_head_1", "dept_head"), ("cs_supervisor_1", "cs_supervisor")]

START = dict(first_receiver="zhang.wei", first_report_at=FIRST_REPORT, complaint_channel="phone",
             complaint_content="3栋电梯停在8楼不动, 业主被困10分钟")

# (element id, group of the person who completes it, form data)
STEPS = [
    ("register_complaint", "front_desk", dict(
        complainant="李先生", unit_room="3-1201", complainant_phone="138 0000 0000", first_report_at=FIRST_REPORT,
        complaint_channel="phone", complaint_content="3栋电梯停在8楼不动, 业主被困10分钟", first_receiver="zhang.wei",
        complaint_class="class1", complaint_validity="valid", is_major_complaint=False, is_important_owner=False,
        apology_made=True, can_solve_on_spot=False)),
    ("dispatch_work_order", "front_desk", dict(dispatch_department="engineering",
                                               work_order_content="检修3栋电梯并回复业主", complainant_reassured=True)),
    ("handle_complaint", "engineering", dict(handling_action="更换电梯门机板", handling_result="电梯恢复运行",
                                             handle_outcome="resolved")),
    ("review_handling_result", "dept_head", dict(head_review_result="approved", head_review_opinion="处理到位")),
    ("return_visit_phone", "front_desk", dict(return_visit_at=FIRST_REPORT, customer_satisfaction="satisfied",
                                              customer_opinion="", onsite_visit_needed=False)),
    ("review_and_archive", "cs_supervisor", dict(supervisor_review_opinion="记录完整, 同意归档", archived=True)),
]

STARTER = Actor("zhang.wei", frozenset({"staff"}), frozenset({"security"}))
OWNER = Actor("bench_owner", frozenset({"process_owner"}))


def worker(group: str) -> Actor:
    return Actor(f"{group}_1", frozenset({"staff"}), frozenset({group}))


def add_users(engine) -> None:
    """Straight rows without passwords (the service benchmark signs nobody in)."""
    from storage.models import User, UserGroup, UserRole

    with engine.db.unit_of_work() as uow:
        for username, group in USERS:
            uow.session.add(User(username=username, display_name=username, password_hash="!", is_active=True,
                                 created_at=engine.clock.now(), roles=[UserRole(role="staff")],
                                 groups=[UserGroup(group_name=group)]))
        uow.commit()
