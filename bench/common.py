"""Shared helpers for the benchmarks: databases, timing, result files."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values) -> float:
    return statistics.median(values)


def percentile(values, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@contextmanager
def databases(which: tuple[str, ...] = ("sqlite", "postgresql")) -> Iterator[dict[str, str]]:
    """Fresh databases by dialect: an SQLite file and a throwaway PostgreSQL server."""
    from tests.pgserver import PgServer

    urls, server = {}, None
    with tempfile.TemporaryDirectory() as folder:
        if "sqlite" in which:
            urls["sqlite"] = f"sqlite:///{Path(folder) / 'bench.db'}"
        if "postgresql" in which:
            server = PgServer().start()
            urls["postgresql"] = create_database(server, "bench")
        try:
            yield urls
        finally:
            if server is not None:
                server.stop()


def create_database(server, name: str) -> str:
    """Create a database on a throwaway PostgreSQL server; return its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.url(name)


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result},
                               ensure_ascii=False, indent=2), encoding="utf-8")
    return path
