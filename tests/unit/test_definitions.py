"""Checking BPMN files: every problem named with its file and line, nothing half-loaded."""
from __future__ import annotations

import re

import pytest

from api.cli import main
from engine.definitions import juel_to_python, load_files, timer_literal
from tests.conftest import BPMN_DIR, FIXTURES

BASE = (FIXTURES / "two_step.bpmn").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def problems_of(text: str, name: str = "case.bpmn", resolve=lambda key: False):
    return load_files([(name, text.encode("utf-8"))], resolve_called=resolve).problems


def test_fixture_is_valid():
    bundle = load_files([("two_step.bpmn", BASE.encode())])
    assert bundle.problems == []
    model = bundle.processes["two_step"][1]
    assert model.start_groups == ("front_desk",)
    review = model.user_tasks["review"]
    assert review.groups == ("front_desk",)
    assert [f.id for f in review.form.fields] == ["decision"]
    assert review.form.fields[0].options == (("approve", "同意"), ("reject", "退回"))
    assert model.escalation_elements == {"review_late"}


SCRIPT_TASK = """<bpmn:scriptTask id="archive" name="归档">
      <bpmn:script>archived_at = now()
count = 1
count += 1</bpmn:script>
    </bpmn:scriptTask>"""


def calling(process: str) -> str:
    """The fixture with its archive step calling another process."""
    assert SCRIPT_TASK in BASE
    return BASE.replace(SCRIPT_TASK, f'<bpmn:callActivity id="archive" name="归档" calledElement="{process}"/>')


BROKEN = {
    "malformed XML": (BASE.replace('<bpmn:endEvent id="end"/>', '<bpmn:endEvent id="end">'),
                      "</bpmn:process>", "malformed XML"),
    "missing reference": (BASE.replace('targetRef="archive"', 'targetRef="nowhere"'),
                          'id="f_ok"', "targetRef 'nowhere' is not an element"),
    "bad condition": (BASE.replace('${decision == "approve"}', 'decision === "approve"'),
                      'decision === "approve"', "condition of 'f_ok'"),
    "bad script": (BASE.replace("count += 1", "count +="), "count +=", "script of 'archive'"),
    "bad timer": (BASE.replace("<bpmn:timeDuration>PT1H</bpmn:timeDuration>",
                               "<bpmn:timeDuration>in one hour</bpmn:timeDuration>"), "in one hour", "timer of"),
    "unknown called process": (calling("ghost"), 'calledElement="ghost"', "calls 'ghost', which is neither"),
    "user task without group": (BASE.replace(' camunda:candidateGroups="cs_supervisor"', ''),
                                'id="chase"', "has no group"),
    "service task": (BASE.replace('<bpmn:userTask id="chase" name="催办" camunda:candidateGroups="cs_supervisor"/>',
                                  '<bpmn:serviceTask id="chase" name="催办" camunda:class="x.Y"/>'),
                     'id="chase"', "service tasks are not run"),
    "unknown field type": (BASE.replace('type="long"', 'type="money"'), 'type="money"', "unknown type 'money'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_refused_with_its_line(case):
    text, needle, message = BROKEN[case]
    problems = problems_of(text)
    assert problems, f"{case} was accepted"
    assert any(message in p.message for p in problems), [str(p) for p in problems]
    hit = next(p for p in problems if message in p.message)
    assert hit.file == "case.bpmn"
    assert hit.line == line_of(text, needle)


def test_schema_errors_are_all_reported_with_lines():
    text = BASE.replace('<bpmn:endEvent id="end"/>', '<bpmn:endEvent id="end" bogus="1"/><bpmn:nonsense/>')
    problems = problems_of(text)
    assert len(problems) >= 2
    assert all(p.line == line_of(text, 'bogus="1"') for p in problems)
    assert all(p.message.startswith("schema:") for p in problems)


XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
  <bpmn:process id="p" isExecutable="true"><bpmn:startEvent id="s" name="&xxe;"/></bpmn:process>
</bpmn:definitions>"""

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
  <bpmn:process id="p" isExecutable="true"><bpmn:startEvent id="s" name="&lol9;"/></bpmn:process>
</bpmn:definitions>"""


@pytest.mark.parametrize("text", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
def test_entities_are_refused_before_parsing(text):
    problems = problems_of(text)
    assert [p.line for p in problems] == [2]
    assert "DOCTYPE declarations are not allowed" in problems[0].message


def test_a_set_of_files_deploys_or_fails_together():
    caller = calling("callee")
    callee = BASE.replace('id="two_step"', 'id="callee"').replace('id="defs_two_step"', 'id="defs_callee"')
    assert problems_of(caller)  # alone, the call has no target
    bundle = load_files([("caller.bpmn", caller.encode()), ("callee.bpmn", callee.encode())])
    assert bundle.problems == []
    assert bundle.processes["two_step"][1].called_keys == ("callee",)


@pytest.mark.parametrize("juel,python", [
    ("${approved}", "approved"),
    ("${amount > 1000 && !urgent}", "amount > 1000 and not urgent"),
    ("${status eq 'done' || x == null}", "status == 'done' or x == None"),
])
def test_juel_expressions_become_python(juel, python):
    assert juel_to_python(juel) == python


@pytest.mark.parametrize("value,literal", [
    ("PT1H", "'PT1H'"), ("R3/PT10M", "'R3/PT10M'"), ("2026-12-01T09:00:00+08:00", "'2026-12-01T09:00:00+08:00'"),
    ("P5D", "'P5D'"), ("add_hours(x, 2)", None), ('"PT1H"', None),
])
def test_bare_iso_timer_literals_are_quoted(value, literal):
    assert timer_literal(value) == literal


def test_project_files_validate():
    files = sorted(BPMN_DIR.glob("*.bpmn"))
    assert files, "workflows/bpmn has no BPMN files"
    bundle = load_files([(f.name, f.read_bytes()) for f in files])
    assert [str(p) for p in bundle.problems] == []


def test_cli_validate_reports_file_and_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.bpmn"
    bad.write_text(BROKEN["missing reference"][0], encoding="utf-8")
    good = tmp_path / "good.bpmn"
    good.write_text(BASE, encoding="utf-8")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad), str(tmp_path / "missing.bpmn")]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.strip().splitlines()
    assert all(re.match(rf"^{re.escape(str(tmp_path))}/[\w.]+:\d+: ", line) for line in lines), lines
    assert any("missing.bpmn:0: cannot read the file" in line for line in lines)
