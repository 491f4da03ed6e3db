"""Summary figures over cases, read from indexed columns and audit events (no workflow is loaded).

The cases counted are those created in `[since, until)` (either bound optional),
of one definition key or of all. Counts are SQL aggregates; months are bucketed
in the business time zone, and the median is taken in Python, because SQLite
has neither time zones nor percentiles.
"""
from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import AuditEvent, HumanTask, Instance

PROPERTY_COMPLAINT = "property_complaint"


def _scope(definition_key: str | None, since: datetime | None, until: datetime | None):
    conditions = []
    if definition_key:
        conditions.append(Instance.definition_key == definition_key)
    if since is not None:
        conditions.append(Instance.created_at >= since)
    if until is not None:
        conditions.append(Instance.created_at < until)
    return conditions


def summary(session: Session, tz: tzinfo, *, definition_key: str | None = None, since: datetime | None = None,
            until: datetime | None = None) -> dict[str, Any]:
    """Counts by status, open tasks by group, cases by month, SLA breaches, median time to complete."""
    scope = _scope(definition_key, since, until)
    in_scope = select(Instance.id).where(*scope)
    by_status = dict(session.execute(select(Instance.status, func.count()).where(*scope)
                                     .group_by(Instance.status).order_by(Instance.status)).all())
    by_group = dict(session.execute(
        select(func.coalesce(HumanTask.group_name, ""), func.count())
        .where(HumanTask.status == "open", HumanTask.instance_id.in_(in_scope))
        .group_by(HumanTask.group_name).order_by(HumanTask.group_name)).all())
    months = Counter(created.astimezone(tz).strftime("%Y-%m")
                     for created in session.scalars(select(Instance.created_at).where(*scope)))
    escalated = (AuditEvent.type == "escalated", AuditEvent.instance_id.in_(in_scope))
    breaches_by_element = dict(session.execute(
        select(func.coalesce(AuditEvent.element_id, ""), func.count())
        .where(*escalated).group_by(AuditEvent.element_id).order_by(AuditEvent.element_id)).all())
    breached_cases = session.scalar(select(func.count(func.distinct(AuditEvent.instance_id))).where(*escalated))
    durations = [(ended - created).total_seconds() for created, ended in session.execute(
        select(Instance.created_at, Instance.ended_at)
        .where(*scope, Instance.status == "completed", Instance.ended_at.is_not(None)))]
    median = statistics.median(durations) if durations else None
    result: dict[str, Any] = {
        "definition_key": definition_key,
        "from": since.astimezone(tz).isoformat() if since else None,
        "to": until.astimezone(tz).isoformat() if until else None,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_group": by_group,
        "by_month": dict(sorted(months.items())),
        "sla_breaches": {"total": sum(breaches_by_element.values()), "instances": breached_cases or 0,
                         "by_element": breaches_by_element},
        "completed": len(durations),
        "median_time_to_complete_seconds": median,
        "median_time_to_complete_hours": round(median / 3600, 2) if median is not None else None,
    }
    if definition_key in (None, PROPERTY_COMPLAINT):
        result[PROPERTY_COMPLAINT] = _property_complaint(session, since, until)
    return result


def _property_complaint(session: Session, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """Secondary complaints (a case complained about again) and the customers' satisfaction."""
    scope = _scope(PROPERTY_COMPLAINT, since, until)
    # Read as JSON values, not cast in SQL: a case whose data holds something odd is skipped, not an error.
    repeats = [value for value in session.scalars(
        select(Instance.data["secondary_complaint_count"]).where(*scope))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0]
    # Grouped by the label: PostgreSQL would see two spellings of the JSON path as different expressions.
    answer = Instance.data["customer_satisfaction"].as_string().label("answer")
    satisfaction = dict(session.execute(
        select(answer, func.count()).where(*scope, Instance.data["customer_satisfaction"].as_string().is_not(None))
        .group_by(answer)).all())
    return {"secondary_complaints": len(repeats), "secondary_complaint_total": int(sum(repeats)),
            "satisfaction": dict(sorted(satisfaction.items()))}
