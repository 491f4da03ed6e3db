"""Attachments: who may add and read them, type sniffing, size limit, storage and audit."""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from engine import attachments

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"


def _office(folder: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(f"{folder}/document.xml", "<x/>")
    return buffer.getvalue()


def _files(*parts: tuple[str, bytes]) -> dict:
    return {"file": [(io.BytesIO(content), name) for name, content in parts]}


def _upload(client, headers, instance_id, *parts):
    return client.post(f"/api/v1/instances/{instance_id}/attachments", data=_files(*parts),
                       content_type="multipart/form-data", headers=headers)


@pytest.mark.parametrize("content, kind", [
    (PNG, attachments.PNG), (JPEG, attachments.JPEG), (b"GIF89a" + b"\x00" * 8, attachments.GIF),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", attachments.WEBP), (PDF, attachments.PDF),
    (_office("word"), attachments.DOCX), (_office("xl"), attachments.XLSX), (_office("ppt"), attachments.PPTX),
    (attachments.OLE2_MAGIC + b"\x00" * 64 + "WordDocument".encode("utf-16-le"), attachments.DOC),
    (attachments.OLE2_MAGIC + b"\x00" * 64 + "Workbook".encode("utf-16-le"), attachments.XLS),
    (b"MZ\x90\x00", None), (b"hello", None), (_office("other"), None), (b"PK\x03\x04broken", None),
])
def test_sniffing_from_the_bytes(content, kind):
    assert attachments.sniff(content) == kind


def test_upload_list_download(app, client, people, case, tmp_path):
    instance, _task = case
    response = _upload(client, people["desk2"], instance["id"], ("现场照片.png", PNG), ("report.pdf", PDF))
    assert response.status_code == 201, response.json
    items = response.json["items"]
    assert [(i["filename"], i["content_type"], i["size"]) for i in items] == [
        ("现场照片.png", "image/png", len(PNG)), ("report.pdf", "application/pdf", len(PDF))]
    assert items[0]["sha256"] == hashlib.sha256(PNG).hexdigest() and items[0]["uploaded_by"] == "desk2"
    stored = Path(app.config["ATTACHMENT_DIR"]) / items[0]["sha256"][:2] / items[0]["sha256"]
    assert stored.read_bytes() == PNG
    listed = client.get(f"/api/v1/instances/{instance['id']}/attachments", headers=people["auditor"])
    assert [i["id"] for i in listed.json["items"]] == [i["id"] for i in items]
    download = client.get(f"/api/v1/attachments/{items[0]['id']}", headers=people["desk"])
    assert download.status_code == 200 and download.data == PNG and download.mimetype == "image/png"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''%E7%8E%B0" in download.headers["Content-Disposition"]
    history = client.get(f"/api/v1/instances/{instance['id']}/history", headers=people["auditor"]).json["items"]
    added = [e for e in history if e["type"] == "attachment_added"]
    assert [e["data"]["sha256"] for e in added] == [i["sha256"] for i in items]
    assert added[0]["data"]["filename"] == "现场照片.png" and added[0]["data"]["size"] == len(PNG)
    assert client.get("/api/v1/audit/verify", headers=people["auditor"]).json["ok"] is True
    replayed = client.get(f"/api/v1/instances/{instance['id']}/replay", headers=people["auditor"]).json
    assert replayed["matches_stored"] is True


def test_same_bytes_are_stored_once(app, client, people, case):
    instance, _task = case
    first = _upload(client, people["desk"], instance["id"], ("a.png", PNG)).json["items"][0]
    second = _upload(client, people["owner"], instance["id"], ("b.png", PNG)).json["items"][0]
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert len([p for p in Path(app.config["ATTACHMENT_DIR"]).rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize("who, status", [("desk", 201), ("super", 403), ("owner", 201), ("auditor", 403),
                                         ("admin", 201)])
def test_who_may_upload(client, people, case, who, status):
    instance, _task = case
    response = _upload(client, people[who], instance["id"], ("a.png", PNG))
    assert response.status_code == status, response.json


@pytest.mark.parametrize("who, status", [("desk", 200), ("super", 403), ("owner", 200), ("auditor", 200),
                                         ("admin", 200)])
def test_who_may_read(client, people, case, who, status):
    instance, _task = case
    item = _upload(client, people["admin"], instance["id"], ("a.png", PNG)).json["items"][0]
    assert client.get(f"/api/v1/instances/{instance['id']}/attachments", headers=people[who]).status_code == status
    assert client.get(f"/api/v1/attachments/{item['id']}", headers=people[who]).status_code == status


def test_wrong_type_is_415_and_nothing_is_stored(app, client, people, case):
    instance, _task = case
    response = _upload(client, people["desk"], instance["id"], ("ok.png", PNG), ("photo.png", b"MZ\x90\x00evil"))
    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"
    assert response.json["error"]["details"]["filename"] == "photo.png"
    assert client.get(f"/api/v1/instances/{instance['id']}/attachments", headers=people["desk"]).json["items"] == []
    assert not Path(app.config["ATTACHMENT_DIR"]).exists()


def test_allowed_types_are_configurable(app, client, people, case):
    instance, _task = case
    app.config["ATTACHMENT_TYPES"] = ["application/pdf"]
    assert _upload(client, people["desk"], instance["id"], ("a.png", PNG)).status_code == 415
    assert _upload(client, people["desk"], instance["id"], ("a.pdf", PDF)).status_code == 201


def test_too_large_is_413(app, client, people, case):
    instance, _task = case
    app.config["ATTACHMENT_MAX_BYTES"] = 100
    response = _upload(client, people["desk"], instance["id"], ("big.png", PNG + b"\x00" * 100))
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"
    assert _upload(client, people["desk"], instance["id"], ("small.png", PNG)).status_code == 201


def test_bad_requests(client, people, case):
    instance, _task = case
    url = f"/api/v1/instances/{instance['id']}/attachments"
    assert client.post(url, json={"file": "x"}, headers=people["desk"]).status_code == 415
    empty = client.post(url, data={}, content_type="multipart/form-data", headers=people["desk"])
    assert empty.status_code == 400 and "file" in empty.json["error"]["details"]
    assert _upload(client, people["admin"], 999, ("a.png", PNG)).status_code == 404
    assert client.get("/api/v1/attachments/999", headers=people["admin"]).status_code == 404
    assert client.get("/api/v1/instances/999/attachments", headers=people["admin"]).status_code == 404


def test_altered_file_is_not_served(app, client, people, case):
    instance, _task = case
    item = _upload(client, people["desk"], instance["id"], ("a.png", PNG)).json["items"][0]
    (Path(app.config["ATTACHMENT_DIR"]) / item["sha256"][:2] / item["sha256"]).write_bytes(b"changed")
    response = client.get(f"/api/v1/attachments/{item['id']}", headers=people["desk"])
    assert response.status_code == 404
