"""schedules: scheduled runs on Temporal Schedules, their fires, and a run's schedule

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from runyard.db.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", _STR(), nullable=False),
        sa.Column("org_id", _STR(), nullable=False),
        sa.Column("name", _STR(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("run", sa.JSON(), nullable=True),
        sa.Column("thread_id", _STR(), nullable=True),
        sa.Column("template", _STR(), nullable=False),
        sa.Column("overlap", _STR(), nullable=False),
        sa.Column("catchup_window_seconds", sa.Integer(), nullable=False),
        sa.Column("pause_on_failure", sa.Boolean(), nullable=False),
        sa.Column("max_runs", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("max_active_runs", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_schedules_org_created", "schedules", ["org_id", "created_at"])
    op.create_table(
        "schedule_fires",
        sa.Column("id", _STR(), nullable=False),
        sa.Column("schedule_id", _STR(), nullable=False),
        sa.Column("org_id", _STR(), nullable=False),
        sa.Column("workflow_id", _STR(), nullable=False),
        sa.Column("scheduled_at", UTCDateTime(), nullable=False),
        sa.Column("run_id", _STR(), nullable=True),
        sa.Column("status", _STR(), nullable=False),
        sa.Column("reason", _STR(), nullable=True),
        sa.Column("detail", _STR(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id", name="uq_schedule_fires_workflow"),
    )
    op.create_index(
        "ix_schedule_fires_schedule_created", "schedule_fires", ["schedule_id", "created_at"]
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule_id", _STR(), nullable=True))
        batch_op.add_column(sa.Column("scheduled_at", UTCDateTime(), nullable=True))
        batch_op.create_index("ix_runs_schedule_id", ["schedule_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_schedule_id")
        batch_op.drop_column("scheduled_at")
        batch_op.drop_column("schedule_id")
    op.drop_index("ix_schedule_fires_schedule_created", table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_index("ix_schedules_org_created", table_name="schedules")
    op.drop_table("schedules")
