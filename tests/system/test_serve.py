"""`complaintflow serve` as an operator starts it: a real process on a real port."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not answer in time")


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_serve_answers_health_on_a_fresh_database(database, tmp_path, request):
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'serve.db'}"
    else:
        from tests.conftest import _new_pg_database

        url = _new_pg_database(request.getfixturevalue("pg_server")).url.render_as_string(hide_password=False)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--db", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}/api/v1/health", process)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert health == {"status": "ok", "database": database, "scheduler": "running", "version": "0.1.0"}


def test_layers_import_downwards_only():
    """api -> engine -> storage: engine never imports Flask, storage neither Flask nor the engine."""
    offenders = []
    for layer, forbidden in (("engine", ("flask", "werkzeug", "api")), ("storage", ("flask", "werkzeug", "api",
                                                                                   "engine", "SpiffWorkflow"))):
        for path in (ROOT / layer).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                words = line.split()
                if len(words) >= 2 and words[0] in {"import", "from"} and words[1].split(".")[0] in forbidden:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
