"""Inbox in index order: a non-null due sort key and the primary-group flag on candidates.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

import storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NO_DUE = "9999-12-31 00:00:00.000000"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("human_tasks") as batch:
        batch.add_column(sa.Column("due_key", storage.types.UTCDateTime(timezone=True), nullable=True))
    op.execute(f"UPDATE human_tasks SET due_key = COALESCE(due_at, '{NO_DUE}{'+00' if postgres else ''}')")
    with op.batch_alter_table("human_tasks") as batch:
        batch.alter_column("due_key", nullable=False)
        batch.drop_index("ix_human_tasks_status_assignee_due_at")
        batch.drop_index("ix_human_tasks_status_group_name_due_at")
        batch.create_index("ix_human_tasks_status_assignee_due_key_created_at_id",
                           ["status", "assignee", "due_key", "created_at", "id"])
        batch.create_index("ix_human_tasks_status_group_name_assignee_due_key_created_at_id",
                           ["status", "group_name", "assignee", "due_key", "created_at", "id"])
    with op.batch_alter_table("task_candidates") as batch:
        batch.add_column(sa.Column("is_primary", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_task_candidates_kind_name_is_primary_task_id", ["kind", "name", "is_primary", "task_id"])
    op.execute("UPDATE task_candidates SET is_primary = TRUE WHERE kind = 'group' AND name = "
               "(SELECT group_name FROM human_tasks WHERE human_tasks.id = task_candidates.task_id)")


def downgrade() -> None:
    with op.batch_alter_table("task_candidates") as batch:
        batch.drop_index("ix_task_candidates_kind_name_is_primary_task_id")
        batch.drop_column("is_primary")
    with op.batch_alter_table("human_tasks") as batch:
        batch.drop_index("ix_human_tasks_status_group_name_assignee_due_key_created_at_id")
        batch.drop_index("ix_human_tasks_status_assignee_due_key_created_at_id")
        batch.create_index("ix_human_tasks_status_group_name_due_at", ["status", "group_name", "due_at"])
        batch.create_index("ix_human_tasks_status_assignee_due_at", ["status", "assignee", "due_at"])
        batch.drop_column("due_key")
