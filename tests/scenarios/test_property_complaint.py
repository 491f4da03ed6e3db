"""物业客户投诉处理 (`property_complaint`): people working real cases, story by story.

PROCESSES.md section 1; seeds 000 (投诉处理作业指导书 4.1-4.2, KF-HK10-01, 物业集团客户投诉
处理工作指引) and 002 (顾客投诉(建议)处理程序 三.1). The clock starts on Monday
2026-11-23 09:00 (+08:00); the procedure's deadlines are counted in clock hours
(5 minutes, 12 hours, 24 hours, 17:00 daily, the same day), none in working days.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.errors import Forbidden, ValidationFailed
from engine.service import Actor
from storage.models import User, UserGroup, UserRole
from tests.scenarios.conftest import person

KEY = "property_complaint"
CST = timezone(timedelta(hours=8))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of the week of Monday 2026-11-23 in Shanghai (`day` is the date in November)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=CST)


MONDAY_9 = at(23, 9)
FIRST_REPORT = MONDAY_9.isoformat()

# The people of the property-management centre.
front_desk = person("front_desk")
customer_service = person("customer_service")
engineering = person("engineering")
security = person("security")
dept_head = person("dept_head")
cs_supervisor = person("cs_supervisor")
center_lead = person("center_lead")
guard = Actor("zhang.wei", frozenset({"staff"}), frozenset({"security"}))  # a guard who first hears it


@pytest.fixture(autouse=True)
def staff(desk):
    """`user` form fields (first receiver, superior) name real users."""
    with desk.db.unit_of_work() as uow:
        for username, group in [("zhang.wei", "security"), ("front_desk_1", "front_desk"),
                                ("cs_supervisor_1", "cs_supervisor")]:
            # Straight rows, no password: nobody logs in here, and hashing costs time.
            uow.session.add(User(username=username, display_name=username, password_hash="!", is_active=True,
                                 created_at=desk.clock.now(), roles=[UserRole(role="staff")],
                                 groups=[UserGroup(group_name=group)]))
        uow.commit()


# --- what the people fill in ------------------------------------------------------------

def received(**overrides) -> dict:
    """The first receiver's note (start form)."""
    data = dict(first_receiver="zhang.wei", first_report_at=FIRST_REPORT, complaint_channel="phone",
                complaint_content="3栋电梯停在8楼不动, 业主被困10分钟")
    data.update(overrides)
    return data


def record_026(**overrides) -> dict:
    """客户投诉记录表 (026) as the front desk fills it."""
    data = dict(complainant="李先生", unit_room="3-1201", complainant_phone="138 0000 0000",
                first_report_at=FIRST_REPORT, complaint_channel="phone",
                complaint_content="3栋电梯停在8楼不动, 业主被困10分钟", first_receiver="zhang.wei",
                complaint_class="class1", complaint_validity="valid", is_major_complaint=False,
                is_important_owner=False, apology_made=True, can_solve_on_spot=False)
    data.update(overrides)
    return data


def work_order_021(department: str = "engineering", **overrides) -> dict:
    data = dict(dispatch_department=department, work_order_content="检修3栋电梯并回复业主",
                complainant_reassured=True)
    data.update(overrides)
    return data


HANDLED = dict(handling_action="更换电梯门机板", handling_result="电梯恢复运行", handle_outcome="resolved")
APPROVED = dict(head_review_result="approved", head_review_opinion="处理到位")
ARCHIVE = dict(supervisor_review_opinion="记录完整, 同意归档", archived=True)


def phone_visit(satisfaction: str = "satisfied", onsite: bool = False, **overrides) -> dict:
    """客户访谈记录表 (029), phone part."""
    data = dict(return_visit_at=FIRST_REPORT, customer_satisfaction=satisfaction, customer_opinion="",
                onsite_visit_needed=onsite)
    data.update(overrides)
    return data


def onsite_visit(when: datetime, satisfaction: str = "satisfied") -> dict:
    return dict(onsite_visit_at=when.isoformat(), customer_satisfaction=satisfaction,
                customer_opinion="电梯已正常", visit_receipt="att-029-1")


def receive_and_register(desk, *, by: Actor = front_desk, **record):
    """Someone receives the complaint; the front desk registers it on 026."""
    case = desk.start(KEY, received(), by=by)
    assert case.open_tasks() == ["register_complaint"]
    assert case.task("register_complaint").group_name == "front_desk"
    case.complete("register_complaint", record_026(**record), by=front_desk)
    return case


def close(case, *, visit: dict | None = None) -> None:
    """Phone return visit, satisfied, then the supervisor archives."""
    case.complete("return_visit_phone", visit or phone_visit(), by=front_desk)
    case.complete("review_and_archive", ARCHIVE, by=cs_supervisor)


def local(moment: datetime) -> datetime:
    return moment.astimezone(CST)


# --- the happy path ---------------------------------------------------------------------

def test_front_desk_dispatches_in_time_engineering_fixes_the_lift_and_the_owner_is_satisfied(desk):
    """投诉WI 4.2.1-4.2.6: 客服前台 records 026, dispatches 021 within 5 minutes; the department
    handles within 12 hours; the head reviews; the front desk phones back the same day; the
    supervisor reviews and archives."""
    case = receive_and_register(desk, by=guard)
    assert case.data["first_receiver"] == "zhang.wei" and case.data["initiator"] == "zhang.wei"
    assert case.data["handling_clock_start"] == FIRST_REPORT
    assert case.open_tasks() == ["dispatch_work_order"]
    assert local(case.task("dispatch_work_order").due_at) == at(23, 9, 5)     # 5 minutes from the first report
    assert case.waiting_timers() == ["timer_dispatch_5min"]

    desk.advance(minutes=3)
    case.complete("dispatch_work_order", work_order_021("engineering"), by=front_desk)
    assert case.data["dispatched_at"] == at(23, 9, 3).isoformat()
    handle = case.task("handle_complaint")
    assert handle.group_name == "engineering"                                    # ${dispatch_department}
    assert local(handle.due_at) == at(23, 21, 3)                                 # 12 hours from dispatch
    assert sorted(case.waiting_timers()) == ["timer_daily_progress", "timer_escalate_24h", "timer_handle_12h"]
    with pytest.raises(Forbidden):
        case.complete("handle_complaint", HANDLED, by=security)                  # not security's work order

    desk.advance(hours=2)
    case.complete("handle_complaint", HANDLED, by=engineering)
    assert case.task("review_handling_result").group_name == "dept_head"
    case.complete("review_handling_result", APPROVED, by=dept_head)
    assert case.waiting_timers() == ["timer_return_visit_same_day"]             # stage timers gone
    assert local(case.task("return_visit_phone").due_at) == at(23, 23, 59)       # the same day

    desk.advance(hours=1)
    case.complete("return_visit_phone", phone_visit(), by=front_desk)
    with pytest.raises(Forbidden):
        case.complete("review_and_archive", ARCHIVE, by=front_desk)
    case.complete("review_and_archive", ARCHIVE, by=cs_supervisor)

    assert case.status == "completed"
    assert desk.advance(days=3) == 0                                             # nothing left to fire
    assert case.escalations() == []
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
    data = case.data
    assert data["dispatch_department"] == "engineering"
    assert data["secondary_complaint_count"] == 0 and data["is_secondary_complaint"] is False
    assert data["customer_satisfaction"] == "satisfied" and data["archived"] is True


def test_five_people_each_appear_by_name_in_the_record_of_the_case(desk):
    """投诉WI 4.2: 客服前台 registers and dispatches, 工程部 handles, 部门负责人 reviews, 客服部
    visits on site within 12 hours (029, signed receipt), 客服主管 reviews and archives."""
    wang = Actor("wang.fang", frozenset({"staff"}), frozenset({"front_desk"}))
    li = Actor("li.qiang", frozenset({"staff"}), frozenset({"engineering"}))
    zhao = Actor("zhao.min", frozenset({"staff"}), frozenset({"dept_head"}))
    chen = Actor("chen.jing", frozenset({"staff"}), frozenset({"cs_supervisor"}))
    liu = Actor("liu.yang", frozenset({"staff"}), frozenset({"customer_service"}))

    case = desk.start(KEY, received(), by=wang)
    case.complete("register_complaint", record_026(), by=wang)
    desk.advance(minutes=2)
    case.complete("dispatch_work_order", work_order_021("engineering"), by=wang)
    desk.advance(hours=3)
    case.complete("handle_complaint", HANDLED, by=li)
    case.complete("review_handling_result", APPROVED, by=zhao)
    desk.advance(hours=1)
    case.complete("return_visit_phone", phone_visit(onsite=True), by=wang)
    assert case.task("visit_onsite").group_name == "customer_service"
    assert local(case.task("visit_onsite").due_at) == at(23, 13, 2) + timedelta(hours=12)
    desk.advance(hours=5)                                                       # in time: no reminder
    case.complete("visit_onsite", onsite_visit(desk.clock.now()), by=liu)
    case.complete("review_and_archive", ARCHIVE, by=chen)

    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "wang.fang"),
        ("dispatch_work_order", "wang.fang"),
        ("handle_complaint", "li.qiang"),
        ("review_handling_result", "zhao.min"),
        ("return_visit_phone", "wang.fang"),
        ("visit_onsite", "liu.yang"),
        ("review_and_archive", "chen.jing"),
    ]
    assert {who for _task, who in case.work()} == {"wang.fang", "li.qiang", "zhao.min", "chen.jing", "liu.yang"}
    assert case.escalations() == []
    assert case.data["visit_receipt"] == "att-029-1"


# --- on the spot, and the routes that skip dispatch -----------------------------------------

def test_what_can_be_solved_on_the_spot_is_solved_and_reported_then_visited_back(desk):
    """002/顾客 三.1.1-2: apologise; what can be solved on the spot is solved and reported to the
    superior."""
    case = receive_and_register(desk, can_solve_on_spot=True)
    assert case.open_tasks() == ["resolve_on_the_spot"]
    assert case.task("resolve_on_the_spot").group_name == "front_desk"
    case.complete("resolve_on_the_spot", dict(on_spot_action="当场重启电梯", on_spot_result="业主已出电梯",
                                             reported_to_superior=True, superior_reported_to="cs_supervisor_1"),
                  by=front_desk)
    assert case.open_tasks() == ["return_visit_phone"]
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("resolve_on_the_spot", "front_desk_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
    assert "dispatch_department" not in case.data and case.data["superior_reported_to"] == "cs_supervisor_1"


def test_an_invalid_complaint_is_answered_with_the_facts_whatever_its_class(desk):
    """KF 4.1.7, 4.2.1.2: 无效投诉 (misunderstanding, rumour) — explain the facts."""
    case = receive_and_register(desk, complaint_class="class2", complaint_validity="invalid")
    assert case.open_tasks() == ["explain_invalid_complaint"]
    assert case.task("explain_invalid_complaint").group_name == "customer_service"
    case.complete("explain_invalid_complaint", dict(invalid_explanation="停电系供电局计划检修, 已提前公告"),
                  by=customer_service)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("explain_invalid_complaint", "customer_service_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_a_class_1_complaint_to_improve_is_explained_and_taken_up_with_the_unit_that_caused_it(desk):
    """KF 4.1.6, 4.2.1.2: 待改进投诉 — explain, and liaise with the unit that caused it."""
    case = receive_and_register(desk, complaint_validity="to_improve")
    assert case.open_tasks() == ["liaise_responsible_unit"]
    case.complete("liaise_responsible_unit", dict(improvement_explanation="保洁时间调整", responsible_unit="保洁外包公司",
                                                 liaison_result="改为9点后作业"), by=customer_service)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("liaise_responsible_unit", "customer_service_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_a_class_2_complaint_with_large_impact_is_reported_in_writing_to_the_company_and_developer(desk):
    """002/顾客 三.1.2 B: 二类 — record on 工程遗留问题处理记录表; large impact: written report to the
    company, which forwards it to the developer and feeds back the result."""
    case = receive_and_register(desk, complaint_class="class2", complaint_content="外墙渗水")
    assert case.open_tasks() == ["record_engineering_legacy_issue"]
    case.complete("record_engineering_legacy_issue", dict(legacy_issue_description="外墙渗水, 整栋西侧",
                                                         legacy_issue_location="5栋西墙", class2_large_impact=True),
                  by=customer_service)
    assert case.open_tasks() == ["report_to_company_developer"]
    case.complete("report_to_company_developer", dict(company_report_summary="5栋西墙渗水书面报告",
                                                     developer_forwarded=True, developer_feedback="发展商安排保修"),
                  by=customer_service)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("record_engineering_legacy_issue", "customer_service_1"),
        ("report_to_company_developer", "customer_service_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_a_small_class_2_complaint_is_only_recorded_as_an_engineering_legacy_issue(desk):
    """002/顾客 三.1.2 B: 二类 of small impact — recorded, no report to the company."""
    case = receive_and_register(desk, complaint_class="class2", complaint_validity="to_improve")
    case.complete("record_engineering_legacy_issue", dict(legacy_issue_description="门框轻微开裂",
                                                         class2_large_impact=False), by=customer_service)
    assert case.open_tasks() == ["return_visit_phone"]
    close(case)
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("record_engineering_legacy_issue", "customer_service_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
    assert case.status == "completed" and case.data["legacy_issue_location"] is None


def test_a_class_3_complaint_goes_to_the_duty_log_and_a_special_report_is_published(desk):
    """002/顾客 三.1.2 C: 三类 — record on 值班记录表; by impact, a 专题报告 to the relevant
    departments and the result published."""
    case = receive_and_register(desk, complaint_class="class3", complaint_content="小区外道路施工噪音")
    assert case.open_tasks() == ["record_duty_log"]
    case.complete("record_duty_log", dict(duty_log_entry="市政道路夜间施工", class3_special_report_needed=True),
                  by=customer_service)
    case.complete("special_report_publish", dict(special_report_summary="夜间施工扰民", special_report_recipients="城管局",
                                                special_report_result="22点后停工", special_report_published=True),
                  by=customer_service)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("record_duty_log", "customer_service_1"),
        ("special_report_publish", "customer_service_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_a_class_3_complaint_of_small_impact_is_only_written_in_the_duty_log(desk):
    """002/顾客 三.1.2 C: no special report when the impact is small."""
    case = receive_and_register(desk, complaint_class="class3")
    case.complete("record_duty_log", dict(duty_log_entry="外部车辆鸣笛", class3_special_report_needed=False),
                  by=customer_service)
    assert case.open_tasks() == ["return_visit_phone"]
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("record_duty_log", "customer_service_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


# --- dispatch and handling deadlines ---------------------------------------------------------

def test_a_dispatch_late_by_more_than_5_minutes_is_escalated_to_the_supervisor(desk):
    """投诉WI 4.2.1: dispatch within 5 minutes of the first report; past it, the supervisor is
    notified (design choice)."""
    case = receive_and_register(desk)
    assert desk.advance(minutes=4, seconds=59) == 0
    assert case.open_tasks() == ["dispatch_work_order"]
    assert desk.advance(seconds=2) == 1
    assert case.open_tasks() == ["dispatch_work_order", "supervise_dispatch_overdue"]
    assert case.task("supervise_dispatch_overdue").group_name == "cs_supervisor"
    assert case.escalations() == ["timer_dispatch_5min"]
    case.complete("supervise_dispatch_overdue", dict(dispatch_overdue_action="立即派工"), by=cs_supervisor)
    case.complete("dispatch_work_order", work_order_021("security"), by=front_desk)
    assert case.task("handle_complaint").group_name == "security"
    case.complete("handle_complaint", HANDLED, by=security)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("supervise_dispatch_overdue", "cs_supervisor_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "security_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_not_done_in_12_hours_the_department_reports_progress_to_the_front_desk(desk):
    """投诉WI 4.2.2: handle within 12 hours of dispatch; not done, the department reports the
    situation and progress to the front desk (due 24 hours after the first report)."""
    case = receive_and_register(desk)
    desk.advance(minutes=2)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    assert desk.advance(hours=11, minutes=59) == 0                               # 21:01
    assert case.open_tasks() == ["handle_complaint"]
    assert desk.advance(minutes=2) == 1                                          # 21:03 > 21:02
    assert case.open_tasks() == ["handle_complaint", "report_progress_to_front_desk"]
    report = case.task("report_progress_to_front_desk")
    assert report.group_name == "engineering"
    assert local(report.due_at) == at(24, 9)                                     # 24 h after the first report
    assert case.escalations() == ["timer_handle_12h"]
    case.complete("report_progress_to_front_desk", dict(progress_status="等待电梯厂家配件",
                                                        expected_completion_at=at(24, 8).isoformat()),
                  by=engineering)
    desk.advance(hours=10)                                                       # Tue 07:03, before the 24 h mark
    case.complete("handle_complaint", HANDLED, by=engineering)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    assert desk.advance(hours=3) == 0                                            # no 24-hour escalation
    close(case)
    assert case.status == "completed"
    assert case.escalations() == ["timer_handle_12h"]
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("report_progress_to_front_desk", "engineering_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_a_handling_time_agreed_with_the_owner_replaces_the_12_hours(desk):
    """投诉WI 4.2.2: within 12 hours, or the time agreed with the complainant."""
    agreed = at(24, 14).isoformat()                                              # Tue 14:00, 29 h after dispatch
    case = receive_and_register(desk, agreed_handling_time=agreed)
    case.complete("dispatch_work_order", work_order_021(agreed_handling_time=agreed), by=front_desk)
    assert local(case.task("handle_complaint").due_at) == at(24, 14)
    desk.advance(hours=13)                                                       # past 12 h: nothing yet
    assert case.open_tasks() == ["handle_complaint"]
    desk.advance(hours=12)                                                       # Tue 10:00: 24 h escalation only
    assert case.open_tasks() == ["handle_complaint", "report_escalation_to_supervisor"]
    desk.advance(hours=4, minutes=1)                                             # Tue 14:01: the agreed time passed
    assert case.open_tasks() == ["handle_complaint", "report_escalation_to_supervisor",
                                 "report_progress_to_front_desk"]
    assert case.escalations() == ["timer_escalate_24h", "timer_handle_12h"]


def test_the_agreed_time_recorded_on_026_still_counts_after_dispatch(desk):
    """000/投诉WI 4.1.1 / PROCESSES 1.2: the agreed handling time is recorded on 026; 4.2.2 counts
    the handling target from it."""
    agreed = at(24, 14).isoformat()
    case = receive_and_register(desk, agreed_handling_time=agreed)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    assert case.data["agreed_handling_time"] == agreed
    assert local(case.task("handle_complaint").due_at) == at(24, 14)


# --- 24-hour escalation and the daily 17:00 report -----------------------------------------

def test_still_open_after_24_hours_the_case_is_escalated_instructed_and_reported_daily_before_17(desk):
    """投诉WI 4.2.3-4.2.4: open 24 hours after the first report — the front desk reports to the
    supervisor and fills 026 for the department head's written instruction; the case enters 027;
    the department reports progress before 17:00 every day until done; a missed report reminds
    the department head (design choice)."""
    case = receive_and_register(desk, is_major_complaint=True)
    desk.advance(minutes=2)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    desk.advance(hours=12, minutes=1)                                            # Mon 21:03
    case.complete("report_progress_to_front_desk", dict(progress_status="主板返厂"), by=engineering)

    desk.advance(hours=11, minutes=56)                                           # Tue 08:59
    assert case.open_tasks() == ["handle_complaint"]
    desk.advance(minutes=2)                                                      # Tue 09:01
    assert case.open_tasks() == ["handle_complaint", "report_escalation_to_supervisor"]
    assert case.task("report_escalation_to_supervisor").group_name == "front_desk"
    assert case.escalations() == ["timer_handle_12h", "timer_escalate_24h"]
    case.complete("report_escalation_to_supervisor", dict(escalation_summary="主板返厂, 预计周四到货",
                                                          escalated_to_supervisor=True), by=front_desk)
    assert case.task("acknowledge_escalation").group_name == "cs_supervisor"
    case.complete("acknowledge_escalation", dict(supervisor_escalation_opinion="每日跟进"), by=cs_supervisor)
    assert case.task("instruct_on_escalation").group_name == "dept_head"
    case.complete("instruct_on_escalation", dict(dept_head_instruction="先开通备用电梯, 主板到货当天更换"),
                  by=dept_head)
    assert case.task("register_complaint_summary").group_name == "customer_service"
    case.complete("register_complaint_summary", dict(summary_entry_no="027-2026-118"), by=customer_service)
    assert case.open_tasks() == ["handle_complaint"]
    assert case.data["dept_head_instruction"] == "先开通备用电梯, 主板到货当天更换"   # 按批示执行

    # Wednesday: the first daily report opens at 08:00 (first 08:00 after the 24-hour mark).
    desk.clock.set(at(25, 7, 59))
    assert desk.advance(minutes=0) == 0
    desk.advance(minutes=2)                                                      # Wed 08:01
    assert case.open_tasks() == ["handle_complaint", "report_daily_progress"]
    daily = case.task("report_daily_progress")
    assert daily.group_name == "engineering" and local(daily.due_at) == at(25, 17)
    desk.advance(hours=2)
    case.complete("report_daily_progress", dict(daily_progress_report="备用电梯已开通, 主板在途"), by=engineering)
    desk.advance(hours=7)                                                        # Wed 17:01: replied, no reminder
    assert case.open_tasks() == ["handle_complaint"]

    # Thursday: nobody replies by 17:00, the department head is reminded.
    desk.clock.set(at(26, 8, 1))
    desk.advance(minutes=0)
    assert case.open_tasks() == ["handle_complaint", "report_daily_progress"]
    desk.advance(hours=9)                                                        # Thu 17:01
    assert case.open_tasks() == ["handle_complaint", "remind_missed_daily_report"]
    assert case.task("remind_missed_daily_report").group_name == "dept_head"
    assert case.escalations()[-1] == "timer_daily_report_missed"
    case.complete("remind_missed_daily_report", dict(missed_report_followup="已督促工程部每日回复"), by=dept_head)

    # Friday before 08:00 the lift is fixed and accepted: no more daily reports.
    desk.clock.set(at(27, 7))
    case.complete("handle_complaint", HANDLED, by=engineering)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    desk.advance(hours=2)                                                        # Fri 09:00
    assert case.open_tasks() == ["return_visit_phone"]
    close(case)
    assert case.status == "completed"
    assert case.escalations() == ["timer_handle_12h", "timer_escalate_24h", "timer_daily_report_missed"]
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("report_progress_to_front_desk", "engineering_1"),
        ("report_escalation_to_supervisor", "front_desk_1"),
        ("acknowledge_escalation", "cs_supervisor_1"),
        ("instruct_on_escalation", "dept_head_1"),
        ("register_complaint_summary", "customer_service_1"),
        ("report_daily_progress", "engineering_1"),
        ("remind_missed_daily_report", "dept_head_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
    assert case.data["is_major_complaint"] is True and case.data["dispatch_department"] == "engineering"


def escalated_and_instructed(desk):
    """A case past 24 hours: reported, acknowledged, instructed (批示) and entered in 027."""
    case = receive_and_register(desk)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    desk.advance(hours=24, minutes=1)
    case.complete("report_progress_to_front_desk", dict(progress_status="进行中"), by=engineering)
    case.complete("report_escalation_to_supervisor", dict(escalation_summary="未完成", escalated_to_supervisor=True),
                  by=front_desk)
    case.complete("acknowledge_escalation", dict(supervisor_escalation_opinion="督办"), by=cs_supervisor)
    case.complete("instruct_on_escalation", dict(dept_head_instruction="今日内完成"), by=dept_head)
    case.complete("register_complaint_summary", dict(summary_entry_no="027-2026-119"), by=customer_service)
    return case


ENGINE_BRANCH_DATA = (
    "engine: data completed in a non-interrupting boundary branch (timer_escalate_24h -> report_escalation -> "
    "acknowledge -> instruct_on_escalation -> register_complaint_summary) never reaches the tasks of the main "
    "flow and is dropped from Instance.data once the main flow moves on; BPMN-CONVENTIONS says 'a completed "
    "task's data is merged into the case data'. Repro: /tmp/pc_repro/repro.py case B")


def test_the_handler_is_given_the_department_heads_instruction_and_cannot_change_it(desk):
    """投诉WI 4.2.3: the instruction (批示) is passed to the handler, who carries it out (按批示执行)."""
    case = escalated_and_instructed(desk)
    with pytest.raises(ValidationFailed) as refused:
        case.complete("handle_complaint", {**HANDLED, "dept_head_instruction": "不用管"}, by=engineering)
    assert refused.value.details == {"dept_head_instruction": "is read-only"}
    # The work order shows the instruction: sending it back unchanged is accepted.
    case.complete("handle_complaint", {**HANDLED, "dept_head_instruction": "今日内完成"}, by=engineering)
    assert case.open_tasks() == ["review_handling_result"]


def test_the_027_entry_and_the_instruction_stay_on_the_record_of_a_closed_case(desk):
    """投诉WI 4.2.3: the escalated case is entered in 027 *so it can be searched*; 026 carries the
    department head's instruction."""
    case = escalated_and_instructed(desk)
    case.complete("handle_complaint", HANDLED, by=engineering)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    close(case)
    assert case.status == "completed"
    assert case.data["summary_entry_no"] == "027-2026-119"
    assert case.data["dept_head_instruction"] == "今日内完成"


# --- difficult cases ------------------------------------------------------------------------

def test_a_difficult_case_gets_a_company_opinion_and_deadline_and_is_tracked_when_the_deadline_passes(desk):
    """002/顾客 三.1.3: difficult cases are reported to the company's departments, who set a
    handling opinion and a deadline, copied to the general manager, and track it to the deadline."""
    case = receive_and_register(desk)
    desk.advance(minutes=2)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    desk.advance(hours=2)
    case.complete("handle_complaint", {**HANDLED, "handle_outcome": "difficult"}, by=engineering)
    assert case.open_tasks() == ["set_difficult_case_opinion"]
    assert case.task("set_difficult_case_opinion").group_name == "center_lead"
    deadline = at(23, 17)
    case.complete("set_difficult_case_opinion", dict(company_handling_opinion="协调电梯维保单位当日更换",
                                                     difficult_case_deadline=deadline.isoformat(), gm_copied=True),
                  by=center_lead)
    by_deadline = case.task("handle_by_deadline")
    assert by_deadline.group_name == "engineering" and local(by_deadline.due_at) == deadline
    assert "timer_difficult_deadline" in case.waiting_timers()

    desk.clock.set(at(23, 16, 59))
    assert desk.advance(minutes=0) == 0
    desk.advance(minutes=2)                                                      # 17:01
    assert case.open_tasks() == ["handle_by_deadline", "track_difficult_case_overdue"]
    assert case.task("track_difficult_case_overdue").group_name == "center_lead"
    assert case.escalations() == ["timer_difficult_deadline"]
    case.complete("track_difficult_case_overdue", dict(difficult_overdue_tracking="维保单位18点前到场"), by=center_lead)
    desk.advance(hours=1)
    case.complete("handle_by_deadline", dict(deadline_handling_action="维保单位更换曳引机",
                                             deadline_handling_result="已恢复"), by=engineering)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("set_difficult_case_opinion", "center_lead_1"),
        ("track_difficult_case_overdue", "center_lead_1"),
        ("handle_by_deadline", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
    assert case.data["gm_copied"] is True and case.data["difficult_case_deadline"] == deadline.isoformat()


def test_a_difficult_case_done_before_its_deadline_is_not_tracked(desk):
    """002/顾客 三.1.3: tracked only until the deadline; done in time, nothing fires."""
    case = receive_and_register(desk)
    case.complete("dispatch_work_order", work_order_021("security"), by=front_desk)
    case.complete("handle_complaint", {**HANDLED, "handle_outcome": "difficult"}, by=security)
    case.complete("set_difficult_case_opinion", dict(company_handling_opinion="联系派出所",
                                                     difficult_case_deadline=at(23, 18).isoformat(), gm_copied=False),
                  by=center_lead)
    desk.advance(hours=5)                                                        # 14:00
    case.complete("handle_by_deadline", dict(deadline_handling_action="派出所调解", deadline_handling_result="已和解"),
                  by=security)
    assert "timer_difficult_deadline" not in case.waiting_timers()
    desk.advance(hours=5)                                                        # 19:00, past the deadline
    assert case.open_tasks() == ["review_handling_result"]
    case.complete("review_handling_result", APPROVED, by=dept_head)
    close(case)
    assert case.escalations() == []
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "security_1"),
        ("set_difficult_case_opinion", "center_lead_1"),
        ("handle_by_deadline", "security_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


# --- head review ----------------------------------------------------------------------------

def test_the_department_head_sends_an_unfinished_result_back_with_a_reason(desk):
    """投诉WI 4.2.6: the department head reviews the result; may send it back (design choice)."""
    case = receive_and_register(desk)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    desk.advance(hours=1)
    case.complete("handle_complaint", HANDLED, by=engineering)
    case.complete("review_handling_result", dict(head_review_result="send_back", head_review_opinion="未查明停梯原因"),
                  by=dept_head)
    assert case.open_tasks() == ["handle_complaint"]
    again = case.task("handle_complaint")
    assert again.group_name == "engineering" and local(again.due_at) == at(23, 21)   # still 12 h from dispatch
    desk.advance(hours=1)
    # The work order shows the head's reason (read-only): it goes back unchanged.
    case.complete("handle_complaint", dict(handling_action="查明为门锁回路故障并更换", handling_result="已修复",
                                           handle_outcome="resolved", head_review_opinion="未查明停梯原因"),
                  by=engineering)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    close(case)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
    assert case.data["head_review_result"] == "approved"


def test_the_department_head_sees_what_the_handler_recorded(desk):
    """投诉WI 4.2.2 / 4.2.6: the handler records action and result on 021; the head reviews them."""
    case = receive_and_register(desk)
    case.complete("dispatch_work_order", work_order_021(), by=front_desk)
    case.complete("handle_complaint", HANDLED, by=engineering)
    assert case.open_tasks() == ["review_handling_result"]
    assert case.data["handling_action"] == "更换电梯门机板"
    assert case.data["handling_result"] == "电梯恢复运行"


# --- return visit ---------------------------------------------------------------------------

def handled_and_approved(desk, *, department: str = "engineering"):
    case = receive_and_register(desk)
    case.complete("dispatch_work_order", work_order_021(department), by=front_desk)
    actor = {"engineering": engineering, "security": security, "customer_service": customer_service}[department]
    case.complete("handle_complaint", HANDLED, by=actor)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    return case


def test_return_visits_missed_the_same_day_and_on_site_within_12_hours_go_to_the_supervisor(desk):
    """投诉WI 4.2.6: phone back the same day; on site within 12 hours when needed (029); late
    visits are followed up by the supervisor (design choice)."""
    case = handled_and_approved(desk)
    assert local(case.task("return_visit_phone").due_at) == at(23, 23, 59)
    desk.clock.set(at(23, 23, 58))
    assert desk.advance(minutes=0) == 0
    desk.advance(minutes=2)                                                      # Tue 00:00
    assert case.open_tasks() == ["return_visit_phone", "supervise_return_visit_overdue"]
    assert case.task("supervise_return_visit_overdue").group_name == "cs_supervisor"
    assert case.escalations() == ["timer_return_visit_same_day"]
    case.complete("supervise_return_visit_overdue", dict(visit_overdue_action="上班后立即回访"), by=cs_supervisor)

    desk.clock.set(at(24, 9))
    case.complete("return_visit_phone", phone_visit(onsite=True, return_visit_at=at(24, 9).isoformat()),
                  by=front_desk)
    assert case.open_tasks() == ["visit_onsite"]
    assert local(case.task("visit_onsite").due_at) == at(24, 21)
    desk.advance(hours=11, minutes=59)
    assert case.open_tasks() == ["visit_onsite"]
    desk.advance(minutes=2)                                                      # 21:01
    assert case.open_tasks() == ["visit_onsite", "supervise_return_visit_overdue"]
    assert case.escalations() == ["timer_return_visit_same_day", "timer_onsite_visit_12h"]
    case.complete("supervise_return_visit_overdue", dict(visit_overdue_action="明早上门"), by=cs_supervisor)
    desk.clock.set(at(25, 9))
    case.complete("visit_onsite", onsite_visit(at(25, 9)), by=customer_service)
    case.complete("review_and_archive", ARCHIVE, by=cs_supervisor)
    assert case.status == "completed"
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("supervise_return_visit_overdue", "cs_supervisor_1"),
        ("return_visit_phone", "front_desk_1"),
        ("supervise_return_visit_overdue", "cs_supervisor_1"),
        ("visit_onsite", "customer_service_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_an_on_site_visit_at_the_agreed_time_and_closing_withdraws_the_open_reminder(desk):
    """投诉WI 4.2.6: on site within 12 hours *or at an agreed time*; the case ends at archiving
    (terminate), withdrawing what is still open."""
    case = handled_and_approved(desk)
    agreed = at(24, 15)                                                          # Tue 15:00, 30 h later
    case.complete("return_visit_phone", phone_visit(onsite=True, onsite_visit_agreed_time=agreed.isoformat()),
                  by=front_desk)
    assert local(case.task("visit_onsite").due_at) == agreed
    desk.advance(hours=13)                                                       # 12 h do not count
    assert case.open_tasks() == ["visit_onsite"]
    desk.clock.set(at(24, 15, 1))
    desk.advance(minutes=0)
    assert case.open_tasks() == ["visit_onsite", "supervise_return_visit_overdue"]
    assert case.escalations() == ["timer_onsite_visit_12h"]
    case.complete("visit_onsite", onsite_visit(at(24, 15, 1)), by=customer_service)
    case.complete("review_and_archive", ARCHIVE, by=cs_supervisor)               # the reminder is still open
    assert case.status == "completed"
    assert case.open_tasks() == []
    assert ("task_cancelled", "cs_supervisor_1", "supervise_return_visit_overdue") in case.history()
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("visit_onsite", "customer_service_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]


def test_an_owner_not_satisfied_makes_a_secondary_complaint_that_is_dispatched_again(desk):
    """投诉WI 4.2.6: satisfied or not; not satisfied → re-dispatch, counted as a secondary
    complaint (二次投诉, design choice). The 5-minute and 24-hour clocks restart."""
    case = handled_and_approved(desk)
    desk.advance(hours=2)                                                        # Mon 11:00
    case.complete("return_visit_phone", phone_visit("not_satisfied", customer_opinion="电梯仍有异响"), by=front_desk)
    assert case.open_tasks() == ["dispatch_work_order"]
    data = case.data
    assert data["secondary_complaint_count"] == 1 and data["is_secondary_complaint"] is True
    assert data["handling_clock_start"] == at(23, 11).isoformat() and data["agreed_handling_time"] is None
    assert local(case.task("dispatch_work_order").due_at) == at(23, 11, 5)
    desk.advance(minutes=3)
    assert case.open_tasks() == ["dispatch_work_order"]                          # a new 5-minute clock
    case.complete("dispatch_work_order", work_order_021("security", work_order_content="核查异响"), by=front_desk)
    assert case.task("handle_complaint").group_name == "security"
    assert local(case.task("handle_complaint").due_at) == at(23, 23, 3)
    desk.advance(hours=1)
    case.complete("handle_complaint", HANDLED, by=security)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    # The on-site visit finds the owner still unhappy: a second secondary complaint.
    case.complete("return_visit_phone", phone_visit(onsite=True), by=front_desk)
    case.complete("visit_onsite", onsite_visit(desk.clock.now(), "not_satisfied"), by=customer_service)
    assert case.open_tasks() == ["dispatch_work_order"] and case.data["secondary_complaint_count"] == 2
    case.complete("dispatch_work_order", work_order_021("engineering"), by=front_desk)
    case.complete("handle_complaint", HANDLED, by=engineering)
    case.complete("review_handling_result", APPROVED, by=dept_head)
    close(case)
    assert case.status == "completed"
    assert case.escalations() == []
    assert case.data["secondary_complaint_count"] == 2
    assert case.work() == [
        ("register_complaint", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "security_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("visit_onsite", "customer_service_1"),
        ("dispatch_work_order", "front_desk_1"),
        ("handle_complaint", "engineering_1"),
        ("review_handling_result", "dept_head_1"),
        ("return_visit_phone", "front_desk_1"),
        ("review_and_archive", "cs_supervisor_1"),
    ]
