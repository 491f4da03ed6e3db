"""`/api/v1/definitions`: deployed BPMN processes and deploying new ones."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import func, select

from api.auth import current_actor, roles
from api.errors import ApiError, invalid
from api.present import definition_dict, engine
from api.requests import cursor_arg, limit_arg, page
from engine.service import ADMIN, PROCESS_OWNER
from storage.models import Definition

bp = Blueprint("definitions", __name__)

XML_TYPES = {"application/xml", "text/xml", "application/bpmn+xml"}


@bp.get("/definitions")
def list_definitions():
    limit, after = limit_arg(), cursor_arg(1)
    latest = (select(Definition.key, func.max(Definition.version).label("version"))
              .group_by(Definition.key).subquery())
    query = (select(Definition).join(latest, (Definition.key == latest.c.key)
                                     & (Definition.version == latest.c.version))
             .order_by(Definition.key).limit(limit + 1))
    if after is not None:
        query = query.where(Definition.key > str(after[0]))
    with engine().read() as uow:
        rows = list(uow.session.scalars(query))
    return jsonify(page(rows, limit, lambda row: [row.key], definition_dict))


@bp.get("/definitions/<key>")
def get_definition(key: str):
    with engine().read() as uow:
        row = engine().definition(uow.session, key)
        model = engine().definition_model(uow.session, key, row.version)
        versions = list(uow.session.scalars(select(Definition.version).where(Definition.key == key)
                                            .order_by(Definition.version)))
    return jsonify({**definition_dict(row), "versions": versions,
                    "start_form": model.start_form.as_dict() if model.start_form else None,
                    "start_groups": list(model.start_groups)})


@bp.get("/definitions/<key>/versions/<int:version>/bpmn")
def get_bpmn(key: str, version: int):
    with engine().read() as uow:
        row = engine().definition(uow.session, key, version)
    return Response(row.bpmn_xml, mimetype="application/xml")


@bp.post("/definitions")
@roles(PROCESS_OWNER, ADMIN)
def deploy():
    if request.mimetype in XML_TYPES:
        files = [(request.headers.get("X-File-Name") or "upload.bpmn", request.get_data())]
    elif request.mimetype == "multipart/form-data":
        files = [(part.filename or f"file{n}.bpmn", part.read())
                 for n, part in enumerate(request.files.getlist("file"), start=1)]
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send the BPMN as application/xml or multipart/form-data with 'file' parts")
    if not files or not all(content.strip() for _name, content in files):
        raise invalid({"file": "send at least one non-empty BPMN file"})
    results = engine().deploy(files, current_actor())
    created = any(result.created for result in results)
    return jsonify({"deployed": [{"key": r.key, "version": r.version} for r in results]}), 201 if created else 200
