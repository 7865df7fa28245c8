"""Tool-call approvals in RunWorkflow on the time-skipping test server: every gated call
of a turn decided before any runs, parallel calls each with their own decision, the wait
outside the time budget, expiry (deny or fail), and a worker restart between a decision
and its call."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from runyard.domain import RunStatus
from tests.workflows.approval_fakes import ApprovalWorld
from tests.workflows.conftest import record, running
from tests.workflows.fakes import Turn
from tests.workflows.test_run_workflow import DONE, failure, paused, until
from workflows.approval_payloads import DecideRequest, Decision
from workflows.payloads import CancelRequest, ExecRequest, RunInput
from workflows.run import RunWorkflow


def decide(*decisions: Decision) -> DecideRequest:
    return DecideRequest(decisions=list(decisions), decided_by="key_t")


async def test_parallel_calls_wait_for_every_decision(env: WorkflowEnvironment) -> None:
    world = ApprovalWorld(ask=frozenset({"bash"}), deny=frozenset({"write_file"}))
    async with running(env, world) as start:
        handle = await start(
            [Turn(["bash", "read_file", "bash", "write_file"]), DONE], approvals=True
        )
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: len(world.pending(handle.id)) == 2)
        first, second = world.pending(handle.id)
        await handle.execute_update(RunWorkflow.decide, decide(Decision(id=first, decision="deny")))
        run = world.runs[handle.id]
        assert run.status == RunStatus.WAITING_FOR_INPUT
        assert run.tools_started == []  # nothing of the turn runs before all are decided
        with pytest.raises(WorkflowUpdateFailedError) as err:  # decided already
            await handle.execute_update(
                RunWorkflow.decide, decide(Decision(id=first, decision="approve"))
            )
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.type == "APPROVAL_NOT_PENDING"
        await handle.execute_update(
            RunWorkflow.decide, decide(Decision(id=second, decision="approve"))
        )
        assert (await handle.result()).status == RunStatus.COMPLETED
        await record(handle, "approvals-decided")
    # The denied bash and the write_file a rule denies do not run; each other call once.
    assert run.tools_run == ["read_file", "bash"]
    assert run.sandbox_log[:4] == ["pause", "resume", "tool:read_file", "tool:bash"]
    assert world.calls == {"gate": 1, "record": 2, "expire": 0}


async def test_a_batch_decides_all_at_once_and_the_wait_is_not_working_time(
    env: WorkflowEnvironment,
) -> None:
    world = ApprovalWorld()
    async with running(env, world) as start:
        handle = await start(
            [Turn(["bash", "bash"]), DONE], approvals=True, guardrails={"timeout_seconds": 30}
        )
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: len(world.pending(handle.id)) == 2)
        await env.sleep(600)  # ten minutes of waiting, far past the 30 s budget
        a, b = world.pending(handle.id)
        batch = decide(Decision(id=a, decision="approve"), Decision(id=b, decision="approve"))
        await handle.execute_update(RunWorkflow.decide, batch)
        assert (await handle.result()).status == RunStatus.COMPLETED
    assert world.runs[handle.id].tools_run == ["bash", "bash"]
    assert world.calls["record"] == 1


async def test_a_batch_with_one_stale_id_applies_nothing(env: WorkflowEnvironment) -> None:
    world = ApprovalWorld()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"]), DONE], approvals=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: len(world.pending(handle.id)) == 1)
        (a,) = world.pending(handle.id)
        batch = decide(Decision(id=a, decision="approve"), Decision(id="apr_x", decision="deny"))
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(RunWorkflow.decide, batch)
        assert world.calls["record"] == 0 and world.pending(handle.id) == [a]
        await handle.execute_update(RunWorkflow.decide, decide(Decision(id=a, decision="edit")))
        await handle.result()
    assert world.runs[handle.id].tools_run == ["bash"]


@pytest.mark.parametrize("on_timeout", ["deny", "fail"])
async def test_an_undecided_call_expires(env: WorkflowEnvironment, on_timeout: str) -> None:
    world = ApprovalWorld(timeout_seconds=3600, on_timeout=on_timeout)
    async with running(env, world) as start:
        handle = await start([Turn(["bash", "read_file"]), DONE], approvals=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        if on_timeout == "deny":  # the test server skips the hour
            assert (await handle.result()).status == RunStatus.COMPLETED
        else:
            cause = await failure(handle)
            assert isinstance(cause, ApplicationError) and cause.type == "APPROVAL_TIMEOUT"
    run = world.runs[handle.id]
    assert [a.status for a in world.approvals.values()] == ["expired"]
    if on_timeout == "deny":
        assert run.tools_run == ["read_file"]  # the expired call never runs
    else:
        assert run.tools_run == [] and run.status == RunStatus.FAILED
        assert run.fail_reason == "timeout"
        assert run.error is not None and run.error["code"] == "APPROVAL_TIMEOUT"
    assert run.sandbox_destroyed


async def test_a_cancel_while_waiting_ends_the_run(env: WorkflowEnvironment) -> None:
    world = ApprovalWorld()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"]), DONE], approvals=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: len(world.pending(handle.id)) == 1)
        await paused(handle)
        result = await handle.execute_update(RunWorkflow.cancel, CancelRequest())
        assert result.status == RunStatus.CANCELLED
        assert isinstance(await failure(handle), CancelledError)
    run = world.runs[handle.id]
    assert run.tools_started == [] and run.status == RunStatus.CANCELLED
    assert run.sandbox_destroyed and run.sandbox_log[:2] == ["pause", "resume"]


async def test_a_run_without_policy_is_not_gated(env: WorkflowEnvironment) -> None:
    world = ApprovalWorld()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"]), DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        assert (await handle.result()).status == RunStatus.COMPLETED
    assert world.calls["gate"] == 0 and world.runs[handle.id].tools_run == ["bash"]


async def test_an_approved_call_runs_once_across_a_worker_restart(
    env: WorkflowEnvironment,
) -> None:
    """The worker dies between the decision and the call: the new one replays the gate
    and the decision from the history (no second gate, no second record) and the call
    runs on it, once."""
    world = ApprovalWorld()
    world.block_tools = True
    queue = "wf-" + secrets.token_hex(4)
    run_id = "run_" + secrets.token_hex(6)
    world.add(run_id, [Turn(["bash"]), DONE])
    inp = RunInput(run_id=run_id, org_id="org_t", model="scripted", approvals=True)

    def worker() -> Worker:
        return Worker(
            env.client,
            task_queue=queue,
            workflows=[RunWorkflow],
            activities=world.activities(),
            max_cached_workflows=0,  # every task replays the history
        )

    async with worker():
        handle = await env.client.start_workflow(RunWorkflow.run, inp, id=run_id, task_queue=queue)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: len(world.pending(run_id)) == 1)
        (apr,) = world.pending(run_id)
        await handle.execute_update(
            RunWorkflow.decide, decide(Decision(id=apr, decision="approve"))
        )
        await until(lambda: world.runs[run_id].tools_started == ["bash"])
    world.block_tools = False  # the first worker is gone, its call cut short
    async with worker():
        assert (await handle.result()).status == RunStatus.COMPLETED
    run = world.runs[run_id]
    assert run.tools_run == ["bash"]
    assert world.calls == {"gate": 1, "record": 1, "expire": 0}


async def test_two_decisions_at_once_apply_one(env: WorkflowEnvironment) -> None:
    world = ApprovalWorld()
    async with running(env, world) as start:
        handle = await start([Turn(["bash"]), DONE], approvals=True)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: len(world.pending(handle.id)) == 1)
        (apr,) = world.pending(handle.id)
        both = await asyncio.gather(
            handle.execute_update(RunWorkflow.decide, decide(Decision(id=apr, decision="deny"))),
            handle.execute_update(RunWorkflow.decide, decide(Decision(id=apr, decision="approve"))),
            return_exceptions=True,
        )
        refused = [r for r in both if isinstance(r, WorkflowUpdateFailedError)]
        assert len(refused) == 1 and isinstance(refused[0].cause, ApplicationError)
        assert refused[0].cause.type in ("APPROVAL_NOT_PENDING", "APPROVAL_ALREADY_DECIDED")
        await handle.result()
    assert world.calls["record"] == 1
    assert world.runs[handle.id].tools_run == ([] if both[0] is not refused[0] else ["bash"])
