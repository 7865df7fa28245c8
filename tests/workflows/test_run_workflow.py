"""RunWorkflow on the time-skipping test server: guardrails, the time budget paused while
waiting, cancel at every stage, close, continue-as-new, and the Temporal status of each
ending. Waits of hours or days are skipped, so the file runs in seconds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from runyard.domain import RunStatus
from tests.workflows.conftest import RunHandle, record, running
from tests.workflows.fakes import Turn, World
from workflows.payloads import (
    AnswerRequest,
    CancelRequest,
    CloseRequest,
    ExecRequest,
    MessageRequest,
)
from workflows.run import RunWorkflow

TOOL = Turn(["bash"])
DONE = Turn([])
ASK = Turn(["ask_user"])


async def until(predicate: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.02)


async def paused(handle: RunHandle, timeout: float = 10) -> None:
    """Until the pause activity's completion is in the history: the Java test server
    mishandles a cancel that races an activity's end (ACTIVITY_UNKNOWN), a real one not."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        history = await handle.fetch_history()
        pause = [
            e.event_id
            for e in history.events
            if e.activity_task_scheduled_event_attributes.activity_type.name == "pause_sandbox"
        ]
        done = {
            e.activity_task_completed_event_attributes.scheduled_event_id for e in history.events
        }
        if pause and pause[-1] in done:
            return
        if loop.time() > end:
            raise AssertionError("the sandbox was never paused")
        await asyncio.sleep(0.02)


async def failure(handle: RunHandle) -> BaseException:
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert err.value.cause is not None
    return err.value.cause


async def temporal_status(handle: RunHandle) -> WorkflowExecutionStatus | None:
    return (await handle.describe()).status


async def test_completes(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([TOOL, TOOL, DONE])
        assert (await handle.execute_update(RunWorkflow.exec, ExecRequest())).status == "pending"
        assert (await handle.result()).status == RunStatus.COMPLETED
        await record(handle, "completed-destroy-beside-end")
    run = world.runs[handle.id]
    assert run.events == ["run.started", "sandbox.ready", "run.completed"]
    assert run.tools_run == ["bash", "bash"] and run.turns == 3
    assert run.outputs_collected and run.sandbox_destroyed
    assert run.sandbox_log[-2:] == ["collect", "destroy"]
    assert await temporal_status(handle) == WorkflowExecutionStatus.COMPLETED


async def test_a_sandbox_that_cannot_be_destroyed_does_not_change_the_outcome(
    env: WorkflowEnvironment,
) -> None:
    """The destroy runs beside the terminal write: the run has completed by then, and a
    sandbox left behind is the reaper's."""
    world = World()
    world.destroy_error = True
    async with running(env, world) as start:
        handle = await start([TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    assert run.events[-1] == "run.completed" and not run.sandbox_destroyed


async def test_a_second_exec_is_refused(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"], seconds=0.3), DONE])
        first, second = await asyncio.gather(
            handle.execute_update(RunWorkflow.exec, ExecRequest()),
            handle.execute_update(RunWorkflow.exec, ExecRequest()),
            return_exceptions=True,
        )
        outcomes = sorted([type(first).__name__, type(second).__name__])
        assert outcomes == ["ExecResult", "WorkflowUpdateFailedError"]
        refused = first if isinstance(first, BaseException) else second
        assert isinstance(refused, WorkflowUpdateFailedError)
        assert isinstance(refused.cause, ApplicationError)
        assert refused.cause.type == "RUN_ALREADY_STARTED"
        await handle.result()


async def test_exec_past_the_cap_is_refused_and_may_be_retried(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        busy = await start([ASK, DONE], max_active_runs=1)
        await busy.execute_update(RunWorkflow.exec, ExecRequest())
        other = await start([DONE], max_active_runs=1)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await other.execute_update(RunWorkflow.exec, ExecRequest())
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.type == "CONCURRENT_RUN_LIMIT_EXCEEDED"
        assert world.runs[other.id].status == RunStatus.QUEUED
        await until(lambda: world.runs[busy.id].status == RunStatus.WAITING_FOR_INPUT)
        await busy.execute_update(RunWorkflow.answer, AnswerRequest(content="yes"))
        # Polled, not awaited: waiting on a result lets the test server skip time, and the
        # queued run's expiry timer is the next one.
        await until(lambda: world.runs[busy.id].status == RunStatus.COMPLETED)
        await other.execute_update(RunWorkflow.exec, ExecRequest())  # a slot is free now
        assert (await other.result()).status == RunStatus.COMPLETED


@pytest.mark.parametrize(
    ("script", "guardrails", "reason", "guardrail"),
    [
        ([TOOL] * 5, {"max_turns": 3}, "max_turns", "maxTurns"),
        ([Turn(["bash"], cost=1.0)] * 5, {"max_cost_usd": 1.5}, "max_cost", "maxCostUsd"),
        ([Turn(["bash"], seconds=0.4)] * 20, {"timeout_seconds": 1}, "timeout", "timeoutSeconds"),
    ],
)
async def test_guardrails_fail_the_run_and_the_workflow(
    env: WorkflowEnvironment,
    script: list[Turn],
    guardrails: dict[str, Any],
    reason: str,
    guardrail: str,
) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start(script, guardrails=guardrails)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        cause = await failure(handle)
        if reason == "max_turns":
            await record(handle, "failed-max-turns")
    assert isinstance(cause, ApplicationError) and cause.type == reason
    run = world.runs[handle.id]
    assert run.status == RunStatus.FAILED and run.fail_reason == reason
    assert run.events[-2:] == ["guardrail.triggered", "run.failed"]
    assert run.sandbox_destroyed
    assert run.forwarded_at_end == [True]  # a failed run's pushes are still forwarded
    assert await temporal_status(handle) == WorkflowExecutionStatus.FAILED


async def test_an_activity_error_fails_the_workflow_with_its_code(env: WorkflowEnvironment) -> None:
    world = World()
    world.provision_error = "SANDBOX_UNAVAILABLE"
    async with running(env, world) as start:
        handle = await start([DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        cause = await failure(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "SANDBOX_UNAVAILABLE"
    run = world.runs[handle.id]
    assert run.status == RunStatus.FAILED and run.fail_reason == "error"
    assert run.error is not None and run.error["code"] == "SANDBOX_UNAVAILABLE"


async def test_waiting_for_input_pauses_the_time_budget(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([ASK, TOOL, DONE], guardrails={"timeout_seconds": 30})
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        await env.sleep(120)  # two minutes of waiting, far past the 30 s budget
        await handle.execute_update(RunWorkflow.answer, AnswerRequest(content="go on"))
        assert (await handle.result()).status == RunStatus.COMPLETED
        await record(handle, "asked-and-answered")
    run = world.runs[handle.id]
    assert run.answers == ["go on"]
    assert run.events == [
        "run.started",
        "sandbox.ready",
        "run.waiting_for_input",
        "run.input_received",
        "run.completed",
    ]


async def test_an_unanswered_question_times_out(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([ASK, DONE], input_wait_seconds=3600)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        cause = await failure(handle)  # the test server skips the hour
    assert isinstance(cause, ApplicationError) and cause.type == "timeout"
    assert world.runs[handle.id].sandbox_destroyed


async def test_an_answer_is_refused_unless_the_run_waits(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"], seconds=0.5), DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(RunWorkflow.answer, AnswerRequest(content="x"))
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.type == "RUN_NOT_WAITING_FOR_INPUT"
        queued = await handle.execute_update(RunWorkflow.message, MessageRequest(content="hi"))
        assert queued.delivered == "queued"
        await handle.result()
    assert world.runs[handle.id].notes == ["hi"]


async def test_a_message_answers_a_waiting_run(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([ASK, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        result = await handle.execute_update(RunWorkflow.message, MessageRequest(content="yes"))
        assert result.delivered == "answer"
        await handle.result()
    assert world.runs[handle.id].answers == ["yes"]


@pytest.mark.parametrize("stage", ["queued", "pending", "running", "waiting_for_input"])
async def test_cancel_at_every_stage(env: WorkflowEnvironment, stage: str) -> None:
    world = World()
    world.block_tools = stage == "running"
    world.provision_seconds = 30 if stage == "pending" else 0
    async with running(env, world) as start:
        handle = await start([ASK if stage == "waiting_for_input" else TOOL, DONE])
        if stage != "queued":
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == stage)
        # Once the activity is under way (see test_cancel_through_temporal_itself).
        if stage == "running":
            await until(lambda: bool(world.runs[handle.id].tools_started))
        if stage == "pending":
            await until(lambda: world.runs[handle.id].provision_started)
        if stage == "waiting_for_input":
            await paused(handle)
        answer = await handle.execute_update(RunWorkflow.cancel, CancelRequest())
        assert answer.status == RunStatus.CANCELLED  # final at once
        assert world.runs[handle.id].status == RunStatus.CANCELLED
        assert isinstance(await failure(handle), CancelledError)
        if stage == "running":
            await record(handle, "cancelled-not-forwarding")
    run = world.runs[handle.id]
    assert run.events[-1] == "run.cancelled" and run.events.count("run.cancelled") == 1
    assert run.sandbox_destroyed == (stage in ("running", "waiting_for_input"))
    # Its work is kept (changes.patch), but nothing more is forwarded upstream.
    assert run.forwarded_at_end == ([False] if run.sandbox_destroyed else [])
    assert await temporal_status(handle) == WorkflowExecutionStatus.CANCELED


async def test_cancel_through_temporal_itself(env: WorkflowEnvironment) -> None:
    world = World()
    world.block_tools = True
    async with running(env, world) as start:
        handle = await start([TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        # Once the tool call is under way: the Java test server mishandles a cancellation
        # that races the scheduling of an activity (ACTIVITY_UNKNOWN), a real server does not.
        await until(lambda: bool(world.runs[handle.id].tools_started))
        await handle.cancel()  # as the Temporal UI or CLI would
        assert isinstance(await failure(handle), CancelledError)
        await record(handle, "cancelled-through-temporal")
    run = world.runs[handle.id]
    assert run.status == RunStatus.CANCELLED and run.sandbox_destroyed
    assert run.forwarded_at_end == [False]
    # Ended before its changes were kept: nothing a tool call still under way forwards
    # after the cancel (the store says cancelled).
    assert run.sandbox_log[-2:] == ["collect", "destroy"]
    assert run.ended_before_collect


async def test_close_ends_the_run_completed(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([ASK, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        await handle.signal(RunWorkflow.close, CloseRequest())  # close ends it completed
        assert (await handle.result()).status == RunStatus.COMPLETED
    assert world.runs[handle.id].outputs_collected


async def test_a_queued_run_expires(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([DONE], queued_ttl_seconds=24 * 3600)
        assert isinstance(await failure(handle), CancelledError)
    run = world.runs[handle.id]
    assert run.status == RunStatus.CANCELLED and run.error == {"code": "RUN_EXPIRED", "message": ""}


async def test_continue_as_new_keeps_the_run(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        script = [Turn(["bash", "bash"])] * 12 + [DONE]
        handle = await start(script, continue_as_new_events=40, guardrails={"max_turns": 20})
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
        first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        history = await first.fetch_history()
        await record(handle, "continued-as-new")
    assert (
        history.events[-1].event_type == HistoryEvent.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    )
    run = world.runs[handle.id]
    assert run.turns == 13 and len(run.tools_run) == 24  # nothing repeated, nothing lost
    assert run.events == ["run.started", "sandbox.ready", "run.completed"]
    assert run.sandbox_destroyed


async def test_max_turns_is_counted_across_continue_as_new(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([TOOL] * 30, continue_as_new_events=30, guardrails={"max_turns": 9})
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        cause = await failure(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "max_turns"
    assert world.runs[handle.id].turns == 9


async def test_the_sandbox_is_paused_while_the_run_waits(env: WorkflowEnvironment) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([ASK, TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: "pause" in world.runs[handle.id].sandbox_log)
        await env.sleep(600)
        assert world.runs[handle.id].sandbox_log == ["pause"]  # nothing runs while it waits
        await handle.execute_update(RunWorkflow.answer, AnswerRequest(content="go on"))
        assert (await handle.result()).status == RunStatus.COMPLETED
        await record(handle, "asked-paused-answered")
    log = world.runs[handle.id].sandbox_log
    assert log == ["pause", "answer", "resume", "tool:bash", "collect", "destroy"]


@pytest.mark.parametrize("ending", ["timeout", "cancel", "close"])
async def test_a_paused_sandbox_is_resumed_however_the_wait_ends(
    env: WorkflowEnvironment, ending: str
) -> None:
    world = World()
    async with running(env, world) as start:
        handle = await start([ASK, DONE], input_wait_seconds=3600)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        if ending != "timeout":
            await paused(handle)
        if ending == "cancel":
            await handle.execute_update(RunWorkflow.cancel, CancelRequest())
        if ending == "close":
            await handle.signal(RunWorkflow.close, CloseRequest())
        with pytest.raises(Exception) if ending != "close" else contextlib.nullcontext():
            await handle.result()
    # Resumed before its changes are kept (collect) and before it is destroyed.
    assert world.runs[handle.id].sandbox_log == ["pause", "resume", "collect", "destroy"]


async def test_a_sandbox_that_cannot_pause_does_not_fail_the_run(env: WorkflowEnvironment) -> None:
    world = World()
    world.pause_error = True
    async with running(env, world) as start:
        handle = await start([ASK, TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        await handle.execute_update(RunWorkflow.answer, AnswerRequest(content="go on"))
        assert (await handle.result()).status == RunStatus.COMPLETED
    assert world.runs[handle.id].tools_run == ["bash"]


async def test_the_setup_script_runs_before_the_sandbox_is_ready(env: WorkflowEnvironment) -> None:
    world = World()
    world.setup_exit = 0
    async with running(env, world) as start:
        handle = await start([TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
        await record(handle, "set-up")
    run = world.runs[handle.id]
    assert run.events == ["run.started", "sandbox.setup", "sandbox.ready", "run.completed"]
    assert run.sandbox_log[:2] == ["setup", "tool:bash"]


async def test_a_failing_setup_script_fails_the_run(env: WorkflowEnvironment) -> None:
    world = World()
    world.setup_exit = 3
    async with running(env, world) as start:
        handle = await start([TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        cause = await failure(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "SANDBOX_SETUP_FAILED"
    run = world.runs[handle.id]
    assert run.status == RunStatus.FAILED and run.fail_reason == "error"
    assert run.error is not None and run.error["code"] == "SANDBOX_SETUP_FAILED"
    assert "exited 3" in run.error["message"]
    assert run.events == ["run.started", "sandbox.setup", "run.failed"]
    assert run.tools_started == [] and run.sandbox_destroyed
