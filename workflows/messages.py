"""The run's inbox: messages sent to a busy run (``POST /v1/runs/{id}/messages``).

``RunWorkflow.post_message`` (an update) accepts a message: its validator refuses a run
that ended and a stale ``expectedTurn``; the handler stores it (``record_message``, a
local activity) and keeps its id here. The agent loop delivers:

- ``steer`` messages before its next model call;
- ``queue`` messages (and any steer still pending) when the agent would otherwise
  finish: the run then goes on with another turn instead of completing.

A message deleted meanwhile is skipped by the delivery (the store decides, with the run's
row locked); those still pending when the run ends are dropped by ``finish_run``.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.messages import MessageActivities
    from runyard.domain import ErrorCode
    from workflows import options
    from workflows.message_payloads import (
        DeliverInput,
        DeliverResult,
        PendingMessage,
        PostMessageRequest,
        PostMessageResult,
        RecordMessageInput,
    )

# Marks every workflow change of this feature (messages in a run's history).
PATCH = "b25-run-messages"
MODES = ("steer", "queue")


class Inbox:
    def __init__(self, run_id: str, carried: list[PendingMessage] | None = None) -> None:
        self.run_id = run_id
        self.pending: list[PendingMessage] = list(carried or [])

    def validate(self, req: PostMessageRequest, turn: int) -> None:
        """The update's validator (after the run's own checks)."""
        if req.mode not in MODES:
            raise ApplicationError(f"mode must be one of {MODES}", type=ErrorCode.VALIDATION_FAILED)
        if req.expected_turn is not None and req.expected_turn != turn:
            raise ApplicationError(
                f"expectedTurn is {req.expected_turn}, the run is at turn {turn}",
                type=ErrorCode.RUN_TURN_MISMATCH,
            )

    async def accept(
        self, req: PostMessageRequest, turn: int, *, answered_turn: int | None
    ) -> PostMessageResult:
        """Store the message; unless it answered the question (``answered_turn``), keep it
        for delivery."""
        workflow.patched(PATCH)
        await workflow.execute_local_activity_method(
            MessageActivities.record_message,
            RecordMessageInput(
                run_id=self.run_id,
                message_id=req.message_id,
                content=req.content,
                mode=req.mode,
                delivered_turn=answered_turn,
            ),
            **options.LIFECYCLE.local(),
        )
        if answered_turn is not None:
            return PostMessageResult(id=req.message_id, status="delivered", turn=turn)
        if all(m.id != req.message_id for m in self.pending):
            self.pending.append(PendingMessage(id=req.message_id, mode=req.mode))
        return PostMessageResult(id=req.message_id, status="pending", turn=turn)

    async def deliver(self, turn: int, *, queued_too: bool) -> list[str]:
        """Deliver before model turn ``turn`` the pending steer messages (with
        ``queued_too``, every pending message); the ids delivered."""
        due = [m.id for m in self.pending if queued_too or m.mode == "steer"]
        if not due or not workflow.patched(PATCH):
            return []
        result: DeliverResult = await workflow.execute_local_activity_method(
            MessageActivities.deliver_messages,
            DeliverInput(run_id=self.run_id, turn=turn, message_ids=due),
            **options.LIFECYCLE.local(),
        )
        self.pending = [m for m in self.pending if m.id not in due]
        return result.delivered
