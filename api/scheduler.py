"""The timer scheduler run by `complaintflow serve` (the logic lives in `engine.scheduler`)."""
from __future__ import annotations

from engine.scheduler import TimerScheduler, advance_clock
from engine.service import Engine

__all__ = ["TimerScheduler", "advance_clock", "start_scheduler"]


def start_scheduler(engine: Engine, safety_seconds: float | None = None) -> TimerScheduler:
    """Start firing the engine's timers in a background thread.

    The result has `.state` ("running", "standby" on a second process over the
    same SQLite file, "stopped"), `.running` (True only for the active one) and
    `.shutdown(wait=False)`.
    """
    return TimerScheduler(engine, safety_seconds=safety_seconds).start()
