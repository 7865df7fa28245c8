"""``/v1/runs/{id}/messages``: messages to a busy run, ``steer`` or ``queue``.

The run's workflow accepts a message (``RunWorkflow.post_message``: it refuses a run that
ended and a stale ``expectedTurn``) and decides when the agent reads it
(``workflows/messages.py``); the store keeps each message and its status
(``runyard/store/user_messages.py``), which ``GET`` lists and ``DELETE`` withdraws.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field, field_validator
from sqlmodel import col

from api.deps import DbDep, KnownQueryOnly, ReaderDep, TemporalDep, WriterDep
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, Out, Rfc3339, answers, operation_id
from api.responses_runs import Pagination
from api.routes.runs import load_run
from api.schemas import Body
from runyard.db.tables import RunUserMessage
from runyard.domain import TERMINAL_STATUSES
from runyard.errors import RunNotActive
from runyard.ids import new_id
from runyard.store import user_messages
from runyard.store.user_messages import MessageStatus, message_object
from workflows.message_payloads import PostMessageRequest

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["runs"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")
_MAX_CONTENT = 32 * 1024


class MessageBody(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"content": "Use teal, not blue.", "mode": "steer"}]}
    )

    content: str
    mode: Literal["steer", "queue"] = "steer"
    expected_turn: int | None = Field(default=None, ge=0, le=1000)  # maxTurns is at most 1000

    @field_validator("content")
    @classmethod
    def _size(cls, v: str) -> str:
        if not 1 <= len(v.encode()) <= _MAX_CONTENT:
            raise ValueError("content must be 1 byte to 32 KiB of UTF-8")
        return v


class MessageAccepted(Out):
    id: str = Field(examples=["msg_3f9a"])
    status: str = Field(examples=["pending"])


class Message(Out):
    id: str = Field(examples=["msg_3f9a"])
    object: str = Field(examples=["run.message"])
    run_id: str
    content: str
    mode: Literal["steer", "queue"]
    status: Literal["pending", "delivered", "cancelled", "dropped"]
    turn: int | None = Field(description="The model turn that read it (delivered).")
    created_at: Rfc3339
    delivered_at: Rfc3339 | None


class MessagePage(Out):
    data: list[Message]
    pagination: Pagination


@router.post(
    "/{run_id}/messages",
    status_code=202,
    summary="Send a message to a busy run (steer or queue)",
    **answers(
        MessageAccepted,
        400,
        404,
        409,
        502,
        s409="RUN_NOT_ACTIVE: the run has ended; RUN_TURN_MISMATCH: a stale expectedTurn",
    ),
)
async def post_message(
    run_id: str, body: MessageBody, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    if run.status in TERMINAL_STATUSES:
        raise RunNotActive(f"the run is {run.status}")
    runs = await temporal()
    req = PostMessageRequest(
        message_id=new_id("msg"),
        content=body.content,
        mode=body.mode,
        expected_turn=body.expected_turn,
    )
    result = await runs.post_message(run_id, req)
    log.info(
        "run.message",
        run_id=run_id,
        workflow_id=run.workflow_id,
        org_id=principal.org_id,
        message_id=result.id,
        mode=body.mode,
        status=result.status,
    )
    # "pending" until the agent reads it; a message that answered the run's question was
    # delivered at once, as GET …/messages shows.
    return {"id": result.id, "status": result.status}


@router.get(
    "/{run_id}/messages",
    summary="The messages sent to the run",
    dependencies=[KnownQueryOnly],
    **answers(MessagePage, 400, 404),
)
async def list_run_messages(
    run_id: str,
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
    status: Annotated[MessageStatus | None, Query(description="only this status")] = None,
) -> dict[str, Any]:
    await load_run(db, principal.org_id, run_id)
    conds = [col(RunUserMessage.run_id) == run_id]
    if status is not None:
        conds.append(col(RunUserMessage.status) == status)
    order = [col(RunUserMessage.created_at), col(RunUserMessage.id)]
    return await paginate(db, RunUserMessage, conds, order, paging, message_object)


@router.delete(
    "/{run_id}/messages/{message_id}",
    summary="Withdraw a message the agent has not read yet",
    **answers(
        Message,
        404,
        409,
        s404="RUN_NOT_FOUND, MESSAGE_NOT_FOUND",
        s409="MESSAGE_ALREADY_DELIVERED",
    ),
)
async def delete_message(
    run_id: str, message_id: str, principal: WriterDep, db: DbDep
) -> dict[str, Any]:
    await load_run(db, principal.org_id, run_id)
    msg = await db.transact(lambda s: user_messages.cancel(s, run_id, message_id))
    log.info("run.message.deleted", run_id=run_id, org_id=principal.org_id, message_id=msg.id)
    return message_object(msg)
