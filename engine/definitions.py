"""Load, check and describe BPMN files.

`load_files` turns uploaded files into a `Bundle` of process models or a list of
`Problem`s, each with its file and line. Checking happens in layers, each run
only when the one before passed, so one mistake does not drown in its echoes:

1. the XML itself, parsed without DTDs, entities or network access;
2. the BPMN 2.0 schema (every schema error, not just the last);
3. complaintflow's own rules (see docs/BPMN-CONVENTIONS.md): what can run, that
   every expression compiles in the sandbox, that every user task has people;
4. SpiffWorkflow's parser over the normalised files, its errors placed on a line
   through the element id they name.

`compile_specs` turns stored files into SpiffWorkflow specs; the engine caches
its result per definition version.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Sequence

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser

from engine.errors import Problem
from engine.sandbox import check_expression, check_script

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}

MAX_FILE_BYTES = 5 * 1024 * 1024

FIELD_TYPES = {"string", "text", "long", "number", "boolean", "date", "datetime", "enum", "user", "file"}
NUMERIC_CONSTRAINTS = {"minlength", "maxlength", "min", "max"}
KNOWN_CONSTRAINTS = NUMERIC_CONSTRAINTS | {"required", "readonly", "pattern"}

# Flow elements a case can run, and the ones refused with the reason a process
# owner needs to hear.
RUNNABLE = {
    "startEvent", "endEvent", "userTask", "manualTask", "scriptTask", "task",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway",
    "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "callActivity", "subProcess", "sequenceFlow",
}
IGNORED = {
    "laneSet", "lane", "childLaneSet", "flowNodeRef", "textAnnotation", "association",
    "dataObject", "dataObjectReference", "dataStoreReference", "documentation",
    "extensionElements", "property", "ioSpecification", "dataInputAssociation",
    "dataOutputAssociation", "group", "category", "incoming", "outgoing",
}
REFUSED = {
    "serviceTask": "service tasks are not run by complaintflow (nothing would execute them and the case would stall); use a user task or a script task",
    "sendTask": "send tasks are not supported: messages leave no running process here; use a user task",
    "receiveTask": "receive tasks are not supported: no messages are delivered to cases; use a user task",
    "businessRuleTask": "business rule (DMN) tasks are not supported; use an exclusive gateway with conditions",
    "complexGateway": "complex gateways are not supported; use exclusive, parallel or inclusive gateways",
    "transaction": "transaction sub-processes are not supported",
    "adHocSubProcess": "ad-hoc sub-processes are not supported",
    "multiInstanceLoopCharacteristics": "multi-instance activities are not supported",
    "standardLoopCharacteristics": "loop activities are not supported; draw the loop with a gateway",
}
EVENT_DEFINITIONS_ALLOWED = {"timerEventDefinition", "terminateEventDefinition"}
CAMUNDA_REFUSED = {
    "executionListener": "camunda:executionListener runs Java or scripts outside the model and is not supported",
    "taskListener": "camunda:taskListener runs Java or scripts outside the model and is not supported",
    "inputOutput": "camunda:inputOutput mappings are not supported; data is shared whole",
    "in": "camunda:in mappings are not supported; a called process receives all the case data",
    "out": "camunda:out mappings are not supported; a called process returns all its data",
    "connector": "camunda:connector is not supported",
}
CAMUNDA_ATTRS_REFUSED = {
    "class": "camunda:class delegates to Java code, which complaintflow cannot run",
    "delegateExpression": "camunda:delegateExpression delegates to Java code, which complaintflow cannot run",
    "expression": "camunda:expression on a task is not supported",
    "formRef": "camunda:formRef points to a form outside the file; use camunda:formData",
}

ISO_DURATION = re.compile(r"^-?P(?=\d|T\d)(\d+(?:[.,]\d+)?Y)?(\d+(?:[.,]\d+)?M)?(\d+(?:[.,]\d+)?W)?(\d+(?:[.,]\d+)?D)?"
                          r"(T(?=\d)(\d+(?:[.,]\d+)?H)?(\d+(?:[.,]\d+)?M)?(\d+(?:[.,]\d+)?S)?)?$")
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
ISO_CYCLE = re.compile(r"^R\d*/[^\s/]+(/[^\s/]+)?$")


def q(tag: str, ns: str = BPMN_NS) -> str:
    return f"{{{ns}}}{tag}"


def local(node: etree._Element) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


@dataclass(frozen=True)
class FormField:
    id: str
    label: str
    type: str
    required: bool = False
    readonly: bool = False
    multiple: bool = False
    default: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    constraints: dict = field(default_factory=dict, hash=False, compare=False)

    def as_dict(self) -> dict:
        return {
            "id": self.id, "label": self.label, "type": self.type, "required": self.required,
            "readonly": self.readonly, "multiple": self.multiple, "default": self.default,
            "options": [{"id": i, "label": label} for i, label in self.options] if self.type == "enum" else None,
            "constraints": dict(self.constraints),
        }


@dataclass(frozen=True)
class Form:
    title: str
    fields: tuple[FormField, ...] = ()

    def as_dict(self) -> dict:
        return {"title": self.title, "fields": [f.as_dict() for f in self.fields]}


@dataclass(frozen=True)
class UserTaskModel:
    """Who works a user task, by when, with which form."""

    element_id: str
    name: str
    groups: tuple[str, ...]
    groups_expr: str | None
    users: tuple[str, ...]
    assignee_expr: str | None
    due_expr: str | None
    follow_up_expr: str | None
    form: Form
    recusal_field: str | None


@dataclass
class ProcessModel:
    """What the engine needs to know of one process besides SpiffWorkflow's spec."""

    key: str
    name: str
    documentation: str
    start_form: Form | None
    start_groups: tuple[str, ...]
    user_tasks: dict[str, UserTaskModel]
    escalation_elements: frozenset[str]
    called_keys: tuple[str, ...]
    element_names: dict[str, str]
    timer_start_ids: tuple[str, ...]

    @property
    def has_timer_start(self) -> bool:
        return bool(self.timer_start_ids)


@dataclass
class LoadedFile:
    name: str
    content: bytes
    sha256: str
    processes: dict[str, ProcessModel]


@dataclass
class Bundle:
    files: list[LoadedFile]
    problems: list[Problem]

    @property
    def processes(self) -> dict[str, tuple[LoadedFile, ProcessModel]]:
        return {key: (f, model) for f in self.files for key, model in f.processes.items()}


# --- XML ------------------------------------------------------------------------

def _secure_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=False)


def parse_xml(name: str, content: bytes) -> tuple[etree._ElementTree | None, list[Problem]]:
    """Parse untrusted XML: no DOCTYPE (so no entities, external or expanding), no network."""
    if len(content) > MAX_FILE_BYTES:
        return None, [Problem(name, 1, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")]
    doctype = re.search(rb"<!DOCTYPE", content[:65536], re.IGNORECASE)
    if doctype:
        line = content[: doctype.start()].count(b"\n") + 1
        return None, [Problem(name, line, "DOCTYPE declarations are not allowed (they can define external "
                                            "or expanding entities)")]
    try:
        tree = etree.ElementTree(etree.fromstring(content, _secure_parser()))
    except etree.XMLSyntaxError as error:
        line = error.position[0] if error.position else error.lineno
        message = error.msg.split(", line ")[0] if error.msg else "malformed XML"
        return None, [Problem(name, line, f"malformed XML: {message}")]
    if tree.docinfo.doctype:
        return None, [Problem(name, 1, "DOCTYPE declarations are not allowed")]
    root = tree.getroot()
    if root.tag != q("definitions"):
        return None, [Problem(name, root.sourceline, f"the root element is <{root.tag}>, not bpmn:definitions "
                                                    f"({BPMN_NS})")]
    return tree, []


_xsd: etree.XMLSchema | None = None


def _schema() -> etree.XMLSchema:
    global _xsd
    if _xsd is None:
        _xsd = BpmnValidator().validator
    return _xsd


def schema_problems(name: str, tree: etree._ElementTree) -> list[Problem]:
    schema = _schema()
    if schema.validate(tree):
        return []
    problems = []
    for entry in schema.error_log:
        message = re.sub(r"\{http://www\.omg\.org/spec/BPMN/20100524/MODEL\}", "bpmn:", entry.message)
        problems.append(Problem(name, entry.line, f"schema: {message}"))
    return problems


# --- Expressions ------------------------------------------------------------------

_JUEL = re.compile(r"^\s*[$#]\{(.*)\}\s*$", re.DOTALL)
_JUEL_WORDS = {"eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">=", "and": "and", "or": "or",
               "not": "not", "true": "True", "false": "False", "null": "None", "empty": "not"}


def juel_to_python(text: str) -> str | None:
    """Rewrite a `${…}` expression to Python, or None when it has no `${…}` wrapper."""
    match = _JUEL.match(text)
    if not match:
        return None
    inner = match.group(1)
    inner = inner.replace("&&", " and ").replace("||", " or ")
    inner = re.sub(r"!(?!=)", " not ", inner)
    inner = re.sub(r"\b(eq|ne|lt|gt|le|ge|true|false|null|empty)\b", lambda m: _JUEL_WORDS[m.group(1)], inner)
    return re.sub(r"[ \t]+", " ", inner).strip()


def to_python_expression(text: str) -> tuple[str | None, str | None]:
    """Return (python, error) for a condition or assignment expression as written."""
    text = (text or "").strip()
    if not text:
        return None, "the expression is empty"
    if "${" in text or "#{" in text:
        python = juel_to_python(text)
        if python is None:
            return None, f"'{text}' mixes text and ${{…}}; write one Python expression"
        text = python
    error = check_expression(text)
    return (None, error) if error else (text, None)


def timer_literal(text: str) -> str | None:
    """Return a quoted Python literal for an ISO 8601 timer value written bare, else None."""
    value = text.strip()
    if ISO_DURATION.match(value) or ISO_DATETIME.match(value) or ISO_CYCLE.match(value):
        return repr(value)
    return None


def timer_expression(text: str) -> tuple[str | None, str | None]:
    literal = timer_literal(text or "")
    if literal is not None:
        value = literal.strip("'")
        if ISO_DATETIME.match(value):
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as error:
                return None, f"'{value}' is not a valid date-time: {error}"
        return literal, None
    return to_python_expression(text or "")


# --- Models -----------------------------------------------------------------------

def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes"}


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _camunda(node: etree._Element, name: str) -> str | None:
    return node.get(q(name, CAMUNDA_NS))


def _properties(node: etree._Element) -> dict[str, str]:
    """The camunda:property entries directly in a node's extensionElements."""
    props = {}
    for prop in node.findall("bpmn:extensionElements/camunda:properties/camunda:property", NS):
        props[prop.get("name") or prop.get("id") or ""] = prop.get("value") or ""
    return props


def _documentation(node: etree._Element) -> str:
    doc = node.find("bpmn:documentation", NS)
    return (doc.text or "").strip() if doc is not None else ""


class _Checker:
    """Builds the models of one file and collects its problems."""

    def __init__(self, name: str, tree: etree._ElementTree) -> None:
        self.name = name
        self.tree = tree
        self.problems: list[Problem] = []

    def problem(self, node: etree._Element | None, message: str) -> None:
        self.problems.append(Problem(self.name, node.sourceline if node is not None else None, message))

    def lanes(self, process: etree._Element) -> dict[str, etree._Element]:
        by_node = {}
        for lane in process.iter(q("lane")):
            for ref in lane.findall("bpmn:flowNodeRef", NS):
                if ref.text:
                    by_node[ref.text.strip()] = lane
        return by_node

    def lane_groups(self, lane: etree._Element | None) -> tuple[str, ...]:
        if lane is None:
            return ()
        groups = _split(_properties(lane).get("candidateGroups"))
        if groups:
            return groups
        name = (lane.get("name") or "").strip()
        return (name,) if name else ()

    def form(self, node: etree._Element, default_title: str) -> Form | None:
        form_data = node.find("bpmn:extensionElements/camunda:formData", NS)
        form_key = _camunda(node, "formKey")
        if form_data is None:
            if form_key:
                self.problem(node, f"camunda:formKey '{form_key}' points to a form outside the file; "
                                   "describe the form with camunda:formData")
            return None
        fields = []
        seen = set()
        for xml_field in form_data.findall("camunda:formField", NS):
            parsed = self.form_field(xml_field)
            if parsed is None:
                continue
            if parsed.id in seen:
                self.problem(xml_field, f"form field '{parsed.id}' appears twice")
            seen.add(parsed.id)
            fields.append(parsed)
        title = _properties(node).get("form_title") or default_title
        return Form(title=title, fields=tuple(fields))

    def form_field(self, xml_field: etree._Element) -> FormField | None:
        field_id = xml_field.get("id") or ""
        if not field_id.isidentifier() or field_id.startswith("_"):
            self.problem(xml_field, f"form field id '{field_id}' must be a name of letters, digits and _ "
                                    "(it becomes a case data variable)")
            return None
        ftype = xml_field.get("type") or "string"
        if ftype not in FIELD_TYPES:
            self.problem(xml_field, f"form field '{field_id}' has unknown type '{ftype}' "
                                    f"(known: {', '.join(sorted(FIELD_TYPES))})")
            return None
        props = {p.get("id") or p.get("name"): p.get("value")
                 for p in xml_field.findall("camunda:properties/camunda:property", NS)}
        constraints: dict = {}
        required = readonly = False
        for constraint in xml_field.findall("camunda:validation/camunda:constraint", NS):
            cname, config = constraint.get("name") or "", constraint.get("config")
            if cname not in KNOWN_CONSTRAINTS:
                self.problem(constraint, f"form field '{field_id}': unknown constraint '{cname}' "
                                         f"(known: {', '.join(sorted(KNOWN_CONSTRAINTS))})")
            elif cname == "required":
                required = True
            elif cname == "readonly":
                readonly = True
            elif cname == "pattern":
                try:
                    re.compile(config or "")
                    constraints["pattern"] = config or ""
                except re.error as error:
                    self.problem(constraint, f"form field '{field_id}': pattern does not compile: {error}")
            else:
                try:
                    number = float(config) if config is not None else None
                except ValueError:
                    number = None
                if number is None:
                    self.problem(constraint, f"form field '{field_id}': constraint '{cname}' needs a number, "
                                             f"got {config!r}")
                else:
                    constraints[cname] = int(number) if number.is_integer() else number
        options = tuple((v.get("id") or "", v.get("name") or v.get("id") or "")
                        for v in xml_field.findall("camunda:value", NS))
        if ftype == "enum" and not options:
            self.problem(xml_field, f"enum form field '{field_id}' has no camunda:value options")
        return FormField(
            id=field_id, label=xml_field.get("label") or field_id, type=ftype,
            required=required, readonly=readonly or _bool(props.get("readonly")),
            multiple=_bool(props.get("multiple")), default=xml_field.get("defaultValue"),
            options=options, constraints=constraints,
        )

    def people_expression(self, node: etree._Element, attr: str) -> tuple[tuple[str, ...], str | None]:
        """Read a candidateGroups/assignee attribute: a literal list or an expression."""
        value = _camunda(node, attr)
        if not value:
            return (), None
        if "${" in value or "#{" in value:
            python, error = to_python_expression(value)
            if error:
                self.problem(node, f"camunda:{attr}: {error}")
            return (), python
        return _split(value), None

    def due_expression(self, node: etree._Element, attr: str) -> str | None:
        value = _camunda(node, attr)
        if not value:
            return None
        python, error = timer_expression(value)
        if error:
            self.problem(node, f"camunda:{attr}: {error}")
        return python

    def check_element(self, node: etree._Element) -> None:
        tag = local(node)
        if node.tag == etree.Comment or not tag:
            return
        if node.tag.startswith(f"{{{BPMN_NS}}}"):
            if tag in REFUSED:
                self.problem(node, f"{tag} '{node.get('id', '')}': {REFUSED[tag]}")
            elif tag.endswith("EventDefinition") and tag not in EVENT_DEFINITIONS_ALLOWED:
                kind = tag.removesuffix("EventDefinition")
                self.problem(node, f"{kind} events are not supported (only timer and terminate events run here)")
        elif node.tag.startswith(f"{{{CAMUNDA_NS}}}") and tag in CAMUNDA_REFUSED:
            self.problem(node, CAMUNDA_REFUSED[tag])
        for attr, message in CAMUNDA_ATTRS_REFUSED.items():
            if node.get(q(attr, CAMUNDA_NS)) is not None and node.tag.startswith(f"{{{BPMN_NS}}}"):
                self.problem(node, message)

    def process(self, process: etree._Element, resolve_called: Callable[[str], bool]) -> ProcessModel:
        key = process.get("id") or ""
        for node in process.iter():
            self.check_element(node)
        ids = {node.get("id"): node for node in process.iter() if node.get("id")}
        lanes = self.lanes(process)
        names = {}
        for node in process.iter():
            if node.get("id") and local(node) in RUNNABLE and local(node) != "sequenceFlow":
                names[node.get("id")] = node.get("name") or node.get("id")

        for flow in process.iter(q("sequenceFlow")):
            for end in ("sourceRef", "targetRef"):
                ref = flow.get(end)
                if ref not in ids:
                    self.problem(flow, f"sequence flow '{flow.get('id')}': {end} '{ref}' is not an element "
                                       "of this process")
            condition = flow.find("bpmn:conditionExpression", NS)
            if condition is not None:
                _python, error = to_python_expression(condition.text or "")
                if error:
                    self.problem(condition, f"condition of '{flow.get('id')}': {error}")

        for script_task in process.iter(q("scriptTask")):
            fmt = (script_task.get("scriptFormat") or "python").lower()
            if fmt not in {"python", "py", "text/x-python"}:
                self.problem(script_task, f"script task '{script_task.get('id')}': scriptFormat '{fmt}' is not "
                                          "supported; scripts are Python")
            script = script_task.find("bpmn:script", NS)
            if script is None or not (script.text or "").strip():
                self.problem(script_task, f"script task '{script_task.get('id')}' has no script")
            else:
                error = check_script(script.text)
                if error:
                    line, message = error
                    at = script.sourceline + (line - 1 if line else 0)
                    self.problems.append(Problem(self.name, at, f"script of '{script_task.get('id')}': {message}"))

        escalations = set()
        for timer in process.iter(q("timerEventDefinition")):
            event = timer.getparent()
            parts = [child for child in timer if local(child) in {"timeDuration", "timeDate", "timeCycle"}]
            if len(parts) != 1:
                self.problem(timer, f"timer of '{event.get('id')}' needs exactly one of timeDuration, timeDate, "
                                    "timeCycle")
                continue
            _python, error = timer_expression(parts[0].text or "")
            if error:
                self.problem(parts[0], f"timer of '{event.get('id')}': {error}")
            if _bool(_properties(event).get("escalation")):
                escalations.add(event.get("id"))

        called = []
        for call in process.iter(q("callActivity")):
            target = call.get("calledElement")
            if not target:
                self.problem(call, f"call activity '{call.get('id')}' names no calledElement")
            elif not resolve_called(target):
                self.problem(call, f"call activity '{call.get('id')}' calls '{target}', which is neither in "
                                   "these files nor deployed")
            else:
                called.append(target)

        user_tasks = {}
        for task in [*process.iter(q("userTask")), *process.iter(q("manualTask"))]:
            user_tasks[task.get("id")] = self.user_task(task, lanes.get(task.get("id")))

        start_form, timer_starts = None, []
        starts = [s for s in process.findall("bpmn:startEvent", NS)]
        for start in starts:
            if start.find("bpmn:timerEventDefinition", NS) is not None:
                timer_starts.append(start.get("id"))
            else:
                start_form = self.form(start, start.get("name") or process.get("name") or key) or start_form
        if not starts:
            self.problem(process, f"process '{key}' has no start event")
        start_groups = _split(_camunda(process, "candidateStarterGroups"))
        if not start_groups and starts:
            start_groups = self.lane_groups(lanes.get(starts[0].get("id")))

        return ProcessModel(
            key=key, name=process.get("name") or key, documentation=_documentation(process),
            start_form=start_form, start_groups=start_groups, user_tasks=user_tasks,
            escalation_elements=frozenset(escalations), called_keys=tuple(dict.fromkeys(called)),
            element_names=names, timer_start_ids=tuple(timer_starts),
        )

    def user_task(self, task: etree._Element, lane: etree._Element | None) -> UserTaskModel:
        task_id = task.get("id")
        name = task.get("name") or task_id
        groups, groups_expr = self.people_expression(task, "candidateGroups")
        users, _ = self.people_expression(task, "candidateUsers")
        assignee, assignee_expr = self.people_expression(task, "assignee")
        if assignee and not assignee_expr:
            assignee_expr = repr(assignee[0])
        if not groups and not groups_expr:
            groups = self.lane_groups(lane)
        if not (groups or groups_expr or users or assignee_expr):
            self.problem(task, f"user task '{task_id}' has no group: give camunda:candidateGroups, "
                               "camunda:candidateUsers, camunda:assignee or put it in a lane")
        form = self.form(task, name) or Form(title=name)
        recusal = _properties(task).get("recusal_field")
        if recusal is not None and not recusal.isidentifier():
            self.problem(task, f"recusal_field '{recusal}' is not a data field name")
        return UserTaskModel(
            element_id=task_id, name=name, groups=groups, groups_expr=groups_expr, users=users,
            assignee_expr=assignee_expr, due_expr=self.due_expression(task, "dueDate"),
            follow_up_expr=self.due_expression(task, "followUpDate"), form=form, recusal_field=recusal,
        )


def executable_processes(tree: etree._ElementTree) -> list[etree._Element]:
    return [p for p in tree.getroot().findall("bpmn:process", NS) if p.get("isExecutable", "true") != "false"]


def normalise(tree: etree._ElementTree) -> etree._ElementTree:
    """Return a copy whose conditions and timers SpiffWorkflow can evaluate as Python."""
    copy = etree.ElementTree(etree.fromstring(etree.tostring(tree), _secure_parser()))
    for condition in copy.getroot().iter(q("conditionExpression")):
        python = juel_to_python(condition.text or "")
        if python is not None:
            condition.text = python
    for timer in copy.getroot().iter(q("timerEventDefinition")):
        for part in timer:
            if local(part) in {"timeDuration", "timeDate", "timeCycle"}:
                python, _error = timer_expression(part.text or "")
                if python is not None:
                    part.text = python
    return copy


def _element_line(trees: dict[str, etree._ElementTree], element_id: str | None) -> tuple[str | None, int | None]:
    if not element_id:
        return None, None
    for name, tree in trees.items():
        found = tree.getroot().xpath("//*[@id=$id]", id=element_id)
        if found:
            return name, found[0].sourceline
    return None, None


def _spiff_problems(trees: dict[str, etree._ElementTree], keys: Iterable[str]) -> list[Problem]:
    parser = CamundaParser()
    first = next(iter(trees))
    try:
        for name, tree in trees.items():
            parser.add_bpmn_xml(normalise(tree), filename=name)
        for key in keys:
            parser.get_spec(key)
            parser.get_subprocess_specs(key)
    except ValidationException as error:
        name, line = _element_line(trees, getattr(error, "id", None))
        if line is None and isinstance(getattr(error, "line_number", None), int):
            name, line = error.file_name or first, error.line_number
        message = str(error).split("\n")[0]
        if isinstance(error.__cause__, TypeError) or "TypeError" in message:
            message = "a referenced error, message or signal is not defined"
        return [Problem(name or first, line, message)]
    except Exception as error:  # the library's own parser bugs must still name a place
        ids = re.findall(r"'([A-Za-z_][\w.-]*)'", str(error))
        name, line = next(((n, ln) for n, ln in (_element_line(trees, i) for i in ids) if ln), (first, None))
        return [Problem(name or first, line, f"cannot be parsed: {error}")]
    return []


def load_files(files: Sequence[tuple[str, bytes]],
               resolve_called: Callable[[str], bool] = lambda key: False) -> Bundle:
    """Check files that deploy together and describe their executable processes.

    `resolve_called(key)` says whether a process outside these files is deployed.
    The result's `problems` is empty exactly when the whole set may be deployed.
    """
    problems: list[Problem] = []
    trees: dict[str, etree._ElementTree] = {}
    for name, content in files:
        tree, found = parse_xml(name, content)
        problems += found
        if tree is not None:
            if name in trees:
                problems.append(Problem(name, None, "the same file name is given twice"))
            trees[name] = tree
    if problems:
        return Bundle([], problems)
    for name, tree in trees.items():
        problems += schema_problems(name, tree)
    if problems:
        return Bundle([], problems)

    keys_here = {p.get("id"): name for name, tree in trees.items() for p in executable_processes(tree)}
    loaded = []
    for (name, content) in files:
        checker = _Checker(name, trees[name])
        processes = executable_processes(trees[name])
        if not processes:
            checker.problem(trees[name].getroot(), "no executable process in this file "
                                                   "(isExecutable=\"false\" everywhere)")
        models = {}
        for process in processes:
            key = process.get("id")
            if keys_here.get(key) != name:
                checker.problem(process, f"process id '{key}' is defined in more than one file")
            models[key] = checker.process(process, lambda k: k in keys_here or resolve_called(k))
        problems += checker.problems
        loaded.append(LoadedFile(name, content, hashlib.sha256(content).hexdigest(), models))
    if problems:
        return Bundle([], problems)
    problems = _spiff_problems(trees, keys_here)
    return Bundle([] if problems else loaded, problems)


def compile_specs(main_key: str, files: Sequence[tuple[str, bytes]]):
    """Return (spec, subprocess_specs) of `main_key` from stored, already checked files."""
    parser = CamundaParser()
    seen = set()
    for name, content in files:
        digest = hashlib.sha256(content).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        tree, problems = parse_xml(name, content)
        if tree is None:
            raise ValueError(f"stored definition {name} no longer parses: {problems[0]}")
        parser.add_bpmn_xml(normalise(tree), filename=name)
    return parser.get_spec(main_key), parser.get_subprocess_specs(main_key)


def describe(files: Sequence[tuple[str, bytes]]) -> dict[str, ProcessModel]:
    """Return the process models of stored, already checked files, by key."""
    bundle = load_files(files, resolve_called=lambda key: True)
    if bundle.problems:
        raise ValueError(f"stored definitions no longer load: {bundle.problems[0]}")
    return {key: model for key, (_f, model) in bundle.processes.items()}
