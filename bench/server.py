"""`complaintflow serve` as a real process, and a small JSON client (benchmarks and reliability tests)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One `complaintflow serve` process on a free port (its output goes to a log file)."""

    def __init__(self, url: str, log: Path, port: int | None = None, env: dict | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.db_url, self.log_path, self.port, self.args = url, Path(log), port or free_port(), tuple(args)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        self._log = open(self.log_path, "a", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port),
                                         "--db", self.db_url, *self.args], cwd=ROOT, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("serve did not answer in time")

    def rss_mb(self) -> tuple[float, float]:
        """(resident, peak resident) memory of the server process in MB."""
        values = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(value.split()[0]) / 1024
        return round(values["VmRSS"], 1), round(values["VmHWM"], 1)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None


def add_users(url: str, users: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> None:
    """Create users (username, roles, groups) with PASSWORD, upgrading the schema first."""
    from datetime import datetime, timezone

    from engine.users import save_user
    from storage.db import Database

    db = Database(url, pool_size=1)
    db.upgrade()
    with db.unit_of_work() as uow:
        for username, roles, groups in users:
            save_user(uow.session, username, PASSWORD, roles, groups, None, datetime.now(timezone.utc))
        uow.commit()
    db.dispose()


def login(base: str, username: str) -> dict[str, str]:
    response = requests.post(f"{base}/api/v1/auth/login", json={"username": username, "password": PASSWORD},
                             timeout=10)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def dump(response: requests.Response) -> str:
    try:
        return json.dumps(response.json(), ensure_ascii=False)[:500]
    except ValueError:
        return response.text[:500]
