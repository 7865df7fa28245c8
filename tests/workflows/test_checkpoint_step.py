"""The checkpoint step of the agent loop (issue 26): one checkpoint per turn boundary,
after the turn's tool results and before the next model call, on the sandbox's host; a
failing checkpoint never fails the run; a close mid-turn takes none at the cut."""

from __future__ import annotations

import secrets

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from runyard.domain import RunStatus
from tests.workflows.conftest import record, running
from tests.workflows.fakes import Turn, World
from tests.workflows.test_run_workflow import until
from workflows.payloads import CloseRequest, ExecRequest
from workflows.run import RunWorkflow

TOOL = Turn(["bash"])
DONE = Turn([])


async def test_every_turn_boundary_is_checkpointed_on_the_sandbox_host(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    host = "host-c-" + secrets.token_hex(3)
    world.host_queues = [host]
    async with running(env, world) as start:
        async with Worker(env.client, task_queue=host, activities=world.sandbox_activities()):
            handle = await start([Turn(["bash", "bash"]), TOOL, TOOL, DONE], has_repo=True)
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            assert (await handle.result()).status == RunStatus.COMPLETED
            await record(handle, "checkpointed")
    run = world.runs[handle.id]
    # Turns 1 to 3 after their tool results, turn 4 (the final answer) before the collect.
    assert run.checkpoints == [(1, host), (2, host), (3, host), (4, host)]
    assert run.tools_run == ["bash"] * 4 and run.outputs_collected


async def test_the_checkpoint_comes_after_the_tool_results_before_the_next_turn(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([TOOL, DONE], has_repo=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
    history = await handle.fetch_history()
    order = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # The turn and its tool call are one activity (activities/cycle.py).
    assert order[1:4] == ["run_turn_and_tools", "checkpoint_workspace", "run_turn_and_tools"]
    assert order[-3:-1] == ["checkpoint_workspace", "collect_outputs"]
    assert world.runs[handle.id].tools_run == ["bash"]


async def test_a_failing_checkpoint_never_fails_the_run(env: WorkflowEnvironment) -> None:
    world = World()
    world.checkpoint_error = True
    async with running(env, world) as start:
        handle = await start([TOOL, TOOL, DONE], has_repo=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    assert [turn for turn, _ in run.checkpoints] == [1, 2, 3]
    assert run.tools_run == ["bash", "bash"] and run.outputs_collected


async def test_a_close_mid_turn_leaves_no_checkpoint_at_the_cut(env: WorkflowEnvironment) -> None:
    """A turn cut by close has tool calls without results: no boundary, nothing forkable."""
    world = World()
    async with running(env, world) as start:
        handle = await start([TOOL, Turn(["ask_user", "bash"]), DONE], has_repo=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        await handle.signal(RunWorkflow.close, CloseRequest())  # before the turn's bash
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    assert [turn for turn, _ in run.checkpoints] == [1]
    assert run.tools_run == ["bash"]


async def test_a_run_without_a_repository_takes_no_checkpoint(env: WorkflowEnvironment) -> None:
    """No worktree of a repository, nothing to snapshot: no activity per turn for it."""
    world = World()
    async with running(env, world) as start:
        handle = await start([TOOL, TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    assert run.checkpoints == [] and run.tools_run == ["bash", "bash"]
