"""What crosses Temporal for messages to a busy run (``POST /v1/runs/{id}/messages``):
the ``post_message`` update of ``RunWorkflow`` and the activities of
``activities/messages.py``. New fields get defaults (see ``workflows/payloads.py``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PendingMessage(BaseModel):
    """A message the workflow has still to deliver (ids only: the content is stored)."""

    id: str
    mode: str  # "steer" | "queue"


class PostMessageRequest(BaseModel):
    message_id: str
    content: str
    mode: str = "steer"
    # The run's turn the sender saw; another turn now → RUN_TURN_MISMATCH.
    expected_turn: int | None = None


class PostMessageResult(BaseModel):
    id: str
    # "pending": stored, to be delivered; "delivered": it answered the waiting question.
    status: str
    turn: int = 0  # the run's turn when it was accepted


class RecordMessageInput(BaseModel):
    run_id: str
    message_id: str
    content: str
    mode: str
    # Set when the message answered the run's question: stored as delivered at that turn.
    delivered_turn: int | None = None


class DeliverInput(BaseModel):
    run_id: str
    turn: int  # the model turn that reads them
    message_ids: list[str] = Field(default_factory=list)


class DeliverResult(BaseModel):
    delivered: list[str] = Field(default_factory=list)
