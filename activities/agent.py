"""The model turn: one call to the model, streamed into the event log.

A turn whose assistant message is already stored (a retry after the commit) returns it
without calling the model again. A retried attempt announces ``turn.retried`` first, so
clients drop the partial deltas of the attempt that died; deltas are keyed by attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy.orm import Session
from temporalio import activity

from activities._support import heartbeats, logger, typed_failures
from runyard import metrics, tracing
from runyard.db.engine import Database
from runyard.db.types import utcnow
from runyard.domain import TERMINAL_STATUSES
from runyard.errors import InsufficientCredits, ProviderKeyMissing, RunNotActive, RunNotFound
from runyard.events import data as ev
from runyard.events import keys
from runyard.jsonsafe import json_problem, storable
from runyard.llm.base import ModelClient, ModelRequest, TurnUsage
from runyard.llm.pricing import add_turn_usage, price_for, resolve_model
from runyard.store.credits import charge_turn
from runyard.store.events import NewEvent, append_events, locked_head
from runyard.store.transcript import add_message, assistant_key, conversation
from runyard.store.turns import TurnRun, turn_state
from runyard.tools import TOOLS, refusal
from workflows.payloads import ToolCallRef, TurnInput, TurnResult

SYSTEM_PROMPT = (
    "You are a coding agent working in a sandbox. The repository is checked out in "
    "/workspace. Use the tools to inspect and change it, then answer with a short summary "
    "of what you did."
)
_FLUSH_SECONDS = 0.05
_FLUSH_CHARS = 512


Blocks = list[dict[str, Any]]  # a message's content blocks


def turn_cost(model: str, u: TurnUsage) -> float:
    """US dollars of one turn's tokens (the run's ``costUsd`` sums these)."""
    p = price_for(model)
    return (
        u.input_tokens * p.input
        + u.output_tokens * p.output
        + u.cache_write_tokens * p.cache_write
        + u.cache_read_tokens * p.cache_read
    ) / 1_000_000


def _checked_tool_inputs(
    content: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The model's content as it is stored, and the tool calls refused (id → why).

    Which calls are refused is the registry's answer (``runyard.tools.refusal``). Every
    input is stored with any non-finite number as null and any NUL as U+FFFD, so nothing
    stored is ever NaN or Infinity and no text column gets a NUL.
    """
    refused: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for block in content:
        if block.get("type") == "tool_use":
            raw = block.get("input", {})
            problem = refusal(str(block.get("name")), raw)
            if problem is not None:
                refused[str(block["id"])] = problem
            if json_problem(raw) is not None:
                block = {**block, "input": storable(raw)}
        out.append(block)
    return out, refused


class ModelRegistry:
    """Which client serves a run's model; built once in the worker."""

    def __init__(self, scripted: ModelClient, anthropic: ModelClient | None) -> None:
        self.scripted = scripted
        self.anthropic = anthropic

    def client_for(self, model: str) -> ModelClient:
        if resolve_model(model) == "scripted":
            return self.scripted
        if self.anthropic is None:
            raise ProviderKeyMissing("ANTHROPIC_API_KEY is not configured on the worker")
        return self.anthropic


class _DeltaWriter:
    """Buffers streamed text and appends it as ``message.delta`` events in small batches."""

    def __init__(
        self,
        db: Database,
        run_id: str,
        message_id: str,
        key: Callable[[int], str],
        *,
        interval: float,
    ) -> None:
        self.db, self.run_id, self.message_id, self.key = db, run_id, message_id, key
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
        event = ev.MessageDelta(message_id=self.message_id, text=text).event(self.key(self.count))
        self.count += 1
        await self.db.transact(lambda s: append_events(s, locked_head(s, self.run_id), [event]))


class AgentActivities:
    def __init__(self, db: Database, models: ModelRegistry) -> None:
        self.db = db
        self.models = models

    @staticmethod
    def _result(turn: int, content: list[dict[str, Any]], usage: dict[str, Any]) -> TurnResult:
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
    @typed_failures
    @heartbeats
    async def run_agent_turn(self, inp: TurnInput) -> TurnResult:
        return await self.turn(inp, inp.attempt_base + activity.info().attempt)

    async def turn(self, inp: TurnInput, attempt: int) -> TurnResult:
        """One model turn, stored once; ``attempt`` > 1 announces ``turn.retried`` first
        (unless the turn is already stored)."""
        key = assistant_key(inp.turn)
        message_id = f"msg_{inp.run_id.removeprefix('run_')}_{inp.turn}"

        def prepare(s: Session) -> tuple[TurnRun, Blocks | None, Blocks]:
            state = turn_state(s.connection(), inp.run_id, inp.turn)
            run = state.run
            if run is None:
                raise RunNotFound(f"{inp.run_id} is not in the store")
            if run.status in TERMINAL_STATUSES:
                raise RunNotActive(f"{run.id} is {run.status}")
            if state.done is not None:
                return run, state.done, []
            if state.credits is not None and state.credits <= 0:
                raise InsufficientCredits("the organization has no credits left")
            return run, None, conversation(s, run)

        run, done, messages = await self.db.read(prepare)
        if done is not None:
            return self._result(inp.turn, done, run.usage)
        log = logger(run.id, org_id=run.org_id, turn=inp.turn)
        client = self.models.client_for(run.model)
        if attempt > 1:
            retried = ev.TurnRetried(message_id=message_id, attempt=attempt).event(
                keys.turn_retried(inp.turn, attempt)
            )
            await self.db.transact(lambda s: append_events(s, locked_head(s, run.id), [retried]))
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
            partial(keys.delta, inp.turn, attempt),
            interval=0 if resolve_model(run.model) == "scripted" else _FLUSH_SECONDS,
        )
        started = time.monotonic()
        with tracing.span("model.call", run_id=run.id, org_id=run.org_id, model=run.model):
            try:
                response = await client.stream(request, writer.add)  # a ModelError is logged once
            except Exception:
                # A dropped stream still shows what it said: the partial deltas of this
                # attempt are published before the retry announces itself.
                await writer.flush()
                raise
        seconds = time.monotonic() - started
        await writer.flush()
        u = response.usage

        def store(s: Session) -> dict[str, Any]:
            locked = locked_head(s, run.id)
            usage = add_turn_usage(
                locked.usage,
                run.model,
                inp=u.input_tokens,
                out=u.output_tokens,
                cache_read=u.cache_read_tokens,
                cache_write=u.cache_write_tokens,
            )
            spent = usage["creditsUsed"] - int(locked.usage.get("creditsUsed", 0))
            charge_turn(s, run.org_id, run.id, inp.turn, spent)
            content, refused = _checked_tool_inputs(response.content)
            add_message(s, run.id, key, "assistant", content)
            completed = ev.MessageCompleted(
                message_id=message_id, text=response.text, stop_reason=response.stop_reason
            )
            events: list[NewEvent] = [completed.event(keys.message_completed(inp.turn))]
            events += [
                ev.ToolCall(tool_call_id=b["id"], name=b["name"], input=b.get("input", {})).event(
                    keys.tool_call(inp.turn, b["id"])
                )
                for b in content
                if b.get("type") == "tool_use"
            ]
            # A call whose input breaks the JSON rules gets its error result now; its
            # run_tool finds the result stored and runs nothing.
            for call_id, problem in refused.items():
                text = f"the tool input was refused and nothing ran: it {problem}"
                rkey = keys.tool_result(inp.turn, call_id)
                block = {
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": text,
                    "is_error": True,
                }
                add_message(s, run.id, rkey, "tool_result", [block])
                refusal = ev.ToolResult(tool_call_id=call_id, output=text, is_error=True)
                events.append(refusal.event(rkey))
            events.append(ev.UsageUpdated.model_validate(usage).event(keys.usage(inp.turn)))
            # The run's usage goes in the same UPDATE as its last_seq.
            columns = {"usage": usage, "updated_at": utcnow()}
            append_events(s, locked, events, columns=columns, fresh=True)
            return usage

        usage = await self.db.transact(store)
        metrics.model_turn(  # after the commit: a retry that finds the turn stored returned
            run.model,
            seconds,
            {
                "input": u.input_tokens,
                "output": u.output_tokens,
                "cache_read": u.cache_read_tokens,
                "cache_write": u.cache_write_tokens,
            },
            turn_cost(run.model, u),
        )
        log.info("turn.done", tool_calls=len(response.tool_uses), cost_usd=usage["costUsd"])
        return self._result(inp.turn, response.content, usage)
