"""Sign-in with bearer tokens, the current actor, and per-endpoint role checks.

Tokens are random (`secrets.token_urlsafe(32)`) and stored only as their sha256,
so a copy of the database holds no usable token. Failed sign-ins are counted per
username and per address in `login_failures`; too many in the window → 429.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import wraps
from typing import Callable

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import joinedload

from api.errors import ApiError, forbidden, invalid, unauthenticated
from api.requests import json_body
from engine.service import Actor
from engine.users import DUMMY_HASH, check_password
from storage.models import ApiToken, LoginFailure, User

bp = Blueprint("auth", __name__)

DEFAULTS = {
    "TOKEN_TTL_HOURS": 12,
    "LOGIN_FAILURE_WINDOW_MINUTES": 15,
    "LOGIN_FAILURES_PER_USER": 5,
    "LOGIN_FAILURES_PER_ADDRESS": 20,
}
WRONG_PAIR = "the username or password is wrong"

# The testing lab's lanes (lab_appeal), all of which its general manager leads.
LAB_GROUPS = ("customer_service", "quality_service", "technical_manager", "project_manager", "executor",
              "records_clerk", "quality_director", "general_manager")
# Each lead group and the groups whose tasks its members may hand to someone
# (POST /tasks/{id}/assign). `app.config["LEAD_GROUPS"]` replaces it when set.
LEAD_GROUPS: dict[str, tuple[str, ...]] = {
    "cs_supervisor": ("front_desk", "customer_service", "engineering", "security"),
    "quality_manager": ("quality", "responsible_dept", "after_sales", "production", "warehouse", "materials",
                        "planning"),
    "division_leader": ("customer_service", "traveler", "finance", "cs_head"),
    "quality_director": ("quality_service", "technical_manager", "project_manager", "executor", "records_clerk"),
    "general_manager": LAB_GROUPS,
}


def _setting(name: str) -> int:
    return current_app.config.get(name, DEFAULTS[name])


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def actor_of(user: User) -> Actor:
    return Actor(user.username, frozenset(r.role for r in user.roles), frozenset(x.group_name for x in user.groups))


def user_dict(user: User) -> dict:
    return {"username": user.username, "display_name": user.display_name,
            "roles": sorted(r.role for r in user.roles), "groups": sorted(x.group_name for x in user.groups)}


def _engine():
    from api import engine_of

    return engine_of(current_app)


def _address() -> str:
    return (request.remote_addr or "unknown")[:64]


def load_actor() -> None:
    """Before every API request but the public ones: the bearer token's user, or 401."""
    view = current_app.view_functions.get(request.endpoint or "")
    if request.method == "OPTIONS" or view is None or getattr(view, "public", False):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated()
    engine = _engine()
    with engine.read(single_statement=True) as uow:
        # One statement: the token, its user and the user's roles and groups.
        found = uow.session.execute(
            select(ApiToken, User).join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == token_hash(token.strip()))
            .options(joinedload(User.roles), joinedload(User.groups))).unique().first()
        row, user = found if found is not None else (None, None)
        if row is None or row.revoked_at is not None or row.expires_at <= engine.clock.now():
            raise unauthenticated("the token is unknown, expired or signed out; sign in again")
        if not user.is_active:
            raise unauthenticated("the account is disabled")
        g.actor, g.user, g.token_id = actor_of(user), user_dict(user), row.id


def current_actor() -> Actor:
    return g.actor


def lead_groups() -> dict[str, tuple[str, ...]]:
    return current_app.config.get("LEAD_GROUPS") or LEAD_GROUPS


def led_groups(actor: Actor) -> set[str]:
    """The groups whose tasks the actor may assign as their lead."""
    mapping = lead_groups()
    return {group for lead in actor.groups & set(mapping) for group in mapping[lead]}


def public(view: Callable) -> Callable:
    """Mark a view as needing no token."""
    view.public = True
    return view


def roles(*allowed: str) -> Callable:
    """Let only users with one of these roles call the view (403 otherwise)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def checked(*args, **kwargs):
            if not (current_actor().roles & set(allowed)):
                raise forbidden(f"this needs the role {' or '.join(allowed)}")
            return view(*args, **kwargs)

        checked.roles = allowed
        return checked

    return decorate


@bp.post("/auth/login")
@public
def login():
    body = json_body()
    username, password = body.get("username"), body.get("password")
    problems = {name: "a string is required" for name, value in (("username", username), ("password", password))
                if not isinstance(value, str) or not value}
    if problems:
        raise invalid(problems)
    engine = _engine()
    now = engine.clock.now()
    since = now - timedelta(minutes=_setting("LOGIN_FAILURE_WINDOW_MINUTES"))
    address = _address()
    with engine.db.unit_of_work() as uow:
        session = uow.session

        def failures(column, value) -> int:
            return session.scalar(select(func.count()).select_from(LoginFailure)
                                  .where(column == value, LoginFailure.at > since))

        if (failures(LoginFailure.username, username[:64]) >= _setting("LOGIN_FAILURES_PER_USER")
                or failures(LoginFailure.address, address) >= _setting("LOGIN_FAILURES_PER_ADDRESS")):
            raise ApiError(429, "too_many_requests", "too many failed sign-ins; wait a few minutes and try again")
        user = session.scalars(select(User).where(User.username == username)).one_or_none()
        # Check a password either way so an unknown user takes as long as a wrong password.
        matches = check_password(user.password_hash if user else DUMMY_HASH, password)
        if user is None or not matches or not user.is_active:
            session.add(LoginFailure(username=username[:64], address=address, at=now))
            uow.commit()
            raise unauthenticated(WRONG_PAIR)
        token = secrets.token_urlsafe(32)
        session.add(ApiToken(user_id=user.id, token_hash=token_hash(token), created_at=now,
                             expires_at=now + timedelta(hours=_setting("TOKEN_TTL_HOURS")), revoked_at=None))
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        body = {"token": token, "user": user_dict(user)}
        uow.commit()
    return jsonify(body)


@bp.post("/auth/logout")
def logout():
    engine = _engine()
    with engine.db.unit_of_work() as uow:
        row = uow.session.get(ApiToken, g.token_id)
        row.revoked_at = engine.clock.now()
        uow.commit()
    return "", 204


@bp.get("/me")
def me():
    return jsonify(g.user)
