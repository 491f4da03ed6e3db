"""Run every benchmark and write bench/results/*.json, results.json and RESULTS.md.

    python -m bench            # full sizes
    python -m bench --quick    # smaller sizes (say so when quoting figures)
    python -m bench --only service,http
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.common import RESULTS, machine

FULL = {"service_cases": 30, "service_runs": 5, "http_cases": 24, "http_runs": 3, "inbox_cases": 100_000,
        "inbox_requests": 300, "inbox_runs": 3, "timer_count": 10_000, "timer_backlog": 2_000,
        "audit_events": 1_000_000, "audit_runs": 3}
QUICK = {"service_cases": 10, "service_runs": 3, "http_cases": 16, "http_runs": 3, "inbox_cases": 100_000,
         "inbox_requests": 150, "inbox_runs": 3, "timer_count": 1_000, "timer_backlog": 500,
         "audit_events": 200_000, "audit_runs": 3}
ALL = ("service", "http", "inbox", "timers", "audit")


def run_service(sizes: dict) -> dict:
    from bench import service

    results = service.main([], cases=sizes["service_cases"], runs=sizes["service_runs"])
    from bench.common import databases

    with databases() as urls:
        for dialect, url in urls.items():
            profile = service.profile_service(url, cases=10, top=30)
            (RESULTS / f"profile_service_{dialect}.txt").write_text(profile, encoding="utf-8")
    return results


def run_http(sizes: dict) -> dict:
    from bench import http

    sized = ["--cases", str(sizes["http_cases"]), "--runs", str(sizes["http_runs"])]
    results = http.main(sized)
    # Scale-out on one machine: PostgreSQL served by one process per core.
    two = http.main([*sized, "--workers", "2", "--databases", "postgresql"])
    results["postgresql, serve --workers 2"] = two["postgresql"]
    return results


def run_inbox(sizes: dict) -> dict:
    from bench import inbox

    return inbox.main(["--cases", str(sizes["inbox_cases"]), "--requests", str(sizes["inbox_requests"]),
                       "--runs", str(sizes["inbox_runs"])])


def run_timers(sizes: dict) -> dict:
    from bench import timers

    results = {}
    for flags in ([], ["--postgres"]):
        saved = sys.argv
        sys.argv = ["bench.timers", "--count", str(sizes["timer_count"]), "--backlog", str(sizes["timer_backlog"]),
                    *flags]
        try:
            timers.main()
        finally:
            sys.argv = saved
        result = json.loads(timers.RESULTS.read_text())[-1]
        results[result["database"]] = result
    return results


def run_audit(sizes: dict) -> dict:
    from bench import audit

    return audit.main(["--events", str(sizes["audit_events"]), "--runs", str(sizes["audit_runs"])])


def check(value, target, higher_is_better: bool) -> str:
    if value is None:
        return "-"
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else "**misses**"


def table(results: dict) -> list[tuple[str, object, str, str]]:
    """(figure, value, target, verdict) rows."""
    rows = []

    def row(name, value, target, higher):
        rows.append((name, value, f"{'>=' if higher else '<='} {target}", check(value, target, higher)))

    s = results.get("service")
    if s:
        rows.append(("ceiling: raw SpiffWorkflow steps/s", s["ceiling"]["steps_per_s"], "-", "-"))
        for dialect, target in (("sqlite", 500), ("postgresql", 300)):
            if dialect in s:
                row(f"service {dialect}: completions/s", s[dialect]["completions_per_s"], target, True)
                row(f"service {dialect}: ratio to ceiling", s[dialect]["ratio_to_ceiling"], 0.3, True)
    h = results.get("http")
    for dialect, figures in (h or {}).items():
        for clients in ("clients_1", "clients_8"):
            f = figures[clients]
            row(f"http {dialect} {clients}: complete p50 ms", f["complete_p50_ms"], 8, False)
            row(f"http {dialect} {clients}: complete p99 ms", f["complete_p99_ms"], 25, False)
            row(f"http {dialect} {clients}: start p50 ms", f["start_p50_ms"], 10, False)
            rows.append((f"http {dialect} {clients}: start p99 ms", f["start_p99_ms"], "-", "-"))
            rows.append((f"http {dialect} {clients}: calls/s", f["calls_per_s"], "-", "-"))
    i = results.get("inbox")
    for dialect, f in (i or {}).items():
        rows.append((f"inbox {dialect}: p50 ms at {f['open_cases']:,} open cases", f["inbox_p50_ms"], "-", "-"))
        row(f"inbox {dialect}: p99 ms at {f['open_cases']:,} open cases", f["inbox_p99_ms"], 15, False)
        row(f"inbox {dialect}: server RSS MB", f["server_peak_rss_mb"], 200, False)
    by_database = results.get("timers") or {}
    if "database" in by_database:  # an earlier invocation's shape: one database
        by_database = {by_database["database"]: by_database}
    for t in by_database.values():
        if "lateness" in t:
            row(f"timers {t['database']}: p99 lateness s ({t['lateness']['timers']} due in a minute)",
                t["lateness"]["lateness_p99_s"], 1, False)
        if "backlog" in t:
            row(f"timers {t['database']}: fired/s ({t['backlog']['timers']} overdue)", t["backlog"]["fired_per_s"],
                500, True)
    a = results.get("audit")
    for dialect, f in (a or {}).items():
        row(f"audit {dialect}: verify events/s ({f['events']:,} events)", f["verify_events_per_s"], 100_000, True)
        rows.append((f"audit {dialect}: verify RSS growth MB", f["verify_rss_growth_mb"], "flat", "-"))
        rows.append((f"audit {dialect}: replay ms/event", f["replay_ms_per_event"], "-", "-"))
    return rows


def write_markdown(results: dict, sizes: dict, quick: bool, seconds: float) -> Path:
    m = machine()
    lines = ["# Benchmark results", "",
             f"`python -m bench{' --quick' if quick else ''}` on {m['cpus']} CPUs, Python {m['python']}, "
             f"{m['platform']}; {time.strftime('%Y-%m-%d %H:%M')} ({seconds / 60:.1f} min). Every figure is the "
             "median of several runs in this one invocation; raw figures in the JSON files beside this one.", "",
             f"Sizes: {', '.join(f'{k}={v:,}' for k, v in sizes.items())}", "",
             "| figure | value | target | |", "| --- | ---: | --- | --- |"]
    for name, value, target, verdict in table(results):
        lines.append(f"| {name} | {value:,} | {target} | {verdict} |" if isinstance(value, (int, float))
                     else f"| {name} | {value} | {target} | {verdict} |")
    if results.get("earlier"):
        lines += ["", f"From an earlier invocation (not rerun this time): {', '.join(results['earlier'])}."]
    for name, error in results.get("errors", {}).items():
        lines += ["", f"**{name} failed**: {error}"]
    for dialect in ("sqlite", "postgresql"):
        path = RESULTS / f"profile_service_{dialect}.txt"
        if path.exists():
            head = path.read_text(encoding="utf-8").split("\n# by own time")[0].strip()
            lines += ["", f"Service path under cProfile ({dialect}, `{path.name}`):", "", "```", head, "```"]
    if (RESULTS / "ANALYSIS.md").exists():
        lines += ["", "Where the time goes, what changed and what holds back each missed target: "
                  "[ANALYSIS.md](ANALYSIS.md) (written by hand from these figures and the profiles)."]
    path = RESULTS / "RESULTS.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    RESULTS.mkdir(parents=True, exist_ok=True)
    runners = {"service": run_service, "http": run_http, "inbox": run_inbox, "timers": run_timers,
               "audit": run_audit}
    results, began = {}, time.perf_counter()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        step = time.perf_counter()
        try:
            results[name] = runners[name](sizes)
        except Exception as error:  # noqa: BLE001 - one benchmark failing must not lose the others
            import traceback

            traceback.print_exc()
            results.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
        print(f"   {name} took {time.perf_counter() - step:.0f} s", file=sys.stderr, flush=True)
    for name in ALL:  # the table shows the latest figures of benchmarks not run this time
        if name not in chosen and name not in results and (RESULTS / f"{name}.json").exists():
            stored = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
            results[name] = stored[-1] if isinstance(stored, list) else stored["results"]
            results.setdefault("earlier", []).append(name)
    seconds = time.perf_counter() - began
    (RESULTS / "results.json").write_text(json.dumps({"machine": machine(), "quick": args.quick, "sizes": sizes,
                                                      "results": results, "table": table(results)},
                                                     ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    path = write_markdown(results, sizes, args.quick, seconds)
    print(path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
