"""Ceiling and service-layer benchmarks: the property_complaint happy path.

* ceiling: raw SpiffWorkflow in memory (the engine's parsed spec and script
  engine, form data validated beforehand, no database) -> task steps per second.
* service: the same path through `Engine` with persistence (SQLite, PostgreSQL)
  -> task completions per second, and the ratio to the ceiling.

`python -m bench.service [--cases 30] [--runs 5] [--profile]`
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from datetime import datetime, timezone

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from bench.common import databases, median, write_result
from bench.path import BPMN, KEY, OWNER, START, STARTER, STEPS, add_users, worker
from engine import definitions as bpmn
from engine import forms
from engine.calendar import BusinessCalendar
from engine.clock import FakeClock, install_spiff_clock
from engine.expressions import expression_functions
from engine.sandbox import make_script_engine
from engine.service import Engine
from storage.db import Database
from storage.models import HumanTask


class Ceiling:
    """The happy path in raw SpiffWorkflow: no forms, no rows, no audit, no serialisation."""

    def __init__(self) -> None:
        install_spiff_clock()
        files = [(BPMN.name, BPMN.read_bytes())]
        self.spec, self.subprocess_specs = bpmn.compile_specs(KEY, files)
        model = bpmn.describe(files)[KEY]
        self.script_engine = make_script_engine(expression_functions(BusinessCalendar(tz="Asia/Shanghai")))
        self.start = forms.validate(model.start_form, dict(START), user_exists=lambda name: True)
        self.start.update(initiator=STARTER.username, started_at=datetime.now(timezone.utc).isoformat())
        current: dict = dict(self.start)
        self.steps = []
        for element, _group, data in STEPS:
            clean = forms.validate(model.user_tasks[element].form, dict(data), current=current,
                                   user_exists=lambda name: True)
            current.update(clean)
            self.steps.append((element, clean))

    def run_case(self) -> int:
        workflow = BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=self.script_engine)
        for task in workflow.get_tasks(state=TaskState.READY):
            task.set_data(**self.start)
        workflow.do_engine_steps()
        for element, clean in self.steps:
            ready = [t for t in workflow.get_tasks(state=TaskState.READY, manual=True)
                     if t.task_spec.bpmn_id == element]
            assert len(ready) == 1, (element, [t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.READY)])
            ready[0].set_data(**clean)
            ready[0].run()
            workflow.do_engine_steps()
        assert workflow.is_completed()
        return len(self.steps)


def bench_ceiling(cases: int, runs: int) -> dict:
    ceiling = Ceiling()
    ceiling.run_case()  # warm up
    rates = []
    for _ in range(runs):
        began = time.perf_counter()
        steps = sum(ceiling.run_case() for _ in range(cases))
        rates.append(steps / (time.perf_counter() - began))
    return {"cases_per_run": cases, "runs": runs, "steps_per_s": round(median(rates), 1),
            "all_runs": [round(r, 1) for r in rates]}


def prepare_engine(url: str) -> Engine:
    db = Database(url)
    db.upgrade()
    engine = Engine(db, FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)))
    engine.deploy([(BPMN.name, BPMN.read_bytes())], OWNER)
    add_users(engine)
    return engine


def open_task(engine: Engine, instance_id: int, element: str) -> int:
    from sqlalchemy import select

    with engine.read() as uow:
        return uow.session.scalar(select(HumanTask.id).where(
            HumanTask.instance_id == instance_id, HumanTask.element_id == element, HumanTask.status == "open"))


def run_service_case(engine: Engine) -> tuple[int, float]:
    """One case: start, then complete the six tasks; returns (completions, seconds spent completing)."""
    started = engine.start_case(KEY, dict(START), STARTER)
    task_id = started.created_task_ids[0]
    spent = 0.0
    for index, (element, group, data) in enumerate(STEPS):
        began = time.perf_counter()
        result = engine.complete_task(task_id, dict(data), worker(group))
        spent += time.perf_counter() - began
        if index + 1 < len(STEPS):
            # the next task of the path (timers' chase tasks aside)
            task_id = open_task(engine, started.instance_id, STEPS[index + 1][0])
            assert task_id in result.created_task_ids, (element, result)
    return len(STEPS), spent


def bench_service(url: str, cases: int, runs: int) -> dict:
    engine = prepare_engine(url)
    run_service_case(engine)  # warm up: parse the spec once
    rates, starts = [], []
    for _ in range(runs):
        done, spent, began_all = 0, 0.0, time.perf_counter()
        for _ in range(cases):
            steps, seconds = run_service_case(engine)
            done += steps
            spent += seconds
        rates.append(done / spent)
        starts.append(cases / (time.perf_counter() - began_all - spent))
    engine.db.dispose()
    return {"cases_per_run": cases, "runs": runs, "completions_per_s": round(median(rates), 1),
            "all_runs": [round(r, 1) for r in rates],
            "start_and_lookup_per_s": round(median(starts), 1)}


AREAS = (("SpiffWorkflow", "/SpiffWorkflow/"), ("RestrictedPython", "RestrictedPython"),
         ("SQLAlchemy", "/sqlalchemy/"), ("psycopg (driver)", "psycopg"), ("sqlite3 (driver)", "sqlite3"),
         ("json", "/json/"), ("engine/", "/engine/"), ("storage/", "/storage/"), ("bench/", "/bench/"))


def breakdown(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time (tottime) summed by library or layer."""
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        where = filename if filename != "~" else name
        area = next((label for label, marker in AREAS if marker in where), "other (stdlib, builtins)")
        if area == "other (stdlib, builtins)" and ("sqlite3.Cursor" in name or "sqlite3.Connection" in name):
            area = "sqlite3 (driver)"
        totals[area] = totals.get(area, 0.0) + tottime
    return sorted(totals.items(), key=lambda item: -item[1])


def profile_service(url: str, cases: int = 20, top: int = 25) -> str:
    from sqlalchemy import event

    engine = prepare_engine(url)
    run_service_case(engine)
    statements = [0]
    event.listen(engine.db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(cases):
        run_service_case(engine)
    profiler.disable()
    dialect = engine.db.dialect
    engine.db.dispose()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    total = sum(t for _a, t in breakdown(stats))
    out.write(f"# {dialect}: {cases} cases x (1 start + {len(STEPS)} completions + lookups); "
              f"{statements[0] / cases / (len(STEPS) + 1):.1f} SQL statements per start/completion\n")
    out.write("# own time by area\n")
    for area, seconds in breakdown(stats):
        out.write(f"{area:28s} {seconds:7.3f} s  {100 * seconds / total:5.1f} %\n")
    out.write("\n# by own time\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("\n# by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv=None, *, cases: int | None = None, runs: int | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.service")
    parser.add_argument("--cases", type=int, default=30, help="cases per run (6 completions each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the service path")
    args = parser.parse_args(argv or [])
    cases, runs = cases or args.cases, runs or args.runs
    ceiling = bench_ceiling(cases * 4, runs)
    results = {"ceiling": ceiling}
    with databases() as urls:
        for dialect, url in urls.items():
            figures = bench_service(url, cases, runs)
            figures["ratio_to_ceiling"] = round(figures["completions_per_s"] / ceiling["steps_per_s"], 3)
            results[dialect] = figures
    if args.profile:
        with databases() as urls:  # fresh databases: the timed runs' users and cases are not in the way
            for url in urls.values():
                print(profile_service(url))
    write_result("service", {"benchmark": "service", "results": results})
    return results


if __name__ == "__main__":
    print(main(__import__("sys").argv[1:]))
