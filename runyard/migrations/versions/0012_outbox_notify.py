"""Postgres: a new delivery wakes the outbox pump (issue 28)

A statement that inserts into webhook_deliveries sends a notice on the
``runyard_outbox`` channel (delivered when its transaction commits), whoever wrote it:
the event store's append hook, a schedule's announcement, a redelivery. The pump
LISTENs there instead of sweeping the outbox five times a second. SQLite has no
notices; its pump asks SQLite's change counter, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION runyard_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('runyard_outbox', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER webhook_deliveries_notify
        AFTER INSERT ON webhook_deliveries
        FOR EACH STATEMENT EXECUTE FUNCTION runyard_outbox_notify()
        """
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS webhook_deliveries_notify ON webhook_deliveries")
    op.execute("DROP FUNCTION IF EXISTS runyard_outbox_notify()")
