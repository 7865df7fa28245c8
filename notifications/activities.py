"""The notification activities: one delivery attempt, recorded on the delivery row; and
the outbox sweep that starts a ``DeliveryWorkflow`` for each new delivery."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import Connection, select, update
from sqlmodel import col
from temporalio import activity
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from notifications.messages import (
    DELIVERY_WORKFLOW,
    AttemptInput,
    AttemptOutcome,
    DeliveryInput,
    PumpInput,
)
from notifications.outbox import cancel_delivery_workflows, stop_deliveries
from notifications.sender import Attempt, Sender
from runyard import metrics
from runyard.db.engine import Database
from runyard.db.tables import Webhook, WebhookDelivery
from runyard.db.types import utcnow
from runyard.settings import Settings

log = structlog.get_logger("runyard.webhooks")
_FINAL = frozenset({"delivered", "failed", "gone", "forbidden", "cancelled"})


class DeliveryActivities:
    def __init__(self, db: Database, sender: Sender) -> None:
        self.db = db
        self.sender = sender

    @activity.defn(name="attempt_delivery")
    async def attempt_delivery(self, inp: AttemptInput) -> AttemptOutcome:
        async with self.db.session() as s:
            delivery = await s.get(WebhookDelivery, inp.delivery_id)
            hook = (
                await s.get(Webhook, delivery.webhook_id)
                if delivery and delivery.webhook_id
                else None
            )
        if delivery is None:
            return AttemptOutcome(status="cancelled")
        if delivery.status in _FINAL:
            return AttemptOutcome(status=delivery.status)  # a retry after the commit
        secrets: list[str] | None = None
        if delivery.kind == "webhook":
            if hook is None or not hook.enabled:
                await self._record(inp, None, "cancelled")
                metrics.webhook_attempt("cancelled")
                return AttemptOutcome(status="cancelled")
            secrets = [hook.secret]
            expires = hook.previous_secret_expires_at
            if hook.previous_secret and expires is not None and expires > utcnow():
                secrets.append(hook.previous_secret)
        result = await self.sender.post(
            delivery.url, delivery.payload, message_id=delivery.message_id, secrets=secrets
        )
        if result.ok:
            status = "delivered"
        elif result.forbidden:
            status = "forbidden"
        elif result.status_code == 410:
            status = "gone"
        else:
            status = "failed" if inp.last else "retry"
        status = await self._record(inp, result, status)
        metrics.webhook_attempt(status)
        log.info(
            "webhook.attempt",
            delivery_id=inp.delivery_id,
            run_id=delivery.run_id,
            org_id=delivery.org_id,
            attempt=inp.attempt,
            status=status,
            status_code=result.status_code,
        )
        return AttemptOutcome(status=status, retry_after=result.retry_after)

    async def _record(self, inp: AttemptInput, result: Attempt | None, status: str) -> str:
        """Record the attempt; the delivery's status now (a delivery stopped while its
        attempt was in flight stays ``cancelled``)."""
        now = utcnow()
        stopped: list[str] = []
        async with self.db.write() as s:
            delivery = await s.get(WebhookDelivery, inp.delivery_id)
            if delivery is None:
                return "cancelled"
            if delivery.status == "cancelled":  # its webhook was deleted or disabled
                status = "cancelled"
            if result is not None:
                entry = {
                    "attempt": inp.attempt,
                    "at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "statusCode": result.status_code,
                    "latencyMs": round(result.latency_ms, 1),
                    "error": result.error,
                }
                delivery.attempts = [*delivery.attempts, entry]
            delivery.status = "pending" if status == "retry" else status
            delivery.updated_at = now
            if status == "gone" and delivery.webhook_id:
                hook = await s.get(Webhook, delivery.webhook_id)
                if hook is not None:  # 410 Gone: the receiver asks us to stop for good
                    hook.enabled = False
                    hook.disabled_reason = "the endpoint answered 410 Gone"
                    hook.updated_at = now
                    stopped = await stop_deliveries(s, hook.id, now, but=delivery.id)
        if stopped:
            await cancel_delivery_workflows(activity.client(), stopped)
        return status


class OutboxActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @activity.defn(name="pump_outbox")
    async def pump_outbox(self, inp: PumpInput) -> None:
        """Sweep the outbox every ``inp.every`` seconds for ``inp.seconds``: start one
        ``DeliveryWorkflow`` per pending delivery (workflow id = delivery id, so a second
        start is refused and harmless), then mark it started.

        On SQLite a sweep runs only when something was committed since the last one
        (``Database.data_version``): an idle worker spent 17 ms of CPU a second sweeping
        an empty outbox. A sweep's own marks are commits too, so a backlog of more than
        one sweep's worth is worked through; a failed sweep is tried again next time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + inp.seconds
        seen: int | None = None
        while loop.time() < deadline:
            activity.heartbeat()
            version = self.db.data_version()
            if version is None or version != seen:
                try:
                    await self._sweep()
                    seen = version
                except Exception as exc:  # the store or Temporal away for a moment: go on
                    log.warning("outbox.sweep_failed", error=str(exc))
                    seen = None
            await asyncio.sleep(inp.every)

    async def _sweep(self) -> None:
        ids = await self.db.read_inline(_unstarted)
        client = activity.client()
        for delivery_id in ids:
            try:
                await client.start_workflow(
                    DELIVERY_WORKFLOW,  # by name: the workflow imports this module
                    DeliveryInput(
                        delivery_id=delivery_id, schedule=self.settings.webhook_retry_delays
                    ),
                    id=delivery_id,
                    task_queue=self.settings.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
            except WorkflowAlreadyStartedError:
                pass
            async with self.db.write() as s:
                await s.execute(
                    update(WebhookDelivery)
                    .where(col(WebhookDelivery.id) == delivery_id)
                    .values(workflow_started=True)
                )


# Built once: it runs at every commit the worker's pump sees.
_UNSTARTED = (
    select(col(WebhookDelivery.id))
    .where(
        col(WebhookDelivery.status) == "pending",
        col(WebhookDelivery.workflow_started).is_(False),
    )
    .limit(200)
)


def _unstarted(conn: Connection) -> list[str]:
    """Pending deliveries whose workflow has not been started (200 at most)."""
    return list(conn.scalars(_UNSTARTED))
