"""The one place where errors become HTTP responses.

Every error body is `{"error": {"code", "message", "details"?}}`; no stack trace
ever reaches a client.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from engine.errors import (
    CaseError,
    Conflict,
    EngineError,
    Forbidden,
    InvalidBpmn,
    NotFound,
    TooLarge,
    Unavailable,
    UnsupportedType,
    ValidationFailed,
)
from engine.replay import ReplayError

log = logging.getLogger(__name__)

# Engine error → HTTP status. The most specific class listed first wins.
ENGINE_STATUS: tuple[tuple[type[EngineError], int], ...] = (
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (ValidationFailed, 400),
    (InvalidBpmn, 400),
    (TooLarge, 413),
    (UnsupportedType, 415),
    (Unavailable, 503),
    (CaseError, 422),
)

# Werkzeug's HTTP errors → our error codes.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An error the web layer raises itself (authentication, request shape)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def unauthenticated(message: str = "sign in first: send 'Authorization: Bearer <token>'") -> ApiError:
    return ApiError(401, "unauthenticated", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def invalid(details: dict[str, str], message: str = "the request is invalid") -> ApiError:
    return ApiError(400, "validation_error", message, details)


def error_response(status: int, code: str, message: str, details: Any = None):
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return jsonify({"error": body}), status


def status_of(error: EngineError) -> int:
    for kind, status in ENGINE_STATUS:
        if isinstance(error, kind):
            return status
    return 500


def register(app: Flask) -> None:
    """Install the handlers on the app."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error.status, error.code, error.message, error.details)

    @app.errorhandler(EngineError)
    def _engine_error(error: EngineError):
        status = status_of(error)
        if status == 500:
            log.error("unmapped engine error", exc_info=error)
            return error_response(500, "internal_error", "something went wrong on our side")
        return error_response(status, error.code, error.message, error.details)

    @app.errorhandler(ReplayError)
    def _replay_error(error: ReplayError):
        return error_response(422, "replay_failed", f"the events cannot be replayed: {error}")

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = {
            404: "no such resource",
            405: "this method is not allowed here",
            413: "the request body is too large",
            415: "unsupported content type",
        }.get(status, error.description or error.name)
        response, status = error_response(status, code, message)
        if status == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response, status

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_unreachable(error: Exception):
        # Reads outside the engine's write path (the token check, lists) meet a
        # database that is down or restarting: say so, and let the client retry.
        log.warning("database unavailable: %s", error)
        response, status = error_response(503, "unavailable", "the database cannot be reached; try again shortly")
        response.headers["Retry-After"] = "5"
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong on our side")
