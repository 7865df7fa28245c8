"""The model turn: one call to the model, streamed into the event log.

A turn whose assistant message is already stored (a retry after the commit) returns it
without calling the model again. A retried attempt announces ``turn.retried`` first, so
clients drop the partial deltas of the attempt that died; deltas are keyed by attempt.
"""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import heartbeats, logger, store_answer
from runyard.db.engine import Database
from runyard.db.models import Run, RunMessage
from runyard.db.types import utcnow
from runyard.models.base import ModelClient, ModelError, ModelRequest
from runyard.models.pricing import add_turn_usage, resolve_model
from runyard.store.credits import charge_turn, out_of_credits
from runyard.store.events import TERMINAL_STATUSES, NewEvent, append_events, lock_run
from runyard.store.transcript import assistant_key, conversation, get_message
from runyard.tools import TOOLS
from workflows.models import ToolCallRef, TurnInput, TurnResult

SYSTEM_PROMPT = (
    "You are a coding agent working in a sandbox. The repository is checked out in "
    "/workspace. Use the tools to inspect and change it, then answer with a short summary "
    "of what you did."
)
_FLUSH_SECONDS = 0.05
_FLUSH_CHARS = 512


class ModelRegistry:
    """Which client serves a run's model; built once in the worker."""

    def __init__(self, scripted: ModelClient, anthropic: ModelClient | None) -> None:
        self.scripted = scripted
        self.anthropic = anthropic

    def client_for(self, model: str) -> ModelClient:
        if resolve_model(model) == "scripted":
            return self.scripted
        if self.anthropic is None:
            raise ApplicationError(
                "ANTHROPIC_API_KEY is not configured on the worker",
                type="RUN_API_KEY_REQUIRED",
                non_retryable=True,
            )
        return self.anthropic


class _DeltaWriter:
    """Buffers streamed text and appends it as ``message.delta`` events in small batches."""

    def __init__(
        self, db: Database, run_id: str, message_id: str, prefix: str, *, interval: float
    ) -> None:
        self.db, self.run_id, self.message_id, self.prefix = db, run_id, message_id, prefix
        self.interval = interval
        self.buffer: list[str] = []
        self.count = 0
        self.last_flush = time.monotonic()

    async def add(self, text: str) -> None:
        self.buffer.append(text)
        if (
            time.monotonic() - self.last_flush >= self.interval
            or sum(map(len, self.buffer)) >= _FLUSH_CHARS
        ):
            await self.flush()

    async def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        text, self.buffer = "".join(self.buffer), []
        event = NewEvent(
            f"{self.prefix}.d{self.count}",
            "message.delta",
            {"messageId": self.message_id, "text": text},
        )
        self.count += 1
        async with self.db.write() as s:
            run = await lock_run(s, self.run_id)
            assert run is not None
            await append_events(s, run, [event])


class AgentActivities:
    def __init__(self, db: Database, models: ModelRegistry) -> None:
        self.db = db
        self.models = models

    @staticmethod
    def _result(turn: int, content: list[dict[str, Any]], run: Run) -> TurnResult:
        usage = run.usage or {}
        return TurnResult(
            turn=turn,
            tool_calls=[
                ToolCallRef(id=b["id"], name=b["name"])
                for b in content
                if b.get("type") == "tool_use"
            ],
            turns=int(usage.get("turns", 0)),
            cost_usd=float(usage.get("costUsd", 0.0)),
        )

    @activity.defn(name="run_agent_turn")
    @heartbeats
    async def run_agent_turn(self, inp: TurnInput) -> TurnResult:
        info = activity.info()
        if inp.answer is not None:
            await store_answer(self.db, inp.answer)
        key = assistant_key(inp.turn)
        message_id = f"msg_{inp.run_id.removeprefix('run_')}_{inp.turn}"
        async with self.db.session() as s:
            run = await s.get(Run, inp.run_id)
            if run is None:
                raise ApplicationError("run not found", type="RUN_NOT_FOUND", non_retryable=True)
            if run.status in TERMINAL_STATUSES:
                raise ApplicationError(
                    f"run is {run.status}", type="RUN_NOT_ACTIVE", non_retryable=True
                )
            done = await get_message(s, inp.run_id, key)
            if done is not None:
                return self._result(inp.turn, done.content, run)
            messages = await conversation(s, run)
            if await out_of_credits(s, run.org_id):
                raise ApplicationError(
                    "the organization has no credits left",
                    type="USAGE_INSUFFICIENT_CREDITS",
                    non_retryable=True,
                )
        log = logger(run.id, org_id=run.org_id, turn=inp.turn)
        client = self.models.client_for(run.model)
        if info.attempt > 1:
            async with self.db.write() as s:
                locked = await lock_run(s, run.id)
                assert locked is not None
                await append_events(
                    s,
                    locked,
                    [
                        NewEvent(
                            f"turn{inp.turn}.retried.{info.attempt}",
                            "turn.retried",
                            {"messageId": message_id, "attempt": info.attempt},
                        )
                    ],
                )
        system = run.instructions or SYSTEM_PROMPT  # an agent's instructions replace the default
        if run.guidance:
            system += f"\n\nAdditional guidance for this run:\n{run.guidance}"
        request = ModelRequest(
            model=resolve_model(run.model), system=system, messages=messages, tools=TOOLS
        )
        # A live model's many small chunks are batched (one write per 50 ms); the
        # scripted model's few chunks each become a delta of their own.
        writer = _DeltaWriter(
            self.db,
            run.id,
            message_id,
            f"turn{inp.turn}.a{info.attempt}",
            interval=0 if resolve_model(run.model) == "scripted" else _FLUSH_SECONDS,
        )
        try:
            response = await client.stream(request, writer.add)
            await writer.flush()
        except ModelError as exc:
            log.warning("model.error", error=str(exc), retryable=exc.retryable)
            raise ApplicationError(
                str(exc), type="MODEL_ERROR", non_retryable=not exc.retryable
            ) from exc
        u = response.usage
        async with self.db.write() as s:
            locked = await lock_run(s, run.id)
            assert locked is not None
            usage = add_turn_usage(
                locked.usage or {},
                run.model,
                inp=u.input_tokens,
                out=u.output_tokens,
                cache_read=u.cache_read_tokens,
                cache_write=u.cache_write_tokens,
            )
            spent = usage["creditsUsed"] - int((locked.usage or {}).get("creditsUsed", 0))
            await charge_turn(s, run.org_id, run.id, inp.turn, spent)
            locked.usage = usage
            locked.updated_at = utcnow()
            s.add(locked)
            s.add(RunMessage(run_id=run.id, key=key, role="assistant", content=response.content))
            events = [
                NewEvent(
                    f"turn{inp.turn}.completed",
                    "message.completed",
                    {
                        "messageId": message_id,
                        "text": response.text,
                        "stopReason": response.stop_reason,
                    },
                )
            ]
            events += [
                NewEvent(
                    f"turn{inp.turn}.call.{b['id']}",
                    "tool.call",
                    {"toolCallId": b["id"], "name": b["name"], "input": b.get("input", {})},
                )
                for b in response.tool_uses
            ]
            events.append(NewEvent(f"turn{inp.turn}.usage", "usage.updated", usage))
            await append_events(s, locked, events)
        log.info("turn.done", tool_calls=len(response.tool_uses), cost_usd=usage["costUsd"])
        return self._result(inp.turn, response.content, locked)
