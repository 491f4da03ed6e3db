"""The RestrictedPython sandbox: escapes refused, ordinary model text works."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.util.task import TaskState

from engine.sandbox import (
    SandboxedEnvironment,
    SandboxSyntaxError,
    check_expression,
    check_script,
    compile_expression,
    make_script_engine,
)


def double(value: int) -> int:
    return 2 * value


@pytest.fixture
def env() -> SandboxedEnvironment:
    return SandboxedEnvironment({"double": double, "datetime": datetime})


@pytest.mark.parametrize(
    "expression,error,fragment",
    [
        ("__import__('os')", SandboxSyntaxError, '"__import__" is an invalid variable name'),
        ("open('/etc/hostname')", NameError, "'open' is not defined"),
        ("().__class__.__base__.__subclasses__()", SandboxSyntaxError, '"__class__" is an invalid attribute'),
        ("getattr(x, '__class__')", AttributeError, '"__class__" is an invalid attribute'),
        ("getattr(double, '__globals__')", AttributeError, '"__globals__" is an invalid attribute'),
        ("double.__globals__", SandboxSyntaxError, '"__globals__" is an invalid attribute'),
        ("type(x).__mro__", SandboxSyntaxError, '"__mro__" is an invalid attribute'),
        ("type(x)", NameError, "'type' is not defined"),
        ("'{0.__class__}'.format(1)", NotImplementedError, "format*() methods of `str` is not safe"),
        ("str.format('{0.__class__}', 1)", NotImplementedError, "format*() methods of `str` is not safe"),
        ("'{0.__class__}'.format_map({})", NotImplementedError, "format*() methods of `str` is not safe"),
        ("getattr('{0.__class__}', 'format')(1)", NotImplementedError, "format*() methods of `str` is not safe"),
        ("f'{x.__class__}'", SandboxSyntaxError, '"__class__" is an invalid attribute'),
        ("(y for y in ()).gi_frame", SandboxSyntaxError, '"gi_frame" is a restricted name'),
        ("getattr((y for y in ()), 'gi_frame')", AttributeError, '"gi_frame" is a restricted name'),
        ("getattr((y for y in ()), 'gi_code')", AttributeError, '"gi_code" is a restricted name'),
        ("(lambda: 0).__code__", SandboxSyntaxError, '"__code__" is an invalid attribute'),
        ("__builtins__['__import__']('os')", SandboxSyntaxError, '"__builtins__" is an invalid variable name'),
        ("_getattr_(x, '__class__')", SandboxSyntaxError, '"_getattr_" is an invalid variable name'),
        ("exec('import os')", SandboxSyntaxError, "Exec calls are not allowed"),
        ("eval('1')", SandboxSyntaxError, "Eval calls are not allowed"),
        ("compile('1', 'f', 'eval')", NameError, "'compile' is not defined"),
        ("globals()", NameError, "'globals' is not defined"),
        ("vars(x)", NameError, "'vars' is not defined"),
        ("dir(x)", NameError, "'dir' is not defined"),
        ("setattr(double, 'label', 1)", TypeError, "attribute-less object"),
    ],
)
def test_escapes_fail_in_expressions(env: SandboxedEnvironment, expression: str, error: type, fragment: str) -> None:
    with pytest.raises(error) as caught:
        env.evaluate(expression, {"x": 1})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "script,error,fragment",
    [
        ("import os\nos.system('id')", SandboxSyntaxError, "imports are not allowed"),
        ("from os import system", SandboxSyntaxError, "imports are not allowed"),
        ("class A:\n    pass", SandboxSyntaxError, "class definitions are not allowed"),
        ("raise SystemExit(1)", NameError, "'SystemExit' is not defined"),
        ("raise KeyboardInterrupt", NameError, "'KeyboardInterrupt' is not defined"),
        ("try:\n    1 / 0\nexcept Exception as e:\n    tb = e.__traceback__", SandboxSyntaxError, "__traceback__"),
        ("try:\n    1 / 0\nexcept Exception as e:\n    tb = getattr(e, '__traceback__')", AttributeError, "__traceback__"),
        ("g = (y for y in [1])\nf = g.gi_frame.f_back", SandboxSyntaxError, "gi_frame"),
        ("print('hello')", NameError, "print() is not available"),
        ("double.label = 1", TypeError, "attribute-less object"),
    ],
)
def test_escapes_fail_in_scripts(env: SandboxedEnvironment, script: str, error: type, fragment: str) -> None:
    context: dict[str, Any] = {}
    with pytest.raises(error) as caught:
        env.execute(script, context)
    assert fragment in str(caught.value)
    assert "__builtins__" not in context and "double" not in context


@pytest.mark.parametrize(
    "expression,expected",
    [
        ("amount > 100 and category in ('water', 'noise')", True),
        ("len(items) + max(items) + sum(items)", 3 + 3 + 6),
        ("sorted(scores, key=lambda k: scores[k])", ["b", "a"]),
        ("[double(i) for i in items if i > 1]", [4, 6]),
        ("name[:2] + name[-1]", "王小明"[:2] + "明"),
        ("scores.get('c', 0) + scores['a']", 2),
        ("isinstance(amount, int) and any(i > 2 for i in items) and all(items)", True),
        ("f'{amount} yuan'", "150 yuan"),
        ("dict(zip(['x', 'y'], items))", {"x": 1, "y": 2}),
        ("{k: v for k, v in scores.items()}", {"a": 2, "b": 1}),
        ("datetime(2025, 10, 9).year", 2025),
        ("round(abs(-2.567), 1)", 2.6),
    ],
)
def test_ordinary_expressions(env: SandboxedEnvironment, expression: str, expected: Any) -> None:
    data = {"amount": 150, "category": "water", "items": [1, 2, 3], "scores": {"a": 2, "b": 1}, "name": "王小明"}
    assert env.evaluate(expression, data) == expected


def test_expression_with_surrounding_whitespace(env: SandboxedEnvironment) -> None:
    assert env.evaluate("\n      amount > 100\n    ", {"amount": 101}) is True


def test_compiled_code_is_cached() -> None:
    assert compile_expression("level >= 3") is compile_expression("level >= 3")


def test_script_sets_variables_and_inplace_operators_work(env: SandboxedEnvironment) -> None:
    script = """
    total = 0
    for item in items:
        total += double(item)
    names = []
    names += ['a']
    label = 'x'
    label *= 3
    first, (second, third) = [1, [2, 3]]
    counts = {'open': 1}
    counts['open'] = counts['open'] + 1
    bump = lambda v: v + 1
    bumped = bump(total)
    """
    context: dict[str, Any] = {"items": [1, 2, 3]}
    env.execute(script, context)
    assert context == {
        "items": [1, 2, 3], "total": 12, "item": 3, "names": ["a"], "label": "xxx",
        "first": 1, "second": 2, "third": 3, "counts": {"open": 2}, "bumped": 13,
    }
    json.dumps(context)  # helpers, the lambda and __builtins__ were all removed


@pytest.mark.parametrize(
    "script,key",
    [
        ("when = datetime(2025, 10, 9)", "when"),
        ("pending = (i for i in items)", "pending"),
        ("tags = {1, 2}", "tags"),
        ("ratio = float('nan')", "ratio"),
    ],
)
def test_unstorable_values_are_refused(env: SandboxedEnvironment, script: str, key: str) -> None:
    with pytest.raises(TypeError, match=f"'{key}'.*case data cannot hold"):
        env.execute(script, {"items": [1]})


def test_check_expression() -> None:
    assert check_expression("amount > 100 and not closed") is None
    assert check_expression("  add_working_days(issued_at, 5)\n") is None
    assert "SyntaxError" in check_expression("amount >")
    assert '"__class__" is an invalid attribute' in check_expression("x.__class__")


def test_augmented_assignment_to_items_is_refused_at_compile_time() -> None:
    # RestrictedPython allows `+=` on plain names only; the deploy check says where.
    line, message = check_script("counts = {'open': 1}\ncounts['open'] += 1")
    assert line == 2 and "Augmented assignment of object items" in message


def test_check_script_reports_lines() -> None:
    assert check_script("a = 1\nb = a + 1") is None
    line, message = check_script("a = 1\n\nb = a.__class__")
    assert line == 3 and '"__class__"' in message
    line, message = check_script("a = 1\nb = (\n")
    assert line == 2 and "SyntaxError" in message
    # Indented as modelers write inside <bpmn:script>; the leading newline is line 1.
    line, message = check_script("\n    a = 1\n    import os\n")
    assert line == 3 and "imports are not allowed" in message
    # Several errors: the earliest line is reported.
    line, message = check_script("a = 1\nb = a._x\nc = a.__y__")
    assert line == 2 and '"_x"' in message and '"__y__"' in message


BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="triage" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="score"/>
    <bpmn:scriptTask id="score" name="Score" scriptFormat="python">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="score" targetRef="route"/>
    <bpmn:exclusiveGateway id="route" default="to_low">
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>to_high</bpmn:outgoing><bpmn:outgoing>to_low</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="to_high" sourceRef="route" targetRef="high">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_low" sourceRef="route" targetRef="low"/>
    <bpmn:endEvent id="high"><bpmn:incoming>to_high</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="low"><bpmn:incoming>to_low</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""

SCORE_SCRIPT = """
      score = 0
      for weight in weights:
          score += double(weight)
      urgent = score &gt; 5
"""


def run_workflow(script: str, condition: str, data: dict[str, Any]) -> BpmnWorkflow:
    parser = CamundaParser()
    parser.add_bpmn_str(BPMN.format(script=script, condition=condition).encode(), filename="triage.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("triage"), script_engine=make_script_engine({"double": double}))
    workflow.get_tasks(state=TaskState.READY)[0].data.update(data)
    workflow.do_engine_steps()
    return workflow


def reached_end(workflow: BpmnWorkflow) -> str:
    return next(
        t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.COMPLETED)
        if t.task_spec.bpmn_id in ("high", "low")
    )


@pytest.mark.parametrize("weights,end", [([1, 2], "high"), ([1], "low")])
def test_script_and_gateway_in_a_workflow(weights: list[int], end: str) -> None:
    workflow = run_workflow(SCORE_SCRIPT, "urgent and score &gt;= 6", {"weights": weights})
    assert workflow.is_completed()
    assert reached_end(workflow) == end
    data = workflow.last_task.data
    assert data["score"] == 2 * sum(weights)
    assert "double" not in data and "__builtins__" not in data
    json.dumps(data)


def test_runtime_error_in_workflow_names_line() -> None:
    with pytest.raises(WorkflowTaskException) as caught:
        run_workflow("\n      a = 1\n      b = lookup[a]\n", "True", {"lookup": {}})
    err = caught.value
    assert err.line_number == 3 and err.error_line.strip() == "b = lookup[a]"
    assert "KeyError: 1" in str(err)


def test_refused_script_in_workflow_names_line() -> None:
    with pytest.raises(WorkflowTaskException) as caught:
        run_workflow("a = 1\nb = ().__class__.__base__.__subclasses__()", "True", {})
    err = caught.value
    assert err.line_number == 2 and err.error_line == "b = ().__class__.__base__.__subclasses__()"
    assert err.error_type == "SandboxSyntaxError"


def test_escape_in_gateway_condition_fails_with_cause() -> None:
    with pytest.raises(WorkflowTaskException) as caught:
        run_workflow("a = 1", "__import__('os').system('id') == 0", {})
    assert "__import__" in str(caught.value) and "SandboxSyntaxError" in str(caught.value)


def test_error_helper_survives_syntax_error_without_line() -> None:
    engine = make_script_engine({})
    assert engine.get_error_line_number_and_content("a = 1", SyntaxError("no line")) == (0, "")
    assert engine.get_error_line_number_and_content("a = 1", SandboxSyntaxError("x", ("f", 9, None, None))) == (9, "")
