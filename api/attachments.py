"""Evidence files of a case: uploading, listing and downloading attachments.

Settings: `ATTACHMENT_DIR` (default: `attachments/` beside the SQLite file, or in
the working directory), `ATTACHMENT_MAX_BYTES` (default 20 MB per file) and
`ATTACHMENT_TYPES` (the content types allowed; default images, PDF and Office
documents).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from api.auth import current_actor
from api.errors import ApiError, forbidden, invalid
from api.present import engine, iso, may_read_instance, reads_all
from engine import attachments
from engine.errors import NotFound
from engine.service import ADMIN, OPEN, PROCESS_OWNER
from storage.models import Attachment, HumanTask, Instance

bp = Blueprint("attachments", __name__)


def attachment_dir() -> Path:
    configured = current_app.config.get("ATTACHMENT_DIR")
    if configured:
        return Path(configured)
    database = engine().db
    if database.dialect == "sqlite" and database.url.database not in (None, "", ":memory:"):
        return Path(database.url.database).resolve().parent / "attachments"
    return Path.cwd() / "attachments"


def attachment_dict(row: Attachment) -> dict:
    return {"id": row.id, "instance_id": row.instance_id, "filename": row.filename,
            "content_type": row.content_type, "size": row.size, "sha256": row.sha256,
            "uploaded_by": row.uploaded_by, "uploaded_at": iso(row.uploaded_at)}


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII name for old clients and the real (e.g. Chinese) one per RFC 6266."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _readable(session, instance_id: int) -> None:
    if session.get(Instance, instance_id) is None:
        raise NotFound(f"no instance {instance_id}")
    if not may_read_instance(session, current_actor(), instance_id):
        raise forbidden(f"you may not read instance {instance_id}")


def _may_upload(session, instance_id: int) -> bool:
    """Process owners and admins, and whoever may work one of the case's open tasks."""
    actor = current_actor()
    if actor.roles & {PROCESS_OWNER, ADMIN}:
        return True
    tasks = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == OPEN))
    return any(engine().may_work(task, actor) for task in tasks)


@bp.post("/instances/<int:instance_id>/attachments")
def upload(instance_id: int):
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the files as multipart/form-data 'file' parts")
    parts = request.files.getlist("file")
    if not parts:
        raise invalid({"file": "send at least one 'file' part"})
    with engine().read() as uow:
        if uow.session.get(Instance, instance_id) is None:
            raise NotFound(f"no instance {instance_id}")
        if not _may_upload(uow.session, instance_id):
            raise forbidden(f"only those who may work an open task of instance {instance_id}, process owners "
                            "and admins may add files to it")
    max_bytes = int(current_app.config.get("ATTACHMENT_MAX_BYTES", attachments.DEFAULT_MAX_BYTES))
    # Read one byte past the limit: enough to know a file is too large without holding all of it.
    uploads = [attachments.Upload(Path(part.filename or "").name or f"file{n}", part.stream.read(max_bytes + 1))
               for n, part in enumerate(parts, start=1)]
    allowed = tuple(current_app.config.get("ATTACHMENT_TYPES", attachments.DEFAULT_ALLOWED))
    with engine().db.unit_of_work() as uow:
        rows = attachments.add_attachments(
            uow.session, instance_id, uploads, directory=attachment_dir(), max_bytes=max_bytes, allowed=allowed,
            actor=current_actor().username, now=engine().clock.now(), lock=engine().db.is_postgres)
        uow.commit()
        return jsonify({"items": [attachment_dict(row) for row in rows]}), 201


@bp.get("/instances/<int:instance_id>/attachments")
def list_attachments(instance_id: int):
    with engine().read() as uow:
        _readable(uow.session, instance_id)
        rows = uow.session.scalars(select(Attachment).where(Attachment.instance_id == instance_id)
                                   .order_by(Attachment.id))
        return jsonify({"items": [attachment_dict(row) for row in rows]})


@bp.get("/attachments/<int:attachment_id>")
def download(attachment_id: int):
    with engine().read() as uow:
        row = uow.session.get(Attachment, attachment_id)
        if row is None:
            raise NotFound(f"no attachment {attachment_id}")
        if not reads_all(current_actor()):
            _readable(uow.session, row.instance_id)
    content = attachments.read_content(attachment_dir(), row)
    response = Response(content, mimetype=row.content_type)
    response.headers["Content-Disposition"] = content_disposition(row.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Content-SHA256"] = row.sha256
    return response
