"""Monthly complaint statistics (投诉WI 4.3.2): opened on the 20th, due by the 25th."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from storage.models import Timer
from tests.scenarios.conftest import Case, person

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUPERVISOR = person("cs_supervisor")
CENTER_LEAD = person("center_lead")
FIGURES = {"stat_month": None, "total_complaints": 12, "secondary_complaints": 1, "major_complaints": 2,
           "important_owner_complaints": 3, "handling_summary": "二次投诉1件已回访满意；重大投诉2件已专题报告。",
           "analysis_and_improvement": "加强工程遗留问题跟踪。"}


def waiting_cases(desk) -> list[Case]:
    """The monthly cases waiting on their start timer (deploying started the first)."""
    with desk.db.unit_of_work(write=False) as uow:
        ids = uow.session.scalars(
            select(Timer.instance_id).where(Timer.element_id == "start_monthly_statistics", Timer.status == "waiting"))
        cases = [Case(desk, i) for i in ids if i not in {c.id for c in desk.cases}]
    desk.cases.extend(cases)
    return cases


def test_the_engine_keeps_one_case_waiting_for_the_20th(desk):
    """4.3.2: the statistics are reported monthly; the case opens on the 20th at 09:00 (design choice)."""
    [case] = waiting_cases(desk)
    assert desk.engine.ensure_scheduled_starts() == []  # one waiting case per process, not one per call
    assert case.open_tasks() == [] and case.waiting_timers() == ["start_monthly_statistics"]
    desk.advance(days=26, hours=23, minutes=59)  # 2026-12-20 08:59 in Shanghai
    assert case.open_tasks() == []
    desk.advance(minutes=2)
    task = case.task("fill_monthly_statistics")
    assert task.group_name == "cs_supervisor"
    assert task.due_at == datetime(2026, 12, 25, 17, 0, tzinfo=SHANGHAI)
    assert case.data["stat_month"] == "2026-12"
    # The next month's case now waits for 2027-01-20.
    [following] = waiting_cases(desk)
    assert following.id != case.id and following.open_tasks() == []


def test_supervisor_reports_by_the_25th_and_the_center_lead_acknowledges(desk):
    """4.3.2: cs_supervisor fills 《客户投诉统计分析表》 and reports it to the center lead."""
    [case] = waiting_cases(desk)
    desk.advance(days=27, hours=1)
    case.complete("fill_monthly_statistics", {**FIGURES, "stat_month": "2026-12"}, by=SUPERVISOR)
    case.complete("acknowledge_monthly_statistics", {"center_lead_opinion": "同意", "statistics_acknowledged": True},
                  by=CENTER_LEAD)
    assert case.status == "completed"
    assert case.work() == [("fill_monthly_statistics", "cs_supervisor_1"),
                           ("acknowledge_monthly_statistics", "center_lead_1")]
    assert case.data["secondary_complaints"] == 1 and case.escalations() == []


def test_a_report_missing_on_the_25th_is_chased_by_the_center_lead(desk):
    """Late statistics: past 17:00 on the 25th the center lead is asked to follow up (design choice)."""
    [case] = waiting_cases(desk)
    desk.advance(days=27)
    desk.advance(days=5, hours=8)  # 2026-12-25 17:00 has passed
    assert case.escalations() == ["timer_statistics_due"]
    case.complete("note_statistics_overdue", {"statistics_overdue_followup": "已电话督促"}, by=CENTER_LEAD)
    case.complete("fill_monthly_statistics", {**FIGURES, "stat_month": "2026-12"}, by=SUPERVISOR)
    case.complete("acknowledge_monthly_statistics", {"statistics_acknowledged": True}, by=CENTER_LEAD)
    assert case.status == "completed"
    assert [w[0] for w in case.work()] == ["note_statistics_overdue", "fill_monthly_statistics",
                                           "acknowledge_monthly_statistics"]
