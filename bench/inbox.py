"""Inbox at scale: 100,000 open property_complaint cases bulk-seeded through the engine's own tables,
then `GET /api/v1/tasks` of a user of the busiest group against a real `complaintflow serve`.

Seeding: one real case is started through the engine; its instance row (state, data), its open
task, candidates and waiting timers are copied 100,000 times with a realistic spread of groups
and steps (front desk busiest), due dates spread over two weeks, a tenth claimed by someone.

`python -m bench.inbox [--cases 100000] [--requests 300] [--runs 3]`
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import func, insert, select

from bench.common import databases, median, percentile, write_result
from bench.path import KEY, START, STARTER
from bench.server import Server, add_users, login
from bench.service import prepare_engine
from storage.models import HumanTask, Instance, TaskCandidate, Timer

# (group, share of open tasks, element a task of that group is waiting at)
SPREAD = [("front_desk", 0.35, "dispatch_work_order"), ("engineering", 0.20, "handle_complaint"),
          ("customer_service", 0.12, "handle_complaint"), ("security", 0.08, "handle_complaint"),
          ("dept_head", 0.12, "review_handling_result"), ("cs_supervisor", 0.10, "review_and_archive"),
          ("center_lead", 0.03, "review_and_archive")]
BUSY_GROUP = "front_desk"


def seed(url: str, cases: int, batch: int = 5_000) -> dict:
    engine = prepare_engine(url)
    model_case = engine.start_case(KEY, dict(START), STARTER).instance_id
    with engine.read() as uow:
        s = uow.session
        proto = s.get(Instance, model_case)
        proto_task = s.scalars(select(HumanTask).where(HumanTask.instance_id == model_case)).one()
        proto_timers = list(s.scalars(select(Timer).where(Timer.instance_id == model_case)))
        next_instance = s.scalar(select(func.max(Instance.id))) + 1
        next_task = s.scalar(select(func.max(HumanTask.id))) + 1
        columns = {c.key: getattr(proto, c.key) for c in Instance.__table__.columns if c.key != "id"}
        task_columns = {c.key: getattr(proto_task, c.key) for c in HumanTask.__table__.columns if c.key != "id"}
        timer_columns = [{c.key: getattr(t, c.key) for c in Timer.__table__.columns if c.key != "id"}
                         for t in proto_timers]
    rng = random.Random(7)
    groups, weights = [g for g, _w, _e in SPREAD], [w for _g, w, _e in SPREAD]
    element_of = {g: e for g, _w, e in SPREAD}
    base = proto.created_at
    began = time.perf_counter()
    counts: dict[str, int] = {}
    for first in range(0, cases, batch):
        instances, tasks, candidates, timers = [], [], [], []
        for n in range(first, min(cases, first + batch)):
            iid, tid = next_instance + n, next_task + n
            group = rng.choices(groups, weights)[0]
            counts[group] = counts.get(group, 0) + 1
            created = base - timedelta(minutes=rng.randrange(0, 60 * 24 * 14))
            instances.append({**columns, "id": iid, "created_at": created, "updated_at": created})
            claimed = rng.random() < 0.1
            tasks.append({**task_columns, "id": tid, "instance_id": iid, "group_name": group,
                          "element_id": element_of[group], "spiff_task_id": f"00000000-0000-4000-8000-{iid:012d}",
                          "created_at": created, "due_at": (due := created + timedelta(hours=rng.choice((1, 12, 24, 48)))),
                          "due_key": due,
                          "assignee": f"{group}_{rng.randrange(2, 9)}" if claimed else None,
                          "claimed_at": created if claimed else None})
            candidates.append({"task_id": tid, "kind": "group", "name": group, "is_primary": True})
            for timer in timer_columns:
                timers.append({**timer, "instance_id": iid, "due_at": created + timedelta(days=30),
                               "next_attempt_at": created + timedelta(days=30), "created_at": created})
        with engine.db.engine.begin() as conn:
            conn.execute(insert(Instance), instances)
            conn.execute(insert(HumanTask), tasks)
            conn.execute(insert(TaskCandidate), candidates)
            if timers:
                conn.execute(insert(Timer), timers)
    if engine.db.is_postgres:
        with engine.db.engine.begin() as conn:  # explicit ids: move the sequences past them
            for table in ("instances", "human_tasks", "timers"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT coalesce(max(id), 1) FROM {table}))")
        with engine.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    seconds = time.perf_counter() - began
    engine.db.dispose()
    return {"open_cases": cases, "seed_seconds": round(seconds, 1), "tasks_per_group": counts,
            "timers_per_case": len(timer_columns)}


def bench_inbox(url: str, cases: int, requests_per_run: int, runs: int, log: Path) -> dict:
    seeded = seed(url, cases)
    add_users(url, [("inbox_user", ("staff",), (BUSY_GROUP,))])
    server = Server(url, log).start()
    try:
        headers = login(server.base, "inbox_user")
        http = requests.Session()
        rss_idle = server.rss_mb()[0]
        for _ in range(20):  # warm up
            http.get(f"{server.base}/api/v1/tasks", headers=headers, timeout=60).raise_for_status()
        p50s, p99s, sizes = [], [], []
        for _ in range(runs):
            times = []
            for index in range(requests_per_run):
                # first pages, filtered pages and a next page, as people click
                path = ("/api/v1/tasks", f"/api/v1/tasks?group={BUSY_GROUP}", "/api/v1/tasks?overdue=true",
                        "/api/v1/tasks?limit=50")[index % 4]
                began = time.perf_counter()
                response = http.get(server.base + path, headers=headers, timeout=60)
                times.append(time.perf_counter() - began)
                response.raise_for_status()
                sizes.append(len(response.json()["items"]))
            p50s.append(1000 * percentile(times, 50))
            p99s.append(1000 * percentile(times, 99))
        rss, peak = server.rss_mb()
    finally:
        server.stop()
    return {**seeded, "busy_group": BUSY_GROUP, "requests_per_run": requests_per_run, "runs": runs,
            "inbox_p50_ms": round(median(p50s), 2), "inbox_p99_ms": round(median(p99s), 2),
            "items_per_page": max(sizes), "server_rss_idle_mb": rss_idle, "server_rss_mb": rss,
            "server_peak_rss_mb": peak}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.inbox")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv or [])
    results = {}
    logs = Path(tempfile.mkdtemp(prefix="cf-bench-inbox-"))
    with databases() as urls:
        for dialect, url in urls.items():
            results[dialect] = bench_inbox(url, args.cases, args.requests, args.runs, logs / f"{dialect}.log")
    write_result("inbox", {"benchmark": "inbox", "results": results})
    return results


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1:]))
