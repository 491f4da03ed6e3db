"""Users, roles and groups, and their passwords."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import ValidationFailed
from storage.models import User, UserGroup, UserRole

ROLES = ("staff", "process_owner", "auditor", "admin")

# scrypt parameters: about 50 ms and 16 MiB per check on this hardware, so a
# stolen table is slow to attack.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                               p=int(p), dklen=32)
    return hmac.compare_digest(candidate, base64.b64decode(digest))


# Used to spend the same time on unknown users as on wrong passwords.
DUMMY_HASH = hash_password(secrets.token_hex(8))


def save_user(session: Session, username: str, password: str, roles: Iterable[str], groups: Iterable[str],
              display_name: str | None, now: datetime) -> User:
    """Create or update a user; raises ValidationFailed naming each bad field."""
    roles, groups = sorted(set(roles)), sorted(set(groups))
    errors = {}
    if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
        errors["username"] = "use 1-64 letters, digits, '.', '_' or '-'"
    if len(password) < 8:
        errors["password"] = "must be at least 8 characters"
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        errors["role"] = f"unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}" if unknown \
            else "give at least one role"
    bad_groups = [g for g in groups if not g or len(g) > 64]
    if bad_groups:
        errors["group"] = "group names are 1-64 characters"
    if errors:
        raise ValidationFailed("the user is invalid", errors)
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        user = User(username=username, created_at=now, display_name=display_name or username, password_hash="")
        session.add(user)
    user.display_name = display_name or user.display_name
    user.password_hash = hash_password(password)
    user.roles = [UserRole(role=r) for r in roles]
    user.groups = [UserGroup(group_name=g) for g in groups]
    return user
