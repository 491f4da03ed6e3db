"""The `complaintflow` command (contract: shared API.md, "Command line")."""
from __future__ import annotations

import argparse
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


def cmd_serve(args: argparse.Namespace) -> int:
    from waitress import serve

    from api import create_app
    from api.scheduler import start_scheduler
    from engine.clock import FakeClock
    from engine.service import Actor

    clock = FakeClock() if args.fake_clock else None
    app = create_app({"DATABASE_URL": args.db, "FAKE_CLOCK": args.fake_clock}, clock=clock)
    from api import engine_of

    engine = engine_of(app)
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
    app.config["SCHEDULER"] = start_scheduler(engine)
    print(f"complaintflow serving on http://{args.host}:{args.port} ({engine.db.dialect})", file=sys.stderr)
    try:
        serve(app, host=args.host, port=args.port, threads=8, ident="complaintflow")
    finally:
        app.config["SCHEDULER"].shutdown(wait=False)
    return 0


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
