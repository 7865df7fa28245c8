"""Messages to a busy run (``POST /v1/runs/{id}/messages``) in the store.

A message is ``pending`` until the run's workflow delivers it (it becomes a user note in
the transcript, read by the next model call: ``delivered``), the client deletes it
(``cancelled``) or the run ends first (``dropped``). Every change happens with the run's
row locked (:func:`runyard.store.events.locked_run`), so a delete and a delivery of the
same message, or a delivery and the run's ending, never both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import Run, RunMessage, RunUserMessage
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.errors import MessageAlreadyDelivered, MessageNotFound, RunNotActive
from runyard.events import data as ev
from runyard.events import keys
from runyard.store.events import NewEvent, append_events, locked_run
from runyard.store.run_view import iso
from runyard.store.transcript import note_block


class MessageMode(StrEnum):
    STEER = "steer"  # delivered before the next model call
    QUEUE = "queue"  # delivered when the agent would otherwise finish


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    DROPPED = "dropped"


def message_object(m: RunUserMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "object": "run.message",
        "runId": m.run_id,
        "content": m.content,
        "mode": m.mode,
        "status": m.status,
        "turn": m.turn,
        "createdAt": iso(m.created_at),
        "deliveredAt": iso(m.delivered_at) if m.delivered_at else None,
    }


def record(
    s: Session,
    run_id: str,
    message_id: str,
    content: str,
    mode: str,
    *,
    delivered_turn: int | None = None,
    now: datetime | None = None,
) -> RunUserMessage:
    """Store a new message, ``pending`` with ``message.queued`` (or, when it answered the
    run's question at ``delivered_turn``, ``delivered`` at once). A retry finds it stored."""
    run = locked_run(s, run_id)
    found = s.get(RunUserMessage, message_id)
    if found is not None:
        return found
    if RunStatus(run.status).is_terminal:
        raise RunNotActive(f"{run.id} is {run.status}")
    now = now or utcnow()
    msg = RunUserMessage(
        id=message_id,
        org_id=run.org_id,
        run_id=run.id,
        content=content,
        mode=mode,
        status=MessageStatus.PENDING,
        created_at=now,
    )
    events: list[NewEvent] = [
        ev.MessageQueued(message_id=message_id, mode=mode).event(keys.message_queued(message_id))
    ]
    if delivered_turn is not None:
        msg.status, msg.turn, msg.delivered_at = MessageStatus.DELIVERED, delivered_turn, now
        delivered = ev.MessageDelivered(message_id=message_id, mode=mode, turn=delivered_turn)
        events.append(delivered.event(keys.message_delivered(message_id)))
    s.add(msg)
    append_events(s, run, events, now=now)
    return msg


def deliver(s: Session, run_id: str, message_ids: Sequence[str], turn: int) -> list[str]:
    """Deliver the messages still pending of ``message_ids`` (in that order) at model turn
    ``turn``: each becomes a user note in the transcript. Returns those delivered now or
    by an earlier attempt of the same delivery."""
    run = locked_run(s, run_id)
    if RunStatus(run.status).is_terminal:
        return []
    now = utcnow()
    done: list[str] = []
    events: list[NewEvent] = []
    for mid in message_ids:
        msg = s.get(RunUserMessage, mid)
        if msg is None or msg.run_id != run.id:
            continue
        if msg.status == MessageStatus.DELIVERED and msg.turn == turn:
            done.append(mid)  # a retried delivery
            continue
        if msg.status != MessageStatus.PENDING:
            continue
        msg.status, msg.turn, msg.delivered_at = MessageStatus.DELIVERED, turn, now
        s.add(msg)
        s.add(
            RunMessage(
                run_id=run.id,
                key=keys.message_note(mid),
                role="user",
                content=[note_block(msg.content)],
                created_at=now,
            )
        )
        data = ev.MessageDelivered(message_id=mid, mode=msg.mode, turn=turn)
        events.append(data.event(keys.message_delivered(mid)))
        done.append(mid)
    append_events(s, run, events, now=now)
    return done


def drop_pending(s: Session, run: Run) -> None:
    """The run is ending: its pending messages are ``dropped``, each with
    ``message.dropped`` (before the terminal event). ``run`` is locked by the caller."""
    pending = s.execute(
        select(RunUserMessage)
        .where(
            col(RunUserMessage.run_id) == run.id,
            col(RunUserMessage.status) == MessageStatus.PENDING,
        )
        .order_by(col(RunUserMessage.created_at), col(RunUserMessage.id))
    ).scalars()
    events: list[NewEvent] = []
    for msg in pending:
        msg.status = MessageStatus.DROPPED
        s.add(msg)
        data = ev.MessageDropped(message_id=msg.id, mode=msg.mode)
        events.append(data.event(keys.message_dropped(msg.id)))
    append_events(s, run, events)


def cancel(s: Session, run_id: str, message_id: str) -> RunUserMessage:
    """Withdraw a pending message (``DELETE``); a delivered one cannot be."""
    locked_run(s, run_id)
    msg = s.get(RunUserMessage, message_id)
    if msg is None or msg.run_id != run_id:
        raise MessageNotFound(f"no message {message_id} in run {run_id}")
    if msg.status == MessageStatus.DELIVERED:
        raise MessageAlreadyDelivered(f"{message_id} was delivered at turn {msg.turn}")
    if msg.status == MessageStatus.PENDING:
        msg.status = MessageStatus.CANCELLED
        s.add(msg)
    return msg
