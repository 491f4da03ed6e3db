"""Run BPMN conditions and scripts under RestrictedPython.

SpiffWorkflow's default engine `eval`s/`exec`s model text with full Python: a
condition could import `os`. Here every expression and script is compiled with
RestrictedPython, which refuses imports, names and attributes starting with `_`
and frame/code attributes at compile time, and routes attribute access, item
access, iteration and in-place operators through the guards below at run time.
Builtins are limited to `safe_builtins` plus a few harmless ones; `open`, `eval`,
`exec`, `type`, `getattr` (unguarded), `vars`, `globals` and `print` do not exist.
In-place operators work on names (`total += 1`) but RestrictedPython refuses them
on items and attributes: write `counts[k] = counts[k] + 1`.

Limits: nothing bounds a script's CPU time or memory (`10**10**10` hangs); run
model text only from trusted process owners, or in a worker that can be killed.
"""
from __future__ import annotations

import ast
import builtins
import functools
import json
import operator
import re
import textwrap
import traceback
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

from RestrictedPython import (
    RestrictingNodeTransformer,
    compile_restricted_eval,
    compile_restricted_exec,
    safe_builtins,
)
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

# Frames of sandboxed code carry this file name, so errors can be traced to a line.
SCRIPT_FILENAME = "<bpmn-script>"

_LINE_PREFIX = re.compile(r"Line (\d+): ")

_INPLACE_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
}


class SandboxSyntaxError(SyntaxError):
    """Model text the sandbox refuses to compile; `lineno` is 1-based within the text."""


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy, also refusing imports and classes at compile time."""

    # RestrictedPython compiles both and leaves them to fail at run time; refusing
    # them here lets `check_script` report them at deploy time with their line.
    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> ast.AST:
        self.error(node, "imports are not allowed: use the helper functions provided")
        return node

    visit_ImportFrom = visit_Import

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.error(node, "class definitions are not allowed")
        return node


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    try:
        return _INPLACE_OPERATORS[op](target, value)
    except KeyError:
        raise TypeError(f"operator {op} is not allowed in scripts") from None


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # Only reached for calls written with *args / **kwargs.
    return func(*args, **kwargs)


def _refuse_print(*_args: Any) -> Any:
    raise NameError("print() is not available in BPMN scripts: assign a variable instead")


# A script must not stop the server, nor define classes (refused by `_Policy`
# too); these come with `safe_builtins`.
_DROPPED_BUILTINS = frozenset(
    {"__build_class__", "BaseException", "GeneratorExit", "KeyboardInterrupt", "SystemExit"}
)

# `sorted`, `tuple`, `zip`, ... iterate in C without calling `_getiter_`. That
# matters only when `_getiter_` filters what may be seen; ours does not (attribute
# access is what is guarded), so they add no way out.
_EXTRA_BUILTINS = (
    "len", "min", "max", "sum", "sorted", "any", "all", "abs", "round", "str", "int",
    "float", "bool", "list", "dict", "set", "tuple", "range", "enumerate", "zip",
    "isinstance",
)

# The hooks live in the builtins, not the globals, so they never land in task
# data; user code cannot name them because names starting with `_` do not compile.
SANDBOX_BUILTINS: dict[str, Any] = {
    **{name: value for name, value in safe_builtins.items() if name not in _DROPPED_BUILTINS},
    **{name: getattr(builtins, name) for name in _EXTRA_BUILTINS},
    "getattr": safer_getattr_raise,
    "_getattr_": safer_getattr_raise,
    "_getitem_": operator.getitem,
    "_getiter_": iter,
    "_write_": full_write_guard,
    "_inplacevar_": _inplacevar,
    "_apply_": _apply,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_print_": _refuse_print,
}


@functools.lru_cache(maxsize=4096)
def _compile(source: str, mode: str) -> tuple[CodeType | None, tuple[str, ...]]:
    compile_ = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compile_(source, filename=SCRIPT_FILENAME, policy=_Policy)
    # Errors come in AST-visit order (outer nodes first); report the earliest line first.
    errors = sorted(result.errors, key=lambda message: _error_line(message) or 0)
    return result.code, tuple(errors)


def _normalize_expression(source: str) -> str:
    # Modelers write conditions on their own indented line inside the XML element.
    return source.strip()


def _normalize_script(source: str) -> str:
    # dedent keeps every line, so line numbers still match the model's text.
    return textwrap.dedent(source)


def _error_line(message: str) -> int | None:
    match = _LINE_PREFIX.match(message)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def _raise_errors(errors: tuple[str, ...], source: str) -> None:
    lineno = _error_line(errors[0])
    lines = source.splitlines()
    text = lines[lineno - 1] if lineno and lineno <= len(lines) else None
    raise SandboxSyntaxError("; ".join(errors), (SCRIPT_FILENAME, lineno, None, text))


def compile_expression(source: str) -> CodeType:
    """Return the cached restricted code of an expression; raise SandboxSyntaxError if refused."""
    source = _normalize_expression(source)
    code, errors = _compile(source, "eval")
    if code is None:
        _raise_errors(errors, source)
    return code


def compile_script(source: str) -> CodeType:
    """Return the cached restricted code of a script; raise SandboxSyntaxError if refused."""
    source = _normalize_script(source)
    code, errors = _compile(source, "exec")
    if code is None:
        _raise_errors(errors, source)
    return code


def check_expression(source: str) -> str | None:
    """Return why the sandbox refuses `source` as an expression, or None if it compiles."""
    code, errors = _compile(_normalize_expression(source), "eval")
    return None if code is not None else "; ".join(errors)


def check_script(source: str) -> tuple[int | None, str] | None:
    """Return (1-based line or None, message) if the sandbox refuses `source` as a script, else None."""
    code, errors = _compile(_normalize_script(source), "exec")
    if code is not None:
        return None
    return _error_line(errors[0]), "; ".join(errors)


def _storable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _refuse_unstorable(context: Mapping[str, Any]) -> None:
    # One dump of the whole data is the common, cheap case; look key by key only
    # to name the culprit.
    if _storable(context):
        return
    for key, value in context.items():
        if not _storable(value):
            raise TypeError(
                f"script left {key!r} as a {type(value).__name__}, which case data cannot hold; "
                "store text (e.g. an ISO date-time string), numbers, booleans, lists or dicts"
            )


class SandboxedEnvironment(TaskDataEnvironment):
    """Task-data environment whose expressions and scripts run restricted.

    `environment_globals` are the helper functions visible to model text. As in
    SpiffWorkflow, a script's globals are the task data itself; after it runs,
    helpers and every callable it defined are removed, and a value that is not
    JSON-serializable is refused with TypeError.
    """

    def evaluate(
        self, expression: str, context: dict[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> Any:
        """Return the value of `expression` over the task data `context` (not modified)."""
        code = compile_expression(expression)
        scope = {**self.globals, **(external_context or {}), **context, "__builtins__": SANDBOX_BUILTINS}
        return eval(code, scope)

    def execute(
        self, script: str, context: dict[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> bool:
        """Run `script` with the task data `context` as its globals; return True."""
        code = compile_script(script)
        self.check_for_overwrite(context, external_context or {})
        context.update(self.globals)
        context.update(external_context or {})
        context["__builtins__"] = SANDBOX_BUILTINS
        try:
            exec(code, context)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        _refuse_unstorable(context)
        return True


class SandboxedScriptEngine(PythonScriptEngine):
    """PythonScriptEngine whose errors name the cause and the script line."""

    def evaluate(
        self, task: Any, expression: str, external_context: Mapping[str, Any] | None = None
    ) -> Any:
        """Return the expression's value; wrap failures in WorkflowTaskException with the cause."""
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as err:
            err.add_note(f"Error evaluating expression '{expression}'")
            raise
        except Exception as err:
            raise WorkflowTaskException(
                f"Error evaluating expression '{expression}': {type(err).__name__}: {err}",
                task=task, exception=err,
            ) from err

    def validate(self, expression: str) -> None:
        """Raise SandboxSyntaxError if the sandbox refuses `expression`."""
        compile_expression(expression)

    def create_task_exec_exception(self, task: Any, script: str, err: Exception) -> Exception:
        """Return the exception to raise for `err` from `script`, with its line."""
        if isinstance(err, SpiffWorkflowException):
            return super().create_task_exec_exception(task, script, err)
        # The base class assumes err.args[0] is a str (not so for KeyError(1)).
        line_number, error_line = self.get_error_line_number_and_content(script, err)
        return WorkflowTaskException(
            f"{type(err).__name__}: {err}", task=task, exception=err,
            line_number=line_number, error_line=error_line,
        )

    def get_error_line_number_and_content(self, script: str, err: Exception) -> tuple[int, str]:
        """Return (1-based line, its text) of `err` in `script`, or (0, '') if unknown."""
        line_number = 0
        if isinstance(err, SyntaxError):
            line_number = err.lineno or 0
        else:
            for frame in traceback.extract_tb(err.__traceback__):
                if frame.filename == SCRIPT_FILENAME and frame.lineno:
                    line_number = frame.lineno
        lines = _normalize_script(script).splitlines()
        error_line = lines[line_number - 1] if 0 < line_number <= len(lines) else ""
        return line_number, error_line


def make_script_engine(functions: Mapping[str, Callable[..., Any]]) -> PythonScriptEngine:
    """Return a script engine running model text restricted, with `functions` in scope."""
    return SandboxedScriptEngine(environment=SandboxedEnvironment(dict(functions)))
