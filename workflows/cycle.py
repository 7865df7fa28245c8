"""The model turn of a run without an approval policy: the turn and the tool calls it
asks for run in one activity on the sandbox's host (``activities/cycle.py``, issue 28).

Called only where ``workflow.patched(PATCH)`` holds, so runs in flight replay as they
were recorded (one activity per model turn and per tool call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.cycle import CycleActivities
    from activities.lifecycle import LifecycleActivities
    from workflows import options
    from workflows.payloads import CycleInput, RunInput, RunRef, SandboxRef, TurnResult

PATCH = "turn-and-tools"


async def turn_and_tools(
    inp: RunInput, turn: int, sandbox: SandboxRef, stopping: Callable[[], bool]
) -> TurnResult:
    """Run the turn; the result's ``ran`` lists the calls that ran in it. If ``stopping()``
    turns true meanwhile (a close, an interrupt), ``request_stop`` tells the activity,
    which then starts no further call: the workflow decides what becomes of them."""
    handle = workflow.start_activity_method(
        CycleActivities.run_turn_and_tools,
        CycleInput(
            run_id=inp.run_id,
            turn=turn,
            sandbox=sandbox,
            max_cost_usd=inp.guardrails.max_cost_usd,
            tool_timeout_seconds=inp.tool_timeout_seconds,
        ),
        **options.turn_and_tools(inp.tool_timeout_seconds).remote(
            summary=f"model turn {turn} and its tool calls",
            **options.on_host(sandbox, inp.host_lost_seconds),
        ),
    )
    try:
        await workflow.wait_condition(lambda: handle.done() or stopping())
        if not handle.done():
            try:
                await workflow.execute_local_activity_method(
                    LifecycleActivities.request_stop,
                    RunRef(run_id=inp.run_id),
                    **options.LIFECYCLE.local(),
                )
            except ActivityError:  # the calls run; the loop still stops after them
                workflow.logger.warning("the stop could not be recorded: the turn's calls run")
        result: TurnResult = await handle
        return result
    except asyncio.CancelledError:
        handle.cancel()
        raise
