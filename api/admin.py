"""Admin endpoints: the fake clock of `serve --fake-clock`."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from api.auth import roles
from api.requests import json_body
from api.scheduler import advance_clock
from engine.errors import NotFound

bp = Blueprint("admin", __name__)


@bp.post("/admin/clock")
@roles("admin")
def move_clock():
    """Move the service's clock and fire every timer that falls due (404 unless --fake-clock)."""
    from api import engine_of

    if not current_app.config.get("FAKE_CLOCK"):
        raise NotFound("the clock can only be moved when the service runs with --fake-clock")
    body = json_body()
    return jsonify(advance_clock(engine_of(current_app), advance=body.get("advance"), set=body.get("set")))
