"""What the activities share: the bound logger, a background heartbeat, storing answers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from runyard.db.engine import Database
from runyard.db.models import RunMessage
from runyard.db.types import utcnow
from runyard.store.events import NewEvent, append_events, lock_run
from runyard.store.runs import set_status
from runyard.store.transcript import get_message, result_key
from workflows.models import AnswerInput

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def logger(run_id: str, **kw: Any) -> Any:
    info = activity.info()
    return structlog.get_logger("runyard.activity").bind(
        run_id=run_id,
        workflow_id=info.workflow_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **kw,
    )


def heartbeats(fn: F) -> F:
    """Heartbeat for the whole activity, from its first line: waiting for the store under
    load must not look like a dead worker to Temporal."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        async with heartbeating():
            return await fn(*args, **kwargs)

    return cast(F, wrapper)


@contextlib.asynccontextmanager
async def heartbeating(interval: float = 1.0) -> AsyncIterator[None]:
    """Heartbeat in the background, so a cancel reaches an activity blocked on I/O."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def store_answer(db: Database, answer: AnswerInput) -> None:
    """Store the answer as the ``ask_user`` call's result; the run is running again.

    Idempotent: a retried activity finds the result already stored.
    """
    key = result_key(answer.turn, answer.call_id)
    async with db.write() as s:
        run = await lock_run(s, answer.run_id)
        if run is None:
            raise ApplicationError("run vanished", type="RUN_NOT_FOUND", non_retryable=True)
        if await get_message(s, answer.run_id, key) is not None:
            return
        block = {"type": "tool_result", "tool_use_id": answer.call_id, "content": answer.content}
        s.add(RunMessage(run_id=run.id, key=key, role="tool_result", content=[block]))
        await set_status(
            s,
            run,
            "running",
            allowed_from={"waiting_for_input"},
            now=utcnow(),
            values={"pending_question": None},
        )
        event = {"toolCallId": answer.call_id, "content": answer.content}
        await append_events(s, run, [NewEvent(key, "run.input_received", event)])
