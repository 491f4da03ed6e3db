"""Reading requests: JSON bodies, list paging, query-string values."""
from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from flask import request

from api.errors import ApiError, invalid

DEFAULT_LIMIT, MAX_LIMIT = 50, 500


def json_body() -> dict[str, Any]:
    """The request's JSON object; 415 when it is not JSON, 400 when it does not parse."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nesting deeper than the parser's stack
        raise ApiError(400, "malformed_json", "the JSON is nested too deeply") from None
    if body is None:
        raise ApiError(400, "malformed_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        raise invalid({"body": "must be a JSON object"})
    if b"\\u" in request.get_data(cache=True) and _has_lone_surrogate(body):
        raise ApiError(400, "malformed_json", "the JSON holds a \\u escape of half a character (a lone "
                       "surrogate), which is not text and cannot be stored")
    return body


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a string (or key) that is not encodable text."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def optional_json_body() -> dict[str, Any]:
    """Like json_body, but an empty body is an empty object."""
    if not request.get_data(cache=True):
        return {}
    return json_body()


def limit_arg() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise invalid({"limit": f"must be a whole number from 1 to {MAX_LIMIT}"})
    return value


def encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def cursor_arg(length: int) -> list[Any] | None:
    """The decoded `?cursor=` (a list of `length` values), or None for the first page."""
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        position = None
    if not isinstance(position, list) or len(position) != length or any(
            isinstance(v, int) and not INT_RANGE[0] <= v <= INT_RANGE[1] for v in position):
        raise invalid({"cursor": "is not a cursor this list gave out"})
    return position


def datetime_arg(name: str, default_tz) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid({name: "must be an ISO 8601 date-time"}) from None
    # Outside these years time zones have odd historical offsets or conversions overflow.
    if not 1970 <= value.year <= 2999:
        raise invalid({name: "must be a date-time between the years 1970 and 2999"})
    return value if value.tzinfo else value.replace(tzinfo=default_tz)


# Whole numbers a database integer column holds.
INT_RANGE = (-(2**63), 2**63 - 1)


def int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid({name: "must be a whole number"}) from None
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise invalid({name: "is out of range"})
    return value


def page(rows: list[Any], limit: int, position, render) -> dict[str, Any]:
    """Cut rows fetched with limit + 1 into a page of rendered items and its next cursor."""
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [render(row) for row in rows],
            "next_cursor": encode_cursor(position(rows[-1])) if more and rows else None}
