"""Loops every worker runs beside its Temporal work: the delivery pump, event retention.

Both are safe with many workers: a delivery's workflow id is its id (a second start is
refused and ignored) and purging is an idempotent delete.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlmodel import col
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.webhooks import schedule_from
from runyard.db.engine import Database
from runyard.db.models import WebhookDelivery
from runyard.db.types import utcnow
from runyard.settings import Settings
from runyard.store.events import purge_events
from workflows.delivery import DELIVERY_WORKFLOW, DeliveryInput

log = structlog.get_logger("runyard.housekeeping")


async def pump_deliveries(
    client: Client, db: Database, settings: Settings, every: float = 0.2
) -> None:
    """Start a DeliveryWorkflow for every delivery the outbox holds that has none yet."""
    schedule = schedule_from(settings.webhook_retry_schedule)
    while True:
        try:
            async with db.session() as s:
                ids = list(
                    (
                        await s.execute(
                            select(col(WebhookDelivery.id))
                            .where(
                                col(WebhookDelivery.status) == "pending",
                                col(WebhookDelivery.workflow_started).is_(False),
                            )
                            .limit(200)
                        )
                    ).scalars()
                )
            for delivery_id in ids:
                try:
                    await client.start_workflow(
                        DELIVERY_WORKFLOW,
                        DeliveryInput(delivery_id=delivery_id, schedule=schedule),
                        id=delivery_id,
                        task_queue=settings.task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    )
                except WorkflowAlreadyStartedError:
                    pass
                async with db.write() as s:
                    await s.execute(
                        update(WebhookDelivery)
                        .where(col(WebhookDelivery.id) == delivery_id)
                        .values(workflow_started=True)
                    )
        except Exception as exc:  # Temporal or the store away for a moment: try again
            log.warning("deliveries.pump_failed", error=str(exc))
        await asyncio.sleep(every)


async def purge_expired_events(db: Database, settings: Settings, every: float = 3600) -> None:
    """Delete events past the retention window, hourly."""
    while True:
        cutoff = utcnow() - timedelta(days=settings.event_retention_days)
        try:
            async with db.write() as s:
                count = await purge_events(s, cutoff)
            if count:
                log.info("events.purged", count=count, older_than=cutoff.isoformat())
        except Exception as exc:
            log.warning("events.purge_failed", error=str(exc))
        await asyncio.sleep(every)


async def housekeeping(client: Client, db: Database, settings: Settings) -> None:
    await asyncio.gather(pump_deliveries(client, db, settings), purge_expired_events(db, settings))
