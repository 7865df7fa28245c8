"""The outbox: deliveries are written in the same transaction as the event they announce.

So an event is never committed without its deliveries, nor a delivery without its
event: :func:`enqueue` is the event store's append hook, registered when this module is
imported (the API's webhook routes and the worker's notification activities import it).
The pump (``notifications/pump.py``) then starts one ``DeliveryWorkflow`` per pending
delivery (workflow id = delivery id, so starting twice is harmless).

A webhook that is deleted or disabled (or answers 410) stops its pending deliveries in
the same transaction (:func:`stop_deliveries`): no attempt is made for a cancelled
delivery, and the caller then cancels their workflows, which would otherwise sleep
until their next attempt, up to a day away (:func:`cancel_delivery_workflows`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from runyard.db.tables import Run, RunWatcher, Webhook, WebhookDelivery
from runyard.domain import TERMINAL_EVENT_TYPES, EventType
from runyard.store.events import add_append_hook
from runyard.store.run_view import run_object
from schedules.notify import SCHEDULE_EVENTS

log = structlog.get_logger("runyard.webhooks")
# Postgres: inserting a delivery sends a notice here when its transaction commits (the
# trigger of migration 0012); the pump listens (``notifications/activities.py``).
OUTBOX_CHANNEL = "runyard_outbox"
WEBHOOK_EVENTS = frozenset(
    {
        EventType.RUN_STARTED,
        EventType.RUN_WAITING_FOR_INPUT,
        EventType.OUTPUT_DETECTED,
        *TERMINAL_EVENT_TYPES,
        # A schedule's (schedules/notify.py writes their deliveries).
        *SCHEDULE_EVENTS,
        EventType.APPROVAL_REQUESTED,
        EventType.APPROVAL_RESOLVED,
    }
)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _delivery(
    run: Run,
    digest: str,
    kind: str,
    url: str,
    event_type: str,
    payload: dict[str, Any],
    now: datetime,
    webhook_id: str | None = None,
) -> WebhookDelivery:
    """A pending delivery whose id and message id both derive from ``digest``, so the
    same event for the same target is always the same row and the same webhook-id."""
    return WebhookDelivery(
        id=f"dlv_{digest}",
        org_id=run.org_id,
        webhook_id=webhook_id,
        run_id=run.id,
        kind=kind,
        url=url,
        event_type=event_type,
        message_id=f"msg_{digest}",
        payload=payload,
        created_at=now,
        updated_at=now,
    )


def enqueue(
    session: Session, run_id: str, events: Sequence[tuple[str, str, int]], now: datetime
) -> int:
    """Deliveries for the events just appended to run ``run_id``: (key, type, seq).
    Returns how many."""
    wanted = [(key, typ) for key, typ, _ in events if typ in WEBHOOK_EVENTS]
    if not wanted:
        return 0
    run = session.get(Run, run_id)  # the append's own, when it loaded the run
    if run is None:
        return 0
    body = run_object(run)
    hooks = list(
        session.execute(
            select(Webhook).where(col(Webhook.org_id) == run.org_id, col(Webhook.enabled).is_(True))
        ).scalars()
    )
    rows: list[WebhookDelivery] = []
    for key, typ in wanted:
        for hook in hooks:
            if hook.events and typ not in hook.events:
                continue
            payload: dict[str, Any] = {"type": typ, "timestamp": _iso(now), "data": body}
            digest = _digest(hook.id, run.id, key)
            rows.append(_delivery(run, digest, "webhook", hook.url, typ, payload, now, hook.id))
        if typ in TERMINAL_EVENT_TYPES:
            targets: list[tuple[str, str]] = []
            if run.callback_url:
                targets.append(("callback", run.callback_url))
            watchers = session.execute(
                select(RunWatcher).where(col(RunWatcher.run_id) == run.id)
            ).scalars()
            targets += [("watcher", w.callback_url) for w in watchers]
            for kind, url in targets:
                rows.append(_delivery(run, _digest(kind, url, run.id), kind, url, typ, body, now))
    for row in rows:
        if session.get(WebhookDelivery, row.id) is None:
            session.add(row)
    return len(rows)


# The event store calls this in every append's transaction: any process that imports the
# notifications package (the API, the worker) writes deliveries with their events.
add_append_hook(enqueue)


async def stop_deliveries(
    session: AsyncSession, webhook_id: str, now: datetime, *, but: str | None = None
) -> list[str]:
    """Cancel the webhook's pending deliveries (``but`` one) in the caller's transaction;
    the ids of those whose ``DeliveryWorkflow`` was started, to cancel once it commits."""
    conds = [
        col(WebhookDelivery.webhook_id) == webhook_id,
        col(WebhookDelivery.status) == "pending",
    ]
    if but is not None:
        conds.append(col(WebhookDelivery.id) != but)
    stopped = await session.execute(
        update(WebhookDelivery)
        .where(*conds)
        .values(status="cancelled", updated_at=now)
        .returning(col(WebhookDelivery.id), col(WebhookDelivery.workflow_started))
    )
    return sorted(delivery_id for delivery_id, started in stopped.all() if started)


async def cancel_delivery_workflows(client: Client, delivery_ids: Sequence[str]) -> None:
    """Cancel the deliveries' workflows (a few at a time). One that has ended already is
    fine; any other failure is logged once: such a workflow sends nothing more either, as
    its next attempt finds its delivery cancelled, but it lingers until then."""
    gate = asyncio.Semaphore(16)
    failed: list[str] = []

    async def cancel(delivery_id: str) -> None:
        async with gate:
            try:
                await asyncio.wait_for(client.get_workflow_handle(delivery_id).cancel(), 10)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:  # not found: it has ended
                    failed.append(f"{delivery_id}: {exc}")
            except Exception as exc:
                failed.append(f"{delivery_id}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(cancel(d) for d in delivery_ids))
    if failed:
        log.warning(
            "webhook.cancel_deliveries_failed",
            failed=len(failed),
            of=len(delivery_ids),
            first=failed[0],
        )
