"""Evidence files of a case: type sniffing, content-addressed storage, rows and audit events.

A file is stored once per content under `<dir>/<sha256[:2]>/<sha256>`, written to
a temporary file first and renamed, so a reader never sees half a file. The row
and its `attachment_added` event go into the caller's transaction; a file whose
transaction then rolls back stays on disk unreferenced, which is harmless (the
next upload of the same bytes reuses it).
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.audit import AuditLog, instance_chain
from engine.errors import NotFound, TooLarge, UnsupportedType
from storage.models import Attachment, Instance

PNG, JPEG, GIF, WEBP, PDF = "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
DOC, XLS, PPT = "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"

DEFAULT_ALLOWED = (PNG, JPEG, GIF, WEBP, PDF, DOCX, XLSX, PPTX, DOC, XLS, PPT)
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
# Stream names in an OLE2 directory (UTF-16LE) that tell its kind.
OLE2_STREAMS = ((DOC, "WordDocument"), (XLS, "Workbook"), (XLS, "Book"), (PPT, "PowerPoint Document"))
# The folder of each Office Open XML kind inside its zip.
OOXML_FOLDERS = ((DOCX, "word/"), (XLSX, "xl/"), (PPTX, "ppt/"))


def sniff(content: bytes) -> str | None:
    """The content type the bytes themselves show (magic numbers), or None when unknown."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if content.startswith(b"\xff\xd8\xff"):
        return JPEG
    if content.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return WEBP
    if content.startswith(b"%PDF-"):
        return PDF
    if content.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return None
        if "[Content_Types].xml" in names:
            for kind, folder in OOXML_FOLDERS:
                if any(name.startswith(folder) for name in names):
                    return kind
        return None
    if content.startswith(OLE2_MAGIC):
        for kind, stream in OLE2_STREAMS:
            if stream.encode("utf-16-le") in content:
                return kind
    return None


@dataclass(frozen=True)
class Upload:
    filename: str
    content: bytes


def check(upload: Upload, *, max_bytes: int, allowed: tuple[str, ...]) -> str:
    """Return the upload's content type; TooLarge or UnsupportedType when it may not be stored."""
    if len(upload.content) > max_bytes:
        raise TooLarge(f"'{upload.filename}' is larger than {max_bytes} bytes",
                       {"filename": upload.filename, "max_bytes": max_bytes})
    kind = sniff(upload.content)
    if kind is None or kind not in allowed:
        raise UnsupportedType(f"'{upload.filename}' is not one of the allowed file types",
                              {"filename": upload.filename, "detected": kind, "allowed": list(allowed)})
    return kind


def path_of(directory: Path, sha256: str) -> Path:
    return Path(directory) / sha256[:2] / sha256


def store(directory: Path, content: bytes) -> str:
    """Write the bytes under their sha256 (once); return the sha256."""
    digest = hashlib.sha256(content).hexdigest()
    target = path_of(directory, digest)
    if target.exists():
        return digest
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return digest


def add_attachments(session: Session, instance_id: int, uploads: list[Upload], *, directory: Path,
                    max_bytes: int, allowed: tuple[str, ...], actor: str, now: datetime,
                    lock: bool) -> list[Attachment]:
    """Check, store and record uploads to a case, one `attachment_added` event each.

    Every upload is checked before any is stored, so a refused file stores none.
    Raises NotFound, TooLarge, UnsupportedType.
    """
    query = select(Instance).where(Instance.id == instance_id)
    if lock:
        query = query.with_for_update()
    instance = session.scalars(query).one_or_none()
    if instance is None:
        raise NotFound(f"no instance {instance_id}")
    kinds = [check(upload, max_bytes=max_bytes, allowed=allowed) for upload in uploads]
    audit = AuditLog(session, lock=lock)
    rows = []
    for upload, kind in zip(uploads, kinds):
        digest = store(directory, upload.content)
        row = Attachment(instance_id=instance_id, filename=upload.filename[:300], content_type=kind,
                         size=len(upload.content), sha256=digest, uploaded_by=actor, uploaded_at=now)
        session.add(row)
        session.flush()
        audit.append(instance_chain(instance_id), "attachment_added", at=now, actor=actor, instance_id=instance_id,
                     data={"attachment_id": row.id, "filename": row.filename, "content_type": kind,
                           "size": row.size, "sha256": digest})
        rows.append(row)
    return rows


def read_content(directory: Path, attachment: Attachment) -> bytes:
    """The stored bytes, checked against their sha256; NotFound when the file is gone or altered."""
    target = path_of(directory, attachment.sha256)
    try:
        content = target.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"the file of attachment {attachment.id} is missing from the store") from None
    if hashlib.sha256(content).hexdigest() != attachment.sha256:
        raise NotFound(f"the file of attachment {attachment.id} does not match its sha256")
    return content
