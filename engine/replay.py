"""Rebuild a case from its definition version and its audit events alone.

The events that move a case are replayed with the clock fixed at each event's
time: the start with its recorded data, each completion with the data as it was
submitted (checked against the form again), each timer at the time it fired,
each termination. Events derived from those (tasks created or cancelled,
escalations, the end) are not replayed; they must come out again by themselves.
At the end the rebuilt state is compared, field by field, with the stored one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.util.task import TaskState

from engine import forms
from engine.clock import FakeClock, use_clock
from engine.errors import NotFound
from storage.models import AuditEvent, HumanTask, Instance, Timer

# Events that change a case; every other type is derived from these.
DRIVING = {"instance_started", "task_completed", "timer_fired", "instance_terminated", "incident",
           "task_claimed", "task_unclaimed", "task_assigned"}


@dataclass
class ReplayResult:
    instance_id: int
    upto_seq: int
    last_seq: int
    status: str
    data: dict[str, Any]
    open_tasks: list[dict[str, Any]]
    waiting_timers: list[dict[str, Any]]
    differences: list[dict[str, Any]] = field(default_factory=list)
    matches_stored: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id, "upto_seq": self.upto_seq, "last_seq": self.last_seq,
            "status": self.status, "data": self.data, "open_tasks": self.open_tasks,
            "waiting_timers": self.waiting_timers, "matches_stored": self.matches_stored,
            "differences": self.differences,
        }


class ReplayError(Exception):
    """The events cannot be replayed (they name a task or timer the rebuilt case does not have)."""


def _timer_tasks(workflow: BpmnWorkflow) -> list:
    return [t for t in workflow.get_tasks(state=TaskState.WAITING)
            if isinstance(getattr(t.task_spec, "event_definition", None), TimerEventDefinition)]


def _due(task) -> datetime | None:
    value = task.internal_data.get("event_value")
    if isinstance(value, dict):
        value = value.get("next") if value.get("cycles", 0) != 0 else None
    return TimerEventDefinition.get_datetime(value) if value else None


class _Replayer:
    def __init__(self, engine, compiled, instance: Instance) -> None:
        from engine.service import accumulate, case_data

        self.engine = engine
        self.compiled = compiled
        self.instance = instance
        self.case_data = case_data
        self.accumulate = accumulate
        self.data: dict[str, Any] = {}
        self.workflow: BpmnWorkflow | None = None
        self.status = "running"
        # original human-task id -> (replayed spiff task, assignee)
        self.tasks: dict[int, list] = {}
        self.pending: list = []

    def _run(self, at: datetime, action) -> None:
        before = self.case_data(self.workflow) if self.data else {}
        with use_clock(FakeClock(at)):
            action()
            self._adopt_new_tasks()
        self.data = self.accumulate(self.data, before, self.case_data(self.workflow))

    def _adopt_new_tasks(self) -> None:
        self.pending = [t for t in self.workflow.get_tasks(state=TaskState.READY, manual=True)
                        if t.task_spec.bpmn_id and all(t is not entry[0] for entry in self.tasks.values())]

    def apply(self, event: AuditEvent) -> None:
        kind = event.type
        if kind == "instance_started":
            self.workflow = BpmnWorkflow(self.compiled.spec, self.compiled.subprocess_specs,
                                         script_engine=self.engine.script_engine)

            def begin() -> None:
                for task in self.workflow.get_tasks(state=TaskState.READY):
                    task.set_data(**event.data["data"])
                self.workflow.do_engine_steps()

            self._run(event.at, begin)
        elif kind == "task_created":
            match = next((t for t in self.pending if t.task_spec.bpmn_id == event.element_id), None)
            if match is None:
                raise ReplayError(f"event {event.seq}: the rebuilt case has no new task '{event.element_id}'")
            self.pending.remove(match)
            self.tasks[event.task_id] = [match, event.data.get("assignee")]
        elif kind in {"task_claimed", "task_assigned"}:
            self._entry(event)[1] = event.data.get("assignee", event.actor)
        elif kind == "task_unclaimed":
            self._entry(event)[1] = None
        elif kind == "task_completed":
            spiff_task = self._entry(event)[0]
            _key, model = self.compiled.user_task(self.compiled.process_of(spiff_task), event.element_id)
            clean = forms.validate(model.form, event.data.get("submitted", {}),
                                   current={**spiff_task.data, **self.data})

            def complete() -> None:
                spiff_task.set_data(**clean)
                spiff_task.run()
                self.workflow.do_engine_steps()

            self.tasks.pop(event.task_id)
            self._run(event.at, complete)
        elif kind == "task_cancelled":
            self.tasks.pop(event.task_id, None)
        elif kind == "timer_fired":
            if not any(t.task_spec.bpmn_id == event.element_id for t in _timer_tasks(self.workflow)):
                return  # fired together with an earlier timer of the same moment

            def fire() -> None:
                self.workflow.refresh_timers()
                self.workflow.do_engine_steps()

            self._run(event.at, fire)
        elif kind == "instance_terminated":
            self.status = "terminated"
        elif kind == "incident":
            self.status = "error"
        elif kind == "instance_completed":
            pass
        if self.workflow is not None and self.status == "running" and self.workflow.is_completed():
            self.status = "completed"

    def _entry(self, event: AuditEvent) -> list:
        entry = self.tasks.get(event.task_id)
        if entry is None:
            raise ReplayError(f"event {event.seq}: task {event.task_id} is not open in the rebuilt case")
        return entry

    def state(self) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        if self.workflow is None:
            return {}, [], []
        data = self.data
        ended = self.status in {"terminated", "completed"}
        open_tasks = [] if ended else sorted(
            ({"task_id": task_id, "element_id": entry[0].task_spec.bpmn_id, "assignee": entry[1]}
             for task_id, entry in self.tasks.items()), key=lambda t: t["task_id"])
        timers = [] if ended else sorted(
            ({"element_id": t.task_spec.bpmn_id, "due_at": _due(t).isoformat()}
             for t in _timer_tasks(self.workflow) if _due(t) is not None),
            key=lambda t: (t["due_at"], t["element_id"]))
        return data, open_tasks, timers


def replay(engine, instance_id: int, upto_seq: int | None = None) -> ReplayResult:
    """Rebuild a case from its events up to `upto_seq` (default: all) and compare it with the stored case.

    Raises NotFound for an unknown case and ReplayError when the events do not fit
    the definition.
    """
    with engine.read() as uow:
        session = uow.session
        instance = session.get(Instance, instance_id)
        if instance is None:
            raise NotFound(f"no instance {instance_id}")
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                      .order_by(AuditEvent.seq)))
        last_seq = events[-1].seq if events else 0
        upto = last_seq if upto_seq is None else min(upto_seq, last_seq)
        definition = engine.definition(session, instance.definition_key, instance.version)
        compiled = engine.compiled(session, definition, instance.pinned)
        stored_tasks = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                                    HumanTask.status == "open")
                                            .order_by(HumanTask.id)))
        stored_timers = list(session.scalars(select(Timer).where(Timer.instance_id == instance_id,
                                                                 Timer.status == "waiting")))
    replayer = _Replayer(engine, compiled, instance)
    for event in events:
        if event.seq > upto:
            break
        replayer.apply(event)
    data, open_tasks, timers = replayer.state()
    result = ReplayResult(instance_id, upto, last_seq, replayer.status, data, open_tasks, timers)
    if upto == last_seq:
        stored = {
            "status": instance.status,
            "data": instance.data,
            "open_tasks": [{"task_id": t.id, "element_id": t.element_id, "assignee": t.assignee}
                           for t in stored_tasks],
            "waiting_timers": sorted(({"element_id": t.element_id,
                                       "due_at": t.due_at.astimezone(timezone.utc).isoformat()}
                                      for t in stored_timers), key=lambda t: (t["due_at"], t["element_id"])),
        }
        rebuilt = {"status": result.status, "data": data, "open_tasks": open_tasks, "waiting_timers": timers}
        result.differences = _differences(stored, rebuilt)
        result.matches_stored = not result.differences
    return result


def _differences(stored: dict[str, Any], rebuilt: dict[str, Any]) -> list[dict[str, Any]]:
    differences = []
    for name in ("status", "open_tasks", "waiting_timers"):
        if stored[name] != rebuilt[name]:
            differences.append({"field": name, "stored": stored[name], "rebuilt": rebuilt[name]})
    for key in sorted(set(stored["data"]) | set(rebuilt["data"])):
        if stored["data"].get(key) != rebuilt["data"].get(key) or (key in stored["data"]) != (key in rebuilt["data"]):
            differences.append({"field": f"data.{key}", "stored": stored["data"].get(key),
                                "rebuilt": rebuilt["data"].get(key)})
    return differences
