"""The guardrail arithmetic of ``workflows/agent_loop.py`` at its edges: a run may use
exactly its limits (the last allowed turn, a cost equal to the cap), one step past them
fails it, and the ``guardrail.triggered`` data says which limit and by how much."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from runyard.domain import RunStatus
from tests.workflows.conftest import running
from tests.workflows.fakes import Turn, World
from workflows.payloads import ExecRequest
from workflows.run import RunWorkflow


async def outcome(
    env: WorkflowEnvironment, script: list[Turn], **guardrails: Any
) -> tuple[str, dict[str, Any] | None, int]:
    """The run's status, its guardrail data and the turns it took."""
    world = World()
    async with running(env, world) as start:
        handle = await start(script, guardrails=guardrails)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        try:
            await handle.result()
        except WorkflowFailureError as err:
            assert isinstance(err.cause, ApplicationError)
    run = world.runs[handle.id]
    return run.status, run.guardrail, run.turns


TOOL, DONE = Turn(["bash"]), Turn([])


async def test_the_last_allowed_turn_may_finish(env: WorkflowEnvironment) -> None:
    status, guardrail, turns = await outcome(env, [TOOL, TOOL, DONE], max_turns=3)
    assert (status, guardrail, turns) == (RunStatus.COMPLETED, None, 3)


async def test_a_turn_past_the_limit_fails_before_the_model_is_asked(
    env: WorkflowEnvironment,
) -> None:
    status, guardrail, turns = await outcome(env, [TOOL] * 5, max_turns=3)
    assert status == RunStatus.FAILED and turns == 3  # no fourth model call
    assert guardrail == {"guardrail": "maxTurns", "limit": 3, "value": 3}


@pytest.mark.parametrize(
    ("costs", "cap", "status", "value"),
    [
        ([0.5, 0.5], 1.0, RunStatus.COMPLETED, None),  # equal to the cap is within it
        ([0.5, 0.5, 0.5], 1.0, RunStatus.FAILED, 1.5),  # the turn that passes it ends it
        ([0.25, 0.25, 0.25, 0.25], 1.0, RunStatus.COMPLETED, None),
    ],
)
async def test_the_cost_cap_is_inclusive(
    env: WorkflowEnvironment, costs: list[float], cap: float, status: str, value: float | None
) -> None:
    script = [Turn(["bash"], cost=c) for c in costs[:-1]] + [Turn([], cost=costs[-1])]
    if status == RunStatus.FAILED:
        script = [Turn(["bash"], cost=c) for c in costs] + [DONE]
    got, guardrail, turns = await outcome(env, script, max_cost_usd=cap)
    assert got == status
    if value is None:
        assert guardrail is None and turns == len(costs)
    else:
        assert guardrail == {"guardrail": "maxCostUsd", "limit": cap, "value": value}
        assert turns == len(costs)  # the model is not asked again
