"""`complaintflow serve --workers N`: N server processes sharing one port, and their supervisor.

One `serve` process uses one core (the GIL), so N independent processes are
started with `python -m api.cli serve --as-worker …`. While it supervises, the
parent holds no socket, database pool or thread: each worker binds its own
listening socket with `SO_REUSEPORT` and the kernel spreads connections over
them (Linux; other systems either refuse the option or do not balance).
Workers are started by exec, never forked from a process with pools or threads.
"""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

# A worker that exits sooner than this after starting failed to start (port taken, database refused…).
STARTUP_SECONDS = 10.0
# Restart delay after a failed start: doubled each time, capped; a worker that ran longer restarts after the first.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
# This many failed starts in a row of one worker: give up rather than loop forever.
MAX_FAILED_STARTS = 5
# After SIGTERM, how long workers get before SIGKILL.
STOP_SECONDS = 10.0

_PR_SET_PDEATHSIG = 1


def supports_reuse_port() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def _addresses(host: str, port: int) -> list[tuple]:
    """Each (family, sockaddr) `host` names, as waitress would listen on them."""
    found = []
    for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, socket.AF_UNSPEC,
                                                                      socket.SOCK_STREAM, 0, socket.AI_PASSIVE):
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in found:
            found.append((family, sockaddr))
    return found


def check_port_free(host: str, port: int) -> None:
    """Raise OSError if another process listens on host:port.

    A plain bind (no SO_REUSEPORT) fails on a port another process listens on,
    with or without that option, so `--workers` never silently shares a port
    with a second service. The socket is closed at once: the parent keeps nothing.
    """
    for family, sockaddr in _addresses(host, port):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(sockaddr)


def reuse_port_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets on host:port that other workers may bind too; waitress listens."""
    sockets = []
    try:
        for family, sockaddr in _addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _die_with_parent() -> None:
    """In the worker, before exec: get SIGTERM if the supervisor dies, even by SIGKILL (Linux prctl)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Slot:
    number: int
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    failed_starts: int = 0


class Supervisor:
    """Run `count` copies of `command`; restart one that dies; stop them all on SIGTERM or SIGINT.

    `run()` returns 0 after a requested stop, 1 after giving up on a worker that
    failed to start MAX_FAILED_STARTS times in a row (its own messages, on the
    shared stderr, say why). Signals are caught only while `run()` runs, in the
    main thread.
    """

    def __init__(self, command: Sequence[str], count: int, *, say: Callable[[str], None] | None = None,
                 startup_seconds: float = STARTUP_SECONDS, first_backoff: float = FIRST_BACKOFF_SECONDS,
                 max_backoff: float = MAX_BACKOFF_SECONDS, max_failed_starts: int = MAX_FAILED_STARTS) -> None:
        self.command = list(command)
        self.slots = [_Slot(number) for number in range(1, count + 1)]
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self.startup_seconds, self.first_backoff, self.max_backoff = startup_seconds, first_backoff, max_backoff
        self.max_failed_starts = max_failed_starts
        self._stop = threading.Event()
        self._signal = signal.SIGTERM

    def run(self) -> int:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self.slots:
                self._start(slot)
            outcome = self._watch()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return outcome

    def _on_signal(self, signum: int, _frame) -> None:
        self._signal = signal.Signals(signum)
        self._stop.set()

    def _start(self, slot: _Slot) -> None:
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        # A session of its own: a terminal's Ctrl-C reaches the supervisor only, which forwards it once.
        slot.process = subprocess.Popen(self.command, preexec_fn=preexec, start_new_session=True)
        slot.started_at = time.monotonic()

    def _watch(self) -> int:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for slot in self.slots:
                if slot.process is None:
                    if now >= slot.restart_at:
                        self._start(slot)
                    continue
                code = slot.process.poll()
                if code is None:
                    continue
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                ran, pid = now - slot.started_at, slot.process.pid
                slot.process = None
                if ran < self.startup_seconds:
                    slot.failed_starts += 1
                else:
                    slot.failed_starts = 0
                if slot.failed_starts >= self.max_failed_starts:
                    self.say(f"error: worker {slot.number} {how} within {self.startup_seconds:g} s of starting, "
                             f"{slot.failed_starts} times in a row; stopping (its messages above say why)")
                    return 1
                delay = min(self.max_backoff, self.first_backoff * 2 ** max(0, slot.failed_starts - 1))
                slot.restart_at = now + delay
                self.say(f"worker {slot.number} (pid {pid}) {how} after {ran:.1f} s; "
                         f"restarting it in {delay:g} s")
        return 0

    def _stop_all(self) -> None:
        running = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        for process in running:
            process.send_signal(self._signal)
        deadline = time.monotonic() + STOP_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
