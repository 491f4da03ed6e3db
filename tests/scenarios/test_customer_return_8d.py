"""Scenarios of `customer_return_8d` — 客户投诉 / 退货 8D 处理 (PROCESSES.md section 2).

People work real cases of workflows/bpmn/customer_return_8d.bpmn (and of
complaint_travel.bpmn through the call activity `call_complaint_travel`) on a
fresh database whose clock starts Monday 2026-11-23 09:00 +08:00. Deadlines are
checked against the real business calendar (no holidays fall in the weeks used:
a working day after a Friday is the Monday).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.errors import Forbidden
from engine.users import save_user
from tests.scenarios.conftest import person

CST = timezone(timedelta(hours=8))

SALES = person("sales")
SALES_MANAGER = person("sales_manager")
AFTER_SALES = person("after_sales")
PRODUCT_MANAGER = person("product_manager")
QUALITY = person("quality")
QUALITY_MANAGER = person("quality_manager")
RESPONSIBLE = person("responsible_dept")
PRODUCTION = person("production")
WAREHOUSE = person("warehouse")
MATERIALS = person("materials")
PLANNING = person("planning")
# complaint_travel's people
CUSTOMER_SERVICE = person("customer_service")
CS_HEAD = person("cs_head")
DIVISION_LEADER = person("division_leader")
FINANCE = person("finance")
TRAVELER = person("traveler")
TRAVELER_HEAD = person("traveler_head")


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A moment of 2026 in the business time zone."""
    return datetime(2026, month, day, hour, minute, tzinfo=CST)


def until(desk, when: datetime) -> int:
    """Let time pass up to `when`, firing what falls due (as the scheduler would)."""
    delta = when - desk.clock.now()
    assert delta >= timedelta(0), f"the clock is already past {when}"
    return desk.advance(seconds=delta.total_seconds())


# --- what the people fill in --------------------------------------------------------

START = {
    "customer_name": "华南电子有限公司",
    "customer_contact": "李工 13800138000",
    "complaint_channel": "email",
    "complaint_content": "批次 L2611-07 的电源模块上电后指示灯不亮,来料检验不良 12 pcs。",
}


def response():
    return {"confirmed_product": "PM-200 电源模块", "confirmed_problem": "上电指示灯不亮",
            "first_response_note": "已电话回应客户,确认产品与问题点"}


def solution():
    return {"solution_proposal": "客户端先用库存良品替换,不良品寄回分析"}


def handling_result():
    return {"emergency_handling_result": "已补发 12 pcs 良品,客户产线恢复"}


def register(handling_mode: str = "remote", sn_code: str | None = "SN-2611-0042", **more):
    return {"product_name": "PM-200 电源模块", "order_no": "SO-2611-118", "handling_mode": handling_mode,
            "sn_code": sn_code, "lot_no": "L2611-07", "ship_date": "2026-11-16",
            "problem_points": "上电指示灯不亮", "defect_qty": 12, "has_defect_samples": True, **more}


def pm_confirm():
    return {"responsible_department": "生产部", "pm_review_opinion": "属装配工序问题,由生产部负责",
            "complaint_no": "KS-2026-118"}


def open_8d(**deadlines):
    return {"d1_team": ["quality_1", "production_1", "after_sales_1"],
            "d2_problem_description": "PM-200 批次 L2611-07 上电指示灯不亮,不良 12/500", **deadlines}


def approve(decision: str = "approve"):
    return {"sm_8d_decision": decision,
            "sm_8d_comment": "D2 描述不清,请补充不良率" if decision == "return" else None}


def forward():
    return {"forward_method": "mail", "samples_kept_complete": True, "forward_note": "不良样品原套寄出"}


def quality_check(meeting: bool = False, visit: bool = False):
    return {"outgoing_inspection_checked": True, "outgoing_inspection_findings": "当批出货检验记录正常",
            "quality_preliminary_judgement": "疑似 LED 焊接不良", "special_meeting_needed": meeting,
            "onsite_visit_needed": visit}


def cause(category: str = "our_quality", at_customer: str = "none", goods_returned: bool = False):
    return {"cause_category": category, "at_customer_action": at_customer, "goods_returned": goods_returned,
            "cause_judgement_note": "客户接线错误" if category == "customer_misuse" else "LED 虚焊"}


def issue():
    return {"assigned_responsible_dept": "生产部", "issue_8d_note": "请按期回复 D3 与 D4-D7"}


def d3():
    return {"d3_containment_actions": "在库品与在途品全检,不良隔离", "d3_stock_checked": True}


def d4_d7():
    return {"d4_root_cause": "回流焊温区 3 温度偏低", "d5_corrective_actions": "调整炉温曲线并首件确认",
            "d6_implementation": "11/27 起执行,连续 3 批无不良", "d7_preventive_actions": "炉温每班点检纳入 SOP"}


def reply():
    return {"customer_reply_content": "8D 报告已回复客户", "customer_audit_provided": False,
            "upstream_informed": True, "inspection_spec_revised": True,
            "inspection_spec_revision_note": "OQC 增加上电点亮检验"}


def verify(result: str = "effective"):
    return {"actions_effective": result, "verification_note": "后续 3 批追踪无不良" if result == "effective"
            else "第 2 批仍有 1 pcs 不良"}


def customer_says(answer: str = "satisfied"):
    return {"customer_satisfied": answer, "customer_feedback": "认可" if answer == "satisfied" else "仍有不良"}


def close():
    return {"closing_confirmed": True, "records_filed": True, "closing_note": "记录复印与客户退货处理单一并存档"}


def qm_note(field: str):
    return {field: "已督促责任人,承诺今日完成"}


# --- the common stretches, as the people do them ------------------------------------

INTAKE = [("respond_to_customer", "after_sales_1"), ("propose_solution", "after_sales_1"),
          ("give_handling_result", "after_sales_1"), ("register_complaint", "after_sales_1")]
TO_QUALITY = [("pm_confirm_registration", "product_manager_1"), ("open_8d_report", "sales_1"),
              ("approve_8d", "sales_manager_1"), ("forward_to_quality", "after_sales_1")]
EIGHT_D = [("d3_containment", "quality_1"), ("d4_d7_corrective_actions", "responsible_dept_1"),
           ("reply_customer", "quality_1"), ("verify_effectiveness", "quality_1"),
           ("after_sales_confirm_result", "after_sales_1")]


def receive(desk, **start):
    return desk.start("customer_return_8d", {**START, **start}, by=SALES)


def intake(case, handling_mode: str = "remote"):
    case.complete("respond_to_customer", response(), by=AFTER_SALES)
    case.complete("propose_solution", solution(), by=AFTER_SALES)
    case.complete("give_handling_result", handling_result(), by=AFTER_SALES)
    case.complete("register_complaint", register(handling_mode), by=AFTER_SALES)


def to_quality(case, **deadlines):
    case.complete("pm_confirm_registration", pm_confirm(), by=PRODUCT_MANAGER)
    case.complete("open_8d_report", open_8d(**deadlines), by=SALES)
    case.complete("approve_8d", approve(), by=SALES_MANAGER)
    case.complete("forward_to_quality", forward(), by=AFTER_SALES)


def eight_d(case):
    case.complete("d3_containment", d3(), by=QUALITY)
    case.complete("d4_d7_corrective_actions", d4_d7(), by=RESPONSIBLE)
    case.complete("reply_customer", reply(), by=QUALITY)
    case.complete("verify_effectiveness", verify(), by=QUALITY)
    case.complete("after_sales_confirm_result", customer_says(), by=AFTER_SALES)


def our_problem_issued(desk, handling_mode: str = "remote", **judged):
    """A case up to the issued 8D: quality confirmed it is our problem."""
    case = receive(desk)
    intake(case, handling_mode)
    to_quality(case)
    case.complete("quality_confirm", quality_check(), by=QUALITY)
    case.complete("determine_cause", cause(**judged), by=QUALITY)
    case.complete("issue_8d", issue(), by=QUALITY)
    return case


def returns_to_planning(case):
    case.complete("warehouse_report_to_planning", {"actual_return_qty": 12, "return_documents_note": "退货单"},
                  by=WAREHOUSE)
    case.complete("planning_agree_redelivery", {"redelivery_time": "2026-12-03T09:00:00+08:00",
                                                "redelivery_arrangement": "remake"}, by=PLANNING)
    assert case.task("planning_redeliver").due_at == at(3, 9, month=12)
    case.complete("planning_redeliver", {"redelivered_qty": 12, "redelivery_inspected": True,
                                         "shipment_no": "SH-1203-01"}, by=PLANNING)


def receive_returns(case, disposition: str):
    case.complete("warehouse_receive_returns", {"return_note_no": "RT-2611-09", "received_return_qty": 12,
                                                "stored_in_defect_area": True}, by=WAREHOUSE)
    case.complete("confirm_label_returns", {"confirmed_defect_qty": 12, "defect_labelled": True,
                                            "abnormality_form_opened": False,
                                            "returns_disposition": disposition}, by=QUALITY)


def sort(case, good: int = 10, rejects: int = 2):
    case.complete("production_sort", {"sorted_good_qty": good, "sorted_reject_qty": rejects,
                                      "sort_labels_applied": True}, by=PRODUCTION)


def scrap(case, qty: int):
    case.complete("warehouse_scrap", {"scrap_order_no": "BF-2611-03", "scrapped_qty": qty,
                                      "scrap_record_entered": True}, by=WAREHOUSE)


def add_user(desk, username: str, *groups: str) -> None:
    """A user the forms may name (`user` fields are checked against the user table)."""
    with desk.db.unit_of_work() as uow:
        save_user(uow.session, username, "travel-pass-1", ["staff"], groups, None, desk.clock.now())
        uow.commit()


# --- the stories ----------------------------------------------------------------------

def test_after_sales_answers_in_time_and_quality_closes_the_8d(desk):
    """程序 5.1.2: "必须在一小时内回应客户,四小时内给出解决方案,三个工作日给出处理结果";
    5.4: 品质部"应当在一个工作日内对这些信息作出确认和判断"; 8D 流程图: "24小时内提供临时应急
    对策,长期对策与纠正措施需在5个工作日内回复"; 4.4.5 "质量部需对客户退货处理单进行结案确认".
    Every step is done in time: no deadline escalates."""
    case = receive(desk)
    assert case.open_tasks() == ["respond_to_customer"]
    assert case.task("respond_to_customer").group_name == "after_sales"
    assert case.task("respond_to_customer").due_at == at(23, 10)
    assert case.waiting_timers() == ["timer_response_1h"]
    assert case.data["received_at"] == "2026-11-23T09:00:00+08:00"
    with pytest.raises(Forbidden):  # the first response is after-sales' job, not sales'
        case.complete("respond_to_customer", response(), by=SALES)

    until(desk, at(23, 9, 40))
    case.complete("respond_to_customer", response(), by=AFTER_SALES)
    assert case.task("propose_solution").due_at == at(23, 13)
    assert case.waiting_timers() == ["timer_solution_4h"]
    until(desk, at(23, 11, 30))
    case.complete("propose_solution", solution(), by=AFTER_SALES)
    assert case.task("give_handling_result").due_at == at(26, 9)  # Mon 09:00 + 3 working days
    assert case.waiting_timers() == ["timer_result_3wd"]

    until(desk, at(25, 10))
    case.complete("give_handling_result", handling_result(), by=AFTER_SALES)
    assert case.waiting_timers() == []
    case.complete("register_complaint", register("remote", sn_code=None), by=AFTER_SALES)  # remote: SN optional
    assert case.task("pm_confirm_registration").group_name == "product_manager"
    to_quality(case)
    assert case.data["forwarded_at"] == "2026-11-25T10:00:00+08:00"
    assert case.task("quality_confirm").group_name == "quality"
    assert case.task("quality_confirm").due_at == at(26, 10)
    assert case.waiting_timers() == ["timer_quality_confirm_1wd"]

    until(desk, at(25, 13))
    case.complete("quality_confirm", quality_check(), by=QUALITY)
    assert case.open_tasks() == ["determine_cause"]  # no meeting, nobody travels
    case.complete("determine_cause", cause(), by=QUALITY)
    case.complete("issue_8d", issue(), by=QUALITY)
    assert case.data["issued_at"] == "2026-11-25T13:00:00+08:00"
    assert case.open_tasks() == ["d3_containment"]
    assert case.task("d3_containment").due_at == at(26, 13)
    assert case.waiting_timers() == ["timer_d3_24h"]

    until(desk, at(26, 9))
    case.complete("d3_containment", d3(), by=RESPONSIBLE)  # quality together with the responsible department
    assert case.task("d4_d7_corrective_actions").group_name == "responsible_dept"
    # Wed 13:00 + 5 working days: Thu, Fri, Mon, Tue, Wed.
    assert case.task("d4_d7_corrective_actions").due_at == at(2, 13, month=12)
    assert case.waiting_timers() == ["timer_d4_d7_5wd"]

    until(desk, at(30, 16))
    case.complete("d4_d7_corrective_actions", d4_d7(), by=RESPONSIBLE)
    case.complete("reply_customer", reply(), by=QUALITY)
    case.complete("verify_effectiveness", verify(), by=QUALITY)
    case.complete("after_sales_confirm_result", customer_says(), by=AFTER_SALES)
    assert case.open_tasks() == ["close_case"]
    case.complete("close_case", close(), by=QUALITY)

    assert case.status == "completed"
    assert case.work() == [
        *INTAKE, *TO_QUALITY, ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"),
        ("issue_8d", "quality_1"), ("d3_containment", "responsible_dept_1"),
        ("d4_d7_corrective_actions", "responsible_dept_1"), ("reply_customer", "quality_1"),
        ("verify_effectiveness", "quality_1"), ("after_sales_confirm_result", "after_sales_1"),
        ("close_case", "quality_1"),
    ]
    assert case.escalations() == []
    assert not any(kind == "timer_fired" for kind, _who, _el in case.history())
    assert case.waiting_timers() == [] and case.open_tasks() == []
    data = case.data
    assert data["complaint_no"] == "KS-2026-118"
    assert data["cause_category"] == "our_quality"
    assert data["d4_d7_round"] == 1 and data["d4_d7_restarted_at"] is None
    assert data["customer_satisfied"] == "satisfied"
    assert data["closing_confirmed"] is True and data["records_filed"] is True
    assert "travel_outcome" not in data
    assert case.history()[0] == ("instance_started", "sales_1", None)
    assert case.history()[-1] == ("instance_completed", "quality_1", None)


def test_first_response_done_in_time_leaves_no_escalation_behind(desk):
    """程序 5.1.2: 一小时内回应, 四小时内方案, 三个工作日结果 — all met, so nothing reaches the
    quality manager however long registration then takes."""
    case = receive(desk)
    until(desk, at(23, 9, 59))
    case.complete("respond_to_customer", response(), by=AFTER_SALES)
    until(desk, at(23, 12, 59))
    case.complete("propose_solution", solution(), by=AFTER_SALES)
    until(desk, at(26, 8, 59))
    case.complete("give_handling_result", handling_result(), by=AFTER_SALES)
    assert until(desk, at(7, 9, month=12)) == 0
    assert case.open_tasks() == ["register_complaint"]
    assert case.waiting_timers() == []
    assert case.escalations() == []
    assert case.work() == INTAKE[:3]
    assert case.status == "running"


def test_after_sales_late_on_every_first_response_limit_escalates_to_the_quality_manager(desk):
    """程序 5.1.2: "一小时内回应客户,四小时内给出解决方案,三个工作日给出处理结果"; each limit passing
    notifies the quality manager (design choice), without taking the task from after-sales."""
    case = receive(desk)
    assert until(desk, at(23, 9, 59)) == 0
    assert case.open_tasks() == ["respond_to_customer"]
    assert until(desk, at(23, 10)) == 1
    assert case.open_tasks() == ["respond_to_customer", "qm_follow_up_response_late"]
    assert case.task("qm_follow_up_response_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_response_1h"]

    until(desk, at(23, 11))
    case.complete("respond_to_customer", response(), by=AFTER_SALES)
    # The solution is still due 4 hours after receipt, not after the late response.
    assert case.task("propose_solution").due_at == at(23, 13)
    assert until(desk, at(23, 13)) == 1
    assert case.task("qm_follow_up_solution_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_response_1h", "timer_solution_4h"]

    case.complete("propose_solution", solution(), by=AFTER_SALES)
    assert until(desk, at(26, 8, 59)) == 0  # 3 working days from Monday 09:00 is Thursday 09:00
    assert until(desk, at(26, 9)) == 1
    assert case.task("qm_follow_up_result_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_response_1h", "timer_solution_4h", "timer_result_3wd"]
    assert set(case.open_tasks()) == {"give_handling_result", "qm_follow_up_response_late",
                                      "qm_follow_up_solution_late", "qm_follow_up_result_late"}

    with pytest.raises(Forbidden):  # follow-up is the quality manager's
        case.complete("qm_follow_up_result_late", qm_note("qm_result_follow_up"), by=QUALITY)
    case.complete("qm_follow_up_response_late", qm_note("qm_response_follow_up"), by=QUALITY_MANAGER)
    case.complete("qm_follow_up_solution_late", qm_note("qm_solution_follow_up"), by=QUALITY_MANAGER)
    case.complete("give_handling_result", handling_result(), by=AFTER_SALES)
    case.complete("qm_follow_up_result_late", qm_note("qm_result_follow_up"), by=QUALITY_MANAGER)
    case.complete("register_complaint", register(), by=AFTER_SALES)
    assert case.open_tasks() == ["pm_confirm_registration"]
    assert case.waiting_timers() == []
    assert case.work() == [
        ("respond_to_customer", "after_sales_1"), ("propose_solution", "after_sales_1"),
        ("qm_follow_up_response_late", "quality_manager_1"), ("qm_follow_up_solution_late", "quality_manager_1"),
        ("give_handling_result", "after_sales_1"), ("qm_follow_up_result_late", "quality_manager_1"),
        ("register_complaint", "after_sales_1"),
    ]


def test_product_handled_in_the_field_without_sn_goes_back_to_the_register(desk):
    """程序 5.2: "SN码(对于去现场处理和退回处理的必须记录,由客户自行更换部件的向客户索取)"."""
    case = receive(desk)
    case.complete("respond_to_customer", response(), by=AFTER_SALES)
    case.complete("propose_solution", solution(), by=AFTER_SALES)
    case.complete("give_handling_result", handling_result(), by=AFTER_SALES)
    for mode in ("on_site", "returned", "customer_replaced"):
        case.complete("register_complaint", register(mode, sn_code=None), by=AFTER_SALES)
        assert case.open_tasks() == ["register_complaint"], mode
    case.complete("register_complaint", register("customer_replaced", sn_code="SN-2611-0042"), by=AFTER_SALES)
    assert case.open_tasks() == ["pm_confirm_registration"]
    case.complete("pm_confirm_registration", pm_confirm(), by=PRODUCT_MANAGER)
    assert case.open_tasks() == ["open_8d_report"]
    assert case.task("open_8d_report").group_name == "sales"
    assert case.work() == INTAKE[:3] + [("register_complaint", "after_sales_1")] * 4 + [
        ("pm_confirm_registration", "product_manager_1")]
    assert case.data["sn_code"] == "SN-2611-0042"
    assert case.data["handling_mode"] == "customer_replaced"
    assert case.status == "running"


def test_sales_manager_returns_the_8d_report_and_sales_reopens_it(desk):
    """8D 流程图: "销售部接收到顾客投诉后开立客户投诉分析报告8D经部门经理批准后交质量部处理"."""
    case = receive(desk)
    intake(case)
    case.complete("pm_confirm_registration", pm_confirm(), by=PRODUCT_MANAGER)
    case.complete("open_8d_report", open_8d(), by=SALES)
    assert case.task("approve_8d").group_name == "sales_manager"
    with pytest.raises(Forbidden):
        case.complete("approve_8d", approve(), by=SALES)  # sales cannot approve its own report
    case.complete("approve_8d", approve("return"), by=SALES_MANAGER)
    assert case.open_tasks() == ["open_8d_report"]
    case.complete("open_8d_report", open_8d(), by=SALES)
    case.complete("approve_8d", approve(), by=SALES_MANAGER)
    assert case.open_tasks() == ["forward_to_quality"]
    case.complete("forward_to_quality", forward(), by=AFTER_SALES)
    assert case.open_tasks() == ["quality_confirm"]
    assert case.work() == INTAKE + [
        ("pm_confirm_registration", "product_manager_1"), ("open_8d_report", "sales_1"),
        ("approve_8d", "sales_manager_1"), ("open_8d_report", "sales_1"), ("approve_8d", "sales_manager_1"),
        ("forward_to_quality", "after_sales_1")]
    assert case.data["sm_8d_decision"] == "approve"


def test_quality_forwarded_on_friday_is_due_monday_and_escalates_when_missed(desk):
    """程序 5.4: "品质部接产品部售后提供的客诉信息后,应当在一个工作日内对这些信息作出确认和判断";
    one working day after a Friday is the Monday; late, the quality manager is notified."""
    case = receive(desk)
    intake(case)
    until(desk, at(27, 10))  # Friday
    to_quality(case)
    assert case.task("quality_confirm").due_at == at(30, 10)
    assert until(desk, at(30, 9, 59)) == 0  # the weekend does not count
    assert case.open_tasks() == ["quality_confirm"]
    assert until(desk, at(30, 10)) == 1
    assert case.open_tasks() == ["quality_confirm", "qm_follow_up_quality_confirm_late"]
    assert case.task("qm_follow_up_quality_confirm_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_quality_confirm_1wd"]
    case.complete("qm_follow_up_quality_confirm_late", qm_note("qm_quality_confirm_follow_up"),
                  by=QUALITY_MANAGER)
    case.complete("quality_confirm", quality_check(), by=QUALITY)
    assert case.open_tasks() == ["determine_cause"]
    assert case.work() == INTAKE + TO_QUALITY + [
        ("qm_follow_up_quality_confirm_late", "quality_manager_1"), ("quality_confirm", "quality_1")]


def test_special_meeting_then_travel_assessment_finds_no_trip_needed_and_misuse_is_advised(desk):
    """程序 5.4: "视具体情况确定是否召开专案会议"; ISO 3.1-3.2: 安排前往客户处确认 (complaint_travel:
    不需出差 → 结束, 返回 "no trip"); "如属客户之操作不当...则建议客户纠正操作方式"; 售后确认处理效果."""
    case = receive(desk)
    intake(case)
    to_quality(case)
    case.complete("quality_confirm", quality_check(meeting=True, visit=True), by=QUALITY)
    assert case.open_tasks() == ["hold_special_meeting"]
    case.complete("hold_special_meeting", {"meeting_attendees": ["品质部", "生产部", "产品部"],
                                           "meeting_minutes": "分析样品,怀疑客户接线错误",
                                           "meeting_decision": "由客服评估是否需要出差"}, by=QUALITY)
    # The called complaint_travel's first task lands in the same inbox, for customer service.
    assert case.open_tasks() == ["assess_complaint"]
    assert case.task("assess_complaint").group_name == "customer_service"
    assert case.task("assess_complaint").process_key == "complaint_travel"
    with pytest.raises(Forbidden):
        case.complete("assess_complaint", {}, by=QUALITY)
    case.complete("assess_complaint", {
        "travel_customer_name": "华南电子有限公司", "travel_complaint_content": "指示灯不亮,疑似接线错误",
        "travel_severity": "normal", "travel_urgency": "normal", "travel_needed": False}, by=CUSTOMER_SERVICE)
    assert case.data["travel_outcome"] == "no_trip"
    assert case.open_tasks() == ["determine_cause"]

    case.complete("determine_cause", cause("customer_misuse"), by=QUALITY)
    assert case.open_tasks() == ["advise_customer_misuse"]
    case.complete("advise_customer_misuse", {"misuse_advice": "请按说明书第 3 章接线"}, by=QUALITY)
    assert case.task("after_sales_confirm_result").group_name == "after_sales"
    case.complete("after_sales_confirm_result", customer_says(), by=AFTER_SALES)
    assert case.open_tasks() == ["close_case"]  # no 8D was issued: straight to closing
    case.complete("close_case", close(), by=QUALITY)

    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("hold_special_meeting", "quality_1"),
        ("assess_complaint", "customer_service_1"), ("determine_cause", "quality_1"),
        ("advise_customer_misuse", "quality_1"), ("after_sales_confirm_result", "after_sales_1"),
        ("close_case", "quality_1")]
    assert "issued_at" not in case.data
    assert case.data["cause_category"] == "customer_misuse"
    assert case.escalations() == []


def test_customer_rejects_the_misuse_verdict_so_quality_judges_again_and_reworks_at_the_customer(desk):
    """ISO 3.2 / 3.3.1: misuse advised but the customer is not satisfied → quality judges again
    (design choice); "如产品具有可加工性时,则我司安排人员至客户处进行重工,重工后请客户安排检验至
    合格为止"."""
    case = receive(desk)
    intake(case)
    to_quality(case)
    case.complete("quality_confirm", quality_check(), by=QUALITY)
    case.complete("determine_cause", cause("customer_misuse"), by=QUALITY)
    case.complete("advise_customer_misuse", {"misuse_advice": "请按说明书接线"}, by=QUALITY)
    case.complete("after_sales_confirm_result", customer_says("not_satisfied"), by=AFTER_SALES)
    assert case.open_tasks() == ["determine_cause"]

    case.complete("determine_cause", cause("our_quality", "rework_at_customer"), by=QUALITY)
    case.complete("issue_8d", issue(), by=QUALITY)
    assert case.open_tasks() == ["d3_containment", "rework_at_customer"]
    assert case.task("rework_at_customer").group_name == "production"
    rework = {"at_customer_rework_team": ["production_1", "quality_1"], "at_customer_rework_qty": 12}
    case.complete("rework_at_customer", {**rework, "customer_inspection_result": "fail"}, by=PRODUCTION)
    assert "rework_at_customer" in case.open_tasks()
    case.complete("rework_at_customer", {**rework, "customer_inspection_result": "pass"}, by=QUALITY)
    assert case.open_tasks() == ["d3_containment"]
    eight_d(case)
    case.complete("close_case", close(), by=QUALITY)

    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"),
        ("advise_customer_misuse", "quality_1"), ("after_sales_confirm_result", "after_sales_1"),
        ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        ("rework_at_customer", "production_1"), ("rework_at_customer", "quality_1"),
        *EIGHT_D, ("close_case", "quality_1")]
    assert case.data["customer_inspection_result"] == "pass"
    assert case.data["customer_satisfied"] == "satisfied"


def test_returned_goods_are_resorted_until_both_samplings_pass_and_rejects_are_scrapped(desk):
    """8D 4.4.1: 生产部挑选; "抽检NG的合格品退生产部重新挑选后再次抽检确认"; "抽检有误判的的不合格品
    退生产部重新挑选"; 4.4.1.4 results on 客户退货处理单 after both samplings; 4.4.1.5 REJECT →
    仓库按《报废作业指导书》处置; ISO 3.5 仓库告知业务/生管实际退货数量, 重新送货."""
    case = our_problem_issued(desk, "returned", goods_returned=True)
    assert case.open_tasks() == ["d3_containment", "warehouse_receive_returns"]
    assert case.task("warehouse_receive_returns").group_name == "warehouse"
    receive_returns(case, "sort")
    assert case.task("production_sort").group_name == "production"
    sort(case)
    case.complete("oqc_sample_good", {"good_sample_result": "ng"}, by=QUALITY)
    assert "production_sort" in case.open_tasks()
    sort(case)
    case.complete("oqc_sample_good", {"good_sample_result": "ok"}, by=QUALITY)
    case.complete("oqc_sample_rejects", {"reject_sample_result": "misjudged"}, by=QUALITY)
    assert "production_sort" in case.open_tasks()
    sort(case, good=11, rejects=1)
    case.complete("oqc_sample_good", {"good_sample_result": "ok"}, by=QUALITY)
    case.complete("oqc_sample_rejects", {"reject_sample_result": "confirmed"}, by=QUALITY)
    case.complete("record_sort_result", {"sort_result_good_qty": 11, "sort_result_reject_qty": 1}, by=QUALITY)
    assert case.task("warehouse_scrap").group_name == "warehouse"
    scrap(case, 1)
    returns_to_planning(case)
    assert case.open_tasks() == ["d3_containment"]  # the goods wait for the 8D at the join
    eight_d(case)
    case.complete("close_case", close(), by=QUALITY)

    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        ("warehouse_receive_returns", "warehouse_1"), ("confirm_label_returns", "quality_1"),
        ("production_sort", "production_1"), ("oqc_sample_good", "quality_1"),
        ("production_sort", "production_1"), ("oqc_sample_good", "quality_1"), ("oqc_sample_rejects", "quality_1"),
        ("production_sort", "production_1"), ("oqc_sample_good", "quality_1"), ("oqc_sample_rejects", "quality_1"),
        ("record_sort_result", "quality_1"), ("warehouse_scrap", "warehouse_1"),
        ("warehouse_report_to_planning", "warehouse_1"), ("planning_agree_redelivery", "planning_1"),
        ("planning_redeliver", "planning_1"), *EIGHT_D, ("close_case", "quality_1")]
    assert case.data["sort_result_reject_qty"] == 1 and case.data["scrapped_qty"] == 1
    assert case.data["redelivery_time"] == "2026-12-03T09:00:00+08:00"


def test_sorted_returns_without_rejects_skip_scrapping(desk):
    """8D 4.4.1.5: only REJECT-labelled goods go to the warehouse for scrapping."""
    case = our_problem_issued(desk, "returned", goods_returned=True)
    receive_returns(case, "sort")
    sort(case, good=12, rejects=0)
    case.complete("oqc_sample_good", {"good_sample_result": "ok"}, by=QUALITY)
    case.complete("oqc_sample_rejects", {"reject_sample_result": "confirmed"}, by=QUALITY)
    case.complete("record_sort_result", {"sort_result_good_qty": 12, "sort_result_reject_qty": 0}, by=QUALITY)
    assert case.open_tasks() == ["d3_containment", "warehouse_report_to_planning"]
    returns_to_planning(case)
    assert case.open_tasks() == ["d3_containment"]
    assert "warehouse_scrap" not in [task for task, _who in case.work()]


def test_reworked_returns_with_rejects_are_scrapped(desk):
    """8D 4.4.2.1: "生产部进行重工,成品检验后的合格品贴对应的成品标签,不合格品贴不合格标签";
    the rejects are scrapped (design choice)."""
    case = our_problem_issued(desk, "returned", goods_returned=True)
    eight_d(case)  # the 8D runs ahead of the goods
    assert case.open_tasks() == ["warehouse_receive_returns"]
    receive_returns(case, "rework")
    case.complete("production_rework_returns", {"rework_order_no": "FG-2611-05", "rework_qty": 12},
                  by=PRODUCTION)
    assert case.task("inspect_reworked_goods").group_name == "quality"
    case.complete("inspect_reworked_goods", {"rework_pass_qty": 10, "rework_reject_qty": 2}, by=QUALITY)
    assert case.open_tasks() == ["warehouse_scrap"]
    scrap(case, 2)
    returns_to_planning(case)
    assert case.open_tasks() == ["close_case"]
    case.complete("close_case", close(), by=QUALITY)
    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        *EIGHT_D, ("warehouse_receive_returns", "warehouse_1"), ("confirm_label_returns", "quality_1"),
        ("production_rework_returns", "production_1"), ("inspect_reworked_goods", "quality_1"),
        ("warehouse_scrap", "warehouse_1"), ("warehouse_report_to_planning", "warehouse_1"),
        ("planning_agree_redelivery", "planning_1"), ("planning_redeliver", "planning_1"),
        ("close_case", "quality_1")]
    assert case.data["rework_reject_qty"] == 2


def test_quality_decides_to_scrap_the_returned_goods(desk):
    """Disposition 报废 (4.4.3 is missing from the seed, inferred): the warehouse scraps on
    报废单 SZ-QER-QA-53 / 报废记录表 SZ-QER-QA-54."""
    case = our_problem_issued(desk, "returned", goods_returned=True)
    receive_returns(case, "scrap")
    assert case.open_tasks() == ["d3_containment", "warehouse_scrap"]
    scrap(case, 12)
    assert case.open_tasks() == ["d3_containment", "warehouse_report_to_planning"]
    returns_to_planning(case)
    eight_d(case)
    case.complete("close_case", close(), by=QUALITY)
    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        ("warehouse_receive_returns", "warehouse_1"), ("confirm_label_returns", "quality_1"),
        ("warehouse_scrap", "warehouse_1"), ("warehouse_report_to_planning", "warehouse_1"),
        ("planning_agree_redelivery", "planning_1"), ("planning_redeliver", "planning_1"),
        *EIGHT_D, ("close_case", "quality_1")]
    assert case.data["returns_disposition"] == "scrap" and case.data["scrapped_qty"] == 12


def test_goods_collected_from_the_customer_and_unhappy_customer_reopens_d4_d7(desk):
    """ISO 3.3.2: "品保人员确认后开出《品质异常处理单》...通知资材至客户处取回不良品"; 3.5 仓库点收;
    4.4.2 重工 without rejects → no scrapping; 程序 5.1 售后确认处理效果 — not satisfied → back
    to D4-D7 with a fresh 5 working days (design choice)."""
    case = our_problem_issued(desk, "on_site", at_customer="collect_from_customer")
    assert case.open_tasks() == ["d3_containment", "open_quality_abnormality_form"]
    eight_d_first = [("d3_containment", d3(), QUALITY), ("d4_d7_corrective_actions", d4_d7(), RESPONSIBLE),
                     ("reply_customer", reply(), QUALITY), ("verify_effectiveness", verify(), QUALITY)]
    for task, data, who in eight_d_first:
        case.complete(task, data, by=who)
    until(desk, at(24, 10))  # Tuesday
    case.complete("after_sales_confirm_result", customer_says("not_satisfied"), by=AFTER_SALES)
    assert case.open_tasks() == ["open_quality_abnormality_form", "d4_d7_corrective_actions"]
    assert case.data["d4_d7_round"] == 2
    assert case.data["d4_d7_restarted_at"] == "2026-11-24T10:00:00+08:00"
    assert case.task("d4_d7_corrective_actions").due_at == at(1, 10, month=12)  # Tue + 5 working days
    case.complete("d4_d7_corrective_actions", d4_d7(), by=RESPONSIBLE)
    case.complete("reply_customer", reply(), by=QUALITY)
    case.complete("verify_effectiveness", verify(), by=QUALITY)
    case.complete("after_sales_confirm_result", customer_says(), by=AFTER_SALES)
    assert case.open_tasks() == ["open_quality_abnormality_form"]  # the join waits for the goods

    case.complete("open_quality_abnormality_form", {
        "abnormality_form_no": "QA-YC-2611-02", "abnormality_description": "客户产线挑出不良 12 pcs",
        "customer_form_used": False, "collect_qty_requested": 12}, by=QUALITY)
    assert case.task("materials_collect_goods").group_name == "materials"
    case.complete("materials_collect_goods", {"collected_qty": 12}, by=MATERIALS)
    receive_returns(case, "rework")
    case.complete("production_rework_returns", {"rework_order_no": "FG-2611-06", "rework_qty": 12},
                  by=PRODUCTION)
    case.complete("inspect_reworked_goods", {"rework_pass_qty": 12, "rework_reject_qty": 0}, by=QUALITY)
    assert case.open_tasks() == ["warehouse_report_to_planning"]
    returns_to_planning(case)
    assert case.open_tasks() == ["close_case"]
    case.complete("close_case", close(), by=QUALITY)

    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        *EIGHT_D[:4], ("after_sales_confirm_result", "after_sales_1"),
        *EIGHT_D[1:], ("open_quality_abnormality_form", "quality_1"), ("materials_collect_goods", "materials_1"),
        ("warehouse_receive_returns", "warehouse_1"), ("confirm_label_returns", "quality_1"),
        ("production_rework_returns", "production_1"), ("inspect_reworked_goods", "quality_1"),
        ("warehouse_report_to_planning", "warehouse_1"), ("planning_agree_redelivery", "planning_1"),
        ("planning_redeliver", "planning_1"), ("close_case", "quality_1")]
    assert case.escalations() == []


def test_d3_and_d4_d7_overdue_escalate_to_the_quality_manager(desk):
    """8D 流程图: "由质量部会同相关人员于24小时内提供临时应急对策,长期对策与纠正措施需在5个工作日内
    回复"; late → escalate to the quality manager (design choice); the D4-D7 count starts at the
    8D's issue (design choice)."""
    case = our_problem_issued(desk)  # issued Monday 09:00
    assert case.task("d3_containment").due_at == at(24, 9)
    assert until(desk, at(24, 8, 59)) == 0
    assert until(desk, at(24, 9)) == 1
    assert case.open_tasks() == ["d3_containment", "qm_escalate_d3_late"]
    assert case.task("qm_escalate_d3_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_d3_24h"]
    case.complete("qm_escalate_d3_late", qm_note("qm_d3_follow_up"), by=QUALITY_MANAGER)
    until(desk, at(24, 15))
    case.complete("d3_containment", d3(), by=QUALITY)
    assert case.task("d4_d7_corrective_actions").due_at == at(30, 9)  # Mon + 5 working days, from the issue
    assert until(desk, at(30, 8, 59)) == 0
    assert until(desk, at(30, 9)) == 1
    assert case.task("qm_escalate_d4_d7_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_d3_24h", "timer_d4_d7_5wd"]
    case.complete("d4_d7_corrective_actions", d4_d7(), by=RESPONSIBLE)
    case.complete("reply_customer", reply(), by=QUALITY)
    case.complete("verify_effectiveness", verify(), by=QUALITY)
    case.complete("after_sales_confirm_result", customer_says(), by=AFTER_SALES)
    case.complete("close_case", close(), by=QUALITY)
    assert case.status == "running"  # the quality manager's follow-up is still open
    case.complete("qm_escalate_d4_d7_late", qm_note("qm_d4_d7_follow_up"), by=QUALITY_MANAGER)
    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        ("qm_escalate_d3_late", "quality_manager_1"), *EIGHT_D, ("close_case", "quality_1"),
        ("qm_escalate_d4_d7_late", "quality_manager_1")]


def test_customer_deadlines_override_the_containment_and_corrective_deadlines(desk):
    """8D 流程图: "...24小时内...5个工作日内回复,客户另有要求时,以客户要求为准"."""
    case = receive(desk)
    intake(case)
    to_quality(case, customer_containment_deadline="2026-11-23T15:00:00+08:00",
               customer_corrective_deadline="2026-11-25T17:00:00+08:00")
    case.complete("quality_confirm", quality_check(), by=QUALITY)
    case.complete("determine_cause", cause(), by=QUALITY)
    case.complete("issue_8d", issue(), by=QUALITY)
    assert case.task("d3_containment").due_at == at(23, 15)
    assert until(desk, at(23, 14, 59)) == 0
    assert until(desk, at(23, 15)) == 1
    assert case.task("qm_escalate_d3_late").group_name == "quality_manager"
    case.complete("d3_containment", d3(), by=QUALITY)
    assert case.task("d4_d7_corrective_actions").due_at == at(25, 17)
    assert until(desk, at(25, 16, 59)) == 0
    assert until(desk, at(25, 17)) == 1
    assert case.open_tasks() == ["qm_escalate_d3_late", "d4_d7_corrective_actions", "qm_escalate_d4_d7_late"]
    assert case.escalations() == ["timer_d3_24h", "timer_d4_d7_5wd"]
    assert case.work()[-1] == ("d3_containment", "quality_1")


def test_ineffective_actions_reopen_d4_d7_with_a_fresh_five_working_days(desk):
    """Verify (quality): "actions effective? not → back to 8 (design choice)", with 5 working days
    counted again from the reopening; late again → the quality manager."""
    case = our_problem_issued(desk)
    case.complete("d3_containment", d3(), by=QUALITY)
    case.complete("d4_d7_corrective_actions", d4_d7(), by=RESPONSIBLE)
    case.complete("reply_customer", reply(), by=QUALITY)
    until(desk, at(27, 14))  # Friday
    case.complete("verify_effectiveness", verify("not_effective"), by=QUALITY)
    assert case.open_tasks() == ["d4_d7_corrective_actions"]
    assert case.data["d4_d7_round"] == 2
    # Fri 14:00 + 5 working days: Mon, Tue, Wed, Thu, Fri — not the original Mon 30 09:00.
    assert case.task("d4_d7_corrective_actions").due_at == at(4, 14, month=12)
    assert until(desk, at(4, 13, 59, month=12)) == 0
    assert until(desk, at(4, 14, month=12)) == 1
    assert case.task("qm_escalate_d4_d7_late").group_name == "quality_manager"
    assert case.escalations() == ["timer_d4_d7_5wd"]
    case.complete("qm_escalate_d4_d7_late", qm_note("qm_d4_d7_follow_up"), by=QUALITY_MANAGER)
    case.complete("d4_d7_corrective_actions", d4_d7(), by=RESPONSIBLE)
    case.complete("reply_customer", reply(), by=QUALITY)
    case.complete("verify_effectiveness", verify(), by=QUALITY)
    case.complete("after_sales_confirm_result", customer_says(), by=AFTER_SALES)
    case.complete("close_case", close(), by=QUALITY)
    assert case.status == "completed"
    assert case.work() == INTAKE + TO_QUALITY + [
        ("quality_confirm", "quality_1"), ("determine_cause", "quality_1"), ("issue_8d", "quality_1"),
        *EIGHT_D[:4], ("qm_escalate_d4_d7_late", "quality_manager_1"), *EIGHT_D[1:], ("close_case", "quality_1")]
    assert case.data["actions_effective"] == "effective"


# --- a real trip through the called complaint_travel -----------------------------------

def _up_to_the_trip(desk):
    add_user(desk, "traveler_1", "traveler")
    case = receive(desk)
    intake(case, "on_site")
    to_quality(case)
    case.complete("quality_confirm", quality_check(visit=True), by=QUALITY)
    case.complete("assess_complaint", {
        "travel_customer_name": "华南电子有限公司", "travel_complaint_content": "产线批量不良,需到现场确认",
        "travel_severity": "serious", "travel_urgency": "normal", "travel_needed": True}, by=CUSTOMER_SERVICE)
    assert case.task("fill_travel_request").group_name == "customer_service"
    case.complete("fill_travel_request", {
        "travel_travellers": ["traveler_1"], "travel_destination": "深圳市宝安区 华南电子",
        "travel_purpose": "现场确认不良并协商处理", "travel_planned_start": "2026-11-24",
        "travel_planned_end": "2026-11-25", "travel_estimated_cost": 2600.0, "travel_urgent": False},
        by=CUSTOMER_SERVICE)
    assert case.task("cs_head_review").group_name == "cs_head"
    case.complete("cs_head_review", {"travel_cs_head_decision": "approve"}, by=CS_HEAD)
    assert case.task("dl_approve").group_name == "division_leader"
    case.complete("dl_approve", {"travel_dl_decision": "approve"}, by=DIVISION_LEADER)
    assert case.task("finance_file").group_name == "finance"
    case.complete("finance_file", {"travel_finance_filed_at": "2026-11-23T11:00:00+08:00"}, by=FINANCE)
    case.complete("select_and_brief", {
        "travel_travellers": ["traveler_1"], "travel_briefing_content": "产品原理与客户背景",
        "travel_itinerary": "11/24 高铁赴深圳,11/25 返回", "travel_upgrade_requested": False},
        by=CUSTOMER_SERVICE)
    case.complete("authorise_travellers", {"travel_duties_and_powers": "现场确认,可承诺补货"}, by=DIVISION_LEADER)
    assert case.open_tasks() == ["analyse_problem"]
    assert case.task("analyse_problem").group_name == "traveler"
    return case


TRIP_APPROVED = [("assess_complaint", "customer_service_1"), ("fill_travel_request", "customer_service_1"),
                 ("cs_head_review", "cs_head_1"), ("dl_approve", "division_leader_1"),
                 ("finance_file", "finance_1"), ("select_and_brief", "customer_service_1"),
                 ("authorise_travellers", "division_leader_1")]


def test_trip_is_requested_and_approved_inside_the_called_travel_process(desk):
    """ISO 3.1: "安排以最快时间前往客户处进行现场确认动作" → complaint_travel (003 二(二)-(三), 三):
    申請, 部門負責人審核, 分管領導審批, 財務備案, 選派及授權 — each in the one inbox, for its group."""
    case = _up_to_the_trip(desk)
    assert case.status == "running"
    assert case.work() == INTAKE + TO_QUALITY + [("quality_confirm", "quality_1"), *TRIP_APPROVED]
    # The called process's data comes back to the 8D only when the call ends.
    assert "travel_outcome" not in case.data
    assert case.data["onsite_visit_needed"] is True


def test_traveller_resolves_the_complaint_on_site_and_the_8d_gets_the_travel_outcome(desk):
    """003 五: 現場處理 (分析, 與客戶協商方案, 實施, 客戶簽認《客訴處理結果確認書》); 五(六) 出差處理報告;
    六(二) 報銷; 八 回訪與評估 → the call activity returns "resolved" and quality goes on judging."""
    case = _up_to_the_trip(desk)
    case.complete("analyse_problem", {
        "travel_onsite_arrived_at": "2026-11-24T10:00:00+08:00", "travel_problem_details": "12 pcs 指示灯不亮",
        "travel_root_cause": "LED 虚焊"}, by=TRAVELER)
    assert case.task("propose_solution").group_name == "traveler"
    case.complete("propose_solution", {"travel_solution": "现场更换不良品并追溯批次",
                                       "travel_solution_accepted": True}, by=TRAVELER)
    case.complete("implement_solution", {"travel_implementation_record": "更换 12 pcs"}, by=TRAVELER)
    case.complete("confirm_result", {"travel_customer_satisfied_onsite": True}, by=TRAVELER)
    assert case.open_tasks() == ["write_trip_report"]
    case.complete("write_trip_report", {
        "travel_report_process": "现场确认并更换", "travel_report_result": "客户签认",
        "travel_report_customer_feedback": "满意", "travel_report_causes": "LED 虚焊"}, by=TRAVELER)
    assert set(case.open_tasks()) == {"fill_expense_claim", "follow_up_call"}
    case.complete("fill_expense_claim", {"travel_claim_total": 2480.0, "travel_claim_attachments": ["inv-1"]},
                  by=TRAVELER)
    case.complete("traveler_head_sign", {"travel_head_decision": "sign"}, by=TRAVELER_HEAD)
    case.complete("finance_audit", {"travel_finance_audit_result": "approved"}, by=FINANCE)
    case.complete("pay_expenses", {"travel_paid_amount": 2480.0, "travel_paid_at": "2026-11-23T16:00:00+08:00"},
                  by=FINANCE)
    case.complete("follow_up_call", {"travel_follow_up_at": "2026-11-23T16:30:00+08:00",
                                     "travel_follow_up_satisfied": True}, by=CUSTOMER_SERVICE)
    case.complete("evaluate_trip", {"travel_eval_resolution": "good", "travel_eval_satisfaction": "good",
                                    "travel_eval_efficiency": "good", "travel_eval_communication": "excellent",
                                    "travel_eval_action": "none"}, by=CS_HEAD)
    assert case.data["travel_outcome"] == "resolved"
    assert case.open_tasks() == ["determine_cause"]
    assert case.task("determine_cause").process_key == "customer_return_8d"
    case.complete("determine_cause", cause(), by=QUALITY)
    case.complete("issue_8d", issue(), by=QUALITY)
    eight_d(case)
    case.complete("close_case", close(), by=QUALITY)
    assert case.status == "completed"
    assert case.work() == INTAKE[:3] + [("register_complaint", "after_sales_1")] + TO_QUALITY + [
        ("quality_confirm", "quality_1"), *TRIP_APPROVED,
        ("analyse_problem", "traveler_1"), ("propose_solution", "traveler_1"), ("implement_solution", "traveler_1"),
        ("confirm_result", "traveler_1"), ("write_trip_report", "traveler_1"), ("fill_expense_claim", "traveler_1"),
        ("traveler_head_sign", "traveler_head_1"), ("finance_audit", "finance_1"), ("pay_expenses", "finance_1"),
        ("follow_up_call", "customer_service_1"), ("evaluate_trip", "cs_head_1"),
        ("determine_cause", "quality_1"), ("issue_8d", "quality_1"), *EIGHT_D, ("close_case", "quality_1")]
    assert case.data["travel_trip_ended_at"].startswith("2026-11-23")
