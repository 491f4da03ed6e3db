"""The `complaintflow` command (contract: shared API.md, "Command line")."""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from engine.errors import EngineError, InvalidBpmn, Problem

PROJECT_BPMN = Path(__file__).resolve().parent.parent / "workflows" / "bpmn"


def _read_files(paths: Sequence[str]) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    files, problems = [], []
    for path in paths:
        try:
            files.append((path, Path(path).read_bytes()))
        except OSError as error:
            problems.append(Problem(path, None, f"cannot read the file: {error.strerror}"))
    return files, problems


def _engine(url: str | None):
    from engine.service import Engine
    from storage.db import Database

    db = Database(url)
    db.upgrade()
    return Engine(db)


def cmd_validate(args: argparse.Namespace) -> int:
    files, problems = _read_files(args.files)
    if not problems:
        from engine.definitions import load_files

        deployed = set()
        if args.db or os.environ.get("COMPLAINTFLOW_DATABASE_URL"):
            engine = _engine(args.db)
            return _report(engine.validate(files), len(files))
        problems = load_files(files, resolve_called=deployed.__contains__).problems
    return _report(problems, len(files))


def _report(problems: list[Problem], count: int) -> int:
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{count} file(s) valid", file=sys.stderr)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from engine.service import Actor

    files, problems = _read_files(args.files)
    if problems:
        return _report(problems, len(files))
    engine = _engine(args.db)
    try:
        results = engine.deploy(files, Actor(args.actor, frozenset({"process_owner"})))
    except InvalidBpmn as error:
        return _report(error.problems, len(files))
    for result in results:
        print(f"{result.key} version {result.version}" + ("" if result.created else " (unchanged)"))
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from engine.users import save_user

    engine = _engine(args.db)
    with engine.db.unit_of_work() as uow:
        user = save_user(uow.session, args.username, args.password, args.role, args.group or [],
                         args.display_name, engine.clock.now())
        uow.commit()
    print(f"user {user.username}: roles {', '.join(args.role)}; groups {', '.join(args.group or []) or '-'}")
    return 0


def _calm_garbage_collector() -> None:
    """Keep the collector from pausing requests over objects that live as long as the server.

    What start-up loaded (parsed definitions, libraries) is moved out of the
    collector's sight, and young objects are collected less often: each full
    collection otherwise walks every parsed spec and cached workflow, pausing a
    request by tens of milliseconds.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _deploy_project_and_demo(engine, demo: bool) -> None:
    """Deploy workflows/bpmn (unchanged files are no-ops) and, with `demo`, seed the demo data."""
    from engine.service import Actor

    files = sorted(PROJECT_BPMN.glob("*.bpmn")) if PROJECT_BPMN.is_dir() else []
    if files:
        try:
            for result in engine.deploy([(f.name, f.read_bytes()) for f in files], Actor("system")):
                if result.created:
                    print(f"deployed {result.key} version {result.version}", file=sys.stderr)
        except InvalidBpmn as error:
            print("the project's BPMN files were not deployed:", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
    if demo:
        from api.demo import seed

        seeded = seed(engine)
        print(f"demo: {seeded['users']} user(s) and {seeded['cases']} sample case(s) added", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers > 1:
        return _serve_workers(args)
    from waitress import serve

    from api import create_app, engine_of
    from api.scheduler import start_scheduler
    from engine.clock import FakeClock

    if args.as_worker:
        from api.workers import reuse_port_sockets

        try:
            listen = {"sockets": reuse_port_sockets(args.host, args.port)}
        except OSError as error:
            print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
            return 1
    else:
        listen = {"host": args.host, "port": args.port}
    clock = FakeClock() if args.fake_clock else None
    app = create_app({"DATABASE_URL": args.db, "FAKE_CLOCK": args.fake_clock}, clock=clock)
    engine = engine_of(app)
    if args.as_worker:
        _name_worker_in_responses(app)
    else:
        _deploy_project_and_demo(engine, args.demo)
    app.config["SCHEDULER"] = start_scheduler(engine)
    _calm_garbage_collector()
    who = f", worker pid {os.getpid()}" if args.as_worker else ""
    print(f"complaintflow serving on http://{args.host}:{args.port} ({engine.db.dialect}{who})", file=sys.stderr)
    try:
        serve(app, **listen, threads=8, ident="complaintflow")
    finally:
        app.config["SCHEDULER"].shutdown(wait=False)
    return 0


def _name_worker_in_responses(app) -> None:
    """Add `X-Complaintflow-Worker: <pid>` to every response, so an operator sees which worker answered."""
    pid = str(os.getpid())

    @app.after_request
    def _worker_header(response):
        response.headers["X-Complaintflow-Worker"] = pid
        return response


def _serve_workers(args: argparse.Namespace) -> int:
    """Prepare the database once, then supervise `args.workers` worker processes on one port.

    Schema upgrade, project deployment, demo data and the session secret file
    are done here, through an app that is disposed before any worker starts:
    workers starting together on a fresh database would race on them.
    """
    from api import create_app, engine_of
    from api.workers import Supervisor, check_port_free, supports_reuse_port

    if not supports_reuse_port():
        print("error: --workers needs SO_REUSEPORT (Linux); run one process per port behind a load balancer",
              file=sys.stderr)
        return 2
    if args.fake_clock:
        print("error: --fake-clock needs one process (each worker would keep its own clock); drop --workers",
              file=sys.stderr)
        return 2
    if args.port == 0:
        print("error: --workers needs a fixed --port (with 0 each worker would get its own)", file=sys.stderr)
        return 2
    try:
        check_port_free(args.host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    app = create_app({"DATABASE_URL": args.db})
    engine = engine_of(app)
    _deploy_project_and_demo(engine, args.demo)
    dialect = engine.db.dialect
    engine.db.dispose()
    if dialect != "postgresql":
        print(f"warning: --workers {args.workers} is meant for PostgreSQL; on {dialect} the workers take turns "
              "at the database file's single write lock", file=sys.stderr)
    command = [sys.executable, "-m", "api.cli", "serve", "--host", args.host, "--port", str(args.port),
               "--workers", "1", "--as-worker"]
    if args.db:
        command += ["--db", args.db]
    print(f"complaintflow: {args.workers} workers on http://{args.host}:{args.port} (supervisor pid {os.getpid()})",
          file=sys.stderr)
    return Supervisor(command, args.workers).run()


def cmd_replay(args: argparse.Namespace) -> int:
    import json

    from engine.replay import ReplayError, replay

    engine = _engine(args.db)
    try:
        result = replay(engine, args.instance_id, args.upto)
    except ReplayError as error:
        print(f"error: the events cannot be replayed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    if result.matches_stored is False:
        print(f"the stored case differs from its history in {len(result.differences)} field(s)", file=sys.stderr)
        return 1
    return 0


class _Progress:
    """A one-line progress bar on stderr, only when someone is watching."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if self.enabled:
            width = 40
            filled = min(width, width * done // self.total)
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} events", end="", file=sys.stderr)
            if done >= self.total:
                print(file=sys.stderr)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from engine.audit import verify_database
    from storage.models import AuditEvent

    engine = _engine(args.db)
    with engine.read() as uow:
        total = uow.session.scalar(select(func.count()).select_from(AuditEvent))
        report = verify_database(uow.session, progress=_Progress(total))
    if report.ok:
        print(f"ok: {report.events_checked} events checked, every chain intact")
        return 0
    broken = report.first_broken
    where = f"instance {broken.instance_id}" if broken.instance_id is not None else f"chain {broken.chain}"
    print(f"broken: {where}, event seq {broken.seq}: {broken.reason} ({report.events_checked} events checked)")
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    from engine.audit import export_lines, export_query

    engine = _engine(args.db)
    query = export_query(instance_id=args.instance_id, definition_key=args.definition_key, actor=args.actor)
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        with engine.read() as uow:
            for chunk in export_lines(uow.session, query, args.format):
                out.write(chunk)
    finally:
        if args.output:
            out.close()
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="complaintflow", description="Complaint-handling procedures as BPMN.")
    sub = parser.add_subparsers(dest="command", required=True)

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=None, help="database URL (default: $COMPLAINTFLOW_DATABASE_URL or "
                                                  "./complaintflow.db)")

    serve = sub.add_parser("serve", help="serve the API, the pages and the timers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--demo", action="store_true", help="add demo users and sample cases")
    serve.add_argument("--fake-clock", action="store_true", help="enable POST /api/v1/admin/clock")
    serve.add_argument("--workers", type=_positive, default=1,
                       help="server processes sharing the port, one per core (PostgreSQL; Linux); default 1")
    # Internal: set by `--workers N` on the processes it starts.
    serve.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    db_option(serve)
    serve.set_defaults(func=cmd_serve)

    validate = sub.add_parser("validate", help="check BPMN files; print FILE:LINE: message per problem")
    validate.add_argument("files", nargs="+")
    db_option(validate)
    validate.set_defaults(func=cmd_validate)

    deploy = sub.add_parser("deploy", help="validate, then deploy files as one unit")
    deploy.add_argument("files", nargs="+")
    deploy.add_argument("--actor", default="cli", help="who is recorded as deploying")
    db_option(deploy)
    deploy.set_defaults(func=cmd_deploy)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add or update a user")
    add.add_argument("username")
    add.add_argument("--password", required=True)
    add.add_argument("--role", action="append", required=True)
    add.add_argument("--group", action="append")
    add.add_argument("--display-name")
    db_option(add)
    add.set_defaults(func=cmd_users_add)

    replay = sub.add_parser("replay", help="rebuild a case from its events and compare it with the stored one")
    replay.add_argument("instance_id", type=int)
    replay.add_argument("--upto", type=int, default=None, help="stop after this event seq")
    db_option(replay)
    replay.set_defaults(func=cmd_replay)

    audit = sub.add_parser("audit", help="the audit history").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check every event's hash chain")
    db_option(verify)
    verify.set_defaults(func=cmd_audit_verify)
    export = audit.add_parser("export", help="write events as JSON lines or CSV (UTF-8 with BOM)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--instance-id", type=int)
    export.add_argument("--definition-key")
    export.add_argument("--actor")
    export.add_argument("--output", "-o")
    db_option(export)
    export.set_defaults(func=cmd_audit_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("COMPLAINTFLOW_LOG_LEVEL", "WARNING"))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EngineError as error:
        details = error.details if isinstance(error.details, dict) else {}
        print(f"error: {error.message}", file=sys.stderr)
        for name, why in details.items():
            print(f"  {name}: {why}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - a user sees a sentence, never a traceback
        logging.getLogger(__name__).debug("unexpected failure", exc_info=True)
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
