"""HTTP benchmark: start a property_complaint case and complete its six tasks through the API of a
real `complaintflow serve` process (waitress, 8 threads), with one client and with eight.

`python -m bench.http [--cases 20] [--runs 3] [--workers 1]`

With `--workers N` (N > 1) PostgreSQL is served by `serve --workers N` and the
figures go to `http_workers_N.json`; SQLite stays one process (one writer at a time).
"""
from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit


from bench.common import databases, median, percentile, write_result
from bench.path import KEY, START, STEPS, USERS
from bench.server import Server, add_users, login


def _users() -> list:
    return [(name, ("staff",), (group,)) for name, group in USERS]


class Client:
    """One person's browser: a keep-alive connection, timings per kind of call.

    A plain `http.client` connection, as a load tool would use: `requests`
    costs about a millisecond more per call on this machine, which the client
    shares with the server.
    """

    def __init__(self, base: str, headers: dict[str, dict[str, str]]) -> None:
        self.headers = headers
        address = urlsplit(base)
        self.http = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        self.times: dict[str, list[float]] = {"start": [], "complete": []}

    def call(self, kind: str, path: str, user: str, body: dict, etag: str | None = None) -> dict:
        headers = {**self.headers[user], "Content-Type": "application/json"}
        if etag:
            headers["If-Match"] = f'"{etag}"'
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        began = time.perf_counter()
        self.http.request("POST", path, body=payload, headers=headers)
        response = self.http.getresponse()
        content = response.read()
        self.times[kind].append(time.perf_counter() - began)
        assert response.status in (200, 201), (path, response.status, content[:500])
        return json.loads(content)

    def run_case(self) -> None:
        instance = self.call("start", "/api/v1/instances", "zhang.wei", {"definition_key": KEY, "data": START})
        task = next(t for t in instance["open_tasks"] if t["element_id"] == STEPS[0][0])
        for index, (element, group, data) in enumerate(STEPS):
            body = self.call("complete", f"/api/v1/tasks/{task['id']}/complete", f"{group}_1", {"data": data},
                             etag=task["etag"])
            if index + 1 < len(STEPS):
                task = next(t for t in body["next_tasks"] if t["element_id"] == STEPS[index + 1][0])


def one_run(base: str, headers: dict, clients: int, cases: int) -> dict:
    workers = [Client(base, headers) for _ in range(clients)]
    errors: list[BaseException] = []

    def work(client: Client) -> None:
        try:
            for _ in range(cases):
                client.run_case()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(c,)) for c in workers]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    starts = [t for c in workers for t in c.times["start"]]
    completes = [t for c in workers for t in c.times["complete"]]
    return {"start_p50_ms": 1000 * percentile(starts, 50), "start_p99_ms": 1000 * percentile(starts, 99),
            "complete_p50_ms": 1000 * percentile(completes, 50), "complete_p99_ms": 1000 * percentile(completes, 99),
            "calls_per_s": (len(starts) + len(completes)) / elapsed, "completions_per_s": len(completes) / elapsed,
            "cases_per_s": len(starts) / elapsed}


def _workers_rss_mb(supervisor_pid: int) -> tuple[float, float]:
    """Resident and peak resident MB summed over the supervisor's worker processes (peaks need not coincide)."""
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    totals = {"VmRSS": 0.0, "VmHWM": 0.0}
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in totals:
                totals[name] += int(value.split()[0]) / 1024
    return round(totals["VmRSS"], 1), round(totals["VmHWM"], 1)


def _wait_for_workers(base: str, workers: int, timeout: float = 60) -> None:
    """Until `workers` different processes have answered, each health check on a new connection."""
    import requests

    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} workers answered in time")
        seen.add(requests.get(f"{base}/api/v1/health", timeout=5).headers["X-Complaintflow-Worker"])


def bench_http(url: str, cases: int, runs: int, log: Path, workers: int = 1) -> dict:
    add_users(url, _users())
    server = Server(url, log, args=("--workers", str(workers)) if workers > 1 else ()).start()
    try:
        headers = {name: login(server.base, name) for name, _group in USERS}
        if workers > 1:
            _wait_for_workers(server.base, workers)
            one_run(server.base, headers, 8, 1)  # warm up every worker (connections spread over them)
        else:
            one_run(server.base, headers, 1, 2)  # warm up: parse the spec, fill pools
        results = {}
        for clients in (1, 8):
            per_run = [one_run(server.base, headers, clients, max(2, cases // clients if clients > 1 else cases))
                       for _ in range(runs)]
            results[f"clients_{clients}"] = {key: round(median([r[key] for r in per_run]), 2) for key in per_run[0]}
        if workers > 1:
            results["workers"] = workers
            results["server_rss_mb"], results["server_peak_rss_mb"] = _workers_rss_mb(server.process.pid)
        else:
            results["server_rss_mb"], results["server_peak_rss_mb"] = server.rss_mb()
    finally:
        server.stop()
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--cases", type=int, default=20, help="cases per run (each 1 start + 6 completions)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1,
                        help="serve PostgreSQL with `serve --workers N` (SQLite stays one process)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="which databases, comma-separated")
    args = parser.parse_args(argv or [])
    results = {}
    logs = Path(tempfile.mkdtemp(prefix="cf-bench-http-"))
    with databases(tuple(args.databases.split(","))) as urls:
        for dialect, url in urls.items():
            workers = args.workers if dialect == "postgresql" else 1
            results[dialect] = bench_http(url, args.cases, args.runs, logs / f"{dialect}.log", workers)
    name = "http" if args.workers == 1 else f"http_workers_{args.workers}"
    write_result(name, {"benchmark": "http", "cases_per_run": args.cases, "runs": args.runs,
                        "note": "8 clients share the cases of a run (cases/8 each), in one client process",
                        "results": results})
    return results


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1:]))
