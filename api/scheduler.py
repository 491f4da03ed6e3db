"""The timer scheduler run by `complaintflow serve`."""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from engine.service import Engine

log = logging.getLogger(__name__)


def start_scheduler(engine: Engine, interval_seconds: float = 0.5) -> BackgroundScheduler:
    """Fire due timers every `interval_seconds` in a background thread."""

    def tick() -> None:
        try:
            engine.fire_due_timers()
        except Exception:  # noqa: BLE001 - the next tick tries again; the error is logged
            log.exception("firing timers failed")

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(tick, "interval", seconds=interval_seconds, id="fire_timers", max_instances=1,
                      coalesce=True)
    scheduler.start()
    return scheduler
