"""Check submitted data against a form and turn it into case data."""
from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Callable

from engine.definitions import Form, FormField
from engine.errors import ValidationFailed

MAX_TEXT = 100_000


def _scalar(field: FormField, value: Any, user_exists: Callable[[str], bool] | None) -> tuple[Any, str | None]:
    t = field.type
    if t in {"string", "text", "user"}:
        if not isinstance(value, str):
            return None, "must be text"
        if len(value) > MAX_TEXT:
            return None, f"must be at most {MAX_TEXT} characters"
        if t == "user" and value and user_exists is not None and not user_exists(value):
            return None, f"no user '{value}'"
        return value, None
    if t == "long":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value), None
            return None, "must be a whole number"
        return value, None
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "must be a number"
        return value, None
    if t == "boolean":
        if not isinstance(value, bool):
            return None, "must be true or false"
        return value, None
    if t == "date":
        if not isinstance(value, str):
            return None, "must be a date (YYYY-MM-DD)"
        try:
            return date.fromisoformat(value).isoformat(), None
        except ValueError:
            return None, "must be a date (YYYY-MM-DD)"
    if t == "datetime":
        if not isinstance(value, str):
            return None, "must be a date-time with offset (2026-11-22T09:30:00+08:00)"
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None, "must be a date-time with offset (2026-11-22T09:30:00+08:00)"
        if parsed.tzinfo is None:
            return None, "must carry a time zone offset (e.g. +08:00)"
        return parsed.isoformat(), None
    if t == "enum":
        allowed = [option for option, _label in field.options]
        if value not in allowed:
            return None, f"must be one of: {', '.join(allowed)}"
        return value, None
    if t == "file":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return None, "must be an attachment id"
        return value, None
    return None, f"has unsupported type {t}"


def _constraints(field: FormField, value: Any) -> str | None:
    c = field.constraints
    if isinstance(value, str):
        if "minlength" in c and len(value) < c["minlength"]:
            return f"must be at least {c['minlength']} characters"
        if "maxlength" in c and len(value) > c["maxlength"]:
            return f"must be at most {c['maxlength']} characters"
        if "pattern" in c and not re.fullmatch(c["pattern"], value):
            return f"does not match the pattern {c['pattern']}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min" in c and value < c["min"]:
            return f"must be at least {c['min']}"
        if "max" in c and value > c["max"]:
            return f"must be at most {c['max']}"
    return None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def validate(form: Form | None, data: Any, *, current: dict[str, Any] | None = None,
             user_exists: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Return the data to merge into the case, or raise ValidationFailed naming every bad field.

    A form without fields takes any JSON object (files from other tools often
    have none). Fields not on the form are refused; readonly fields may only be
    sent unchanged.
    """
    if not isinstance(data, dict):
        raise ValidationFailed("the data must be a JSON object", {"data": "must be an object"})
    if form is None or not form.fields:
        bad = {k: "is not a valid variable name" for k in data if not (isinstance(k, str) and k.isidentifier())
               or k.startswith("_")}
        if bad:
            raise ValidationFailed("some fields are invalid", bad)
        return dict(data)
    current = current or {}
    fields = {f.id: f for f in form.fields}
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name in data:
        if name not in fields:
            errors[name] = "is not a field of this form"
    for field in form.fields:
        if field.readonly:
            if field.id in data and data[field.id] != current.get(field.id):
                errors[field.id] = "is read-only"
            continue
        value = data.get(field.id)
        if _empty(value):
            if field.required:
                errors[field.id] = "is required"
            elif field.id in data:
                clean[field.id] = [] if field.multiple else None
            else:
                # Every optional field gets a value, so expressions may name it; one
                # left out keeps what the case already holds.
                clean[field.id] = current.get(field.id, [] if field.multiple else None)
            continue
        values = value if field.multiple else [value]
        if field.multiple and not isinstance(value, list):
            errors[field.id] = "must be a list"
            continue
        out = []
        for item in values:
            converted, error = _scalar(field, item, user_exists)
            error = error or _constraints(field, converted)
            if error:
                errors[field.id] = error
                break
            out.append(converted)
        else:
            clean[field.id] = out if field.multiple else out[0]
    if errors:
        raise ValidationFailed(f"{len(errors)} field(s) are invalid", errors)
    return clean
