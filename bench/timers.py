"""Timer benchmark: how fast one process fires timers, and how late (run by hand).

    python -m bench.timers                 # SQLite in a temporary directory
    python -m bench.timers --postgres      # a throwaway PostgreSQL (tests/pgserver.py)
    python -m bench.timers --db URL --count 10000 --backlog 2000

Two measurements, one process each, through the engine as `serve` runs it:

* backlog: `--backlog` timers all overdue on a fake clock; `fire_due_timers()` is
  timed -> fired per second at full speed.
* lateness: `--count` timers due spread evenly over one real minute, fired by a
  `TimerScheduler` on the real clock (what `serve` runs) -> lateness =
  fired_at - due_at from each timer_fired audit event (median, p99, max).

Cases are started with `tests/fixtures/timer_date.bpmn`, whose timer date comes
from the start form. Results are appended to bench/results/timers.json and a
markdown line is printed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from engine.clock import FakeClock, SystemClock
from engine.scheduler import TimerScheduler
from engine.service import Actor, Engine
from storage.db import Database
from storage.models import AuditEvent, Timer

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "timer_date.bpmn"
RESULTS = Path(__file__).resolve().parent / "results" / "timers.json"
STARTER = Actor("bench", frozenset({"staff"}))


def seed(engine: Engine, dues: list[datetime]) -> float:
    began = time.perf_counter()
    for due in dues:
        engine.start_case("timer_date", {"due": due.isoformat()}, STARTER)
    return len(dues) / (time.perf_counter() - began)


def backlog(url: str, count: int) -> dict:
    clock = FakeClock()
    engine = Engine(Database(url), clock)
    engine.deploy([(FIXTURE.name, FIXTURE.read_bytes())], STARTER)
    start = clock.now() + timedelta(minutes=1)
    seeded_per_s = seed(engine, [start + timedelta(seconds=60 * i / count) for i in range(count)])
    clock.set(start + timedelta(minutes=2))
    began = time.perf_counter()
    fired = engine.fire_due_timers()
    elapsed = time.perf_counter() - began
    assert fired == count, (fired, count)
    engine.db.dispose()
    return {"timers": count, "fired_per_s": round(fired / elapsed, 1), "seconds": round(elapsed, 2),
            "started_per_s": round(seeded_per_s, 1)}


def lateness(url: str, count: int) -> dict:
    engine = Engine(Database(url), SystemClock())
    engine.deploy([(FIXTURE.name, FIXTURE.read_bytes())], STARTER)
    # Estimate how long seeding takes, so the minute starts after it.
    probe = 100
    rate = seed(engine, [datetime.now(timezone.utc) + timedelta(days=1)] * probe)
    with engine.db.unit_of_work() as uow:  # the probe's timers are not part of the measurement
        for timer in uow.session.scalars(select(Timer).where(Timer.status == "waiting")):
            timer.status = "cancelled"
        uow.commit()
    start = datetime.now(timezone.utc) + timedelta(seconds=count / rate * 1.3 + 5)
    seed(engine, [start + timedelta(seconds=60 * i / count) for i in range(count)])
    seeded_late = max(0.0, (datetime.now(timezone.utc) - start).total_seconds())
    scheduler = TimerScheduler(engine).start()
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with engine.read() as uow:
                left = uow.session.scalar(select(Timer.id).where(Timer.status == "waiting").limit(1))
            if left is None:
                break
            time.sleep(0.5)
    finally:
        scheduler.shutdown(wait=True)
    with engine.read() as uow:
        fired = [e.data for e in uow.session.scalars(select(AuditEvent).where(AuditEvent.type == "timer_fired"))]
    engine.db.dispose()
    late = sorted((datetime.fromisoformat(d["fired_at"]) - datetime.fromisoformat(d["due_at"])).total_seconds()
                  for d in fired)
    first = min(datetime.fromisoformat(d["fired_at"]) for d in fired)
    last = max(datetime.fromisoformat(d["fired_at"]) for d in fired)
    return {"timers": len(fired), "window_s": 60, "lateness_median_s": round(statistics.median(late), 3),
            "lateness_p99_s": round(late[int(len(late) * 0.99) - 1], 3), "lateness_max_s": round(late[-1], 3),
            "first_to_last_fired_s": round((last - first).total_seconds(), 1),
            "seeding_overran_window_start_s": round(seeded_late, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL")
    parser.add_argument("--count", type=int, default=10_000, help="timers due within one real minute")
    parser.add_argument("--backlog", type=int, default=2_000, help="overdue timers fired at full speed")
    args = parser.parse_args()
    server = None
    urls = []
    if args.postgres:
        from bench.common import create_database
        from tests.pgserver import PgServer

        server = PgServer().start()
        urls = [create_database(server, name) for name in ("bench_backlog", "bench_lateness")]
    elif args.db:
        urls = [args.db, args.db]
    else:
        folder = Path(tempfile.mkdtemp(prefix="cf-bench-"))
        urls = [f"sqlite:///{folder / 'backlog.db'}", f"sqlite:///{folder / 'lateness.db'}"]
    try:
        for url in urls:
            Database(url).upgrade()
        result = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "database": Database(urls[0]).dialect}
        if args.backlog:
            result["backlog"] = backlog(urls[0], args.backlog)
        if args.count:
            result["lateness"] = lateness(urls[1], args.count)
    finally:
        if server is not None:
            server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    history.append(result)
    RESULTS.write_text(json.dumps(history, indent=2) + "\n")
    b, l_ = result.get("backlog", {}), result.get("lateness", {})
    print(f"| {result['database']} | {b.get('timers', '-')} overdue: {b.get('fired_per_s', '-')} fired/s | "
          f"{l_.get('timers', '-')} due in one minute: lateness median {l_.get('lateness_median_s', '-')} s, "
          f"p99 {l_.get('lateness_p99_s', '-')} s, max {l_.get('lateness_max_s', '-')} s |")


if __name__ == "__main__":
    main()
