"""A model turn and its tool calls in one activity (``activities/cycle.py``, issue 28), on
the time-skipping test server with the real ``run_turn_and_tools`` over the fake world:
one activity per cycle on the sandbox's host, and every place the workflow used to step
in between still holds (a control call, the cost limit, a close, an approval policy)."""

from __future__ import annotations

import secrets

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from runyard.domain import RunStatus
from tests.workflows.conftest import record, running
from tests.workflows.fakes import Turn, World
from tests.workflows.test_run_workflow import until
from workflows.payloads import AnswerRequest, CloseRequest, ExecRequest
from workflows.run import RunWorkflow

DONE = Turn([])


def scheduled(history: WorkflowHistory) -> list[str]:
    """The activity types the run scheduled, in order (local activities are markers)."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_a_cycle_is_one_activity_on_the_sandboxs_host(env: WorkflowEnvironment) -> None:
    world = World()
    host = "host-a-" + secrets.token_hex(3)
    world.host_queues = [host]
    async with running(env, world) as start:
        async with Worker(env.client, task_queue=host, activities=world.sandbox_activities()):
            handle = await start([Turn(["bash", "write_file"]), Turn(["bash"]), DONE])
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            assert (await handle.result()).status == RunStatus.COMPLETED
            await record(handle, "turn-and-tools")
    run = world.runs[handle.id]
    assert run.tools_run == ["bash", "write_file", "bash"]
    assert run.tool_queues == [host, host, host]
    assert scheduled(await handle.fetch_history()) == [
        "provision_sandbox",
        *["run_turn_and_tools"] * 3,
        "collect_outputs",
        "destroy_sandbox",
    ]
    assert not run.stop_requested


async def test_the_calls_after_a_question_run_after_its_answer(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([Turn(["bash", "ask_user", "write_file"]), DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        # The call before the question ran in the turn's activity; the one after waits.
        assert world.runs[handle.id].tools_run == ["bash"]
        await handle.execute_update(RunWorkflow.answer, AnswerRequest(content="go on"))
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    assert run.tools_run == ["bash", "write_file"] and run.answers == ["go on"]
    assert scheduled(await handle.fetch_history()).count("run_tool") == 1  # write_file


async def test_no_call_runs_once_the_turn_is_over_the_cost_limit(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"], cost=2.0), DONE], guardrails={"max_cost_usd": 1.0})
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        with pytest.raises(WorkflowFailureError):  # a guardrail fails the workflow too
            await handle.result()
    run = world.runs[handle.id]
    assert run.status == RunStatus.FAILED and run.fail_reason == "max_cost"
    assert run.tools_started == [] and run.turns == 1


async def test_a_close_during_the_model_call_runs_none_of_its_calls(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([Turn(["bash", "bash"], seconds=1.0), Turn(["bash"]), DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.RUNNING)
        await handle.signal(RunWorkflow.close, CloseRequest())  # while the model answers
        assert (await handle.result()).status == RunStatus.COMPLETED
        await record(handle, "turn-and-tools-closed")
    run = world.runs[handle.id]
    # As when the turn and its calls were separate activities: the turn under way
    # finished, none of its calls started, and no further turn ran.
    assert run.stop_requested and run.tools_started == [] and run.turns == 1
    assert run.outputs_collected


async def test_a_run_with_an_approval_policy_keeps_one_activity_per_step(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([Turn(["ask_user"]), DONE], approvals=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        await handle.execute_update(RunWorkflow.answer, AnswerRequest(content="yes"))
        assert (await handle.result()).status == RunStatus.COMPLETED
    kinds = scheduled(await handle.fetch_history())
    assert "run_turn_and_tools" not in kinds and kinds.count("run_agent_turn") == 2


async def test_a_turn_whose_host_is_gone_runs_on_any_worker(env: WorkflowEnvironment) -> None:
    """Its calls rebuild the sandbox at once (no second wait for the dead host), and its
    attempts number after the lost activity's, whose deltas may be stored."""
    world = World()
    dead, alive = "host-dead-" + secrets.token_hex(3), "host-b-" + secrets.token_hex(3)
    world.host_queues = [dead, alive]  # nothing polls the first host's queue
    async with running(env, world) as start:
        async with Worker(env.client, task_queue=alive, activities=world.sandbox_activities()):
            handle = await start([Turn(["bash"]), Turn(["bash"]), DONE], host_lost_seconds=2)
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            assert (await handle.result()).status == RunStatus.COMPLETED
            await record(handle, "turn-and-tools-host-lost")
    run = world.runs[handle.id]
    assert run.attempts == [5, 1, 1] and run.tools_run == ["bash", "bash"]
    assert run.tool_queues == [alive, alive] and run.events.count("sandbox.lost") == 1
    assert scheduled(await handle.fetch_history()) == [
        "provision_sandbox",
        "run_turn_and_tools",  # on the dead host: never started
        "run_agent_turn",
        "provision_sandbox",  # the call's rebuild
        "run_tool",
        "run_turn_and_tools",
        "run_turn_and_tools",
        "collect_outputs",
        "destroy_sandbox",
    ]


async def test_a_final_answer_needs_no_new_sandbox(env: WorkflowEnvironment) -> None:
    world = World()
    world.host_queues = ["host-gone-" + secrets.token_hex(3)]  # and no second host
    async with running(env, world) as start:
        handle = await start([DONE], host_lost_seconds=2)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    # The answer ran on any worker and the outputs were collected without the host.
    assert run.attempts == [5] and run.outputs_collected
    assert "sandbox.lost" not in run.events
