"""Messages to a busy run in the store, for ``RunWorkflow`` (local activities, one store
transaction each, idempotent: a retry finds its work done). See
``runyard/store/user_messages.py``."""

from __future__ import annotations

from sqlalchemy.orm import Session
from temporalio import activity

from activities._support import logger, typed_failures
from runyard.db.engine import Database
from runyard.store import user_messages
from workflows.message_payloads import DeliverInput, DeliverResult, RecordMessageInput


class MessageActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name="record_message")
    @typed_failures
    async def record_message(self, inp: RecordMessageInput) -> None:
        """Store a message the workflow accepted: ``pending`` with ``message.queued``."""

        def rec(s: Session) -> str:
            msg = user_messages.record(
                s,
                inp.run_id,
                inp.message_id,
                inp.content,
                inp.mode,
                delivered_turn=inp.delivered_turn,
            )
            return msg.org_id

        org_id = await self.db.transact(rec)
        logger(inp.run_id, org_id=org_id).info(
            "message.recorded", message_id=inp.message_id, mode=inp.mode
        )

    @activity.defn(name="deliver_messages")
    @typed_failures
    async def deliver_messages(self, inp: DeliverInput) -> DeliverResult:
        """Put the pending ones of ``message_ids`` in the transcript for turn ``turn``,
        with ``message.delivered``; those deleted meanwhile are left out."""

        def deliver(s: Session) -> list[str]:
            return user_messages.deliver(s, inp.run_id, inp.message_ids, inp.turn)

        delivered = await self.db.transact(deliver)
        logger(inp.run_id).info("message.delivered", turn=inp.turn, messages=delivered)
        return DeliverResult(delivered=delivered)
