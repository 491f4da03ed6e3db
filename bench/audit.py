"""Audit benchmark: verify throughput over 1,000,000 events, and replay time per event.

`python -m bench.audit [--events 1000000] [--legacy-json]`
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, insert

from bench.common import databases, median, peak_rss_mb, write_result
from engine.audit import GENESIS, canonical_json, event_hash, verify_database
from storage.db import Database
from storage.models import AuditChain, AuditEvent


def seed_events(db: Database, total: int, per_chain: int = 50, batch: int = 20_000,
                legacy_json: bool = False) -> None:
    """Write `total` chained events straight into the table (as the engine would have).

    `legacy_json` stores data as databases written before canonical JSON text did:
    `json.dumps` with spaces and escapes, which verify must re-encode to hash.
    """
    engine = create_engine(db.url) if legacy_json else db.engine
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows, heads, last_hash = [], [], GENESIS
    for index in range(total):
        chain_no, seq = divmod(index, per_chain)
        seq += 1
        chain = f"instance:{chain_no + 1}"
        prev = GENESIS if seq == 1 else rows[-1]["hash"] if rows else last_hash
        # Keys sorted, as the audit log hands data in.
        data = json.loads(canonical_json({"submitted": {"result": "已处理", "n": index}}))
        event = {"chain": chain, "seq": seq, "instance_id": chain_no + 1, "type": "task_completed",
                 "at": start + timedelta(seconds=index), "actor": f"user{index % 97}", "element_id": "handle",
                 "task_id": index, "data": data, "prev_hash": prev}
        event["hash"] = event_hash(event)
        rows.append(event)
        if seq == per_chain or index == total - 1:
            heads.append({"chain": chain, "last_seq": seq, "last_hash": event["hash"]})
        if len(rows) >= batch:
            last_hash = rows[-1]["hash"]
            with engine.begin() as conn:
                conn.execute(insert(AuditEvent), rows)
            rows = []
    with engine.begin() as conn:
        if rows:
            conn.execute(insert(AuditEvent), rows)
        conn.execute(insert(AuditChain), heads)
    if legacy_json:
        engine.dispose()


def bench_verify(url: str, total: int, runs: int, legacy_json: bool = False) -> dict:
    db = Database(url)
    db.upgrade()
    started = time.perf_counter()
    seed_events(db, total, legacy_json=legacy_json)
    seeded = time.perf_counter() - started
    rates, peaks = [], []
    for _ in range(runs):
        # Peak RSS only grows: measure the rise a verify causes over what seeding left.
        before = peak_rss_mb()
        began = time.perf_counter()
        with db.unit_of_work(write=False) as uow:
            report = verify_database(uow.session)
        elapsed = time.perf_counter() - began
        peaks.append(peak_rss_mb() - before)
        assert report.ok and report.events_checked == total, report
        rates.append(total / elapsed)
    db.dispose()
    return {"events": total, "legacy_json": legacy_json, "seed_seconds": round(seeded, 1),
            "verify_events_per_s": round(median(rates)), "verify_rss_growth_mb": round(max(peaks), 1),
            "process_peak_rss_mb": round(peak_rss_mb(), 1)}


def bench_replay(url: str, rounds: int) -> dict:
    from engine.clock import FakeClock
    from engine.replay import replay
    from engine.service import Actor, Engine
    from pathlib import Path
    from sqlalchemy import select
    from storage.models import HumanTask

    db = Database(url)
    db.upgrade()
    clock = FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))
    engine = Engine(db, clock)
    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "two_step.bpmn"
    owner, clerk = Actor("owner", frozenset({"process_owner"})), Actor("clerk", frozenset({"staff"}),
                                                                        frozenset({"front_desk"}))
    engine.deploy([(fixture.name, fixture.read_bytes())], owner)
    case = engine.start_case("two_step", {"title": "bench"}, clerk).instance_id
    for index in range(rounds):
        with db.unit_of_work(write=False) as uow:
            task = uow.session.scalars(select(HumanTask).where(HumanTask.status == "open",
                                                               HumanTask.element_id == "review")).one()
        decision = "approve" if index == rounds - 1 else "reject"
        engine.complete_task(task.id, {"decision": decision}, clerk)
    times, events = [], 0
    for _ in range(5):
        began = time.perf_counter()
        result = replay(engine, case)
        times.append(time.perf_counter() - began)
        events = result.last_seq
        assert result.matches_stored, result.differences
    db.dispose()
    return {"case_events": events, "replay_seconds": round(median(times), 3),
            "replay_ms_per_event": round(1000 * median(times) / events, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.audit")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--legacy-json", action="store_true",
                        help="store event data as databases written before canonical JSON text did")
    args = parser.parse_args(argv)
    results = {}
    with databases() as urls:
        for dialect, url in urls.items():
            results[dialect] = {**bench_verify(url, args.events, args.runs, args.legacy_json)}
    with databases() as urls:
        for dialect, url in urls.items():
            results[dialect].update(bench_replay(url, rounds=200))
    name = "audit-legacy-json" if args.legacy_json else "audit"
    path = write_result(name, {"benchmark": "audit", "results": results})
    for dialect, figures in results.items():
        print(f"| audit | {dialect} | verify {figures['verify_events_per_s']:,} events/s "
              f"(RSS grew {figures['verify_rss_growth_mb']} MB, peak {figures['process_peak_rss_mb']} MB) | replay "
              f"{figures['replay_ms_per_event']} ms/event over {figures['case_events']} events |")
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
