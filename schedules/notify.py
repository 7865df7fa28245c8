"""A schedule's own records: its fires (started or skipped) and notes, and the org
webhooks that announce them (``schedule.fired``, ``schedule.skipped``,
``schedule.paused``), written to the outbox in the same transaction as the record, with
ids derived from a key so a retried activity writes each one once."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import Webhook, WebhookDelivery
from runyard.db.types import utcnow
from runyard.ids import new_id
from runyard.store.run_view import iso
from schedules.tables import ScheduleFire, ScheduleRow

FIRED = "schedule.fired"
SKIPPED = "schedule.skipped"
PAUSED = "schedule.paused"
SCHEDULE_EVENTS = frozenset({FIRED, SKIPPED, PAUSED})


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def announce(s: Session, org_id: str, typ: str, data: dict[str, Any], key: str) -> int:
    """Deliveries of ``typ`` to the organization's enabled webhooks that take it."""
    now = utcnow()
    hooks = s.execute(
        select(Webhook).where(col(Webhook.org_id) == org_id, col(Webhook.enabled).is_(True))
    ).scalars()
    made = 0
    for hook in hooks:
        if hook.events and typ not in hook.events:
            continue
        digest = _digest(hook.id, typ, key)
        if s.get(WebhookDelivery, f"dlv_{digest}") is not None:
            continue
        s.add(
            WebhookDelivery(
                id=f"dlv_{digest}",
                org_id=org_id,
                webhook_id=hook.id,
                run_id=data.get("runId"),
                kind="webhook",
                url=hook.url,
                event_type=typ,
                message_id=f"msg_{digest}",
                payload={"type": typ, "timestamp": iso(now), "data": data},
                created_at=now,
                updated_at=now,
            )
        )
        made += 1
    return made


def record_fire(
    s: Session,
    row: ScheduleRow,
    *,
    workflow_id: str,
    scheduled_at: datetime,
    run_id: str | None,
    reason: str | None = None,
    detail: str | None = None,
) -> ScheduleFire:
    """The fire of ``workflow_id`` (once), announced as fired or skipped."""
    found = s.execute(
        select(ScheduleFire).where(col(ScheduleFire.workflow_id) == workflow_id)
    ).scalar_one_or_none()
    if found is not None:
        return found
    fire = ScheduleFire(
        id=new_id("fire"),
        schedule_id=row.id,
        org_id=row.org_id,
        workflow_id=workflow_id,
        scheduled_at=scheduled_at,
        run_id=run_id,
        status="skipped" if reason else "fired",
        reason=reason,
        detail=detail,
        created_at=utcnow(),
    )
    s.add(fire)
    data = {"scheduleId": row.id, "runId": run_id, "scheduledAt": iso(scheduled_at)}
    if reason:
        data |= {"reason": reason, "detail": detail}
    announce(s, row.org_id, SKIPPED if reason else FIRED, data, workflow_id)
    return fire


def add_note(s: Session, row: ScheduleRow, note: str, *, paused: bool, key: str) -> None:
    """A note on the schedule (newest last, at most 20 kept); ``paused`` also pauses it
    in the store and announces ``schedule.paused``."""
    now = utcnow()
    row.notes = [*(row.notes or []), {"at": iso(now), "note": note, "key": key}][-20:]
    row.updated_at = now
    if paused:
        row.paused = True
        announce(s, row.org_id, PAUSED, {"scheduleId": row.id, "note": note}, key)
    s.add(row)


def fire_view(fire: ScheduleFire, run_status: str | None) -> dict[str, Any]:
    return {
        "scheduledAt": iso(fire.scheduled_at),
        "firedAt": iso(fire.created_at),
        "status": fire.status,
        "runId": fire.run_id,
        "runStatus": run_status,
        "reason": fire.reason,
        "detail": fire.detail,
    }
