"""`GET /api/v1/openapi.json`: the HTTP contract (shared API.md) as an OpenAPI 3.0 document.

A test checks that every route under /api/v1 appears here, and a schemathesis
run checks that the responses keep to these schemas.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def obj(properties: dict[str, Any], required: tuple[str, ...] | None = None, **extra: Any) -> dict[str, Any]:
    """An object schema; every property is required unless `required` says otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required), **extra}


def page_of(item: str) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": ref(item)}, "next_cursor": nullable({"type": "string"})})


STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
STRINGS = {"type": "array", "items": STRING}

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": obj({"code": STRING, "message": STRING, "details": {}}, required=("code", "message"))}),
    "User": obj({"username": STRING, "display_name": STRING, "roles": STRINGS, "groups": STRINGS}),
    "Account": {"allOf": [ref("User"), obj({"is_active": BOOLEAN, "created_at": TIME})]},
    "Definition": obj({"key": STRING, "name": STRING, "version": INTEGER, "deployed_at": TIME,
                       "deployed_by": STRING, "sha256": STRING}),
    "Form": obj({"title": STRING, "fields": {"type": "array", "items": ANY_OBJECT}}),
    "DefinitionDetail": {"allOf": [ref("Definition"), obj({
        "versions": {"type": "array", "items": INTEGER}, "start_form": nullable(ref("Form")),
        "start_groups": STRINGS})]},
    "Deployed": obj({"deployed": {"type": "array", "items": obj({"key": STRING, "version": INTEGER})}}),
    "TaskSummary": obj({"id": INTEGER, "instance_id": INTEGER, "definition_key": STRING, "element_id": STRING,
                        "name": STRING, "group": nullable(STRING), "assignee": nullable(STRING),
                        "due_at": nullable(TIME), "created_at": TIME, "etag": STRING}),
    "Task": {"allOf": [ref("TaskSummary"), obj({"status": STRING, "form": ref("Form"), "data": ANY_OBJECT})]},
    "InstanceSummary": obj({"id": INTEGER, "definition_key": STRING, "version": INTEGER,
                            "status": {"type": "string", "enum": ["running", "completed", "terminated", "error"]},
                            "data": ANY_OBJECT, "created_at": TIME, "updated_at": TIME, "started_by": STRING}),
    "Instance": {"allOf": [ref("InstanceSummary"), obj({
        "open_tasks": {"type": "array", "items": ref("TaskSummary")},
        "waiting_timers": {"type": "array", "items": obj({"element_id": STRING, "due_at": TIME})},
        "breached_deadlines": {"type": "array", "items": obj({"element_id": STRING, "name": STRING,
                                                               "due_at": TIME, "fired_at": TIME})},
        "error": nullable(STRING)})]},
    "Completed": obj({"instance": ref("Instance"), "next_tasks": {"type": "array", "items": ref("TaskSummary")}}),
    "AuditEvent": obj({"seq": INTEGER, "instance_id": nullable(INTEGER), "type": STRING, "at": TIME,
                       "actor": STRING, "element_id": nullable(STRING), "task_id": nullable(INTEGER),
                       "data": ANY_OBJECT, "prev_hash": STRING, "hash": STRING}),
    "Replay": obj({"instance_id": INTEGER, "upto_seq": INTEGER, "last_seq": INTEGER, "status": STRING,
                   "data": ANY_OBJECT, "open_tasks": {"type": "array", "items": ANY_OBJECT},
                   "waiting_timers": {"type": "array", "items": ANY_OBJECT},
                   "matches_stored": nullable(BOOLEAN), "differences": {"type": "array", "items": ANY_OBJECT}}),
    "Verify": obj({"ok": BOOLEAN, "events_checked": INTEGER, "first_broken": nullable(obj(
        {"instance_id": nullable(INTEGER), "seq": INTEGER, "chain": STRING, "reason": STRING}))}),
    "Attachment": obj({"id": INTEGER, "instance_id": INTEGER, "filename": STRING, "content_type": STRING,
                       "size": INTEGER, "sha256": STRING, "uploaded_by": STRING, "uploaded_at": TIME}),
    "Attachments": obj({"items": {"type": "array", "items": ref("Attachment")}}),
    "Summary": obj({
        "definition_key": nullable(STRING), "from": nullable(TIME), "to": nullable(TIME), "total": INTEGER,
        "by_status": {"type": "object", "additionalProperties": INTEGER},
        "by_group": {"type": "object", "additionalProperties": INTEGER},
        "by_month": {"type": "object", "additionalProperties": INTEGER},
        "sla_breaches": obj({"total": INTEGER, "instances": INTEGER,
                             "by_element": {"type": "object", "additionalProperties": INTEGER}}),
        "completed": INTEGER, "median_time_to_complete_seconds": nullable({"type": "number"}),
        "median_time_to_complete_hours": nullable({"type": "number"}),
        "property_complaint": obj({"secondary_complaints": INTEGER, "secondary_complaint_total": INTEGER,
                                   "satisfaction": {"type": "object", "additionalProperties": INTEGER}}),
    }, required=("total", "by_status", "by_group", "by_month", "sla_breaches", "completed",
                 "median_time_to_complete_seconds")),
    "Health": obj({"status": STRING, "database": {"type": "string", "enum": ["sqlite", "postgresql"]},
                   "scheduler": STRING, "version": STRING}),
    "Clock": obj({"now": TIME, "fired": INTEGER, "next_due": nullable(TIME)}, required=("now",),
                 additionalProperties=True),
}

ERRORS = {
    "400": "the request is invalid (`validation_error` with a reason per field)",
    "401": "no valid bearer token",
    "403": "the user may not do this",
    "404": "no such resource",
    "409": "conflict: completed, claimed by someone else, or changed since read",
    "413": "a file or the body is too large",
    "415": "unsupported content type",
    "422": "the case cannot go on, or its events cannot be replayed",
    "429": "too many failed sign-ins",
    "503": "the database is unavailable or busy",
}


def error(status: str) -> dict[str, Any]:
    return {"description": ERRORS[status], "content": {JSON: {"schema": ref("Error")}}}


def ok(schema: dict[str, Any] | None, description: str = "done", media: str = JSON) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


def op(summary: str, responses: dict[str, Any], *, errors: tuple[str, ...] = (), params: tuple = (),
       body: dict[str, Any] | None = None, public: bool = False, tag: str) -> dict[str, Any]:
    """One operation; every authenticated one may answer 401 and 403, every one 400 and 500-free."""
    all_errors = ("400",) + (() if public else ("401", "403")) + errors
    operation: dict[str, Any] = {"summary": summary, "tags": [tag],
                                 "responses": {**responses, **{s: error(s) for s in all_errors}}}
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


def path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


ID = path_param("id", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1})
KEY = path_param("key", STRING)
USERNAME = path_param("username", STRING)
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (default 50)")
CURSOR = query("cursor", STRING, "the next_cursor of the previous page")
FILES = {"required": True, "content": {"multipart/form-data": {"schema": obj(
    {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}})}}}
USER_FIELDS = {"password": {"type": "string", "minLength": 8}, "roles": STRINGS, "groups": STRINGS,
               "display_name": STRING}

PATHS: dict[str, Any] = {
    "/health": {"get": op("Service health", {"200": ok(ref("Health")), "503": ok(ref("Health"), "database down")},
                          public=True, tag="health")},
    "/openapi.json": {"get": op("This document", {"200": ok(ANY_OBJECT)}, tag="health")},
    "/auth/login": {"post": op(
        "Sign in", {"200": ok(obj({"token": STRING, "user": ref("User")}))}, errors=("415", "429"), public=True,
        body=json_body(obj({"username": STRING, "password": STRING})), tag="auth")},
    "/auth/logout": {"post": op("Sign out (revoke this token)", {"204": ok(None)}, tag="auth")},
    "/me": {"get": op("The signed-in user", {"200": ok(ref("User"))}, tag="auth")},
    "/definitions": {
        "get": op("Latest version of each definition", {"200": ok(page_of("Definition"))},
                  params=(LIMIT, CURSOR), tag="definitions"),
        "post": op("Deploy BPMN files (process_owner, admin)",
                   {"200": ok(ref("Deployed"), "unchanged"), "201": ok(ref("Deployed"), "deployed")},
                   errors=("415", "409", "503"), tag="definitions", body={"required": True, "content": {
                       "application/xml": {"schema": STRING}, **FILES["content"]}}),
    },
    "/definitions/{key}": {"get": op("A definition's latest version", {"200": ok(ref("DefinitionDetail"))},
                                     errors=("404",), params=(KEY,), tag="definitions")},
    "/definitions/{key}/versions/{version}/bpmn": {"get": op(
        "The BPMN XML as deployed", {"200": ok(STRING, "the XML", "application/xml")}, errors=("404",),
        params=(KEY, path_param("version", {"type": "integer", "minimum": 1})), tag="definitions")},
    "/instances": {
        "get": op("Cases the caller may read", {"200": ok(page_of("InstanceSummary"))}, tag="instances", params=(
            query("definition_key", STRING),
            query("status", {"type": "string", "enum": ["running", "completed", "terminated", "error"]}),
            LIMIT, CURSOR)),
        "post": op("Start a case", {"201": ok(ref("Instance"))}, errors=("404", "415", "409", "422", "503"),
                   tag="instances", body=json_body(obj(
                       {"definition_key": STRING, "version": {"type": "integer", "minimum": 1},
                        "data": ANY_OBJECT}, required=("definition_key",)))),
    },
    "/instances/{id}": {"get": op("A case", {"200": ok(ref("Instance"))}, errors=("404",), params=(ID,),
                                  tag="instances")},
    "/instances/{id}/terminate": {"post": op(
        "End a running case (process_owner, admin)", {"200": ok(ref("Instance"))},
        errors=("404", "409", "415", "503"), params=(ID,), body=json_body(obj({"reason": STRING}, ()), False),
        tag="instances")},
    "/instances/{id}/history": {"get": op(
        "The case's audit events", {"200": ok(obj({"items": {"type": "array", "items": ref("AuditEvent")}}))},
        errors=("404",), params=(ID,), tag="instances")},
    "/instances/{id}/diagram": {"get": op(
        "The BPMN with active and completed elements",
        {"200": ok(obj({"bpmn": STRING, "active": STRINGS, "completed": STRINGS}))}, errors=("404",),
        params=(ID,), tag="instances")},
    "/instances/{id}/replay": {"get": op(
        "Rebuild the case from its events (auditor, admin)", {"200": ok(ref("Replay"))},
        errors=("404", "422"), params=(ID, query("upto_seq", {"type": "integer", "minimum": 0})), tag="audit")},
    "/instances/{id}/attachments": {
        "get": op("The case's files", {"200": ok(ref("Attachments"))}, errors=("404",), params=(ID,),
                  tag="attachments"),
        "post": op("Add files to the case", {"201": ok(ref("Attachments"))},
                   errors=("404", "413", "415", "503"), params=(ID,), body=FILES, tag="attachments"),
    },
    "/attachments/{id}": {"get": op(
        "Download a file (Content-Disposition: attachment)",
        {"200": ok({"type": "string", "format": "binary"}, "the file", "application/octet-stream")},
        errors=("404",), params=(ID,), tag="attachments")},
    "/tasks": {"get": op("The caller's inbox, by due time", {"200": ok(page_of("TaskSummary"))}, tag="tasks",
                         params=(query("group", STRING), query("assignee", {"type": "string", "enum": ["me"]}),
                                 query("definition_key", STRING), query("due_before", TIME),
                                 query("overdue", {"type": "string", "enum": ["true", "false"]}), LIMIT, CURSOR))},
    "/tasks/{id}": {"get": op("A task with its form and data", {"200": ok(ref("Task"))}, errors=("404", "422"),
                              params=(ID,), tag="tasks")},
    "/tasks/{id}/claim": {"post": op("Claim a task", {"200": ok(ref("TaskSummary"))},
                                     errors=("404", "409", "503"), params=(ID,), tag="tasks")},
    "/tasks/{id}/unclaim": {"post": op("Give a task back to its group", {"200": ok(ref("TaskSummary"))},
                                       errors=("404", "409", "503"), params=(ID,), tag="tasks")},
    "/tasks/{id}/assign": {"post": op(
        "Give a task to a user (leads of its group, process_owner, admin)", {"200": ok(ref("TaskSummary"))},
        errors=("404", "409", "415", "503"), params=(ID,), body=json_body(obj({"username": STRING})),
        tag="tasks")},
    "/tasks/{id}/complete": {"post": op(
        "Complete a task with its form data", {"200": ok(ref("Completed"))},
        errors=("404", "409", "415", "422", "503"), tag="tasks",
        params=(ID, {"name": "If-Match", "in": "header", "required": False, "schema": STRING}),
        body=json_body(obj({"data": ANY_OBJECT}, ()), False))},
    "/audit/events": {"get": op(
        "Audit events (auditor, admin); ?format=csv for CSV",
        {"200": {"description": "a page of events", "content": {JSON: {"schema": page_of("AuditEvent")},
                                                                "text/csv": {"schema": STRING}}}},
        params=(query("instance_id", INTEGER), query("since_seq", INTEGER),
                query("format", {"type": "string", "enum": ["json", "csv"]}), LIMIT, CURSOR), tag="audit")},
    "/audit/verify": {"get": op("Check every hash chain (auditor, admin)", {"200": ok(ref("Verify"))},
                                tag="audit")},
    "/users": {
        "get": op("User accounts (admin)", {"200": ok(page_of("Account"))}, params=(LIMIT, CURSOR), tag="users"),
        "post": op("Add a user (admin)", {"201": ok(ref("Account"))}, errors=("409", "415"), tag="users",
                   body=json_body(obj({"username": STRING, **USER_FIELDS},
                                      ("username", "password", "roles")))),
    },
    "/users/{username}": {
        "get": op("A user account (admin)", {"200": ok(ref("Account"))}, errors=("404",), params=(USERNAME,),
                  tag="users"),
        "patch": op("Change a user; deactivating or a new password revokes their tokens (admin)",
                    {"200": ok(ref("Account"))}, errors=("404", "415"), params=(USERNAME,), tag="users",
                    body=json_body(obj({**USER_FIELDS, "is_active": BOOLEAN}, ()))),
    },
    "/reports/summary": {"get": op(
        "Summary figures (auditor, admin, process_owner, lead groups)", {"200": ok(ref("Summary"))},
        params=(query("definition_key", STRING), query("from", TIME), query("to", TIME)), tag="reports")},
    "/admin/clock": {"post": op(
        "Move the fake clock and fire due timers (admin; 404 unless serve --fake-clock)", {"200": ok(ref("Clock"))},
        errors=("404", "415"), tag="admin",
        body=json_body(obj({"advance": {"type": "string", "example": "PT25H"}, "set": TIME}, ())))},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "complaintflow", "version": "1",
             "description": "Complaint-handling procedures as executable BPMN workflows (contract: API.md)."},
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "components": {"schemas": SCHEMAS,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                  "description": "the token from POST /auth/login"}}},
    "paths": PATHS,
}


def document() -> dict[str, Any]:
    return DOCUMENT


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(DOCUMENT)
