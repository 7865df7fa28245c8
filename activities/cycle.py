"""A model turn and the tool calls it asks for, in one activity on the sandbox's host.

Each activity costs Temporal a task-queue round trip, a workflow task and the payloads
of both ways; a cycle of one model turn and its tool call was two of them. It is one
now (issue 28, ``docs/DESIGN.md``). What each step guarantees stays:

- the turn is ``run_agent_turn``'s work and each call ``run_tool``'s, stored once each:
  a retried attempt finds the answer and the results it stored and goes on after them
  (``turn.retried`` only while the answer is not stored);
- a call that fails as ``run_tool`` would retry goes back to the workflow, which runs it
  with ``run_tool``'s own retries; one that ends the run ends it here too;
- the model call keeps its own time limit, and a call starts only while the activity
  has a whole ``run_tool``'s limit left; the calls it does not start go back to the
  workflow, which runs them one by one as before;
- the calls run in order up to the first control call (``ask_user``): the workflow
  answers that one and runs the rest itself;
- none runs once the turn's cost is over the run's limit, nor once a close or an
  interrupt asked the run to stop (``request_stop`` writes it; each call reads it in
  the statement it reads anyway).

Runs with an approval policy keep two activities: every gated call of a turn is decided
before any of them runs (``workflows/approvals.py``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from temporalio import activity

from activities._support import heartbeats, logger, typed_failures
from runyard.errors import RunyardError
from runyard.tools import is_control
from workflows.options import MODEL_TURN, tool
from workflows.payloads import CycleInput, ToolInput, TurnInput, TurnResult


class Turns(Protocol):
    async def turn(self, inp: TurnInput, attempt: int) -> TurnResult: ...


class Tools(Protocol):
    async def tool(self, inp: ToolInput, *, unless_stopping: bool = False) -> bool: ...


class CycleActivities:
    def __init__(self, turns: Turns, tools: Tools) -> None:
        self.turns = turns  # AgentActivities
        self.tools = tools  # SandboxActivities

    @activity.defn(name="run_turn_and_tools")
    @typed_failures
    @heartbeats
    async def run_turn_and_tools(self, inp: CycleInput) -> TurnResult:
        """The turn's result, with ``ran``: the calls whose results are stored, in order."""
        info = activity.info()
        started = time.monotonic()
        limit = (info.start_to_close_timeout or MODEL_TURN.start_to_close).total_seconds()
        async with asyncio.timeout(MODEL_TURN.start_to_close.total_seconds()):
            res = await self.turns.turn(TurnInput(run_id=inp.run_id, turn=inp.turn), info.attempt)
        if res.cost_usd > inp.max_cost_usd:
            return res  # the workflow ends the run on its guardrail
        per_call = tool(inp.tool_timeout_seconds).start_to_close.total_seconds()
        ran: list[str] = []
        for call in res.tool_calls:
            if is_control(call.name) or limit - (time.monotonic() - started) < per_call:
                break
            ref = ToolInput(
                run_id=inp.run_id,
                turn=inp.turn,
                call_id=call.id,
                name=call.name,
                sandbox=inp.sandbox,
            )
            try:
                if not await self.tools.tool(ref, unless_stopping=True):
                    break
            except Exception as exc:
                if isinstance(exc, RunyardError) and not exc.should_retry:
                    raise  # it ends the run, as it would in run_tool
                # Whatever run_tool's own retries are for: the call goes back to the
                # workflow, which runs it with them (the model's answer stays stored).
                logger(inp.run_id, turn=inp.turn).warning(
                    "tool.handed_back", call_id=call.id, error=f"{type(exc).__name__}: {exc}"
                )
                break
            ran.append(call.id)
        return res.model_copy(update={"ran": ran})
