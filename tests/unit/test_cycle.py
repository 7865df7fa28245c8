"""``run_turn_and_tools`` (``activities/cycle.py``) with stand-ins for the model turn and
the tool calls: which calls it runs, in which order, and which it hands back."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cycle import CycleActivities
from runyard.errors import ResourceLimitExceeded, SandboxError
from workflows.options import MODEL_TURN, turn_and_tools
from workflows.payloads import CycleInput, SandboxRef, ToolCallRef, ToolInput, TurnInput, TurnResult


class Stand:
    """The model's turn asks for ``calls``; a call named ``stop`` finds the run stopping."""

    def __init__(self, calls: list[str], cost: float = 0.01) -> None:
        self.calls, self.cost = calls, cost
        self.attempts: list[int] = []
        self.started: list[str] = []

    async def turn(self, inp: TurnInput, attempt: int) -> TurnResult:
        self.attempts.append(attempt)
        refs = [ToolCallRef(id=f"c{i}", name=n) for i, n in enumerate(self.calls)]
        return TurnResult(turn=inp.turn, tool_calls=refs, turns=inp.turn, cost_usd=self.cost)

    async def tool(self, inp: ToolInput, *, unless_stopping: bool = False) -> bool:
        assert unless_stopping  # the turn's calls always stop for a close or an interrupt
        if inp.name == "stop":
            return False
        if inp.name == "flaky":  # what run_tool's retries are for
            raise SandboxError("the runner went away")
        if inp.name == "oom":
            raise ResourceLimitExceeded("the sandbox went over its memory")
        self.started.append(inp.call_id)
        return True


async def cycle(stand: Stand, limit: timedelta, attempt: int = 1) -> TurnResult:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, start_to_close_timeout=limit, attempt=attempt)
    inp = CycleInput(
        run_id="run_x",
        turn=3,
        sandbox=SandboxRef(sandbox_id="sbx_x"),
        max_cost_usd=1.0,
        tool_timeout_seconds=1,
    )
    activity = CycleActivities(stand, stand).run_turn_and_tools
    result: TurnResult = await env.run(activity, inp)
    return result


@pytest.fixture
def full() -> timedelta:
    return turn_and_tools(1).start_to_close


async def test_the_calls_run_in_order_up_to_the_first_control_call(full: timedelta) -> None:
    stand = Stand(["bash", "write_file", "ask_user", "bash"])
    res = await cycle(stand, full)
    assert res.ran == ["c0", "c1"] == stand.started
    assert [c.id for c in res.tool_calls] == ["c0", "c1", "c2", "c3"]  # the workflow's rest


async def test_a_retry_passes_its_attempt_to_the_turn(full: timedelta) -> None:
    stand = Stand(["bash"])
    assert (await cycle(stand, full, attempt=2)).ran == ["c0"] and stand.attempts == [2]


async def test_a_stopping_run_starts_no_further_call(full: timedelta) -> None:
    stand = Stand(["bash", "stop", "bash"])
    assert (await cycle(stand, full)).ran == ["c0"] and stand.started == ["c0"]


async def test_no_call_runs_over_the_cost_limit(full: timedelta) -> None:
    stand = Stand(["bash"], cost=1.5)
    res = await cycle(stand, full)
    assert res.ran == [] and stand.started == [] and res.cost_usd == 1.5


async def test_a_call_starts_only_with_a_whole_calls_limit_left() -> None:
    # 61 s is exactly one call's limit (1 s of command, a minute for the rest): once any
    # time has passed, less is left, and the call goes back to the workflow.
    stand = Stand(["bash"])
    assert (await cycle(stand, timedelta(seconds=61))).ran == [] and stand.started == []
    assert turn_and_tools(1).start_to_close == MODEL_TURN.start_to_close + timedelta(seconds=61)


async def test_a_call_that_failed_retryably_goes_back_to_the_workflow(full: timedelta) -> None:
    stand = Stand(["bash", "flaky", "bash"])
    res = await cycle(stand, full)
    assert res.ran == ["c0"] and stand.started == ["c0"]  # run_tool retries c1, then c2


async def test_a_call_that_ends_the_run_fails_the_activity(full: timedelta) -> None:
    stand = Stand(["bash", "oom", "bash"])
    with pytest.raises(ApplicationError) as caught:
        await cycle(stand, full)
    assert caught.value.type == "RUN_RESOURCE_LIMIT_EXCEEDED" and caught.value.non_retryable
    assert stand.started == ["c0"]
