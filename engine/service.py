"""Where a case's life happens: deploy, start, work tasks, fire timers, terminate.

Every public method is one transaction (a unit of work): it locks what it
changes, runs the workflow, writes the workflow state, the human-task and timer
rows and the audit events, and commits them together — or, on any error,
nothing at all.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Sequence
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, event, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, joinedload, lazyload
from sqlalchemy.orm.exc import StaleDataError
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState

from engine import definitions as bpmn
from engine import forms, state
from engine.audit import SYSTEM_CHAIN, AuditLog, instance_chain
from engine.calendar import BusinessCalendar
from engine.clock import Clock, FakeClock, SystemClock, install_spiff_clock, use_clock
from engine.errors import CaseError, Conflict, Forbidden, InvalidBpmn, NotFound, Problem, Unavailable
from engine.expressions import expression_functions, parse_iso_duration
from engine.sandbox import make_script_engine
from storage.db import Database
from storage.models import (NO_DUE_DATE, AuditChain, AuditEvent, Definition, HumanTask, Instance, TaskCandidate, Timer,
                            User)

log = logging.getLogger(__name__)

ADMIN, PROCESS_OWNER, AUDITOR, STAFF = "admin", "process_owner", "auditor", "staff"
OPEN, COMPLETED, CANCELLED = "open", "completed", "cancelled"
RUNNING, ERROR, TERMINATED = "running", "error", "terminated"
WAITING, FIRED, FAILED = "waiting", "fired", "failed"

TIMER_MAX_ATTEMPTS = 4
TIMER_BACKOFF = (timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=2))


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user with roles and groups, or the system (timers)."""

    username: str
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


SYSTEM = Actor("system", frozenset({"system"}))


@dataclass
class Compiled:
    """A parsed definition version with the versions it calls: shared by its cases."""

    spec: Any
    subprocess_specs: dict
    models: dict[str, bpmn.ProcessModel]
    escalations: frozenset[str]

    def user_task(self, process_key: str, element_id: str) -> tuple[str, bpmn.UserTaskModel]:
        model = self.models.get(process_key)
        if model and element_id in model.user_tasks:
            return process_key, model.user_tasks[element_id]
        raise CaseError(f"user task '{element_id}' is not described by process '{process_key}'")

    def process_of(self, spiff_task) -> str:
        """The key of the process whose diagram holds the task.

        A task inside an embedded sub-process runs in a sub-workflow named after
        the sub-process; climb to the called or top process that drew it.
        """
        workflow = spiff_task.workflow
        while workflow.spec.name not in self.models and workflow.parent_task_id is not None:
            workflow = workflow.top_workflow.get_task_from_id(workflow.parent_task_id).workflow
        return workflow.spec.name


@dataclass
class DeployResult:
    key: str
    version: int
    created: bool


@dataclass
class StepResult:
    """What a step left: the case, the tasks it created, and where the case now waits."""

    instance_id: int
    created_task_ids: list[int] = field(default_factory=list)
    instance: Instance | None = None
    open_tasks: list[HumanTask] = field(default_factory=list)
    waiting_timers: list[tuple[datetime, str]] = field(default_factory=list)


@dataclass
class Scan:
    """One walk over a workflow's live tasks: what waits for people, what waits for time, the case data."""

    ready: dict[str, Any]  # spiff task id -> user task waiting for a person
    timers: dict[tuple[str, datetime], Any]  # (spiff task id, due) -> waiting timer event
    data: dict[str, Any]

    @classmethod
    def of(cls, workflow: BpmnWorkflow) -> Scan:
        live = list(workflow.get_tasks(state=LIVE))
        ready, timers = {}, {}
        for task in live:
            if task.state == TaskState.READY:
                if task.task_spec.manual and task.task_spec.bpmn_id:
                    ready[str(task.id)] = task
            elif task.state == TaskState.WAITING:
                due = _timer_due(task)
                if due is not None:
                    timers[(str(task.id), due)] = task
        return cls(ready, timers, case_data(workflow, live))


def _timer_due(task) -> datetime | None:
    """When a waiting timer event fires next; None for other waiting tasks and spent cycles."""
    if not isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition):
        return None
    value = task.internal_data.get("event_value")
    if isinstance(value, dict):
        value = value.get("next") if value.get("cycles", 0) != 0 else None
    return TimerEventDefinition.get_datetime(value) if value else None


class SpecCache:
    """Parsed specs per (definition version, pinned versions), least recently used out."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, build) -> Compiled:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        compiled = build()
        with self._lock:
            self._items[key] = compiled
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled


class WorkflowCache:
    """Live workflows of recently changed cases, so the next step need not deserialise them.

    A cached workflow is used only while the stored state is exactly the text
    it was dumped to: a change made by another process, or a step that rolled
    back, means a fresh load. A step takes its case's workflow out; it goes
    back only when that step's transaction has committed.
    """

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[str, BpmnWorkflow]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def take(self, instance_id: int, stored_state: str, spec) -> BpmnWorkflow | None:
        with self._lock:
            found = self._items.pop(instance_id, None)
            if found is not None and found[0] == stored_state and found[1].spec is spec:
                self.hits += 1
                return found[1]
            self.misses += 1
            return None

    def put(self, instance_id: int, stored_state: str, workflow: BpmnWorkflow) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[instance_id] = (stored_state, workflow)
            self._items.move_to_end(instance_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def etag_of(task: HumanTask) -> str:
    return f"{task.id}.{task.version}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


LIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED


def case_data(workflow: BpmnWorkflow, live: list | None = None) -> dict[str, Any]:
    """The data where the case now stands: its open tasks' data and each (sub-)workflow's last task's.

    Embedded sub-processes and called processes are included, so what a person
    typed inside them shows while they run. Newer changes win. `live`: the
    workflow's READY, WAITING and STARTED tasks when the caller has them.
    """
    data = dict(workflow.data)
    workflows = [workflow, *workflow.subprocesses.values()]
    tasks = list(workflow.get_tasks(state=LIVE) if live is None else live)
    tasks += [w.last_task for w in workflows if w.last_task is not None]
    for task in sorted(tasks, key=lambda t: t.last_state_change):
        data.update(task.data)
    return _json_safe(data)


def accumulate(previous: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The case data after a step: what the step changed, laid over what the case held.

    A workflow keeps data per path, so a value recorded on a branch that has
    ended (a reminder's note, a head's instruction) drops out of where the case
    now stands; the case's record keeps it until a later step changes it.
    """
    merged = dict(previous)
    for name, value in after.items():
        if name not in before or before[name] != value or name not in previous:
            merged[name] = value
    return merged


def data_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Return {field: {"from", "to"}} for every field that changed."""
    changes = {}
    for name in sorted(set(before) | set(after)):
        if before.get(name, None) != after.get(name, None) or (name in before) != (name in after):
            changes[name] = {"from": before.get(name), "to": after.get(name)}
    return changes


class Engine:
    """The case engine over one database, one clock and one business calendar."""

    def __init__(self, db: Database, clock: Clock | None = None, calendar: BusinessCalendar | None = None,
                 timezone_name: str | None = None, specs: SpecCache | None = None,
                 workflows: WorkflowCache | None = None) -> None:
        install_spiff_clock()
        self.db = db
        self.clock = clock or SystemClock()
        self.tz = ZoneInfo(timezone_name or os.environ.get("COMPLAINTFLOW_TIMEZONE", "Asia/Shanghai"))
        self.calendar = calendar or BusinessCalendar(tz=str(self.tz))
        self.script_engine = make_script_engine(expression_functions(self.calendar))
        self.specs = specs or SpecCache()
        self.workflows = workflows if workflows is not None else WorkflowCache(
            int(os.environ.get("COMPLAINTFLOW_WORKFLOW_CACHE", "128")))
        self._definitions: dict[tuple[str, int], Definition] = {}

    # --- transactions -------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """Run a write transaction; database failures become Unavailable or Conflict."""
        try:
            with self.db.unit_of_work() as uow, use_clock(self.clock):
                yield uow.session
                uow.commit()
        except StaleDataError as error:
            raise Conflict("the case was changed by someone else at the same moment; reload and try again") \
                from error
        except IntegrityError as error:
            raise Conflict("the change collides with one made at the same moment; try again") from error
        except OperationalError as error:
            if "locked" in str(error.orig).lower():
                raise Unavailable("the database is busy; try again in a moment") from error
            raise Unavailable("the database cannot be reached") from error
        except DBAPIError as error:
            if getattr(error, "connection_invalidated", False) or "could not serialize" in str(error.orig):
                raise Unavailable("the database cannot be reached") from error
            raise

    def read(self, *, single_statement: bool = False):
        """Open a read-only unit of work (the caller uses it as a context manager).

        `single_statement`: the caller reads with one statement, which needs no transaction.
        """
        return self.db.unit_of_work(write=False, single_statement=single_statement)

    def _lock(self, session: Session, model, ident: int):
        query = select(model).where(model.id == ident)
        if self.db.is_postgres:
            query = query.with_for_update()
        return session.scalars(query).one_or_none()

    # --- definitions --------------------------------------------------------------

    def _deployed_keys(self, session: Session) -> set[str]:
        return set(session.scalars(select(Definition.key).distinct()))

    def validate(self, files: Sequence[tuple[str, bytes]]) -> list[Problem]:
        """Return every problem that would stop these files deploying together."""
        with self.read() as uow:
            deployed = self._deployed_keys(uow.session)
        return bpmn.load_files(files, resolve_called=deployed.__contains__).problems

    def deploy(self, files: Sequence[tuple[str, bytes]], actor: Actor) -> list[DeployResult]:
        """Deploy files as one unit: every changed process gets a new version, or none does.

        Raises InvalidBpmn with every problem found. A deployed process that
        starts on a timer gets its first case waiting on that timer.
        """
        results = self._deploy(files, actor)
        if any(result.created for result in results):
            self.ensure_scheduled_starts()
        return results

    def _deploy(self, files: Sequence[tuple[str, bytes]], actor: Actor) -> list[DeployResult]:
        with self._write() as session:
            deployed = self._deployed_keys(session)
            bundle = bpmn.load_files(files, resolve_called=deployed.__contains__)
            if bundle.problems:
                raise InvalidBpmn(bundle.problems)
            now = self.clock.now()
            deployment = str(uuid.uuid4())
            audit = AuditLog(session, lock=self.db.is_postgres)
            results = []
            for loaded in bundle.files:
                for key, model in loaded.processes.items():
                    latest = session.scalars(
                        select(Definition).where(Definition.key == key).order_by(Definition.version.desc()).limit(1)
                    ).first()
                    if latest is not None and latest.sha256 == loaded.sha256:
                        results.append(DeployResult(key, latest.version, False))
                        continue
                    version = (latest.version if latest else 0) + 1
                    session.add(Definition(
                        key=key, version=version, name=model.name, file_name=loaded.name,
                        bpmn_xml=loaded.content.decode("utf-8"), sha256=loaded.sha256,
                        called_keys=list(model.called_keys), deployment_id=deployment,
                        deployed_at=now, deployed_by=actor.username,
                    ))
                    audit.append(SYSTEM_CHAIN, "definition_deployed", at=now, actor=actor.username, data={
                        "key": key, "version": version, "sha256": loaded.sha256, "file": loaded.name,
                        "deployment_id": deployment,
                    })
                    results.append(DeployResult(key, version, True))
            return results

    def definition(self, session: Session, key: str, version: int | None = None) -> Definition:
        """The latest (or given) version of a process; raises NotFound.

        A deployed version never changes, so each is kept after its first read;
        finding the latest reads only its number.
        """
        if version is None:
            version = session.scalar(select(func.max(Definition.version)).where(Definition.key == key))
            if version is None:
                raise NotFound(f"no definition '{key}'")
        found = self._definitions.get((key, version))
        if found is not None:
            return found
        found = session.scalars(select(Definition).where(Definition.key == key, Definition.version == version)).first()
        if found is None:
            raise NotFound(f"no definition '{key}' version {version}")
        session.expunge(found)
        self._definitions[(key, version)] = found
        return found

    def _pin(self, session: Session, root: Definition) -> dict[str, int]:
        """Fix the latest version of every process the root may call, transitively."""
        pinned: dict[str, int] = {}
        pending = list(root.called_keys)
        while pending:
            key = pending.pop()
            if key in pinned or key == root.key:
                continue
            called = self.definition(session, key)
            pinned[key] = called.version
            pending.extend(called.called_keys)
        return pinned

    def compiled(self, session: Session, definition: Definition, pinned: dict[str, int]) -> Compiled:
        rows = [definition] + [self.definition(session, key, version) for key, version in sorted(pinned.items())]
        # By content: engines over different databases may share one cache.
        cache_key = tuple((row.key, row.version, row.sha256) for row in rows)

        def build() -> Compiled:
            files, seen = [], set()
            for row in rows:
                if row.sha256 not in seen:
                    seen.add(row.sha256)
                    files.append((row.file_name, row.bpmn_xml.encode("utf-8")))
            spec, subprocess_specs = bpmn.compile_specs(definition.key, files)
            models = bpmn.describe(files)
            escalations = frozenset().union(*(m.escalation_elements for m in models.values()))
            return Compiled(spec, subprocess_specs, models, escalations)

        return self.specs.get(cache_key, build)

    def compiled_for(self, session: Session, instance: Instance) -> Compiled:
        """The parsed definition a case runs on: its version and the versions it pinned."""
        return self.compiled(session, self.definition(session, instance.definition_key, instance.version),
                             instance.pinned)

    def task_model(self, session: Session, task: HumanTask, instance: Instance) -> bpmn.UserTaskModel:
        """Who works a task row's user task, with which form, under which rules."""
        return self.compiled_for(session, instance).user_task(task.process_key, task.element_id)[1]

    def definition_model(self, session: Session, key: str, version: int | None = None) -> bpmn.ProcessModel:
        definition = self.definition(session, key, version)
        return self.compiled(session, definition, self._pin(session, definition)).models[key]

    # --- people ---------------------------------------------------------------------

    def _user_exists(self, session: Session):
        def exists(username: str) -> bool:
            return session.scalar(select(func.count()).select_from(User).where(User.username == username)) > 0
        return exists

    @staticmethod
    def _candidates(task: HumanTask, kind: str) -> set[str]:
        return {c.name for c in task.candidates if c.kind == kind}

    def may_work(self, task: HumanTask, actor: Actor) -> bool:
        """Whether the actor may claim or complete the task (recusal aside)."""
        if actor.is_admin:
            return True
        if task.assignee:
            return task.assignee == actor.username
        return bool(self._candidates(task, "group") & actor.groups) or actor.username in self._candidates(task, "user")

    @staticmethod
    def recusal_problem(model: bpmn.UserTaskModel, data: dict[str, Any], username: str) -> str | None:
        if not model.recusal_field:
            return None
        listed = data.get(model.recusal_field) or []
        if isinstance(listed, str):
            listed = [part.strip() for part in listed.split(",")]
        if username in listed:
            return f"recusal: {username} is listed in {model.recusal_field} (involved in the disputed work) " \
                   "and may not work this task"
        return None

    # --- cases --------------------------------------------------------------------------

    def _load(self, instance: Instance, compiled: Compiled) -> BpmnWorkflow:
        """The case's workflow for a write step: the cached live one if it is current, else deserialised."""
        cached = self.workflows.take(instance.id, instance.state, compiled.spec)
        if cached is not None:
            return cached
        return state.load(instance.state, compiled.spec, compiled.subprocess_specs, self.script_engine)

    def _keep_after_commit(self, session: Session, instance: Instance, workflow: BpmnWorkflow) -> None:
        """Cache the workflow once the step that wrote its state has committed (never on rollback)."""
        kept = session.info.setdefault("kept_workflows", {})
        if not kept:
            def put(committed: Session) -> None:
                for instance_id, (text, live) in committed.info.pop("kept_workflows", {}).items():
                    self.workflows.put(instance_id, text, live)

            event.listen(session, "after_commit", put, once=True)
        kept[instance.id] = (instance.state, workflow)

    @staticmethod
    def _frozen(now: datetime):
        """Hold the clock still for one step, so scripts, timers and the audit event share one time.

        Replay rebuilds each step at its event's time; a clock moving during the
        step would give values replay cannot reproduce.
        """
        return use_clock(FakeClock(now))

    def _run(self, action) -> None:
        """Run workflow code; its failures become CaseError with the library's message."""
        try:
            action()
        except SpiffWorkflowException as error:
            raise CaseError(f"the case cannot go on: {error}") from error

    def start_case(self, key: str, data: Any, actor: Actor, version: int | None = None,
                   authorize=None) -> StepResult:
        """Start a case of the latest (or given) version; raises ValidationFailed on bad start data.

        `authorize(process model)` may refuse the actor (by raising) before anything
        is written. Processes that start on a timer are started by the engine, not by people.
        """
        with self._write() as session:
            definition = self.definition(session, key, version)
            pinned = self._pin(session, definition)
            compiled = self.compiled(session, definition, pinned)
            if authorize is not None:
                authorize(compiled.models[key])
            if compiled.models[key].has_timer_start and actor != SYSTEM:
                raise Conflict(f"'{key}' starts on its timer; the engine keeps its next case waiting")
            return self._start(session, definition, pinned, compiled, data, actor)

    def _start(self, session: Session, definition: Definition, pinned: dict[str, int], compiled: Compiled,
               data: Any, actor: Actor) -> StepResult:
        key = definition.key
        model = compiled.models[key]
        clean = forms.validate(model.start_form, data if data is not None else {},
                               user_exists=self._user_exists(session))
        now = self.clock.now()
        clean.update(initiator=actor.username, started_at=now.astimezone(self.tz).isoformat())
        workflow = BpmnWorkflow(compiled.spec, compiled.subprocess_specs, script_engine=self.script_engine)

        def begin() -> None:
            for task in workflow.get_tasks(state=TaskState.READY):
                task.set_data(**clean)
            workflow.do_engine_steps()

        with self._frozen(now):
            self._run(begin)
        instance = Instance(
            definition_id=definition.id, definition_key=key, version=definition.version, pinned=pinned,
            status=RUNNING, data={}, state="{}", error=None, breaches=[], started_by=actor.username,
            created_at=now, updated_at=now, ended_at=None,
        )
        session.add(instance)
        session.flush()
        audit = AuditLog(session, lock=False, deferred=True)
        audit.start_chain(instance_chain(instance.id))
        audit.append(instance_chain(instance.id), "instance_started", at=now, actor=actor.username,
                     instance_id=instance.id, data={
                         "definition_key": key, "version": definition.version, "sha256": definition.sha256,
                         "pinned": pinned, "submitted": _json_safe(data if data is not None else {}),
                         "data": _json_safe(clean),
                     })
        result = StepResult(instance.id)
        with self._frozen(now):
            self._sync(session, instance, workflow, compiled, now, actor, audit, result, {}, timers_before=set(),
                       tasks_before=set())
        return result

    def ensure_scheduled_starts(self) -> list[int]:
        """Keep one case of each timer-started process waiting on its start timer; return cases started.

        Called after deploying and after timers fire; a read decides which
        processes lack a waiting case, and only those are written, each checked
        again under the lock.
        """
        def lacking(session: Session, definition: Definition) -> tuple | None:
            pinned = self._pin(session, definition)
            compiled = self.compiled(session, definition, pinned)
            starts = compiled.models[definition.key].timer_start_ids
            if not starts:
                return None
            waiting = session.scalar(
                select(func.count()).select_from(Timer).join(Instance, Instance.id == Timer.instance_id)
                .where(Instance.definition_key == definition.key, Timer.status == WAITING,
                       Timer.element_id.in_(starts)))
            return None if waiting else (pinned, compiled)

        with self.read() as uow:
            keys = [key for key in uow.session.scalars(select(Definition.key).distinct().order_by(Definition.key))
                    if lacking(uow.session, self.definition(uow.session, key)) is not None]
        started = []
        for key in keys:
            with self._write() as session:
                query = select(Definition).where(Definition.key == key).order_by(Definition.version.desc()).limit(1)
                if self.db.is_postgres:
                    query = query.with_for_update()  # one process decides per key
                definition = session.scalars(query).first()
                need = lacking(session, definition)
                if need is not None:
                    started.append(self._start(session, definition, *need, {}, SYSTEM).instance_id)
        return started

    def _task_and_instance(self, session: Session, task_id: int) -> tuple[HumanTask, Instance]:
        """Lock the task's case, then read the task (and who may work it) under that lock."""
        if not self.db.is_postgres:
            # SQLite's writer lock, taken when the transaction began, already holds everything still.
            found = session.execute(select(HumanTask, Instance).join(Instance, Instance.id == HumanTask.instance_id)
                                    .where(HumanTask.id == task_id).options(joinedload(HumanTask.candidates))
                                    ).unique().one_or_none()
            if found is None:
                raise NotFound(f"no task {task_id}")
            return found[0], found[1]
        # PostgreSQL: lock the case first and read the task after, so the task row is as the lock
        # holder before us left it (a row read in the locking statement itself could be older).
        instance = session.scalars(select(Instance).where(
            Instance.id == select(HumanTask.instance_id).where(HumanTask.id == task_id).scalar_subquery())
            .with_for_update(of=Instance)).one_or_none()
        task = session.get(HumanTask, task_id, options=[joinedload(HumanTask.candidates)]) \
            if instance is not None else None
        if task is None:
            raise NotFound(f"no task {task_id}")
        return task, instance

    def complete_task(self, task_id: int, data: Any, actor: Actor, etag: str | None = None) -> StepResult:
        """Complete a task with its form data, claiming it first when it is unclaimed.

        Raises NotFound, Forbidden (not in the group, held by another, recused),
        Conflict (already completed, or changed since `etag`), ValidationFailed.
        """
        with self._write() as session:
            task, instance = self._task_and_instance(session, task_id)
            if task.status != OPEN:
                raise Conflict(f"task {task_id} is already {task.status}")
            if etag is not None and etag.strip('"') != etag_of(task):
                raise Conflict(f"task {task_id} changed since it was read (etag {etag_of(task)})")
            if not self.may_work(task, actor):
                holder = f"it is assigned to {task.assignee}" if task.assignee else "you are not in its group"
                raise Forbidden(f"you may not complete task {task_id}: {holder}")
            if instance.status != RUNNING:
                raise Conflict(f"the case is {instance.status}")
            compiled = self.compiled_for(session, instance)
            _key, model = compiled.user_task(task.process_key, task.element_id)
            workflow = self._load(instance, compiled)
            spiff_task = workflow.get_task_from_id(UUID(task.spiff_task_id))
            if spiff_task is None or spiff_task.state != TaskState.READY:
                raise Conflict(f"task {task_id} is no longer waiting in the case")
            scan = Scan.of(workflow)
            before = scan.data
            timers_before, tasks_before = set(scan.timers), set(scan.ready) - {task.spiff_task_id}
            current = {**spiff_task.data, **instance.data}
            recusal = self.recusal_problem(model, current, actor.username)
            if recusal:
                raise Forbidden(recusal)
            clean = forms.validate(model.form, data if data is not None else {}, current=current,
                                   user_exists=self._user_exists(session))
            now = self.clock.now()
            audit = AuditLog(session, lock=False, deferred=True)
            chain = instance_chain(instance.id)
            if not task.assignee:
                task.assignee, task.claimed_at = actor.username, now
                audit.append(chain, "task_claimed", at=now, actor=actor.username, instance_id=instance.id,
                             element_id=task.element_id, task_id=task.id, data={"implicit": True})

            def complete() -> None:
                spiff_task.set_data(**clean)
                spiff_task.run()
                workflow.do_engine_steps()

            with self._frozen(now):
                self._run(complete)
            task.status, task.completed_at, task.completed_by = COMPLETED, now, actor.username
            task.version += 1
            scan = Scan.of(workflow)
            after = accumulate(instance.data, before, scan.data)
            audit.append(chain, "task_completed", at=now, actor=actor.username, instance_id=instance.id,
                         element_id=task.element_id, task_id=task.id, data={
                             "submitted": _json_safe(data if data is not None else {}),
                             "changes": data_changes(instance.data, after),
                             "spiff_task_id": task.spiff_task_id,
                         })
            result = StepResult(instance.id)
            with self._frozen(now):
                self._sync(session, instance, workflow, compiled, now, actor, audit, result, before, scan,
                           timers_before=timers_before, tasks_before=tasks_before)
            return result

    def claim_task(self, task_id: int, actor: Actor) -> None:
        """Take an unclaimed task of one's group; Conflict when another user holds it."""
        with self._write() as session:
            task, instance = self._task_and_instance(session, task_id)
            self._check_open(task)
            if task.assignee == actor.username:
                return
            if task.assignee:
                raise Conflict(f"task {task_id} is claimed by {task.assignee}")
            if not self.may_work(task, actor):
                raise Forbidden(f"you may not claim task {task_id}: you are not in its group")
            self._check_recusal(session, task, instance, actor.username)
            now = self.clock.now()
            task.assignee, task.claimed_at, task.version = actor.username, now, task.version + 1
            instance.updated_at = now
            AuditLog(session, lock=False).append(
                instance_chain(instance.id), "task_claimed", at=now, actor=actor.username, instance_id=instance.id,
                element_id=task.element_id, task_id=task.id, data={})

    def unclaim_task(self, task_id: int, actor: Actor) -> None:
        """Give a claimed task back to its group."""
        with self._write() as session:
            task, instance = self._task_and_instance(session, task_id)
            self._check_open(task)
            if task.assignee is None:
                return
            if task.assignee != actor.username and not actor.is_admin:
                raise Conflict(f"task {task_id} is claimed by {task.assignee}")
            now = self.clock.now()
            previous = task.assignee
            task.assignee, task.claimed_at, task.version = None, None, task.version + 1
            instance.updated_at = now
            AuditLog(session, lock=False).append(
                instance_chain(instance.id), "task_unclaimed", at=now, actor=actor.username,
                instance_id=instance.id, element_id=task.element_id, task_id=task.id, data={"previous": previous})

    def assign_task(self, task_id: int, username: str, actor: Actor) -> None:
        """Give a task to a user of its group (a lead's, owner's or admin's act; the caller checks who)."""
        with self._write() as session:
            task, instance = self._task_and_instance(session, task_id)
            self._check_open(task)
            user = session.scalars(select(User).where(User.username == username)).one_or_none()
            if user is None or not user.is_active:
                raise NotFound(f"no user '{username}'")
            target = Actor(user.username, frozenset(r.role for r in user.roles),
                           frozenset(g.group_name for g in user.groups))
            if not (bool(self._candidates(task, "group") & target.groups)
                    or username in self._candidates(task, "user") or target.is_admin):
                raise Forbidden(f"{username} is not in the group of task {task_id}")
            self._check_recusal(session, task, instance, username)
            now = self.clock.now()
            previous = task.assignee
            task.assignee, task.claimed_at, task.version = username, now, task.version + 1
            instance.updated_at = now
            AuditLog(session, lock=False).append(
                instance_chain(instance.id), "task_assigned", at=now, actor=actor.username, instance_id=instance.id,
                element_id=task.element_id, task_id=task.id, data={"assignee": username, "previous": previous})

    @staticmethod
    def _check_open(task: HumanTask) -> None:
        if task.status != OPEN:
            raise Conflict(f"task {task.id} is already {task.status}")

    def _check_recusal(self, session: Session, task: HumanTask, instance: Instance, username: str) -> None:
        model = self.task_model(session, task, instance)
        if model.recusal_field:
            problem = self.recusal_problem(model, instance.data, username)
            if problem:
                raise Forbidden(problem)

    def terminate(self, instance_id: int, reason: str, actor: Actor) -> None:
        """End a running case now; its open tasks and timers are cancelled."""
        with self._write() as session:
            instance = self._lock(session, Instance, instance_id)
            if instance is None:
                raise NotFound(f"no instance {instance_id}")
            if instance.status in {COMPLETED, TERMINATED}:
                raise Conflict(f"the case is already {instance.status}")
            now = self.clock.now()
            audit = AuditLog(session, lock=False)
            chain = instance_chain(instance.id)
            for task in session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                                HumanTask.status == OPEN)):
                task.status, task.version = CANCELLED, task.version + 1
                audit.append(chain, "task_cancelled", at=now, actor=actor.username, instance_id=instance.id,
                             element_id=task.element_id, task_id=task.id, data={"reason": "case terminated"})
            for timer in session.scalars(select(Timer).where(Timer.instance_id == instance.id,
                                                             Timer.status == WAITING)):
                timer.status = CANCELLED
            instance.status, instance.ended_at, instance.updated_at = TERMINATED, now, now
            audit.append(chain, "instance_terminated", at=now, actor=actor.username, instance_id=instance.id,
                         data={"reason": reason})

    # --- timers ---------------------------------------------------------------------

    #: Called with the earliest due time after a transaction that created timer rows
    #: commits (the scheduler sets it to wake up in time); None: nobody listens.
    on_timers_changed = None

    def next_due(self) -> datetime | None:
        """When the earliest waiting timer falls due (the scheduler sleeps until then)."""
        with self.read() as uow:
            return uow.session.scalar(select(func.min(Timer.next_attempt_at)).where(Timer.status == WAITING))

    def fire_due_timers(self, limit: int = 200) -> int:
        """Fire every timer due by now, oldest first, in batches; return how many fired.

        Each case's timers fire in a savepoint of the batch's transaction, so one
        failing case does not hold back the others; its timer is retried with
        back-off and, after the last try, the case is marked `error`.
        """
        fired_total = 0
        while True:
            fired, selected = self._fire_batch(limit)
            fired_total += fired
            if selected < limit:
                break
        if fired_total:
            # A start timer that fired has used up its process's waiting case.
            self.ensure_scheduled_starts()
        return fired_total

    def _fire_batch(self, limit: int) -> tuple[int, int]:
        fired = 0
        with self._write() as session:
            wall = self.clock.now()
            # The timers with their cases, read in the write transaction: SQLite's
            # writer lock, or on PostgreSQL row locks, hold them for the batch.
            query = (select(Timer, Instance).join(Instance, Instance.id == Timer.instance_id)
                     .where(Timer.status == WAITING, Timer.next_attempt_at <= wall)
                     .order_by(Timer.due_at, Timer.id).limit(limit))
            if self.db.is_postgres:
                # Skip rows another process or a request holds: processes share the
                # work, and a timer never waits on a case a request has locked (which
                # would invert the lock order).
                query = query.with_for_update(skip_locked=True, of=[Timer, Instance])
            rows = session.execute(query).all()
            timers = [timer for timer, _instance in rows]
            by_instance: dict[int, list[Timer]] = {}
            for timer in timers:
                by_instance.setdefault(timer.instance_id, []).append(timer)
            # The cases' audit chain heads in one read. Held here, the cases and heads
            # stay in the session (it holds objects weakly), where the steps find them.
            heads = list(session.scalars(select(AuditChain).where(
                AuditChain.chain.in_([instance_chain(i) for i in by_instance]))))
            for instance_id, due in by_instance.items():
                savepoint = session.begin_nested()
                try:
                    fired += self._fire_instance_timers(session, instance_id, due, self.clock.now())
                    savepoint.commit()
                except DBAPIError:
                    # The database failed, not the case: the batch ends and its timers wait for the next tick.
                    raise
                except Exception as error:  # noqa: BLE001 - one case's failure must not stop the others
                    savepoint.rollback()
                    session.info.get("kept_workflows", {}).pop(instance_id, None)
                    self._timer_failed(session, instance_id, due[0].id, wall, error)
            del rows, heads
            return fired, len(timers)

    def _fire_instance_timers(self, session: Session, instance_id: int, due: list[Timer], wall: datetime) -> int:
        instance = session.get(Instance, instance_id)  # read (and locked) with its timers
        if instance is None or instance.status != RUNNING:
            for timer in due:
                timer.status = CANCELLED
            return 0
        compiled = self.compiled_for(session, instance)
        workflow = self._load(instance, compiled)
        audit = AuditLog(session, lock=False, deferred=True)
        chain = instance_chain(instance.id)
        try:
            fired = 0
            pending = list(due)
            scan = Scan.of(workflow)  # what the workflow holds before each step
            while pending:
                timer = pending.pop(0)
                # The case's other waiting timer rows: one per timer waiting in the workflow.
                others = set(scan.timers) - {(timer.spiff_task_id, timer.due_at)}
                spiff_task = workflow.get_task_from_id(UUID(timer.spiff_task_id))
                if spiff_task is None or spiff_task.state != TaskState.WAITING:
                    timer.status = CANCELLED
                    continue
                tasks_before, before = set(scan.ready), scan.data
                # The case moves at the timer's due time, so catch-up after downtime
                # computes later deadlines as if the timer had fired on time.
                engine_time = max(timer.due_at + timedelta(milliseconds=1), instance.updated_at)
                with use_clock(FakeClock(engine_time)):
                    def fire() -> None:
                        workflow.refresh_timers()
                        workflow.do_engine_steps()
                    self._run(fire)
                    timer.status, timer.fired_at = FIRED, wall
                    scan = Scan.of(workflow)
                    element_name = self._element_name(compiled, timer.element_id)
                    audit.append(chain, "timer_fired", at=engine_time, actor=SYSTEM.username, instance_id=instance.id,
                                 element_id=timer.element_id, data={
                                     "due_at": _iso(timer.due_at), "fired_at": _iso(wall), "timer_id": timer.id,
                                     "spiff_task_id": timer.spiff_task_id, "name": element_name,
                                     "changes": data_changes(instance.data,
                                                             accumulate(instance.data, before, scan.data)),
                                 })
                    if timer.element_id in compiled.escalations:
                        breach = {"element_id": timer.element_id, "name": element_name, "due_at": _iso(timer.due_at),
                                  "fired_at": _iso(wall)}
                        instance.breaches = [*instance.breaches, breach]
                        audit.append(chain, "escalated", at=engine_time, actor=SYSTEM.username, instance_id=instance.id,
                                     element_id=timer.element_id, data=breach)
                    self._sync(session, instance, workflow, compiled, engine_time, SYSTEM, audit,
                               StepResult(instance.id), before, scan, timers_before=others, tasks_before=tasks_before)
                fired += 1
                # Timers this firing started that are already due (a cycle's next round
                # after downtime) fire now too, in due order with the rest.
                if any(isinstance(row, Timer) and row.next_attempt_at <= wall for row in session.new):
                    session.flush()
                    taken = {t.id for t in pending}
                    pending = sorted(pending + [t for t in session.scalars(select(Timer).where(
                        Timer.instance_id == instance.id, Timer.status == WAITING, Timer.next_attempt_at <= wall))
                        if t.id not in taken], key=lambda t: (t.due_at, t.id))
        except BaseException:
            audit.discard()  # the savepoint rolls the step back; its events go with it
            raise
        return fired

    @staticmethod
    def _element_name(compiled: Compiled, element_id: str) -> str:
        for model in compiled.models.values():
            if element_id in model.element_names:
                return model.element_names[element_id]
        return element_id

    def _timer_failed(self, session: Session, instance_id: int, timer_id: int, wall: datetime,
                      error: BaseException) -> None:
        timer = session.get(Timer, timer_id)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        log.warning("timer %s of case %s failed: %s", timer_id, instance_id, message)
        timer.attempts += 1
        timer.last_error = message
        if timer.attempts < TIMER_MAX_ATTEMPTS:
            timer.next_attempt_at = wall + TIMER_BACKOFF[min(timer.attempts - 1, len(TIMER_BACKOFF) - 1)]
            return
        timer.status = FAILED
        instance = session.get(Instance, instance_id)
        if instance is not None and instance.status == RUNNING:
            instance.status, instance.error, instance.updated_at = ERROR, message, wall
            AuditLog(session, lock=False).append(
                instance_chain(instance_id), "incident", at=wall, actor=SYSTEM.username, instance_id=instance_id,
                element_id=timer.element_id, data={"timer_id": timer.id, "attempts": timer.attempts,
                                                   "error": message})

    # --- keeping the rows in step with the workflow -----------------------------------

    def _evaluate(self, spiff_task, expression: str) -> Any:
        try:
            return self.script_engine.evaluate(spiff_task, expression)
        except SpiffWorkflowException as error:
            raise CaseError(f"expression '{expression}' of '{spiff_task.task_spec.bpmn_id}' failed: {error}") \
                from error

    def _deadline(self, spiff_task, expression: str | None, created: datetime) -> datetime | None:
        if not expression:
            return None
        value = self._evaluate(spiff_task, expression)
        if value in (None, ""):
            return None
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=self.tz)
        text = str(value).strip()
        if text.upper().startswith("P"):
            return (created.astimezone(self.tz) + parse_iso_duration(text)).astimezone(timezone.utc)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as error:
            raise CaseError(f"due date of '{spiff_task.task_spec.bpmn_id}' is not a date-time or duration: "
                            f"{text!r}") from error
        return (when if when.tzinfo else when.replace(tzinfo=self.tz)).astimezone(timezone.utc)

    def _people(self, spiff_task, model: bpmn.UserTaskModel) -> tuple[list[str], str | None]:
        groups = list(model.groups)
        if model.groups_expr:
            value = self._evaluate(spiff_task, model.groups_expr)
            groups = [g.strip() for g in (value.split(",") if isinstance(value, str) else value or []) if g.strip()]
        assignee = None
        if model.assignee_expr:
            value = self._evaluate(spiff_task, model.assignee_expr)
            assignee = str(value) if value else None
        return groups, assignee

    def _sync(self, session: Session, instance: Instance, workflow: BpmnWorkflow, compiled: Compiled,
              now: datetime, actor: Actor, audit: AuditLog, result: StepResult, before: dict[str, Any],
              scan: Scan | None = None, timers_before: set | None = None,
              tasks_before: set | None = None) -> None:
        """Bring the case's rows in step with its workflow after a step, and write the step's audit events.

        Every step ends with one open task row per user task waiting in the
        workflow and one waiting timer row per waiting timer, so what the
        workflow held before the step tells which rows exist:
        `timers_before`, its waiting timers; `tasks_before`, its waiting user
        tasks whose rows the step has not closed itself. None: unknown, the
        rows are read.
        """
        chain = instance_chain(instance.id)
        scan = scan or Scan.of(workflow)
        ready = scan.ready
        if tasks_before is not None and not tasks_before:
            open_rows = []  # no other task of the case was open
        else:
            # Nothing is flushed yet: rows this step changed keep their new status in memory.
            query = (select(HumanTask).where(HumanTask.instance_id == instance.id, HumanTask.status == OPEN)
                     .options(lazyload(HumanTask.candidates)))
            open_rows = [row for row in session.scalars(query) if row.status == OPEN]
        still_open = []
        for row in open_rows:
            if row.spiff_task_id not in ready:
                row.status, row.version = CANCELLED, row.version + 1
                audit.append(chain, "task_cancelled", at=now, actor=actor.username, instance_id=instance.id,
                             element_id=row.element_id, task_id=row.id, data={"reason": "left by the flow"})
            else:
                still_open.append(row)
        known = {row.spiff_task_id for row in open_rows}
        created = []
        for spiff_id, spiff_task in ready.items():
            if spiff_id in known:
                continue
            key, model = compiled.user_task(compiled.process_of(spiff_task), spiff_task.task_spec.bpmn_id)
            groups, assignee = self._people(spiff_task, model)
            due_at = self._deadline(spiff_task, model.due_expr, now)
            row = HumanTask(
                instance_id=instance.id, definition_key=instance.definition_key, process_key=key,
                spiff_task_id=spiff_id, element_id=model.element_id, name=model.name,
                group_name=groups[0] if groups else None, assignee=assignee, status=OPEN,
                due_at=due_at, due_key=due_at or NO_DUE_DATE,
                follow_up_at=self._deadline(spiff_task, model.follow_up_expr, now),
                created_at=now, claimed_at=now if assignee else None, version=1,
            )
            row.candidates = ([TaskCandidate(kind="group", name=g, is_primary=g == row.group_name)
                               for g in dict.fromkeys(groups)]
                              + [TaskCandidate(kind="user", name=u) for u in dict.fromkeys(model.users)])
            session.add(row)
            created.append((row, groups, list(model.users)))
        if created:
            session.flush()  # the new tasks' ids, for their events
        for row, groups, users in created:
            result.created_task_ids.append(row.id)
            audit.append(chain, "task_created", at=now, actor=actor.username, instance_id=instance.id,
                         element_id=row.element_id, task_id=row.id, data={
                             "name": row.name, "groups": groups, "users": users, "assignee": row.assignee,
                             "due_at": _iso(row.due_at), "spiff_task_id": row.spiff_task_id,
                         })
        waiting = self._sync_timers(session, instance, scan.timers, now, timers_before)
        instance.data = accumulate(instance.data, before, scan.data)
        instance.state = state.dump(workflow)
        instance.updated_at = now
        self._keep_after_commit(session, instance, workflow)
        if workflow.is_completed() and instance.status == RUNNING:
            instance.status, instance.ended_at = COMPLETED, now
            audit.append(chain, "instance_completed", at=now, actor=actor.username, instance_id=instance.id,
                         data={"data": instance.data})
        audit.write()
        result.instance = instance
        result.open_tasks = sorted([*still_open, *(row for row, _g, _u in created)], key=lambda r: r.id)
        result.waiting_timers = sorted((due, task.task_spec.bpmn_id) for (_id, due), task in waiting.items())

    def _sync_timers(self, session: Session, instance: Instance, waiting: dict[tuple[str, datetime], Any],
                     now: datetime, timers_before: set | None) -> dict[tuple[str, datetime], Any]:
        if timers_before is not None:
            # Every step leaves one waiting row per waiting timer, so the rows are
            # `timers_before`: those the workflow no longer waits on end here (fired
            # if due, else cancelled with their activity), and only new timers need rows.
            have = timers_before & waiting.keys()
            ended = timers_before - have
            if ended:
                session.execute(
                    update(Timer).where(Timer.instance_id == instance.id, Timer.status == WAITING, or_(*(
                        and_(Timer.spiff_task_id == spiff_id, Timer.due_at == due) for spiff_id, due in ended)))
                    .values(status=case((Timer.due_at <= now, FIRED), else_=CANCELLED))
                    .execution_options(synchronize_session=False))
        else:
            have = set()
            for row in session.scalars(select(Timer).where(Timer.instance_id == instance.id,
                                                           Timer.status == WAITING)):
                key = (row.spiff_task_id, row.due_at)
                if key in waiting:
                    have.add(key)
                elif row.status == WAITING:
                    row.status = FIRED if row.due_at <= now else CANCELLED
        created = [due for (spiff_id, due) in waiting if (spiff_id, due) not in have]
        for (spiff_id, due), task in waiting.items():
            if (spiff_id, due) not in have:
                session.add(Timer(instance_id=instance.id, spiff_task_id=spiff_id, element_id=task.task_spec.bpmn_id,
                                  due_at=due, status=WAITING, attempts=0, next_attempt_at=due, created_at=now))
        hook = self.on_timers_changed
        if created and hook is not None:
            # Tell the scheduler once the transaction has committed (never on rollback).
            earliest = min(created + ([session.info["new_timer_due"]] if "new_timer_due" in session.info else []))
            if "new_timer_due" not in session.info:
                event.listen(session, "after_commit", lambda s: hook(s.info.pop("new_timer_due")), once=True)
            session.info["new_timer_due"] = earliest
        return waiting


def audit_events(session: Session, instance_id: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                .order_by(AuditEvent.seq)))
