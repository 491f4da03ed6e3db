"""`GET /api/v1/health`: the one endpoint that needs no sign-in."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

bp = Blueprint("health", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health():
    from api import __version__, engine_of

    engine = engine_of(current_app)
    status, code = "ok", 200
    try:
        with engine.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means the database is unreachable
        status, code = "database_unavailable", 503
    scheduler = current_app.config.get("SCHEDULER")
    return jsonify({
        "status": status,
        "database": engine.db.dialect,
        "scheduler": scheduler.state if scheduler is not None else "stopped",
        "version": __version__,
    }), code
