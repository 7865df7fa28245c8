"""The outbox: deliveries are written in the same transaction as the event they announce.

So an event is never committed without its deliveries, nor a delivery without its
event. The pump (``notifications/pump.py``) then starts one ``DeliveryWorkflow`` per
pending delivery (workflow id = delivery id, so starting twice is harmless).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import Run, RunWatcher, Webhook, WebhookDelivery
from runyard.domain import TERMINAL_EVENT_TYPES, EventType
from runyard.store.run_view import run_object

WEBHOOK_EVENTS = frozenset(
    {
        EventType.RUN_STARTED,
        EventType.RUN_WAITING_FOR_INPUT,
        EventType.OUTPUT_DETECTED,
        *TERMINAL_EVENT_TYPES,
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
    session: Session, run: Run, events: Sequence[tuple[str, str, int]], now: datetime
) -> int:
    """Deliveries for the events just appended: (key, type, seq). Returns how many."""
    wanted = [(key, typ) for key, typ, _ in events if typ in WEBHOOK_EVENTS]
    if not wanted:
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
