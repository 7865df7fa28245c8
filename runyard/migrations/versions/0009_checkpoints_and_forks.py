"""checkpoints, forks and best-of-N (issue 26)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from runyard.db.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column("forked_from", sa.JSON(), nullable=True))
    op.create_index("ix_runs_group_id", "runs", ["group_id"])
    op.create_table(
        "run_checkpoints",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("base_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("tree_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("commit_sha", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("insertions", sa.Integer(), nullable=False),
        sa.Column("deletions", sa.Integer(), nullable=False),
        sa.Column("bundle_path", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("bundle_size", sa.BigInteger(), nullable=True),
        sa.Column("diff_truncated", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "turn", name="uq_run_checkpoints_turn"),
    )
    op.create_index("ix_run_checkpoints_run_id", "run_checkpoints", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_checkpoints_run_id", table_name="run_checkpoints")
    op.drop_table("run_checkpoints")
    op.drop_index("ix_runs_group_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("forked_from")
        batch.drop_column("group_id")
