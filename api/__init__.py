"""The web layer: Flask app factory, JSON API, pages and the command line."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from engine.clock import Clock
from engine.service import Engine
from storage.db import Database

__version__ = "0.1.0"


def create_app(config: dict[str, Any] | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the app: upgrade the schema, wire the engine, register blueprints."""
    app = Flask(__name__)
    app.config.update(DATABASE_URL=None, FAKE_CLOCK=False, MAX_CONTENT_LENGTH=25 * 1024 * 1024,
                      SCHEDULER=None, TOKEN_TTL_HOURS=12)
    app.config.update(config or {})
    app.json.ensure_ascii = False  # Chinese text goes out as is
    db = Database(app.config["DATABASE_URL"])
    db.upgrade()
    app.extensions["complaintflow"] = Engine(db, clock)

    from api import audit, auth, definitions, errors, health, instances, tasks

    errors.register(app)
    app.register_blueprint(health.bp)
    # Every endpoint under this blueprint needs a signed-in user, except those marked public.
    v1 = Blueprint("v1", __name__, url_prefix="/api/v1")
    v1.before_request(auth.load_actor)
    for module in (auth, definitions, instances, tasks, audit):
        v1.register_blueprint(module.bp)
    app.register_blueprint(v1)
    return app


def engine_of(app: Flask) -> Engine:
    return app.extensions["complaintflow"]
