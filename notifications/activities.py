"""The notification activities: one delivery attempt, recorded on the delivery row; and
the outbox sweep that starts a ``DeliveryWorkflow`` for each new delivery."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
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
from notifications.outbox import OUTBOX_CHANNEL, cancel_delivery_workflows, stop_deliveries
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
        """Sweep the outbox for ``inp.seconds``: start one ``DeliveryWorkflow`` per pending
        delivery (workflow id = delivery id, so a second start is refused and harmless),
        then mark it started. A failed sweep is tried again at the next one.

        A sweep runs only when there may be something to start: an idle worker spent 17
        ms of CPU a second sweeping an empty outbox every 0.2 s on SQLite, and sent
        Postgres five queries a second."""
        deadline = asyncio.get_running_loop().time() + inp.seconds
        if self.db.is_sqlite:
            await self._poll(inp, deadline)
        else:
            await self._listen(inp, deadline)

    async def _poll(self, inp: PumpInput, deadline: float) -> None:
        """SQLite: every ``inp.every`` seconds, sweep if something was committed since the
        last sweep (``Database.data_version``). A sweep's own marks are commits too, so a
        backlog of more than one sweep's worth is worked through."""
        loop = asyncio.get_running_loop()
        seen: int | None = None
        while loop.time() < deadline:
            activity.heartbeat()
            version = self.db.data_version()
            if version is None or version != seen:
                seen = version if await self._try_sweep() else None
            await asyncio.sleep(inp.every)

    async def _listen(self, inp: PumpInput, deadline: float) -> None:
        """Postgres: sweep once listening, then when told (migration 0012: inserting a
        delivery sends a notice on ``OUTBOX_CHANNEL`` at commit), at most every
        ``inp.every`` seconds, and at least every ``inp.sweep_every`` seconds.
        Without a connection to listen on, it sweeps and tries again, backing off to 5 s."""
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while loop.time() < deadline:
            try:
                async with self.db.listen(OUTBOX_CHANNEL) as conn:
                    backoff = 0.5
                    await self._when_told(conn, inp, deadline)
            except (psycopg.Error, OSError) as exc:
                # No connection to listen on (Postgres away, or at its connection limit
                # while the pools still work): sweep as it waits, so deliveries go on.
                log.warning("outbox.listen_failed", error=str(exc))
                activity.heartbeat()
                await self._try_sweep(all_of_it=True)
                await asyncio.sleep(min(backoff, max(deadline - loop.time(), 0)))
                backoff = min(backoff * 2, 5)  # under the heartbeat timeout (10 s)

    async def _when_told(
        self, conn: psycopg.AsyncConnection[Any], inp: PumpInput, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()  # what was committed before the LISTEN
        while loop.time() < deadline:
            activity.heartbeat()  # at least every second: the workflow's timeout is 10 s
            if loop.time() >= due:
                swept = await self._try_sweep(all_of_it=True)
                due = loop.time() + (inp.sweep_every if swept else inp.every)
                await asyncio.sleep(inp.every)  # a burst of notices, one sweep
            wait = min(due, deadline, loop.time() + 1.0) - loop.time()
            async for _ in conn.notifies(timeout=max(wait, 0.001), stop_after=1):
                due = loop.time()

    async def _try_sweep(self, *, all_of_it: bool = False) -> bool:
        """One sweep (``all_of_it``: until the outbox has nothing unstarted left); False,
        logged, if it failed (the store or Temporal away for a moment)."""
        try:
            while await self._sweep() == _SWEEP_LIMIT:  # a full batch: there may be more
                if not all_of_it:
                    break
        except Exception as exc:
            log.warning("outbox.sweep_failed", error=str(exc))
            return False
        return True

    async def _sweep(self) -> int:
        """Start the workflows of up to ``_SWEEP_LIMIT`` unstarted deliveries; how many."""
        ids = await self.db.read_inline(_unstarted)
        client = activity.client()
        for delivery_id in ids:
            activity.heartbeat()  # a backlog takes longer than the heartbeat timeout
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
        return len(ids)


# Built once: it runs at every commit the worker's pump sees.
_SWEEP_LIMIT = 200
_UNSTARTED = (
    select(col(WebhookDelivery.id))
    .where(
        col(WebhookDelivery.status) == "pending",
        col(WebhookDelivery.workflow_started).is_(False),
    )
    .limit(_SWEEP_LIMIT)
)


def _unstarted(conn: Connection) -> list[str]:
    """Pending deliveries whose workflow has not been started (``_SWEEP_LIMIT`` at most)."""
    return list(conn.scalars(_UNSTARTED))
