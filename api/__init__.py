"""The web layer: Flask app factory, JSON API, pages and the command line."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask
from werkzeug.routing import IntegerConverter

from engine.clock import Clock
from engine.service import Engine
from storage.db import Database

__version__ = "0.1.0"

# The largest id a BIGINT column holds.
MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """`<int:…>` in routes: ids beyond a database integer are simply not found (404), not a crash."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID,  # noqa: A002
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def create_app(config: dict[str, Any] | None = None, *, clock: Clock | None = None) -> Flask:
    """Build the app: upgrade the schema, wire the engine, register blueprints."""
    app = Flask(__name__)
    app.config.update(DATABASE_URL=None, FAKE_CLOCK=False, MAX_CONTENT_LENGTH=25 * 1024 * 1024,
                      SCHEDULER=None, TOKEN_TTL_HOURS=12)
    app.config.update(config or {})
    app.json.ensure_ascii = False  # Chinese text goes out as is
    app.url_map.converters["int"] = IdConverter
    db = Database(app.config["DATABASE_URL"])
    db.upgrade()
    app.extensions["complaintflow"] = Engine(db, clock)

    from api import (admin, attachments, audit, auth, definitions, errors, health, instances, openapi, reports,
                     tasks, users)

    errors.register(app)
    app.register_blueprint(health.bp)
    # Every endpoint under this blueprint needs a signed-in user, except those marked public.
    v1 = Blueprint("v1", __name__, url_prefix="/api/v1")
    v1.before_request(auth.load_actor)
    for module in (auth, definitions, instances, tasks, audit, admin, users, attachments, reports, openapi):
        v1.register_blueprint(module.bp)
    app.register_blueprint(v1)
    from api import web

    web.init_app(app)  # the pages for people (api/web), with the session secret
    return app


def engine_of(app: Flask) -> Engine:
    return app.extensions["complaintflow"]
