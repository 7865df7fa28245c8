"""Sandboxes of waiting runs on the real stack: paused while the run waits for input and
resumed by the answer; and the reaper, which destroys the sandbox of a run whose
workflow was terminated in Temporal behind Runyard's back, of a run that ended and of a
run the store does not know, and no other."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client, ScheduleOverlapPolicy

from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.db.types import utcnow
from runyard.encryption import data_converter
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider
from runyard.settings import Settings, default_host_name
from tests.conftest import TERMINAL, poll_until, script, wait_for
from tests.integration.cgroup_probe import alive, cpu_ticks, freezer_dir, frozen, pids, spinner_in
from tests.integration.counting_runs import gone
from tests.integration.test_events import full_log
from tests.stack import Stack
from workflows.reaper import reaper_schedule_id

ASK = {"ask": "Which branch?"}
AFTER = {"tool": "bash", "input": {"command": "echo ran-after-the-answer"}}


async def waiting_run(api: httpx.AsyncClient) -> str:
    resp = await api.post(
        "/v1/runs",
        json={"prompt": script(ASK, AFTER, {"text": "done"}), "model": "scripted", "start": True},
    )
    assert resp.status_code == 201, resp.text
    run_id = str(resp.json()["id"])
    await wait_for(api, run_id, {"waiting_for_input"}, timeout=60)
    return run_id


def sandbox_dir(stack: Stack, run_id: str) -> Path:
    return Path(stack.env["RUNYARD_DATA_DIR"]) / "sandboxes" / sandbox_id(run_id)


def host_queue(stack: Stack) -> str:
    """The test stack's worker host's task queue (its reaper schedule is named after it)."""
    host = stack.env.get("RUNYARD_HOST_NAME") or default_host_name(
        Path(stack.env["RUNYARD_DATA_DIR"])
    )
    return f"{stack.env['RUNYARD_TASK_QUEUE']}@{host}"


def sandbox_id(run_id: str) -> str:
    return "sbx_" + run_id.removeprefix("run_")


async def answer_and_finish(api: httpx.AsyncClient, run_id: str) -> None:
    resp = await api.post(f"/v1/runs/{run_id}/input", json={"content": "main"})
    assert resp.status_code == 200, resp.text
    done = await wait_for(api, run_id, TERMINAL, timeout=60)
    assert done["status"] == "completed", done
    outputs = [
        e["data"]["output"] for e in await full_log(api, run_id) if e["type"] == "tool.result"
    ]
    assert len(outputs) == 1 and "ran-after-the-answer" in outputs[0]


@pytest.fixture
async def temporal(stack: Stack) -> AsyncIterator[Client]:
    keys = stack.env.get("RUNYARD_PAYLOAD_KEYS")  # the stack's, if it encrypts
    converter = data_converter(Settings(payload_keys=SecretStr(keys) if keys else None))
    yield await Client.connect(stack.env["TEMPORAL_ADDRESS"], data_converter=converter)


async def test_a_waiting_runs_sandbox_is_frozen_until_the_answer(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    run_id = await waiting_run(api)
    group = freezer_dir(sandbox_id(run_id))
    if group is None:
        pytest.skip("no writable cgroup freezer on this machine")
    await poll_until(lambda: asyncio.sleep(0, frozen(group)), "the sandbox frozen", timeout=30)
    runner = pids(group)
    assert runner, "the sandbox's runner is in its cgroup"
    with spinner_in(group) as spinner:  # a CPU-bound process in the frozen sandbox
        before = [cpu_ticks(pid) for pid in [spinner, *runner]]
        await asyncio.sleep(1.0)
        assert [cpu_ticks(pid) for pid in [spinner, *runner]] == before
        assert frozen(group)
        resp = await api.post(f"/v1/runs/{run_id}/input", json={"content": "main"})
        assert resp.status_code == 200, resp.text
        await poll_until(lambda: asyncio.sleep(0, not frozen(group)), "the sandbox thawed")
        await poll_until(
            lambda: asyncio.sleep(0.05, cpu_ticks(spinner) > before[0]), "the spinner running"
        )
    done = await wait_for(api, run_id, TERMINAL, timeout=60)
    assert done["status"] == "completed", done
    outputs = [
        e["data"]["output"] for e in await full_log(api, run_id) if e["type"] == "tool.result"
    ]
    assert "ran-after-the-answer" in outputs[0]


async def test_the_reaper_destroys_the_sandbox_of_a_terminated_workflow(
    api: httpx.AsyncClient, stack: Stack, temporal: Client
) -> None:
    terminated, active = await waiting_run(api), await waiting_run(api)
    ended = await api.post(
        "/v1/runs", json={"prompt": script({"text": "ok"}), "model": "scripted", "start": True}
    )
    completed = str(ended.json()["id"])
    assert (await wait_for(api, completed, TERMINAL))["status"] == "completed"
    await gone(sandbox_dir(stack, completed))  # its own destroy runs beside the end
    # Leaked sandboxes of a run that ended and of a run the store never had, as a worker
    # that died half way through would leave them.
    leaks = LocalSandboxProvider(sandbox_dir(stack, completed).parent, bwrap=shutil.which("bwrap"))
    ghost = "run_" + secrets.token_hex(6)
    for run_id in (completed, ghost):
        await leaks.create(sandbox_id(run_id), SandboxSpec(size="s"))
    group = freezer_dir(sandbox_id(terminated))
    doomed = pids(group) if group is not None else []
    await temporal.get_workflow_handle(terminated).terminate(reason="behind Runyard's back")
    # The store still says waiting: only Temporal knows the workflow is gone.
    assert (await api.get(f"/v1/runs/{terminated}")).json()["status"] == "waiting_for_input"
    assert sandbox_dir(stack, terminated).is_dir()

    schedule = temporal.get_schedule_handle(reaper_schedule_id(host_queue(stack)))
    await schedule.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    reaped = [sandbox_dir(stack, r) for r in (terminated, completed, ghost)]
    await poll_until(
        lambda: asyncio.sleep(0, not any(d.exists() for d in reaped)),
        "the three sandboxes reaped",
        timeout=60,
        every=0.2,
    )
    assert not [pid for pid in doomed if alive(pid)], "its processes are gone"
    assert not sandbox_dir(stack, completed).exists() and not sandbox_dir(stack, ghost).exists()
    assert group is None or not group.exists()
    assert sandbox_dir(stack, active).is_dir()  # active in the store and in Temporal: kept
    await answer_and_finish(api, active)
    logs = "".join(p.read_text() for p in (Path(stack.logs)).glob("worker-*.log"))
    assert "sandbox.reaped" in logs and sandbox_id(terminated) in logs


def reaper_rounds(stack: Stack) -> int:
    logs = "".join(p.read_text() for p in Path(stack.logs).glob("worker-*.log"))
    return logs.count("sandbox.reaped ")


async def reap_round(stack: Stack, temporal: Client) -> None:
    """Trigger the reaper's schedule and wait for the round to be logged."""
    before = reaper_rounds(stack)
    schedule = temporal.get_schedule_handle(reaper_schedule_id(host_queue(stack)))
    await schedule.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    await poll_until(
        lambda: asyncio.sleep(0, reaper_rounds(stack) > before), "a reaper round", timeout=60
    )


async def test_a_just_ended_runs_sandbox_is_left_to_its_workflow(
    api: httpx.AsyncClient, stack: Stack, temporal: Client, stack_db: Database
) -> None:
    run_id = await waiting_run(api)
    # The store says the run ended a moment ago while its workflow still runs (as while a
    # cancelled run's changes are kept): the workflow destroys the sandbox, not the reaper.
    async with stack_db.write() as s:
        run = await s.get(Run, run_id)
        assert run is not None
        run.status, run.cancelled_at = "cancelled", utcnow()
        s.add(run)
    await reap_round(stack, temporal)
    assert sandbox_dir(stack, run_id).is_dir()
    # Long overdue: the reaper takes it.
    async with stack_db.write() as s:
        run = await s.get(Run, run_id)
        assert run is not None
        run.cancelled_at = utcnow() - timedelta(hours=1)
        s.add(run)
    await reap_round(stack, temporal)
    assert not sandbox_dir(stack, run_id).exists()
    await temporal.get_workflow_handle(run_id).terminate(reason="test over")
