"""Sandbox affinity on the time-skipping test server: a local sandbox's activities go to
the task queue of the host that provisioned it, and a host that stops picking them up is
noticed (schedule-to-start), the sandbox rebuilt elsewhere and the run goes on.

The test server does not skip time while an activity waits in a queue nobody polls, so
these runs take ``host_lost_seconds`` of real time: 2 s here (60 by default)."""

from __future__ import annotations

import secrets

from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from runyard.domain import RunStatus
from tests.workflows.conftest import record, running
from tests.workflows.fakes import Turn, World
from workflows.payloads import ExecRequest
from workflows.run import RunWorkflow

TOOL = Turn(["bash"])
DONE = Turn([])


async def test_tools_run_on_the_host_that_holds_the_sandbox(env: WorkflowEnvironment) -> None:
    world = World()
    host = "host-a-" + secrets.token_hex(3)
    world.host_queues = [host]
    async with running(env, world) as start:
        async with Worker(env.client, task_queue=host, activities=world.sandbox_activities()):
            handle = await start([TOOL, TOOL, DONE])
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[handle.id]
    assert run.tool_queues == [host, host]
    assert run.outputs_collected and run.sandbox_destroyed
    assert "sandbox.lost" not in run.events


async def test_a_lost_host_gets_the_sandbox_rebuilt_on_another(env: WorkflowEnvironment) -> None:
    world = World()
    dead, alive = "host-dead-" + secrets.token_hex(3), "host-b-" + secrets.token_hex(3)
    world.host_queues = [dead, alive]  # nothing polls the first host's queue
    async with running(env, world) as start:
        async with Worker(env.client, task_queue=alive, activities=world.sandbox_activities()):
            handle = await start([TOOL, TOOL, DONE], host_lost_seconds=2)
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            assert (await handle.result()).status == RunStatus.COMPLETED
            await record(handle, "sandbox-host-lost")
    run = world.runs[handle.id]
    # The first tool call never started on the dead host; both ran on the new sandbox.
    assert run.tool_queues == [alive, alive]
    assert run.tools_run == ["bash", "bash"]
    assert run.events.count("sandbox.lost") == 1
    assert run.outputs_collected and run.sandbox_destroyed


async def test_a_run_whose_hosts_keep_dying_fails_sandbox_unavailable(
    env: WorkflowEnvironment,
) -> None:
    world = World()
    world.host_queues = ["host-gone-" + secrets.token_hex(3)]  # and no second host
    async with running(env, world) as start:
        handle = await start([TOOL, DONE], host_lost_seconds=2)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        try:
            await handle.result()
        except WorkflowFailureError:
            pass
        else:
            raise AssertionError("the run should have failed")
    run = world.runs[handle.id]
    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error["code"] == "SANDBOX_UNAVAILABLE"
    assert run.tools_run == []
