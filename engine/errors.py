"""The engine's errors. The web layer maps each to one HTTP response."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "engine_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(EngineError):
    code = "not_found"


class Forbidden(EngineError):
    code = "forbidden"


class Conflict(EngineError):
    """The task was completed, claimed by someone else, or changed since read."""

    code = "conflict"


class ValidationFailed(EngineError):
    """Submitted data broke the form; `details` maps each bad field to why."""

    code = "validation_error"

    def __str__(self) -> str:
        fields = "; ".join(f"{name}: {why}" for name, why in (self.details or {}).items())
        return f"{self.message} ({fields})" if fields else self.message


@dataclass(frozen=True)
class Problem:
    """One problem in a BPMN file, at a line when it has one."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line if self.line is not None else 0}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


class InvalidBpmn(EngineError):
    """The files cannot be deployed; `problems` lists every reason with its line."""

    code = "invalid_bpmn"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the BPMN", [p.as_dict() for p in problems])
        self.problems = problems


class Unavailable(EngineError):
    """The database cannot be reached or is busy; try again later."""

    code = "unavailable"


class CaseError(EngineError):
    """A case's own logic failed (a script raised, a condition matched nothing)."""

    code = "case_error"


class TooLarge(EngineError):
    """A file is larger than the configured limit."""

    code = "too_large"


class UnsupportedType(EngineError):
    """A file's bytes are not of an allowed type."""

    code = "unsupported_media_type"
