"""messages to a busy run; thread multitask order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 07:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from runyard.db.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "run_user_messages",
        sa.Column("id", text(), nullable=False),
        sa.Column("org_id", text(), nullable=False),
        sa.Column("run_id", text(), nullable=False),
        sa.Column("content", text(), nullable=False),
        sa.Column("mode", text(), nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_run_user_messages_run_created", "run_user_messages", ["run_id", "created_at"]
    )
    op.create_table(
        "thread_run_orders",
        sa.Column("run_id", text(), nullable=False),
        sa.Column("thread_id", text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("strategy", text(), nullable=False),
        sa.Column("queued_behind", text(), nullable=True),
        sa.Column("supersedes", text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.ForeignKeyConstraint(["thread_id"], ["threads.id"]),
        sa.PrimaryKeyConstraint("run_id"),
        sa.UniqueConstraint("thread_id", "position", name="uq_thread_run_orders_position"),
    )
    op.create_index("ix_thread_run_orders_thread_id", "thread_run_orders", ["thread_id"])


def downgrade() -> None:
    op.drop_index("ix_thread_run_orders_thread_id", table_name="thread_run_orders")
    op.drop_table("thread_run_orders")
    op.drop_index("ix_run_user_messages_run_created", table_name="run_user_messages")
    op.drop_table("run_user_messages")
