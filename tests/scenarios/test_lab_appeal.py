"""Scenarios of `lab_appeal` — 实验室客户投诉 / 申诉处理 (PROCESSES.md section 3).

Seeds: 000/LC 《处理客户投诉或申诉作业指导书 LC-GL-04》 steps 1-6 and 002/实验室, the CNAS
《投诉处理程序》 4.2-4.6. Each test is one story as the laboratory's people work it:
customer service registers, the quality director investigates with the technical
manager, quality service confirms validity, the general manager approves and signs,
the records clerk archives. The clock starts Monday 2026-11-23 09:00 +08:00.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.errors import Forbidden, ValidationFailed
from engine.users import save_user
from storage.models import Timer
from tests.scenarios.conftest import person

TZ = ZoneInfo("Asia/Shanghai")
# The reason the not-accepted reply form offers (its defaultValue; the form prefills it).
WRITTEN_IN_15_DAYS = "对检测/检验报告的异议应在接到报告15天内以书面形式提出"

# The laboratory's people (the first of each group).
CS = person("customer_service")
QD = person("quality_director")
GM = person("general_manager")
QS = person("quality_service")
TM = person("technical_manager")
PM = person("project_manager")
EX = person("executor")
RC = person("records_clerk")

GROUPS = ("customer_service", "quality_director", "general_manager", "quality_service",
          "technical_manager", "project_manager", "executor", "records_clerk")

# Every task on which a person involved in the disputed work must stand aside (4.2.2.2, 4.3.6).
RECUSED_TASKS = {
    "reply_not_accepted", "gm_instruction", "form_investigation_team", "investigate_technical",
    "investigate_management", "confirm_validity", "arrange_retest", "decide_after_retest",
    "communicate_not_valid", "write_complaint_report", "gm_approve_report", "inform_and_compensate",
    "approve_corrective_action", "verify_effectiveness", "additional_internal_audit", "management_review",
    "draft_reply", "gm_sign_reply", "notify_outcome", "prepare_cnas_report", "gm_sign_cnas_report",
}


@pytest.fixture
def lab(desk, monkeypatch):
    """The desk, with the laboratory's staff in the users table: `user` form fields
    (involved_staff, investigation_team, retest_witness) name real users only.
    Nobody logs in here, so the (deliberately slow) password hash is skipped."""
    monkeypatch.setattr("engine.users.hash_password", lambda password: "scrypt$not-a-login")
    with desk.db.unit_of_work() as uow:
        for group in GROUPS:
            for number in (1, 2):
                save_user(uow.session, f"{group}_{number}", "password-123", ("staff",), (group,), None,
                          desk.clock.now())
        uow.commit()
    return desk


def now(desk) -> str:
    return desk.clock.now().astimezone(TZ).isoformat()


def local(moment: datetime) -> datetime:
    return moment.astimezone(TZ)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def complaint(**overrides):
    """LD-GL-22 as customer service fills it: a written objection to test report
    R-2026-1108, received on 2026-11-08 and filed today, 2026-11-23 (day 15)."""
    data = dict(kind="complaint", channel="written", source="customer", complainant_name="华南建材有限公司",
                complainant_contact="020-8888 0000", report_no="R-2026-1108", report_received_date="2026-11-08",
                filed_date="2026-11-23", content="对报告中抗压强度结论有异议", major=False)
    data.update(overrides)
    return data


# --- steps, as the people fill their forms -------------------------------------------------

def register_and_acknowledge(desk, case):
    case.complete("register_nonconformity", {"nonconformity_work_item": "混凝土抗压强度",
                                             "nonconformity_description": "客户对检测结论有异议",
                                             "quality_director_notified_at": now(desk)}, by=CS)
    case.complete("acknowledge_receipt", {"ack_method": "phone", "ack_sent_at": now(desk)}, by=CS)


def report_to_general_manager(desk, case):
    case.complete("report_to_gm", {"gm_report_summary": "重大投诉,请批示", "gm_reported_at": now(desk)}, by=QD)
    case.complete("gm_instruction", {"gm_instruction_text": "由质量总监牵头,一周内查明"}, by=GM)


def investigate(desk, case, category="technical", validity="valid"):
    case.complete("form_investigation_team", {"complaint_category": category,
                                              "investigation_team": ["technical_manager_1", "quality_director_1"]},
                  by=QD)
    if category == "technical":
        case.complete("investigate_technical", {"investigation_checked_items": ["samples", "original_records"],
                                                "investigation_findings": "原始记录与报告不一致"}, by=TM)
    else:
        case.complete("investigate_management", {"investigation_scope": ["turnaround"],
                                                 "investigation_findings": "超出合同约定检测时限"}, by=QD)
    case.complete("confirm_validity", {"complaint_validity": validity, "validity_basis": "调查结果"}, by=QS)


def report_and_inform(desk, case):
    case.complete("write_complaint_report", {"complaint_report_summary": "数据转录错误",
                                             "responsibility_analysis": "检测员转录失误",
                                             "proposed_handling": "重新出具报告"}, by=QD)
    case.complete("gm_approve_report", {"gm_report_decision": "approve"}, by=GM)
    case.complete("inform_and_compensate", {"result_informed_at": now(desk)}, by=QS)


def corrective_action(desk, case, *, effectiveness="effective", **followups):
    case.complete("state_root_cause", {"root_cause": "未执行数据复核", "corrective_action_proposal": "增加双人复核",
                                       "cause_told_to_customer": True}, by=PM)
    case.complete("approve_corrective_action", {"ca_approval": "approve"}, by=QD)
    case.complete("implement_corrective_action", {"ca_execution_record": "已培训并执行双人复核",
                                                  "ca_completed_date": "2026-11-30"}, by=EX)
    case.complete("monitor_corrective_action", {"ca_implementation_report": "连续两周无转录错误"}, by=PM)
    case.complete("verify_effectiveness", {"ca_effectiveness": effectiveness, "verification_note": "抽查20份",
                                           **followups}, by=QD)


def reply_notify_archive(desk, case):
    case.complete("draft_reply", {"reply_letter": "贵司所提异议成立,已重新出具报告"}, by=QD)
    case.complete("notify_outcome", {"outcome_notice_method": "written", "outcome_notified_at": now(desk)}, by=CS)
    archive(desk, case)


def archive(desk, case):
    case.complete("archive_records", {"archive_no": "TS-2026-031", "archived_at": now(desk)}, by=RC)


FRONT = [("register_nonconformity", "customer_service_1"), ("acknowledge_receipt", "customer_service_1")]
GM_REPORT = [("report_to_gm", "quality_director_1"), ("gm_instruction", "general_manager_1")]
TECHNICAL = [("form_investigation_team", "quality_director_1"), ("investigate_technical", "technical_manager_1"),
             ("confirm_validity", "quality_service_1")]
MANAGEMENT = [("form_investigation_team", "quality_director_1"), ("investigate_management", "quality_director_1"),
              ("confirm_validity", "quality_service_1")]
REPORT = [("write_complaint_report", "quality_director_1"), ("gm_approve_report", "general_manager_1"),
          ("inform_and_compensate", "quality_service_1")]
CORRECTIVE = [("state_root_cause", "project_manager_1"), ("approve_corrective_action", "quality_director_1"),
              ("implement_corrective_action", "executor_1"), ("monitor_corrective_action", "project_manager_1"),
              ("verify_effectiveness", "quality_director_1")]
REPLY = [("draft_reply", "quality_director_1"), ("notify_outcome", "customer_service_1")]
ARCHIVE = [("archive_records", "records_clerk_1")]


def fired(case) -> list[str]:
    """The case's timers that fired, in order (desk.advance also fires other processes' timers)."""
    return [element for kind, _who, element in case.history() if kind == "timer_fired"]


def timers(case) -> dict[str, tuple[str, datetime]]:
    """element id -> (status, local due time) of every timer the case armed."""
    return {t.element_id: (t.status, local(t.due_at)) for t in case._rows(Timer)}


# --- acceptance: the 15-day written-objection window (4.2.1.2) ---------------------------

def test_written_objection_on_day_15_is_accepted_and_a_valid_technical_complaint_runs_to_archive(lab):
    """4.2.1.2 "对检测/检验报告的异议应在用户接到报告15天内以书面形式提出" — received 11-08,
    filed 11-23: day 15, accepted. LC 1-6 and 4.2.3.5: the happy path of a valid technical
    complaint, report approved, corrective action effective, reply, notify, archive (4.4.7)."""
    case = lab.start("lab_appeal", complaint(), by=CS)

    assert case.data["within_window"] is True
    assert case.data["objection_written"] is True
    assert case.data["objection_accepted"] is True
    assert case.open_tasks() == ["register_nonconformity"]
    assert case.task("register_nonconformity").group_name == "customer_service"
    case.complete("register_nonconformity", {"nonconformity_description": "客户对检测结论有异议",
                                             "quality_director_notified_at": now(lab)}, by=CS)
    assert case.open_tasks() == ["acknowledge_receipt"]
    case.complete("acknowledge_receipt", {"ack_method": "phone", "ack_sent_at": now(lab)}, by=CS)

    # Neither major nor from CNAS: straight to the quality director, no deadline watch.
    assert case.open_tasks() == ["form_investigation_team"]
    assert case.task("form_investigation_team").group_name == "quality_director"
    assert case.waiting_timers() == []
    case.complete("form_investigation_team", {"complaint_category": "technical",
                                              "investigation_team": ["technical_manager_1", "quality_director_1"]},
                  by=QD)
    assert case.task("investigate_technical").group_name == "technical_manager"
    case.complete("investigate_technical", {"investigation_checked_items": ["original_records", "data_processing"],
                                            "investigation_findings": "原始记录与报告不一致"}, by=TM)
    assert case.task("confirm_validity").group_name == "quality_service"
    case.complete("confirm_validity", {"complaint_validity": "valid", "validity_basis": "原始记录"}, by=QS)

    assert case.open_tasks() == ["write_complaint_report"]
    report_and_inform(lab, case)
    assert case.task("state_root_cause").group_name == "project_manager"
    corrective_action(lab, case)
    # No follow-up measure chosen: the inclusive gateway goes straight to the reply.
    assert case.open_tasks() == ["draft_reply"]
    case.complete("draft_reply", {"reply_letter": "贵司所提异议成立"}, by=QD)
    # Not major: no general manager signature.
    assert case.open_tasks() == ["notify_outcome"]
    case.complete("notify_outcome", {"outcome_notice_method": "written", "outcome_notified_at": now(lab)}, by=CS)
    # Not from CNAS: no CNAS report.
    assert case.open_tasks() == ["archive_records"]
    assert case.task("archive_records").group_name == "records_clerk"
    archive(lab, case)

    assert case.status == "completed"
    assert case.open_tasks() == []
    assert case.work() == FRONT + TECHNICAL + REPORT + CORRECTIVE + REPLY + ARCHIVE
    assert case.escalations() == []
    assert case.data["complaint_validity"] == "valid"
    assert case.data["gm_report_decision"] == "approve"
    assert case.data["ca_effectiveness"] == "effective"
    assert case.data["archive_no"] == "TS-2026-031"
    assert case.history()[0] == ("instance_started", "customer_service_1", None)
    assert case.history()[-1][0] == "instance_completed"


def test_objection_filed_16_days_after_receiving_the_report_is_not_accepted(lab):
    """4.2.1.2: received 11-07, filed 11-23 is day 16 — not accepted; customer service
    replies with the reason and the case ends (the end is a design choice)."""
    case = lab.start("lab_appeal", complaint(report_received_date="2026-11-07"), by=CS)

    assert case.data["within_window"] is False
    assert case.data["objection_accepted"] is False
    assert case.open_tasks() == ["reply_not_accepted"]
    assert case.task("reply_not_accepted").group_name == "customer_service"
    case.complete("reply_not_accepted", {"not_accepted_reason": "超过接到报告后15天",
                                         "not_accepted_reply_method": "written",
                                         "not_accepted_replied_at": now(lab)}, by=CS)

    assert case.status == "completed"
    assert case.work() == [("reply_not_accepted", "customer_service_1")]
    assert case.waiting_timers() == []
    assert case.data["not_accepted_reason"] == "超过接到报告后15天"


@pytest.mark.parametrize("channel", ["oral", "phone"])
def test_unwritten_objection_to_a_report_is_not_accepted_even_within_15_days(lab, channel):
    """4.2.1.2 "以书面形式提出": an oral or telephone objection to a test report, filed on
    day 10, is not accepted; the reply gives the reason (the text the form offers)."""
    case = lab.start("lab_appeal", complaint(channel=channel, report_received_date="2026-11-13"), by=CS)

    assert case.data["within_window"] is True
    assert case.data["objection_written"] is False
    assert case.data["objection_accepted"] is False
    assert case.open_tasks() == ["reply_not_accepted"]
    case.complete("reply_not_accepted", {"not_accepted_reason": WRITTEN_IN_15_DAYS,
                                         "not_accepted_reply_method": channel,
                                         "not_accepted_replied_at": now(lab)}, by=CS)

    assert case.status == "completed"
    assert case.work() == [("reply_not_accepted", "customer_service_1")]
    assert case.data["not_accepted_reason"] == WRITTEN_IN_15_DAYS


def test_phone_complaint_about_turnaround_is_accepted_and_investigated_as_a_management_complaint(lab):
    """The 15-day written rule is for objections to a test report; a phone complaint about
    turnaround (no report) is accepted. 4.2.2.1: "对实验室的工作程序、合同的执行、测试时限…
    由质量负责人负责组织相关人员调查核实" — the management investigation."""
    case = lab.start("lab_appeal", complaint(channel="phone", report_no="", report_received_date=None,
                                             content="检测周期超过合同约定"), by=CS)

    assert case.data["objection_accepted"] is True
    register_and_acknowledge(lab, case)
    case.complete("form_investigation_team", {"complaint_category": "management",
                                              "investigation_team": ["quality_director_1"]}, by=QD)
    assert case.open_tasks() == ["investigate_management"]
    assert case.task("investigate_management").group_name == "quality_director"
    case.complete("investigate_management", {"investigation_scope": ["contract", "turnaround"],
                                             "evidence_obtained": "客户提供了合同副本",
                                             "investigation_findings": "超出合同约定检测时限3天"}, by=QD)
    assert case.open_tasks() == ["confirm_validity"]
    case.complete("confirm_validity", {"complaint_validity": "valid", "validity_basis": "合同条款"}, by=QS)
    report_and_inform(lab, case)
    corrective_action(lab, case)
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == FRONT + MANAGEMENT + REPORT + CORRECTIVE + REPLY + ARCHIVE
    assert case.data["complaint_category"] == "management"
    assert case.data["investigation_scope"] == ["contract", "turnaround"]


# --- major complaints: the general manager (4.2.1.1, 4.4.2) -------------------------------

def test_major_complaint_goes_to_the_general_manager_who_returns_the_report_and_the_reply_once(lab):
    """4.2.1.1 "遇重大投诉时,质量负责人应将记录报公司总经理批示"; 4.2.3.5 the report is
    approved by the general manager (returned once here); 4.4.2 "遇重大投诉的处理时,起草后的
    复函应由公司总经理审核或签发" (returned once, then signed)."""
    case = lab.start("lab_appeal", complaint(major=True), by=CS)
    register_and_acknowledge(lab, case)

    assert case.open_tasks() == ["report_to_gm"]
    assert case.task("report_to_gm").group_name == "quality_director"
    case.complete("report_to_gm", {"gm_report_summary": "重大投诉,请批示", "gm_reported_at": now(lab)}, by=QD)
    assert case.open_tasks() == ["gm_instruction"]
    assert case.task("gm_instruction").group_name == "general_manager"
    case.complete("gm_instruction", {"gm_instruction_text": "由质量总监牵头查明"}, by=GM)
    assert case.waiting_timers() == []  # major, but not from CNAS: no 2-month watch
    investigate(lab, case, "technical", "valid")

    case.complete("write_complaint_report", {"complaint_report_summary": "初稿", "responsibility_analysis": "待定",
                                             "proposed_handling": "待定"}, by=QD)
    assert case.task("gm_approve_report").group_name == "general_manager"
    case.complete("gm_approve_report", {"gm_report_decision": "return", "gm_report_comment": "责任分析不清"}, by=GM)
    assert case.open_tasks() == ["write_complaint_report"]
    case.complete("write_complaint_report", {"complaint_report_summary": "数据转录错误",
                                             "responsibility_analysis": "检测员转录失误",
                                             "proposed_handling": "重新出具报告并赔偿检测费",
                                             "compensation_proposed": True}, by=QD)
    case.complete("gm_approve_report", {"gm_report_decision": "approve"}, by=GM)
    case.complete("inform_and_compensate", {"result_informed_at": now(lab), "compensation_agreed": True,
                                            "compensation_amount": 3200, "compensation_terms": "退还检测费"}, by=QS)
    corrective_action(lab, case)

    case.complete("draft_reply", {"reply_letter": "初稿"}, by=QD)
    assert case.open_tasks() == ["gm_sign_reply"]
    assert case.task("gm_sign_reply").group_name == "general_manager"
    case.complete("gm_sign_reply", {"gm_reply_decision": "return", "gm_reply_comment": "语气欠妥"}, by=GM)
    assert case.open_tasks() == ["draft_reply"]
    case.complete("draft_reply", {"reply_letter": "定稿"}, by=QD)
    case.complete("gm_sign_reply", {"gm_reply_decision": "sign"}, by=GM)
    assert case.open_tasks() == ["notify_outcome"]
    case.complete("notify_outcome", {"outcome_notice_method": "written", "outcome_notified_at": now(lab)}, by=CS)
    archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + GM_REPORT + TECHNICAL
                           + [("write_complaint_report", "quality_director_1"),
                              ("gm_approve_report", "general_manager_1"),
                              ("write_complaint_report", "quality_director_1"),
                              ("gm_approve_report", "general_manager_1"),
                              ("inform_and_compensate", "quality_service_1")]
                           + CORRECTIVE
                           + [("draft_reply", "quality_director_1"), ("gm_sign_reply", "general_manager_1"),
                              ("draft_reply", "quality_director_1"), ("gm_sign_reply", "general_manager_1"),
                              ("notify_outcome", "customer_service_1")]
                           + ARCHIVE)
    assert case.data["gm_reply_decision"] == "sign"
    assert case.data["reply_letter"] == "定稿"
    assert case.data["compensation_amount"] == 3200


# --- validity: uncertain / not valid (4.4.5, 4.2.3.4) ---------------------------------------

def test_uncertain_complaint_is_retested_and_the_quality_director_finds_it_valid(lab):
    """4.4.5 "如果存在不确定因素,应安排复检,有关负责人应到现场…并做好复检记录。质量负责人根据
    复检结果确定投诉是否成立" — uncertain → retest → the director decides: valid."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case, "technical", "uncertain")

    assert case.open_tasks() == ["arrange_retest"]
    assert case.task("arrange_retest").group_name == "project_manager"
    case.complete("arrange_retest", {"retest_date": "2026-11-24", "retest_witness": "technical_manager_1",
                                     "retest_record": "复检值低于报告值8%"}, by=PM)
    assert case.open_tasks() == ["decide_after_retest"]
    assert case.task("decide_after_retest").group_name == "quality_director"
    case.complete("decide_after_retest", {"complaint_validity": "valid", "retest_decision_basis": "复检记录"}, by=QD)
    assert case.open_tasks() == ["write_complaint_report"]
    report_and_inform(lab, case)
    corrective_action(lab, case)
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + TECHNICAL
                           + [("arrange_retest", "project_manager_1"), ("decide_after_retest", "quality_director_1")]
                           + REPORT + CORRECTIVE + REPLY + ARCHIVE)
    assert case.data["complaint_validity"] == "valid"
    assert case.data["retest_witness"] == "technical_manager_1"


def test_uncertain_complaint_retest_confirms_the_report_and_quality_service_explains(lab):
    """4.4.5 then 4.2.3.4: the retest confirms the report — not valid; quality service
    explains to the complainant within a week and the file is archived."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case, "technical", "uncertain")
    case.complete("arrange_retest", {"retest_date": "2026-11-24", "retest_witness": "technical_manager_1",
                                     "retest_record": "复检值与报告一致"}, by=PM)
    case.complete("decide_after_retest", {"complaint_validity": "not_valid", "retest_decision_basis": "复检一致"},
                  by=QD)

    assert case.open_tasks() == ["communicate_not_valid"]
    case.complete("communicate_not_valid", {"not_valid_communication_method": "written",
                                            "not_valid_communication_record": "书面说明复检结果"}, by=QS)
    assert case.open_tasks() == ["archive_records"]
    archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + TECHNICAL
                           + [("arrange_retest", "project_manager_1"), ("decide_after_retest", "quality_director_1"),
                              ("communicate_not_valid", "quality_service_1")] + ARCHIVE)
    assert case.data["complaint_validity"] == "not_valid"


def test_not_valid_complaint_is_explained_within_a_week_and_no_reminder_fires(lab):
    """4.2.3.4 "经调查确认不属于本实验室责任的问题,质量服务部应在一周内与投诉方沟通解决" — due
    7 days after the task opens; done on day 6, the one-week timer never fires."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case, "technical", "not_valid")

    assert case.open_tasks() == ["communicate_not_valid"]
    task = case.task("communicate_not_valid")
    assert task.group_name == "quality_service"
    assert local(task.due_at) == at("2026-11-30T09:00:00+08:00")
    assert timers(case)["timer_communicate_7d"] == ("waiting", at("2026-11-30T09:00:00+08:00"))

    lab.advance(days=6)
    assert fired(case) == []
    case.complete("communicate_not_valid", {"not_valid_communication_method": "oral",
                                            "not_valid_communication_record": "电话解释,客户接受"}, by=QS)
    assert case.waiting_timers() == []
    assert timers(case)["timer_communicate_7d"][0] == "cancelled"
    lab.advance(days=2)
    assert fired(case) == []
    assert case.open_tasks() == ["archive_records"]
    archive(lab, case)

    assert case.status == "completed"
    assert case.escalations() == []
    assert case.work() == FRONT + TECHNICAL + [("communicate_not_valid", "quality_service_1")] + ARCHIVE


def test_not_valid_complaint_not_explained_after_a_week_is_escalated_to_the_quality_director(lab):
    """4.2.3.4 "在一周内": when the week passes without the communication the quality director
    gets a follow-up task (non-interrupting; an SLA breach is recorded); quality service
    still explains, then the file is archived."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case, "management", "not_valid")

    lab.advance(days=6, hours=23, minutes=59)
    assert fired(case) == []
    assert case.open_tasks() == ["communicate_not_valid"]
    lab.advance(minutes=1)
    assert fired(case) == ["timer_communicate_7d"]
    assert case.open_tasks() == ["communicate_not_valid", "remind_communication_overdue"]
    assert case.task("remind_communication_overdue").group_name == "quality_director"
    assert case.escalations() == ["timer_communicate_7d"]
    case.complete("remind_communication_overdue", {"communication_overdue_action": "要求今日内联系客户"}, by=QD)
    case.complete("communicate_not_valid", {"not_valid_communication_method": "written",
                                            "not_valid_communication_record": "已书面解释"}, by=QS)
    archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + MANAGEMENT
                           + [("remind_communication_overdue", "quality_director_1"),
                              ("communicate_not_valid", "quality_service_1")] + ARCHIVE)
    assert ("timer_fired", "system", "timer_communicate_7d") in case.history()


# --- corrective action loops (LC 3-6) ------------------------------------------------------

def test_quality_director_returns_the_corrective_action_proposal_once(lab):
    """LC 4: "检测/检验项目经理…提出纠正措施建议,质量总监批准纠正措施的实施" — returned once
    to the project manager, re-proposed and approved."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case)
    report_and_inform(lab, case)

    case.complete("state_root_cause", {"root_cause": "人员失误", "corrective_action_proposal": "批评教育"}, by=PM)
    assert case.task("approve_corrective_action").group_name == "quality_director"
    case.complete("approve_corrective_action", {"ca_approval": "return", "ca_approval_comment": "未找到根本原因"},
                  by=QD)
    assert case.open_tasks() == ["state_root_cause"]
    corrective_action(lab, case)
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + TECHNICAL + REPORT
                           + [("state_root_cause", "project_manager_1"),
                              ("approve_corrective_action", "quality_director_1")]
                           + CORRECTIVE + REPLY + ARCHIVE)
    assert case.data["corrective_action_proposal"] == "增加双人复核"
    assert case.data["ca_approval"] == "approve"


def test_corrective_action_found_not_effective_is_proposed_and_carried_out_again(lab):
    """LC 5-6: the executor records LD-GL-17, the project manager reports LD-GL-18, the
    quality director verifies effectiveness; not effective → propose again."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case)
    report_and_inform(lab, case)

    corrective_action(lab, case, effectiveness="not_effective")
    assert case.open_tasks() == ["state_root_cause"]
    corrective_action(lab, case)
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == FRONT + TECHNICAL + REPORT + CORRECTIVE + CORRECTIVE + REPLY + ARCHIVE
    assert case.data["ca_effectiveness"] == "effective"


# --- follow-up measures (4.4.3, 4.2.3.8, 4.2.3.9, 4.2.3.2) ---------------------------------

def test_followup_revises_the_report_runs_an_internal_audit_with_management_review_and_a_preventive_action(lab):
    """4.4.3 report revision, 4.2.3.8 additional internal audit, 4.2.3.9 "由公司总经理实施对
    管理体系的评审", 4.2.3.2 preventive action — all three measures at once, joined before
    the reply."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case)
    report_and_inform(lab, case)
    corrective_action(lab, case, report_revision_needed=True, internal_audit_needed=True,
                      preventive_action_needed=True)

    assert sorted(case.open_tasks()) == ["additional_internal_audit", "preventive_action", "revise_report"]
    assert case.task("revise_report").group_name == "project_manager"
    assert case.task("additional_internal_audit").group_name == "quality_director"
    assert case.task("preventive_action").group_name == "quality_service"
    case.complete("revise_report", {"revised_report_no": "R-2026-1108-A", "report_revision_note": "更正第3页"},
                  by=PM)
    case.complete("additional_internal_audit", {"audit_plan": "数据控制程序专项内审",
                                                "audit_findings": "质量方针未覆盖数据复核",
                                                "management_review_needed": True}, by=QD)
    assert sorted(case.open_tasks()) == ["management_review", "preventive_action"]
    assert case.task("management_review").group_name == "general_manager"
    case.complete("management_review", {"management_review_output": "修订质量手册第5章"}, by=GM)
    assert case.open_tasks() == ["preventive_action"]  # the join waits for the last branch
    case.complete("preventive_action", {"preventive_action_description": "推广至其他检测项目"}, by=QS)
    assert case.open_tasks() == ["draft_reply"]
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + TECHNICAL + REPORT + CORRECTIVE
                           + [("revise_report", "project_manager_1"),
                              ("additional_internal_audit", "quality_director_1"),
                              ("management_review", "general_manager_1"),
                              ("preventive_action", "quality_service_1")]
                           + REPLY + ARCHIVE)
    assert case.data["revised_report_no"] == "R-2026-1108-A"


def test_followup_internal_audit_alone_without_management_review(lab):
    """4.2.3.8 the audit runs; its findings do not touch the policy or the system's
    structure (4.2.3.9 not triggered), so no management review; no other measure."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case)
    report_and_inform(lab, case)
    corrective_action(lab, case, internal_audit_needed=True)

    assert case.open_tasks() == ["additional_internal_audit"]
    case.complete("additional_internal_audit", {"audit_plan": "专项内审", "audit_findings": "执行层面问题",
                                                "management_review_needed": False}, by=QD)
    assert case.open_tasks() == ["draft_reply"]
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + TECHNICAL + REPORT + CORRECTIVE
                           + [("additional_internal_audit", "quality_director_1")] + REPLY + ARCHIVE)


def test_followup_revise_report_and_preventive_action_only(lab):
    """4.4.3 and 4.2.3.2 without an audit: only the chosen branches open."""
    case = lab.start("lab_appeal", complaint(), by=CS)
    register_and_acknowledge(lab, case)
    investigate(lab, case)
    report_and_inform(lab, case)
    corrective_action(lab, case, report_revision_needed=True, preventive_action_needed=True)

    assert sorted(case.open_tasks()) == ["preventive_action", "revise_report"]
    case.complete("preventive_action", {"preventive_action_description": "增加自动校验"}, by=QS)
    assert case.open_tasks() == ["revise_report"]
    case.complete("revise_report", {"revised_report_no": "R-2026-1108-A", "report_revision_note": "更正"}, by=PM)
    reply_notify_archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + TECHNICAL + REPORT + CORRECTIVE
                           + [("preventive_action", "quality_service_1"), ("revise_report", "project_manager_1")]
                           + REPLY + ARCHIVE)


# --- CNAS-forwarded complaints (4.6) --------------------------------------------------------

def cnas_complaint(**overrides):
    return complaint(source="cnas", kind="complaint", channel="written", report_received_date="2026-11-13",
                     **overrides)


def test_cnas_forwarded_complaint_warns_the_gm_at_7_weeks_and_escalates_at_2_months(lab):
    """4.6 "质量负责人应立即向公司总经理汇报…形成调查报告…送公司总经理审批签字,最终的投诉处理
    结果必须在2个月内反馈给CNAS". Filed 2026-11-23: warning 49 days later (2027-01-11,
    design choice), escalation at 2 months (2027-01-23); the case then finishes with the
    CNAS report signed by the general manager."""
    case = lab.start("lab_appeal", cnas_complaint(), by=CS)
    assert case.waiting_timers() == []  # the watch starts once the case is accepted and acknowledged
    register_and_acknowledge(lab, case)

    assert case.open_tasks() == ["report_to_gm"]  # reported to the GM at once, though not major
    assert timers(case) == {"timer_cnas_warning": ("waiting", at("2027-01-11T00:00:00+08:00")),
                            "timer_cnas_deadline": ("waiting", at("2027-01-23T00:00:00+08:00"))}
    report_to_general_manager(lab, case)
    investigate(lab, case, "management", "valid")

    # 2027-01-10 23:59: nothing yet.
    lab.advance(days=48, hours=14, minutes=59)
    assert fired(case) == []
    assert "cnas_deadline_warning" not in case.open_tasks()
    lab.advance(minutes=1)
    assert fired(case) == ["timer_cnas_warning"]
    assert case.open_tasks() == ["write_complaint_report", "cnas_deadline_warning"]
    assert case.task("cnas_deadline_warning").group_name == "general_manager"
    assert case.escalations() == []  # a warning, not yet a breach
    case.complete("cnas_deadline_warning", {"cnas_warning_action": "本周内完成调查报告"}, by=GM)

    # 2027-01-22 23:59: still inside the 2 months.
    lab.advance(days=11, hours=23, minutes=59)
    assert fired(case) == ["timer_cnas_warning"]
    assert case.escalations() == []
    lab.advance(minutes=1)
    assert fired(case) == ["timer_cnas_warning", "timer_cnas_deadline"]
    assert case.open_tasks() == ["write_complaint_report", "cnas_deadline_escalation"]
    assert case.task("cnas_deadline_escalation").group_name == "general_manager"
    assert case.escalations() == ["timer_cnas_deadline"]
    assert [b["element_id"] for b in case.instance.breaches] == ["timer_cnas_deadline"]
    case.complete("cnas_deadline_escalation", {"cnas_escalation_action": "向CNAS说明延期原因"}, by=GM)
    assert case.waiting_timers() == []

    report_and_inform(lab, case)
    corrective_action(lab, case)
    case.complete("draft_reply", {"reply_letter": "复函"}, by=QD)
    case.complete("notify_outcome", {"outcome_notice_method": "written", "outcome_notified_at": now(lab)}, by=CS)
    assert case.open_tasks() == ["prepare_cnas_report"]
    assert case.task("prepare_cnas_report").group_name == "quality_director"
    case.complete("prepare_cnas_report", {"cnas_report": "调查报告(含处理结果)"}, by=QD)
    assert case.task("gm_sign_cnas_report").group_name == "general_manager"
    case.complete("gm_sign_cnas_report", {"cnas_report_signed_at": now(lab), "cnas_feedback_sent_at": now(lab)},
                  by=GM)
    archive(lab, case)

    assert case.status == "completed"
    assert case.work() == (FRONT + GM_REPORT + MANAGEMENT
                           + [("cnas_deadline_warning", "general_manager_1"),
                              ("cnas_deadline_escalation", "general_manager_1")]
                           + REPORT + CORRECTIVE + REPLY
                           + [("prepare_cnas_report", "quality_director_1"),
                              ("gm_sign_cnas_report", "general_manager_1")] + ARCHIVE)
    assert fired(case) == ["timer_cnas_warning", "timer_cnas_deadline"]


def test_cnas_case_closed_within_a_month_ends_the_deadline_watch(lab):
    """4.6 in time: a not-valid CNAS complaint is explained, reported to CNAS and archived
    within days; the closing (terminate) end cancels the 7-week and 2-month timers, which
    never fire afterwards."""
    case = lab.start("lab_appeal", cnas_complaint(), by=CS)
    register_and_acknowledge(lab, case)
    report_to_general_manager(lab, case)
    investigate(lab, case, "technical", "not_valid")
    lab.advance(days=2)
    case.complete("communicate_not_valid", {"not_valid_communication_method": "written",
                                            "not_valid_communication_record": "书面说明"}, by=QS)
    assert case.open_tasks() == ["prepare_cnas_report"]
    case.complete("prepare_cnas_report", {"cnas_report": "投诉不成立"}, by=QD)
    case.complete("gm_sign_cnas_report", {"cnas_report_signed_at": now(lab), "cnas_feedback_sent_at": now(lab)},
                  by=GM)
    assert sorted(case.waiting_timers()) == ["timer_cnas_deadline", "timer_cnas_warning"]
    archive(lab, case)

    assert case.status == "completed"
    assert case.open_tasks() == []
    assert case.waiting_timers() == []
    assert {element: status for element, (status, _due) in timers(case).items()} == {
        "timer_cnas_warning": "cancelled", "timer_cnas_deadline": "cancelled", "timer_communicate_7d": "cancelled"}
    lab.advance(days=70)
    assert fired(case) == []
    assert case.open_tasks() == []
    assert case.escalations() == []
    assert case.work() == (FRONT + GM_REPORT + TECHNICAL
                           + [("communicate_not_valid", "quality_service_1"),
                              ("prepare_cnas_report", "quality_director_1"),
                              ("gm_sign_cnas_report", "general_manager_1")] + ARCHIVE)


def test_cnas_warning_left_open_when_the_case_closes_is_withdrawn(lab):
    """4.6: the 7-week warning fired and the general manager has not acted on it when the
    file is archived — the closing end withdraws the warning and the 2-month timer."""
    case = lab.start("lab_appeal", cnas_complaint(), by=CS)
    register_and_acknowledge(lab, case)
    report_to_general_manager(lab, case)
    investigate(lab, case, "technical", "not_valid")
    case.complete("communicate_not_valid", {"not_valid_communication_method": "oral",
                                            "not_valid_communication_record": "电话说明"}, by=QS)
    case.complete("prepare_cnas_report", {"cnas_report": "投诉不成立"}, by=QD)
    lab.advance(days=49)
    assert fired(case) == ["timer_cnas_warning"]
    assert case.open_tasks() == ["gm_sign_cnas_report", "cnas_deadline_warning"]
    case.complete("gm_sign_cnas_report", {"cnas_report_signed_at": now(lab), "cnas_feedback_sent_at": now(lab)},
                  by=GM)
    archive(lab, case)

    assert case.status == "completed"
    assert case.open_tasks() == []
    assert case.waiting_timers() == []
    assert ("task_cancelled", "records_clerk_1", "cnas_deadline_warning") in case.history()
    lab.advance(days=30)
    assert fired(case) == ["timer_cnas_warning"]
    assert case.escalations() == []


# --- recusal (4.2.2.2 "涉及被投诉的人员应回避", 4.3.6) --------------------------------------

def recused_then_done(case, element_id, data, *, involved, colleague):
    """The involved person is refused (claim and complete, naming the rule); an uninvolved
    colleague of the same group claims and completes the task."""
    assert element_id in RECUSED_TASKS
    assert involved.groups == colleague.groups
    assert case.task(element_id).group_name in involved.groups
    with pytest.raises(Forbidden, match="recusal") as refused:
        case.claim(element_id, by=involved)
    assert f"recusal: {involved.username} is listed in involved_staff" in str(refused.value)
    with pytest.raises(Forbidden, match="recusal"):
        case.complete(element_id, data, by=involved)
    assert case.task(element_id).assignee is None
    case.claim(element_id, by=colleague)
    assert case.task(element_id).assignee == colleague.username
    case.complete(element_id, data, by=colleague)


def involved(group):
    return person(group, 2)


INVOLVED = ["quality_director_2", "technical_manager_2", "general_manager_2", "quality_service_2",
            "customer_service_2", "project_manager_2"]


def test_staff_involved_in_the_disputed_work_are_recused_from_every_decision_of_a_major_cnas_case(lab):
    """4.2.2.2 "涉及被投诉的人员应回避"; 4.3.6 decisions by people not involved in the
    disputed work. One colleague of each role was involved: at every investigate, decide,
    approve, verify, reply and sign-off task they are refused and an uninvolved colleague
    of the same group does the work."""
    case = lab.start("lab_appeal", cnas_complaint(major=True, involved_staff=INVOLVED), by=CS)
    assert case.data["involved_staff"] == INVOLVED
    register_and_acknowledge(lab, case)

    case.complete("report_to_gm", {"gm_report_summary": "CNAS转交重大投诉", "gm_reported_at": now(lab)}, by=QD)
    recused_then_done(case, "gm_instruction", {"gm_instruction_text": "回避相关人员"},
                      involved=involved("general_manager"), colleague=GM)
    recused_then_done(case, "form_investigation_team",
                      {"complaint_category": "technical", "investigation_team": ["technical_manager_1"]},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "investigate_technical", {"investigation_findings": "需复检"},
                      involved=involved("technical_manager"), colleague=TM)
    recused_then_done(case, "confirm_validity", {"complaint_validity": "uncertain", "validity_basis": "数据存疑"},
                      involved=involved("quality_service"), colleague=QS)
    recused_then_done(case, "arrange_retest", {"retest_date": "2026-11-25", "retest_witness": "technical_manager_1",
                                               "retest_record": "复检值偏低"},
                      involved=involved("project_manager"), colleague=PM)
    recused_then_done(case, "decide_after_retest", {"complaint_validity": "valid", "retest_decision_basis": "复检"},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "write_complaint_report", {"complaint_report_summary": "s", "responsibility_analysis": "r",
                                                       "proposed_handling": "p"},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "gm_approve_report", {"gm_report_decision": "approve"},
                      involved=involved("general_manager"), colleague=GM)
    recused_then_done(case, "inform_and_compensate", {"result_informed_at": now(lab)},
                      involved=involved("quality_service"), colleague=QS)
    case.complete("state_root_cause", {"root_cause": "rc", "corrective_action_proposal": "p"}, by=PM)
    recused_then_done(case, "approve_corrective_action", {"ca_approval": "approve"},
                      involved=involved("quality_director"), colleague=QD)
    case.complete("implement_corrective_action", {"ca_execution_record": "e", "ca_completed_date": "2026-11-30"},
                  by=EX)
    case.complete("monitor_corrective_action", {"ca_implementation_report": "m"}, by=PM)
    recused_then_done(case, "verify_effectiveness", {"ca_effectiveness": "effective", "verification_note": "v",
                                                     "internal_audit_needed": True},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "additional_internal_audit", {"audit_plan": "p", "audit_findings": "f",
                                                          "management_review_needed": True},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "management_review", {"management_review_output": "o"},
                      involved=involved("general_manager"), colleague=GM)
    recused_then_done(case, "draft_reply", {"reply_letter": "复函"},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "gm_sign_reply", {"gm_reply_decision": "sign"},
                      involved=involved("general_manager"), colleague=GM)
    recused_then_done(case, "notify_outcome", {"outcome_notice_method": "phone", "outcome_notified_at": now(lab)},
                      involved=involved("customer_service"), colleague=CS)
    recused_then_done(case, "prepare_cnas_report", {"cnas_report": "报告"},
                      involved=involved("quality_director"), colleague=QD)
    recused_then_done(case, "gm_sign_cnas_report", {"cnas_report_signed_at": now(lab),
                                                    "cnas_feedback_sent_at": now(lab)},
                      involved=involved("general_manager"), colleague=GM)
    archive(lab, case)

    assert case.status == "completed"
    # The refusals left no trace: only the uninvolved colleagues worked the case.
    assert not any(who in INVOLVED for _kind, who, _element in case.history())
    assert case.work() == (FRONT + GM_REPORT + TECHNICAL
                           + [("arrange_retest", "project_manager_1"), ("decide_after_retest", "quality_director_1")]
                           + REPORT + CORRECTIVE
                           + [("additional_internal_audit", "quality_director_1"),
                              ("management_review", "general_manager_1"),
                              ("draft_reply", "quality_director_1"), ("gm_sign_reply", "general_manager_1"),
                              ("notify_outcome", "customer_service_1"),
                              ("prepare_cnas_report", "quality_director_1"),
                              ("gm_sign_cnas_report", "general_manager_1")] + ARCHIVE)


def test_involved_staff_are_recused_from_the_management_investigation_and_the_not_valid_explanation(lab):
    """4.2.2.2 on the other branches: the management investigation and quality service's
    explanation of a not-valid complaint (4.2.3.4)."""
    case = lab.start("lab_appeal", complaint(channel="phone", report_no="",
                                             involved_staff=["quality_director_2", "quality_service_2"]), by=CS)
    register_and_acknowledge(lab, case)
    case.complete("form_investigation_team", {"complaint_category": "management",
                                              "investigation_team": ["quality_director_1"]}, by=QD)
    recused_then_done(case, "investigate_management", {"investigation_findings": "按合同执行"},
                      involved=involved("quality_director"), colleague=QD)
    case.complete("confirm_validity", {"complaint_validity": "not_valid", "validity_basis": "合同"}, by=QS)
    recused_then_done(case, "communicate_not_valid", {"not_valid_communication_method": "oral",
                                                      "not_valid_communication_record": "已解释"},
                      involved=involved("quality_service"), colleague=QS)
    archive(lab, case)

    assert case.status == "completed"
    assert case.work() == FRONT + MANAGEMENT + [("communicate_not_valid", "quality_service_1")] + ARCHIVE


def test_involved_customer_service_colleague_may_not_reply_that_the_objection_is_refused(lab):
    """4.3.6 applies to the refusal too: an involved customer service colleague is refused;
    another replies that the late objection is not accepted."""
    case = lab.start("lab_appeal", complaint(report_received_date="2026-11-01",
                                             involved_staff=["customer_service_2"]), by=CS)
    recused_then_done(case, "reply_not_accepted", {"not_accepted_reason": WRITTEN_IN_15_DAYS,
                                                   "not_accepted_reply_method": "written",
                                                   "not_accepted_replied_at": now(lab)},
                      involved=involved("customer_service"), colleague=CS)

    assert case.status == "completed"
    assert case.work() == [("reply_not_accepted", "customer_service_1")]


def test_involved_staff_must_name_real_users(lab):
    """involved_staff is a `user` field: an unknown name is refused at the start, so the
    recusal rule cannot be defeated by a misspelt name."""
    with pytest.raises(ValidationFailed) as refused:
        lab.start("lab_appeal", complaint(involved_staff=["nobody_here"]), by=CS)
    assert refused.value.details == {"involved_staff": "no user 'nobody_here'"}


def test_the_recusal_rule_guards_exactly_the_investigate_decide_approve_verify_reply_and_sign_off_tasks(lab):
    """PROCESSES.md 3, rules the engine enforces: "no one listed as involved in the disputed
    work may claim or complete the investigate, decide, approve, verify, reply or sign-off
    tasks" — the deployed definition carries the rule on exactly those tasks, and the
    CNAS deadline and the one-week communication timers record SLA breaches."""
    with lab.db.unit_of_work(write=False) as uow:
        model = lab.engine.definition_model(uow.session, "lab_appeal")
    guarded = {element for element, task in model.user_tasks.items() if task.recusal_field == "involved_staff"}
    assert guarded == RECUSED_TASKS
    assert model.escalation_elements == {"timer_cnas_deadline", "timer_communicate_7d"}
    assert model.start_groups == ("customer_service",)
