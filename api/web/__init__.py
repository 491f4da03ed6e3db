"""Pages for people: staff, process owners and auditors, served by the same app as the API.

Server-rendered Jinja pages call the engine directly and reuse the API's
visibility rules (`api.present`) and role rules. The signed-in user's id lives
in Flask's signed session cookie (HttpOnly, SameSite=Lax); every POST carries a
per-session CSRF token. Words come from `api.web.i18n` (Chinese by default,
`?lang=en` switches). The diagram is drawn by bpmn-js, served from node_modules.
"""
from __future__ import annotations

import hmac
import os
import secrets
from datetime import datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from flask import (Blueprint, Flask, Response, abort, flash, g, redirect, render_template, request,
                   send_from_directory, session, stream_with_context, url_for)
from lxml import etree
from markupsafe import Markup
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from api.auth import actor_of, lead_groups
from api.present import engine, instance_visibility, may_read_instance, reads_all
from api.tasks import inbox_rows, unclaimed_counts
from api.web import i18n
from api.web.charts import bar_chart
from engine import reports
from engine.audit import event_dict, export_lines, export_query, verify_database
from engine.definitions import BPMN_NS, Form, FormField
from engine.errors import Conflict, EngineError, Forbidden, InvalidBpmn, NotFound, ValidationFailed
from engine.replay import ReplayError, replay
from engine.service import ADMIN, AUDITOR, OPEN, PROCESS_OWNER, WAITING, Actor, audit_events
from engine.users import DUMMY_HASH, check_password
from storage.models import AuditEvent, Definition, HumanTask, Instance, TaskCandidate, Timer, User

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/web-static")

ROOT = Path(__file__).resolve().parent.parent.parent
BPMN_JS_DIST = ROOT / "node_modules" / "bpmn-js" / "dist"
DONE_EVENTS = {"task_completed", "timer_fired", "escalated", "instance_started", "instance_completed"}
REPORT_ROLES = frozenset({AUDITOR, ADMIN, PROCESS_OWNER})
AUDIT_ROLES = frozenset({AUDITOR, ADMIN})
OWNER_ROLES = frozenset({PROCESS_OWNER, ADMIN})


# --- set-up -------------------------------------------------------------------------------------------------


def secret_key(app: Flask) -> str:
    """COMPLAINTFLOW_SECRET_KEY, or a random key kept in a file next to the SQLite database (or in ./var)."""
    configured = app.config.get("SECRET_KEY") or os.environ.get("COMPLAINTFLOW_SECRET_KEY")
    if configured:
        return configured
    db = engine_of_app(app).db
    database = db.url.database if db.dialect == "sqlite" else None
    if database and database != ":memory:":
        path = Path(database).with_name(Path(database).name + ".secret")
    else:
        path = Path.cwd() / "var" / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


def engine_of_app(app: Flask):
    return app.extensions["complaintflow"]


def init_app(app: Flask) -> None:
    """Register the pages and the session settings on the app."""
    app.secret_key = secret_key(app)
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_NAME", "complaintflow_session")
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=12))
    app.register_blueprint(bp)


# --- language, session, CSRF --------------------------------------------------------------------------------


def lang() -> str:
    return session.get("lang", "zh")


def t(key: str, **values) -> str:
    return i18n.text(key, lang(), **values)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_field() -> Markup:
    return Markup(f'<input type="hidden" name="csrf_token" value="{csrf_token()}">')


@bp.before_request
def _before() -> Response | None:
    wanted = request.args.get("lang")
    if wanted in i18n.LANGS:
        session["lang"] = wanted
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent, expected):
            return _error_page(400, t("csrf"))
    g.web_user = None
    user_id = session.get("user_id")
    if user_id is not None:
        with engine().read() as uow:
            user = uow.session.get(User, user_id)
            if user is not None and user.is_active:
                g.web_user = {"username": user.username, "display_name": user.display_name}
                g.actor = actor_of(user)
            else:
                session.pop("user_id", None)
    return None


def signed_in(view: Callable) -> Callable:
    @wraps(view)
    def checked(*args, **kwargs):
        if g.get("web_user") is None:
            return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return checked


def needs(roles: frozenset[str], *, lead_groups_too: bool = False) -> Callable:
    def decorate(view: Callable) -> Callable:
        @wraps(view)
        @signed_in
        def checked(*args, **kwargs):
            actor: Actor = g.actor
            if not (actor.roles & roles or (lead_groups_too and actor.groups & set(lead_groups()))):
                return _error_page(403, t("not_allowed"))
            return view(*args, **kwargs)

        return checked

    return decorate


def _safe_next(target: str | None, fallback: str) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return fallback


def _error_page(status: int, message: str):
    return render_template("web/error.html", status=status, message=message), status


@bp.errorhandler(EngineError)
def _engine_error(error: EngineError):
    status = {NotFound: 404, Forbidden: 403, Conflict: 409, ValidationFailed: 422}.get(type(error), 400)
    return _error_page(status, error.message)


@bp.errorhandler(ReplayError)
def _replay_error(error: ReplayError):
    return _error_page(422, str(error))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    return _error_page(error.code or 500, t("not_found") if error.code == 404 else (error.description or ""))


@bp.app_template_global()
def nav_items() -> list[tuple[str, str, str]]:
    actor: Actor | None = g.get("actor")
    if actor is None:
        return []
    items = [("inbox", url_for("web.inbox"), t("inbox")), ("cases", url_for("web.cases"), t("cases")),
             ("definitions", url_for("web.definitions"), t("definitions"))]
    if actor.roles & AUDIT_ROLES:
        items.append(("audit", url_for("web.audit"), t("audit")))
    if actor.roles & REPORT_ROLES or actor.groups & set(lead_groups()):
        items.append(("reports", url_for("web.reports_page"), t("reports")))
    return items


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"t": t, "lang": lang(), "csrf_field": csrf_field, "user": g.get("web_user"),
            "status_word": lambda s: i18n.status_word(s, lang()),
            "event_word": lambda e: i18n.event_word(e, lang()), "when": when,
            "other_lang_url": _lang_url("en" if lang() == "zh" else "zh")}


def _lang_url(code: str) -> str:
    args = request.args.to_dict()
    args["lang"] = code
    return request.path + "?" + urlencode(args)


def when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.astimezone(engine().tz).strftime("%Y-%m-%d %H:%M")


# --- sign-in ------------------------------------------------------------------------------------------------


@bp.get("/")
def home():
    return redirect(url_for("web.inbox") if g.get("web_user") else url_for("web.login"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        username, password = request.form.get("username", ""), request.form.get("password", "")
        with engine().read() as uow:
            user = uow.session.scalars(select(User).where(User.username == username)).one_or_none()
            # Check a password either way so an unknown user takes as long as a wrong password.
            matches = check_password(user.password_hash if user else DUMMY_HASH, password)
            user_id = user.id if user is not None and matches and user.is_active else None
        if user_id is not None:
            keep_lang = session.get("lang")
            session.clear()
            session.permanent = True
            session["user_id"] = user_id
            if keep_lang:
                session["lang"] = keep_lang
            csrf_token()
            return redirect(_safe_next(request.args.get("next"), url_for("web.inbox")))
        error = t("wrong_pair")
    return render_template("web/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    keep_lang = session.get("lang")
    session.clear()
    if keep_lang:
        session["lang"] = keep_lang
    return redirect(url_for("web.login"))


# --- vendor files (bpmn-js from node_modules) ---------------------------------------------------------------


@bp.get("/vendor/bpmn-js/<path:name>")
def bpmn_js(name: str):
    if not BPMN_JS_DIST.is_dir():
        abort(404)
    return send_from_directory(BPMN_JS_DIST, name, max_age=3600)


# --- inbox and tasks ----------------------------------------------------------------------------------------

INBOX_PAGE = 200


def _task_groups(session, task_ids: list[int]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    if task_ids:
        for task_id, name in session.execute(select(TaskCandidate.task_id, TaskCandidate.name).where(
                TaskCandidate.task_id.in_(task_ids), TaskCandidate.kind == "group")):
            groups.setdefault(task_id, []).append(name)
    return groups


@bp.get("/inbox")
@signed_in
def inbox():
    actor: Actor = g.actor
    key, group = request.args.get("process") or None, request.args.get("group") or None
    now = engine().clock.now()
    with engine().read() as uow:
        s = uow.session
        # The same reads as the API's inbox: a page along the indexes, and counts, never the whole backlog.
        rows = inbox_rows(s, actor, limit=INBOX_PAGE, group=group, definition_key=key)[:INBOX_PAGE]
        groups = _task_groups(s, [r.id for r in rows])
        names = dict(s.execute(select(Definition.key, Definition.name)).all())
        per_group = {name: n for name, n in unclaimed_counts(s, sorted(actor.groups)).items() if n}
    keys = sorted(names)

    def item(task) -> dict[str, Any]:
        return {"id": task.id, "name": task.name, "instance_id": task.instance_id,
                "process": names.get(task.definition_key, task.definition_key), "assignee": task.assignee,
                "groups": groups.get(task.id, []), "due_at": task.due_at,
                "overdue": task.due_at is not None and task.due_at < now}

    mine = [item(r) for r in rows if r.assignee == actor.username]
    claimable = [item(r) for r in rows if r.assignee is None]
    return render_template("web/inbox.html", mine=mine, claimable=claimable, keys=keys, names=names,
                           groups=sorted(actor.groups), per_group=sorted(per_group.items()),
                           process=key, group=group)


def _visible_task(session, task_id: int) -> HumanTask:
    task = session.get(HumanTask, task_id)
    if task is None:
        raise NotFound(f"no task {task_id}")
    actor: Actor = g.actor
    if not (reads_all(actor) or engine().may_work(task, actor) or task.completed_by == actor.username):
        raise Forbidden(f"task {task_id} is not in your inbox")
    return task


def _history(session, instance_id: int, names: dict[str, str]) -> list[dict[str, Any]]:
    return [{**event_dict(e), "element_name": names.get(e.element_id or "", e.element_id or "")}
            for e in audit_events(session, instance_id)]


def _task_view(task_id: int, values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
               status: int = 200):
    with engine().read() as uow:
        s = uow.session
        task = _visible_task(s, task_id)
        instance = s.get(Instance, task.instance_id)
        compiled = engine().compiled_for(s, instance)
        _key, model = compiled.user_task(task.process_key, task.element_id)
        process = compiled.models[instance.definition_key]
        history = _history(s, instance.id, process.element_names)
        groups = _task_groups(s, [task.id]).get(task.id, [])
        may_work = engine().may_work(task, g.actor)
        task_info = {"id": task.id, "name": task.name, "status": task.status, "assignee": task.assignee,
                     "due_at": task.due_at, "instance_id": task.instance_id, "groups": groups,
                     "overdue": task.due_at is not None and task.due_at < engine().clock.now(),
                     "process": process.name or instance.definition_key}
        data = dict(instance.data)
    form = model.form
    shown = _form_values(form, data) if values is None else values
    return render_template("web/task.html", task=task_info, form=form, values=shown,
                           errors=_translate(errors or {}), data=data, history=history, may_work=may_work,
                           mine=task.assignee == g.actor.username), status


@bp.get("/tasks/<int:task_id>")
@signed_in
def task_page(task_id: int):
    return _task_view(task_id)


@bp.post("/tasks/<int:task_id>/claim")
@signed_in
def claim(task_id: int):
    engine().claim_task(task_id, g.actor)
    flash(t("claimed"), "ok")
    return redirect(_safe_next(request.form.get("next"), url_for("web.task_page", task_id=task_id)))


@bp.post("/tasks/<int:task_id>/unclaim")
@signed_in
def unclaim(task_id: int):
    engine().unclaim_task(task_id, g.actor)
    flash(t("unclaimed"), "ok")
    return redirect(_safe_next(request.form.get("next"), url_for("web.inbox")))


@bp.post("/tasks/<int:task_id>/complete")
@signed_in
def complete(task_id: int):
    with engine().read() as uow:
        s = uow.session
        task = _visible_task(s, task_id)
        instance = s.get(Instance, task.instance_id)
        form = engine().task_model(s, task, instance).form
        assignee = task.assignee
    raw = _raw_values(form)
    if assignee != g.actor.username:
        flash(t("claim_first"), "error")
        return _task_view(task_id, raw, {}, 409)
    try:
        engine().complete_task(task_id, _typed_values(form), g.actor)
    except ValidationFailed as error:
        flash(t("form_errors"), "error")
        return _task_view(task_id, raw, error.details or {}, 422)
    flash(t("task_done"), "ok")
    return redirect(url_for("web.inbox"))


# --- forms --------------------------------------------------------------------------------------------------


def _translate(errors: dict[str, str]) -> dict[str, str]:
    return {name: i18n.field_message(str(message), lang()) for name, message in errors.items()}


def _form_values(form: Form | None, data: dict[str, Any]) -> dict[str, Any]:
    """What each input shows first: the case's value, else the field's default."""
    values: dict[str, Any] = {}
    for f in (form.fields if form else ()):
        value = data.get(f.id, f.default)
        if f.type == "datetime" and isinstance(value, str):
            try:
                value = datetime.fromisoformat(value).astimezone(engine().tz).strftime("%Y-%m-%dT%H:%M")
            except ValueError:
                pass
        values[f.id] = value
    return values


def _raw_values(form: Form | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in (form.fields if form else ()):
        if f.type == "boolean":
            values[f.id] = request.form.get(f.id) == "true" if request.form.get(f.id) else None
        elif f.multiple:
            values[f.id] = request.form.getlist(f.id)
        else:
            values[f.id] = request.form.get(f.id, "")
    return values


def _convert(f: FormField, text: str) -> Any:
    """A form string as the type the engine wants; left as text when it does not parse (the engine says why)."""
    text = text.strip()
    if text == "":
        return None
    try:
        if f.type == "long":
            return int(text)
        if f.type == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if f.type == "datetime":
            parsed = datetime.fromisoformat(text)
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=engine().tz)).isoformat()
    except ValueError:
        return text
    return text


def _typed_values(form: Form | None) -> dict[str, Any]:
    if form is None or not form.fields:
        return {}
    data: dict[str, Any] = {}
    for f in form.fields:
        if f.readonly:
            continue
        if f.type == "boolean":
            sent = request.form.get(f.id, "")
            data[f.id] = {"true": True, "false": False}.get(sent)
        elif f.multiple:
            data[f.id] = [_convert(f, v) for v in request.form.getlist(f.id) if v.strip()]
        else:
            data[f.id] = _convert(f, request.form.get(f.id, ""))
    return data


# --- cases --------------------------------------------------------------------------------------------------


def _diagram(session, instance: Instance, upto_seq: int | None = None,
             active: list[str] | None = None) -> dict[str, Any]:
    definition = session.get(Definition, instance.definition_id)
    events = [e for e in audit_events(session, instance.id) if upto_seq is None or e.seq <= upto_seq]
    if active is None:
        active = [t.element_id for t in session.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance.id, HumanTask.status == OPEN))]
    done = [e.element_id for e in events if e.type in DONE_EVENTS and e.element_id]
    if any(e.type == "instance_started" for e in events):
        done = _start_events(definition.bpmn_xml, instance.definition_key) + done
    return {"bpmn": definition.bpmn_xml, "active": list(dict.fromkeys(active)),
            "completed": list(dict.fromkeys(d for d in done if d not in active))}


def _start_events(xml: str, key: str) -> list[str]:
    """The plain start events of the case's process: where every case begins."""
    try:
        tree = etree.fromstring(xml.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return []
    found = tree.xpath("//bpmn:process[@id=$key]/bpmn:startEvent", key=key, namespaces={"bpmn": BPMN_NS})
    plain = [n for n in found if not any(str(c.tag).endswith("EventDefinition") for c in n)]
    return [n.get("id") for n in (plain or found) if n.get("id")]


@bp.get("/cases")
@signed_in
def cases():
    query = select(Instance).order_by(Instance.id.desc()).limit(200)
    status = request.args.get("status") or None
    if status:
        query = query.where(Instance.status == status)
    visible = instance_visibility(g.actor)
    if visible is not None:
        query = query.where(visible)
    with engine().read() as uow:
        rows = [{"id": r.id, "key": r.definition_key, "version": r.version, "status": r.status,
                 "created_at": r.created_at, "started_by": r.started_by,
                 "title": r.data.get("title") or r.data.get("subject") or ""} for r in uow.session.scalars(query)]
        names = dict(uow.session.execute(select(Definition.key, Definition.name)).all())
    return render_template("web/cases.html", rows=rows, names=names, status=status)


@bp.get("/cases/<int:instance_id>")
@signed_in
def case_page(instance_id: int):
    with engine().read() as uow:
        s = uow.session
        instance = s.get(Instance, instance_id)
        if instance is None:
            raise NotFound(f"no case {instance_id}")
        if not may_read_instance(s, g.actor, instance_id):
            raise Forbidden(f"you may not read case {instance_id}")
        definition = s.get(Definition, instance.definition_id)
        model = engine().definition_model(s, instance.definition_key, instance.version)
        tasks = list(s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == OPEN)
                               .order_by(HumanTask.id)))
        now = engine().clock.now()
        open_tasks = [{"id": x.id, "name": x.name, "assignee": x.assignee, "due_at": x.due_at,
                       "overdue": x.due_at is not None and x.due_at < now, "group": x.group_name} for x in tasks]
        timers = [{"element": model.element_names.get(x.element_id, x.element_id), "due_at": x.due_at}
                  for x in s.scalars(select(Timer).where(Timer.instance_id == instance_id, Timer.status == WAITING)
                                     .order_by(Timer.due_at))]
        info = {"id": instance.id, "status": instance.status, "key": instance.definition_key,
                "name": definition.name, "version": instance.version, "started_by": instance.started_by,
                "created_at": instance.created_at, "updated_at": instance.updated_at, "error": instance.error}
        data = dict(instance.data)
        diagram = _diagram(s, instance)
        history = _history(s, instance_id, model.element_names)
    return render_template("web/case.html", case=info, data=data, open_tasks=open_tasks, timers=timers,
                           diagram=diagram, history=history, auditor=bool(g.actor.roles & AUDIT_ROLES))


# --- process owners -----------------------------------------------------------------------------------------


def _definition_rows(session) -> list[dict[str, Any]]:
    rows = list(session.scalars(select(Definition).order_by(Definition.key, Definition.version.desc())))
    grouped: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = grouped.setdefault(row.key, {"key": row.key, "name": row.name, "versions": []})
        entry["versions"].append({"version": row.version, "deployed_at": row.deployed_at,
                                  "deployed_by": row.deployed_by, "file_name": row.file_name})
    return list(grouped.values())


@bp.route("/definitions", methods=["GET", "POST"])
@signed_in
def definitions():
    problems, deployed, status = None, None, 200
    if request.method == "POST":
        if not g.actor.roles & OWNER_ROLES:
            return _error_page(403, t("not_allowed"))
        files = [(part.filename or f"upload{n}.bpmn", part.read())
                 for n, part in enumerate(request.files.getlist("file"), start=1) if part.filename]
        if not files or not all(content.strip() for _name, content in files):
            problems, status = [{"file": "", "line": None, "message": "send at least one non-empty BPMN file"}], 422
        else:
            try:
                deployed = [{"key": r.key, "version": r.version, "created": r.created}
                            for r in engine().deploy(files, g.actor)]
            except InvalidBpmn as error:
                problems, status = [p.as_dict() for p in error.problems], 422
    with engine().read() as uow:
        rows = _definition_rows(uow.session)
    return render_template("web/definitions.html", rows=rows, problems=problems, deployed=deployed,
                           may_upload=bool(g.actor.roles & OWNER_ROLES)), status


def _may_start(start_groups) -> bool:
    return bool(g.actor.roles & OWNER_ROLES) or bool(g.actor.groups & set(start_groups))


def _definition_view(key: str, version: int, values=None, errors=None, status: int = 200):
    with engine().read() as uow:
        s = uow.session
        row = engine().definition(s, key, version)
        model = engine().definition_model(s, key, version)
        latest = s.scalar(select(func.max(Definition.version)).where(Definition.key == key))
        versions = list(s.scalars(select(Definition.version).where(Definition.key == key)
                                  .order_by(Definition.version)))
        counts = dict(s.execute(select(Instance.status, func.count()).where(
            Instance.definition_id == row.id).group_by(Instance.status)).all())
        info = {"key": row.key, "name": row.name, "version": row.version, "deployed_at": row.deployed_at,
                "deployed_by": row.deployed_by, "sha256": row.sha256, "file_name": row.file_name,
                "documentation": model.documentation, "latest": latest}
        diagram = {"bpmn": row.bpmn_xml, "active": [], "completed": []}
    may_start = version == latest and _may_start(model.start_groups) and not model.has_timer_start
    form = model.start_form
    return render_template("web/definition.html", d=info, versions=versions, diagram=diagram, form=form,
                           values=values or _form_values(form, {}), errors=_translate(errors or {}),
                           may_start=may_start, counts=counts, start_groups=model.start_groups), status


@bp.get("/definitions/<key>/<int:version>")
@signed_in
def definition_page(key: str, version: int):
    return _definition_view(key, version)


@bp.post("/definitions/<key>/<int:version>/start")
@signed_in
def start_case(key: str, version: int):
    with engine().read() as uow:
        model = engine().definition_model(uow.session, key, version)
    if not _may_start(model.start_groups):
        return _error_page(403, t("may_not_start"))
    form = model.start_form
    try:
        result = engine().start_case(key, _typed_values(form), g.actor, version)
    except ValidationFailed as error:
        flash(t("form_errors"), "error")
        return _definition_view(key, version, _raw_values(form), error.details or {}, 422)
    flash(t("case_started"), "ok")
    return redirect(url_for("web.case_page", instance_id=result.instance_id))


# --- auditors -----------------------------------------------------------------------------------------------


@bp.get("/audit")
@needs(AUDIT_ROLES)
def audit():
    with engine().read() as uow:
        report = verify_database(uow.session).as_dict()
        instances = list(uow.session.scalars(select(Instance).order_by(Instance.id.desc()).limit(200)))
        counts = dict(uow.session.execute(select(AuditEvent.instance_id, func.count()).where(
            AuditEvent.instance_id.in_([r.id for r in instances])).group_by(AuditEvent.instance_id)).all())
        rows = [{"id": r.id, "key": r.definition_key, "status": r.status, "created_at": r.created_at,
                 "events": counts.get(r.id, 0)} for r in instances]
        names = dict(uow.session.execute(select(Definition.key, Definition.name)).all())
    return render_template("web/audit.html", report=report, rows=rows, names=names)


def _case_history(session, instance_id: int):
    """The case, its process model and its history as the timeline shows it; NotFound when absent."""
    instance = session.get(Instance, instance_id)
    if instance is None:
        raise NotFound(f"no case {instance_id}")
    model = engine().definition_model(session, instance.definition_key, instance.version)
    return instance, model, _history(session, instance_id, model.element_names)


@bp.get("/audit/cases/<int:instance_id>")
@needs(AUDIT_ROLES)
def audit_case(instance_id: int):
    with engine().read() as uow:
        instance, model, history = _case_history(uow.session, instance_id)
        report = verify_database(uow.session, instance_id=instance_id).as_dict()
        name = model.name or instance.definition_key
    return render_template("web/audit_case.html", instance_id=instance_id, history=history, report=report,
                           name=name, status=instance.status)


@bp.get("/audit/cases/<int:instance_id>/replay")
@needs(AUDIT_ROLES)
def audit_replay(instance_id: int):
    upto = request.args.get("upto_seq", type=int)
    with engine().read() as uow:
        instance, model, history = _case_history(uow.session, instance_id)
    last = history[-1]["seq"] if history else 0
    upto = last if upto is None else max(1 if last else 0, min(upto, last))
    result = replay(engine(), instance_id, upto).as_dict()
    with engine().read() as uow:
        diagram = _diagram(uow.session, uow.session.get(Instance, instance_id), upto,
                           active=[x["element_id"] for x in result["open_tasks"]])
    current = next((e for e in history if e["seq"] == upto), None)
    return render_template("web/replay.html", instance_id=instance_id, history=history, upto=upto, last=last,
                           result=result, diagram=diagram, current=current, names=model.element_names,
                           name=model.name or instance.definition_key)


@bp.get("/audit/export")
@needs(AUDIT_ROLES)
def audit_export():
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        abort(400)
    instance_id = request.args.get("instance_id", type=int)
    query = export_query(instance_id=instance_id)
    eng = engine()

    def lines():
        with eng.read() as uow:
            yield from export_lines(uow.session, query, fmt)

    name = f"audit-{instance_id or 'all'}.{fmt}"
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = Response(stream_with_context(lines()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename={name}"
    return response


# --- reports ------------------------------------------------------------------------------------------------


@bp.get("/reports")
@needs(REPORT_ROLES, lead_groups_too=True)
def reports_page():
    with engine().read() as uow:
        s = uow.session
        keys = list(s.scalars(select(Definition.key).distinct().order_by(Definition.key)))
        names = dict(s.execute(select(Definition.key, Definition.name)).all())
        sections = []
        for key in keys:
            summary = reports.summary(s, engine().tz, definition_key=key)
            charts = {
                "status": bar_chart([(i18n.status_word(k, lang()), v) for k, v in summary["by_status"].items()],
                                    title=t("by_status")),
                "month": bar_chart(list(summary["by_month"].items()), title=t("by_month")),
            }
            pc = summary.get(reports.PROPERTY_COMPLAINT)
            if pc:
                charts["satisfaction"] = bar_chart(list(pc["satisfaction"].items()), title=t("satisfaction"))
            sections.append({"key": key, "name": names.get(key, key), "summary": summary, "charts": charts})
    return render_template("web/reports.html", sections=sections)
