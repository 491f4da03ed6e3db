"""Inbox at scale: 100,000 open property_complaint cases bulk-seeded through the engine's own tables,
then `GET /api/v1/tasks` of a user of the busiest group against a real `complaintflow serve`.

Seeding: one real case is started through the engine; its instance row (state, data), its open
task, candidates and waiting timers are copied 100,000 times with a realistic spread of groups
and steps (front desk busiest), due dates spread over two weeks, a tenth claimed by someone.

`python -m bench.inbox [--cases 100000] [--requests 300] [--runs 3] [--keep DIR] [--only sqlite]`

`--keep DIR` seeds into DIR once (`inbox.db` and a PostgreSQL data directory `pg/`) and
reuses it on later runs with the same `--cases`, so iterating on the inbox costs no seeding;
the server upgrades a kept database to the newest migration when it starts. Delete DIR to
seed afresh. Besides the client's wall-clock times, each run reports the same requests
through the Flask app in process, without HTTP (`app_*`), the SQL statements one request
issues and their time (`sql_*`) and the garbage collector's pauses (`gc_*`): steadier on a
busy machine, and they show where the time goes.
"""
from __future__ import annotations

import argparse
import gc
import http.client
import json
import random
import shutil
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from sqlalchemy import event, func, insert, select

from bench.common import create_database, databases, median, percentile, write_result
from bench.path import KEY, START, STARTER
from bench.server import PASSWORD, Server, add_users, login
from bench.service import prepare_engine
from storage.models import HumanTask, Instance, TaskCandidate, Timer
from tests.pgserver import PgServer, _bin

# (group, share of open tasks, element a task of that group is waiting at)
SPREAD = [("front_desk", 0.35, "dispatch_work_order"), ("engineering", 0.20, "handle_complaint"),
          ("customer_service", 0.12, "handle_complaint"), ("security", 0.08, "handle_complaint"),
          ("dept_head", 0.12, "review_handling_result"), ("cs_supervisor", 0.10, "review_and_archive"),
          ("center_lead", 0.03, "review_and_archive")]
BUSY_GROUP = "front_desk"
DIALECTS = ("sqlite", "postgresql")


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


# First pages, filtered pages and a next page, as people click.
PATHS = ("/api/v1/tasks", f"/api/v1/tasks?group={BUSY_GROUP}", "/api/v1/tasks?overdue=true", "/api/v1/tasks?limit=50")
INBOX_USER = "inbox_user"


class KeptPgServer(PgServer):
    """A PostgreSQL server whose data directory stays in `folder` between runs."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        shutil.rmtree(self.base, ignore_errors=True)  # the throwaway folder it made: this one is kept
        self.base, self.data, self.socket_dir = folder, folder / "data", folder / "sock"

    def start(self) -> KeptPgServer:
        if not self.data.is_dir():
            return super().start()
        self.socket_dir.mkdir(exist_ok=True)
        if self._as_user:
            shutil.chown(self.socket_dir, "postgres")
        options = (f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l", str(self.base / "log"), "start")
        return self

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")


@contextmanager
def kept_databases(folder: Path, which: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Databases by dialect that outlive the run: an SQLite file and a PostgreSQL data directory in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    urls, server = {}, None
    if "sqlite" in which:
        urls["sqlite"] = f"sqlite:///{folder / 'inbox.db'}"
    if "postgresql" in which:
        fresh = not (folder / "pg" / "data").is_dir()
        (folder / "pg").mkdir(exist_ok=True)
        server = KeptPgServer(folder / "pg").start()
        urls["postgresql"] = create_database(server, "bench") if fresh else server.url("bench")
    try:
        yield urls
    finally:
        if server is not None:
            server.stop()


def seeded_once(url: str, cases: int, marker: Path | None) -> dict:
    """Seed the cases and the inbox user, unless `marker` says this database already holds them."""
    if marker is not None and marker.is_file():
        seeded = json.loads(marker.read_text())
        if seeded["open_cases"] == cases:
            return seeded
        raise SystemExit(f"{marker.parent} holds {seeded['open_cases']} cases, not {cases}: delete it to reseed")
    seeded = seed(url, cases)
    add_users(url, [(INBOX_USER, ("staff",), (BUSY_GROUP,))])
    if marker is not None:
        marker.write_text(json.dumps(seeded))
    return seeded


def over_http(url: str, requests_per_run: int, runs: int, log: Path) -> dict:
    """Client-side times of the inbox against a real `complaintflow serve`, and its memory.

    The client is a plain keep-alive `http.client` connection, as in bench/http.py:
    `requests` costs about a millisecond more per call on the cores it shares with the server.
    """
    server = Server(url, log).start()
    try:
        headers = login(server.base, INBOX_USER)
        address = urlsplit(server.base)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)

        def get(path: str) -> bytes:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (path, response.status, body[:500])
            return body

        rss_idle = server.rss_mb()[0]
        for _ in range(20):  # warm up
            get(PATHS[0])
        p50s, p99s, sizes = [], [], []
        for _ in range(runs):
            times = []
            for index in range(requests_per_run):
                began = time.perf_counter()
                body = get(PATHS[index % len(PATHS)])
                times.append(time.perf_counter() - began)
                sizes.append(len(json.loads(body)["items"]))
            p50s.append(1000 * percentile(times, 50))
            p99s.append(1000 * percentile(times, 99))
        connection.close()
        rss, peak = server.rss_mb()
    finally:
        server.stop()
    return {"inbox_p50_ms": round(median(p50s), 2), "inbox_p99_ms": round(median(p99s), 2),
            "items_per_page": max(sizes), "server_rss_idle_mb": rss_idle, "server_rss_mb": rss,
            "server_peak_rss_mb": peak}


def in_process(url: str, requests_per_run: int) -> dict:
    """The same requests through the Flask app in this process: the request's own time, its SQL and GC pauses."""
    from api import create_app, engine_of

    app = create_app({"DATABASE_URL": url})
    client = app.test_client()
    token = client.post("/api/v1/auth/login", json={"username": INBOX_USER, "password": PASSWORD}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    statements: list[float] = []
    gc_pauses: list[float] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["began"] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        statements.append(time.perf_counter() - conn.info.pop("began"))

    def on_gc(phase, info):
        if phase == "start":
            on_gc.began = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - on_gc.began)

    sql_engine = engine_of(app).db.engine
    for _ in range(20):  # warm up
        client.get(PATHS[0], headers=headers)
    gc.collect()  # not the seeding's garbage: only what the requests leave counts
    event.listen(sql_engine, "before_cursor_execute", before)
    event.listen(sql_engine, "after_cursor_execute", after)
    gc.callbacks.append(on_gc)
    times, counts, sql_times = [], [], []
    try:
        for index in range(requests_per_run):
            statements.clear()
            began = time.perf_counter()
            response = client.get(PATHS[index % len(PATHS)], headers=headers)
            times.append(time.perf_counter() - began)
            assert response.status_code == 200, response.json
            counts.append(len(statements))
            sql_times.append(sum(statements))
    finally:
        gc.callbacks.remove(on_gc)
        event.remove(sql_engine, "before_cursor_execute", before)
        event.remove(sql_engine, "after_cursor_execute", after)
        engine_of(app).db.dispose()
    return {"app_p50_ms": round(1000 * percentile(times, 50), 2), "app_p99_ms": round(1000 * percentile(times, 99), 2),
            "app_max_ms": round(1000 * max(times), 2), "sql_statements_per_request": max(counts),
            "sql_p50_ms": round(1000 * percentile(sql_times, 50), 2),
            "sql_p99_ms": round(1000 * percentile(sql_times, 99), 2),
            "gc_pauses": len(gc_pauses), "gc_max_ms": round(1000 * max(gc_pauses, default=0), 2)}


def bench_inbox(url: str, cases: int, requests_per_run: int, runs: int, log: Path, marker: Path | None = None) -> dict:
    seeded = seeded_once(url, cases, marker)
    measured = over_http(url, requests_per_run, runs, log)
    return {**seeded, "busy_group": BUSY_GROUP, "requests_per_run": requests_per_run, "runs": runs, **measured,
            **in_process(url, requests_per_run)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.inbox")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="seed into DIR once and reuse it on later runs (delete DIR to reseed)")
    parser.add_argument("--only", choices=DIALECTS, action="append",
                        help="measure only this database (repeatable; default: both)")
    args = parser.parse_args(argv or [])
    which = tuple(args.only or DIALECTS)
    results = {}
    logs = Path(tempfile.mkdtemp(prefix="cf-bench-inbox-"))
    opened = kept_databases(args.keep, which) if args.keep else databases(which)
    with opened as urls:
        for dialect, url in urls.items():
            marker = args.keep / f"{dialect}.json" if args.keep else None
            results[dialect] = bench_inbox(url, args.cases, args.requests, args.runs, logs / f"{dialect}.log", marker)
    write_result("inbox", {"benchmark": "inbox", "results": results})
    return results


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1:]))
