"""runs.stop_requested_at: a close or an interrupt asked the run to stop (issue 28)

A model turn and its tool calls run in one activity on the sandbox's host; between two
calls it reads this column to stop where the workflow would have.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runyard.db.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("stop_requested_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("stop_requested_at")
