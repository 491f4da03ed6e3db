"""Managing user accounts, each change recorded in the system audit chain.

The caller owns the transaction: these functions change the rows and append the
`user_changed` event to the same session, so both commit together or neither
does. Passwords never reach the audit trail; an event only says one was set.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.audit import SYSTEM_CHAIN, AuditLog
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.users import ROLES, hash_password
from storage.models import ApiToken, User, UserGroup, UserRole

MIN_PASSWORD = 8
EDITABLE = ("password", "roles", "groups", "display_name", "is_active")


def _check_username(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 64 \
            or not all(c.isalnum() or c in "._-" for c in value):
        return "use 1-64 letters, digits, '.', '_' or '-'"
    return None


def _problems(fields: dict[str, Any]) -> dict[str, str]:
    """Why each given field is invalid (fields not given are not checked)."""
    problems = {}
    if "password" in fields:
        value = fields["password"]
        if not isinstance(value, str) or len(value) < MIN_PASSWORD:
            problems["password"] = f"must be a string of at least {MIN_PASSWORD} characters"
    if "roles" in fields:
        value = fields["roles"]
        if not isinstance(value, list) or not value or not all(isinstance(r, str) for r in value):
            problems["roles"] = f"give a list of one or more of {', '.join(ROLES)}"
        elif unknown := sorted(set(value) - set(ROLES)):
            problems["roles"] = f"unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}"
    if "groups" in fields:
        value = fields["groups"]
        if not isinstance(value, list) or not all(isinstance(g, str) and 0 < len(g) <= 64 for g in value):
            problems["groups"] = "give a list of group names of 1-64 characters"
    if "display_name" in fields:
        value = fields["display_name"]
        if value is not None and (not isinstance(value, str) or len(value) > 200):
            problems["display_name"] = "must be a string of at most 200 characters"
    if "is_active" in fields and not isinstance(fields["is_active"], bool):
        problems["is_active"] = "must be true or false"
    return problems


def _audit(session: Session, lock: bool, actor: str, now: datetime, username: str, action: str,
           changes: dict[str, Any]) -> None:
    AuditLog(session, lock=lock).append(SYSTEM_CHAIN, "user_changed", at=now, actor=actor,
                                        data={"username": username, "action": action, "changes": changes})
    # Flush, so the next change in this transaction finds the chain head this one moved.
    session.flush()


def _revoke_tokens(session: Session, user: User, now: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=now))


def find_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFound(f"no user '{username}'")
    return user


def create_user(session: Session, fields: dict[str, Any], *, actor: str, now: datetime, lock: bool) -> User:
    """Add a user; ValidationFailed names each bad field, Conflict when the username is taken."""
    fields = {"groups": [], "display_name": None, **fields}
    problems = _problems(fields)
    for required in ("username", "password", "roles"):
        if required not in fields:
            problems[required] = "is required"
    if (why := _check_username(fields.get("username"))) and "username" not in problems:
        problems["username"] = why
    if unknown := sorted(set(fields) - {"username", *EDITABLE}):
        problems.update({name: "is not a field of a user" for name in unknown})
    if problems:
        raise ValidationFailed("the user is invalid", problems)
    username = fields["username"]
    if session.scalars(select(User.id).where(User.username == username)).first() is not None:
        raise Conflict(f"the username '{username}' is taken")
    user = User(username=username, display_name=fields["display_name"] or username,
                password_hash=hash_password(fields["password"]), is_active=fields.get("is_active", True),
                created_at=now)
    user.roles = [UserRole(role=r) for r in sorted(set(fields["roles"]))]
    user.groups = [UserGroup(group_name=g) for g in sorted(set(fields["groups"]))]
    session.add(user)
    _audit(session, lock, actor, now, username, "created", {
        "roles": sorted(set(fields["roles"])), "groups": sorted(set(fields["groups"])),
        "display_name": user.display_name, "is_active": user.is_active, "password_set": True})
    return user


def update_user(session: Session, username: str, fields: dict[str, Any], *, actor: str, now: datetime,
                lock: bool) -> User:
    """Change the given fields of a user.

    Deactivating a user or setting a new password revokes every token they hold,
    so open sessions end at once. Raises NotFound and ValidationFailed.
    """
    problems = _problems(fields)
    if unknown := sorted(set(fields) - set(EDITABLE)):
        problems.update({name: "cannot be changed here" if name == "username" else "is not a field of a user"
                         for name in unknown})
    if problems:
        raise ValidationFailed("the change is invalid", problems)
    user = find_user(session, username)
    changes: dict[str, Any] = {}
    if "roles" in fields:
        roles = sorted(set(fields["roles"]))
        if roles != sorted(r.role for r in user.roles):
            changes["roles"] = {"from": sorted(r.role for r in user.roles), "to": roles}
            user.roles = [UserRole(role=r) for r in roles]
    if "groups" in fields:
        groups = sorted(set(fields["groups"]))
        if groups != sorted(g.group_name for g in user.groups):
            changes["groups"] = {"from": sorted(g.group_name for g in user.groups), "to": groups}
            user.groups = [UserGroup(group_name=g) for g in groups]
    if fields.get("display_name") and fields["display_name"] != user.display_name:
        changes["display_name"] = {"from": user.display_name, "to": fields["display_name"]}
        user.display_name = fields["display_name"]
    if "is_active" in fields and fields["is_active"] != user.is_active:
        changes["is_active"] = {"from": user.is_active, "to": fields["is_active"]}
        user.is_active = fields["is_active"]
    if "password" in fields:
        changes["password_set"] = True
        user.password_hash = hash_password(fields["password"])
    if not user.is_active or "password" in fields:
        _revoke_tokens(session, user, now)
    if changes:
        _audit(session, lock, actor, now, username, "updated", changes)
    return user
