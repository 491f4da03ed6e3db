"""The web layer: Flask app factory, JSON API, pages and the command line."""
from __future__ import annotations

from typing import Any

from flask import Flask

from engine.clock import Clock
from engine.service import Engine
from storage.db import Database

__version__ = "0.1.0"


def create_app(config: dict[str, Any] | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the app: upgrade the schema, wire the engine, register blueprints."""
    app = Flask(__name__)
    app.config.update(DATABASE_URL=None, FAKE_CLOCK=False, MAX_CONTENT_LENGTH=25 * 1024 * 1024,
                      SCHEDULER=None)
    app.config.update(config or {})
    db = Database(app.config["DATABASE_URL"])
    db.upgrade()
    app.extensions["complaintflow"] = Engine(db, clock)

    from api import health

    app.register_blueprint(health.bp)
    return app


def engine_of(app: Flask) -> Engine:
    return app.extensions["complaintflow"]
