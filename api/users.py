"""`/api/v1/users`: user accounts, for admins only."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from api.auth import current_actor, roles, user_dict
from api.present import engine, iso
from api.requests import cursor_arg, json_body, limit_arg, page
from engine import accounts
from engine.service import ADMIN
from storage.models import User

bp = Blueprint("users", __name__)


def account_dict(user: User) -> dict:
    return {**user_dict(user), "is_active": user.is_active, "created_at": iso(user.created_at)}


@bp.get("/users")
@roles(ADMIN)
def list_users():
    limit, after = limit_arg(), cursor_arg(1)
    query = select(User).order_by(User.username).limit(limit + 1)
    if after is not None:
        query = query.where(User.username > str(after[0]))
    with engine().read() as uow:
        rows = list(uow.session.scalars(query))
        return jsonify(page(rows, limit, lambda row: [row.username], account_dict))


@bp.get("/users/<username>")
@roles(ADMIN)
def get_user(username: str):
    with engine().read() as uow:
        return jsonify(account_dict(accounts.find_user(uow.session, username)))


@bp.post("/users")
@roles(ADMIN)
def create_user():
    body = json_body()
    with engine().db.unit_of_work() as uow:
        user = accounts.create_user(uow.session, body, actor=current_actor().username, now=engine().clock.now(),
                                    lock=engine().db.is_postgres)
        uow.commit()
        return jsonify(account_dict(user)), 201


@bp.patch("/users/<username>")
@roles(ADMIN)
def update_user(username: str):
    body = json_body()
    with engine().db.unit_of_work() as uow:
        user = accounts.update_user(uow.session, username, body, actor=current_actor().username,
                                    now=engine().clock.now(), lock=engine().db.is_postgres)
        uow.commit()
        return jsonify(account_dict(user)), 200
