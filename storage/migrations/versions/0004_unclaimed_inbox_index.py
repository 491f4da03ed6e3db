"""Inbox: a partial index over the unclaimed open tasks, by group in inbox order.

The index it replaces led with (status, group_name, assignee): PostgreSQL cannot
treat `assignee IS NULL` as an equality, so it never read that index in due order
and sorted a busy group's whole backlog instead. Leaving status and assignee to
the index's WHERE lets both databases read a group's first page straight off it,
and keeps claimed and finished tasks out of it.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UNCLAIMED_OPEN = "status = 'open' AND assignee IS NULL"


def upgrade() -> None:
    op.drop_index("ix_human_tasks_status_group_name_assignee_due_key_created_at_id", table_name="human_tasks")
    op.create_index("ix_human_tasks_group_name_due_key_created_at_id", "human_tasks",
                    ["group_name", "due_key", "created_at", "id"],
                    postgresql_where=sa.text(UNCLAIMED_OPEN), sqlite_where=sa.text(UNCLAIMED_OPEN))


def downgrade() -> None:
    op.drop_index("ix_human_tasks_group_name_due_key_created_at_id", table_name="human_tasks")
    op.create_index("ix_human_tasks_status_group_name_assignee_due_key_created_at_id", "human_tasks",
                    ["status", "group_name", "assignee", "due_key", "created_at", "id"])
