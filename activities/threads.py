"""Thread strategies on the worker side (``runyard/runs/thread_order.py``): the next run
of a thread starts when the one before ends, and a superseded run's unfinished tool calls
get an error result."""

from __future__ import annotations

from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import logger, typed_failures
from runyard.db.engine import Database
from runyard.db.tables import RunMessage
from runyard.db.types import utcnow
from runyard.domain import ErrorCode
from runyard.errors import (
    ConcurrentRunLimitExceeded,
    InsufficientCredits,
    RunAlreadyStarted,
    RunNotActive,
)
from runyard.events import data as ev
from runyard.events import keys
from runyard.runs.thread_order import lock_thread, next_waiting
from runyard.store.events import append_events, locked_run
from runyard.store.transcript import assistant_key, get_message
from workflows.thread_payloads import AdvanceInput, CloseCallsInput


class ThreadActivities:
    def __init__(self, db: Database, task_queue: str) -> None:
        self.db = db
        self.task_queue = task_queue

    @activity.defn(name="advance_thread")
    @typed_failures
    async def advance_thread(self, inp: AdvanceInput) -> None:
        """Start the thread's next waiting run, unless one of its runs is active. Retried
        while the organization is at its active-run cap."""
        # Here, not at the top: workflows.client imports the workflow, which imports this.
        from workflows.client import RunClient

        def pick(s: Session) -> str | None:
            lock_thread(s, inp.org_id, inp.thread_id, utcnow())
            return next_waiting(s, inp.thread_id)

        log = logger(inp.run_id, org_id=inp.org_id, thread_id=inp.thread_id)
        nxt = await self.db.transact(pick)
        if nxt is None:
            return
        try:
            await RunClient(activity.client(), self.task_queue).exec(nxt)
        except (RunAlreadyStarted, RunNotActive):
            return  # started meanwhile, or ended (its own ending advances the thread)
        except ConcurrentRunLimitExceeded as exc:
            log.info("thread.advance.waiting", next_run_id=nxt, why=str(exc))
            raise ApplicationError(str(exc), type=ErrorCode.CONCURRENT_RUN_LIMIT_EXCEEDED) from exc
        except InsufficientCredits as exc:
            log.warning("thread.advance.refused", next_run_id=nxt, why=str(exc))
            return
        log.info("thread.advanced", next_run_id=nxt)

    @activity.defn(name="close_unfinished_calls")
    @typed_failures
    async def close_unfinished_calls(self, inp: CloseCallsInput) -> None:
        """Every tool call of turn ``turn`` without a result gets ``inp.message`` as an
        error result (and its ``tool.result``): each ``tool_use`` has exactly one."""

        def close(s: Session) -> None:
            run = locked_run(s, inp.run_id)
            turn = get_message(s, inp.run_id, assistant_key(inp.turn))
            for block in turn.content if turn else []:
                if block.get("type") != "tool_use":
                    continue
                key = keys.tool_result(inp.turn, str(block["id"]))
                if get_message(s, inp.run_id, key) is not None:
                    continue
                result = {
                    "type": "tool_result",
                    "tool_use_id": block["id"],
                    "content": inp.message,
                    "is_error": True,
                }
                s.add(RunMessage(run_id=run.id, key=key, role="tool_result", content=[result]))
                data = ev.ToolResult(tool_call_id=block["id"], output=inp.message, is_error=True)
                append_events(s, run, [data.event(key)])

        await self.db.transact(close)
