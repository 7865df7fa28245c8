"""The approval activities (``runyard.approvals``): local activities of ``RunWorkflow``,
each one store transaction on the locked run, idempotent when retried."""

from __future__ import annotations

from sqlalchemy.orm import Session
from temporalio import activity

from activities._support import logger, typed_failures
from runyard.approvals import store
from runyard.db.engine import Database
from runyard.db.types import utcnow
from runyard.store.events import locked_run
from workflows.approval_payloads import (
    DecideResult,
    ExpireInput,
    GateInput,
    GateResult,
    RecordInput,
)


class ApprovalActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name="gate_tool_calls")
    @typed_failures
    async def gate_tool_calls(self, inp: GateInput) -> GateResult:
        """Decide a turn's calls by the run's approval policy; the run waits for those
        that ask (``approval.requested``), those denied get their error result."""

        def gate(s: Session) -> tuple[store.Gated, str]:
            run = locked_run(s, inp.run_id)
            return store.open_turn(s, run, inp.turn, inp.call_ids, utcnow()), run.org_id

        gated, org_id = await self.db.transact(gate)
        if gated.pending or gated.refused:
            logger(inp.run_id, org_id=org_id).info(
                "approvals.gated", turn=inp.turn, pending=gated.pending, refused=gated.refused
            )
        return GateResult(
            pending=gated.pending,
            pending_calls=gated.pending_calls,
            refused=gated.refused,
            timeout_seconds=gated.timeout_seconds,
            on_timeout=gated.on_timeout,
        )

    @activity.defn(name="record_decisions")
    @typed_failures
    async def record_decisions(self, inp: RecordInput) -> DecideResult:
        """Apply a request's decisions, all or none."""
        req = inp.request
        choices = [
            store.Choice(d.id, d.decision, d.input, d.message, d.scope) for d in req.decisions
        ]

        def apply(s: Session) -> tuple[list[str], str]:
            run = locked_run(s, inp.run_id)
            return store.record(s, run, choices, req.decided_by, req.key, utcnow()), run.org_id

        decided, org_id = await self.db.transact(apply)
        logger(inp.run_id, org_id=org_id).info(
            "approvals.decided", decided=decided, by=req.decided_by
        )
        return DecideResult(decided=decided)

    @activity.defn(name="expire_approvals")
    @typed_failures
    async def expire_approvals(self, inp: ExpireInput) -> None:
        """Nobody decided in time: the calls get their error result, the run goes on."""

        def expire(s: Session) -> str:
            run = locked_run(s, inp.run_id)
            store.close(s, run, inp.approval_ids, "expired", utcnow())
            return run.org_id

        org_id = await self.db.transact(expire)
        logger(inp.run_id, org_id=org_id).info("approvals.expired", expired=inp.approval_ids)
