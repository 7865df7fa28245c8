"""ScheduleFireWorkflow on the time-skipping test server: the real RunWorkflow as its
child (with the fake world of tests/workflows/fakes.py) and fake schedule activities
under the real names. Temporal's own schedule machinery (overlap, catch-up) is the
server's; what is Runyard's is here: idempotent creation per scheduled time, skipped
fires, pause on failure, and cancel_other superseding the run in flight."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from schedules.activities import stamp
from schedules.payloads import (
    CreateFire,
    FireInput,
    FireResult,
    Made,
    PauseFire,
    Started,
    StartFire,
)
from schedules.workflow import ScheduleFireWorkflow
from tests.workflows.conftest import record
from tests.workflows.fakes import Turn, World
from workflows.payloads import ExecRequest, RunInput
from workflows.run import RunWorkflow

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class FakeSchedule:
    """The schedule's store: one run per (schedule, scheduled time), skips, pauses."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.script = [Turn()]
        self.runs: dict[str, str] = {}
        self.skip: str | None = None
        self.skipped: list[str] = []
        self.pauses: list[str] = []
        self.pause_on_failure = False
        self.max_active_runs = 10
        self.create_seconds = 0.0
        self.created = asyncio.Event()

    @activity.defn(name="create_scheduled_run")
    async def create_scheduled_run(self, inp: CreateFire) -> Made:
        self.created.set()
        await asyncio.sleep(self.create_seconds)
        if self.skip:
            self.skipped.append(self.skip)
            return Made(skipped=self.skip)
        key = f"{inp.schedule_id}:{stamp(inp.scheduled_at)}"
        if key not in self.runs:
            self.runs[key] = "run_" + secrets.token_hex(6)
            self.world.add(self.runs[key], list(self.script))
        run_id = self.runs[key]
        return Made(
            run_id=run_id,
            run_input=RunInput(
                run_id=run_id,
                org_id="org_t",
                model="scripted",
                max_active_runs=self.max_active_runs,
            ),
            summary="nightly",
            pause_on_failure=self.pause_on_failure,
        )

    @activity.defn(name="start_scheduled_run")
    async def start_scheduled_run(self, inp: StartFire) -> Started:
        handle = activity.client().get_workflow_handle(inp.run_id)
        try:
            await handle.execute_update("exec", ExecRequest())
        except WorkflowUpdateFailedError as err:  # the cap: the run goes, the fire is skipped
            await handle.terminate("refused")
            self.skipped.append(str(getattr(err.cause, "type", "")))
            return Started(started=False, skipped="active_run_cap")
        return Started(started=True)

    @activity.defn(name="pause_schedule")
    async def pause_schedule(self, inp: PauseFire) -> None:
        self.pauses.append(inp.note)


@asynccontextmanager
async def firing(env: WorkflowEnvironment) -> AsyncIterator[tuple[World, FakeSchedule, str]]:
    world = World()
    schedule = FakeSchedule(world)
    queue = "fire-" + secrets.token_hex(4)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ScheduleFireWorkflow, RunWorkflow],
        activities=[
            *world.activities(),
            schedule.create_scheduled_run,
            schedule.start_scheduled_run,
            schedule.pause_schedule,
        ],
    ):
        yield world, schedule, queue


FIRE_IDS: list[str] = []
HISTORIES = Path(__file__).parent / "histories" / "schedules"


async def fire(env: WorkflowEnvironment, queue: str, at: datetime = AT) -> FireResult:
    FIRE_IDS.append("sch_t-" + secrets.token_hex(4))
    return await env.client.execute_workflow(
        ScheduleFireWorkflow.run,
        FireInput(schedule_id="sch_t", org_id="org_t", scheduled_at=at),
        id=FIRE_IDS[-1],
        task_queue=queue,
    )


async def test_the_recorded_fire_replays() -> None:
    """A fire in flight stays safe from changes to the fire workflow."""
    replayer = Replayer(workflows=[ScheduleFireWorkflow], data_converter=pydantic_data_converter)
    history = WorkflowHistory.from_json(
        "sch_t-replayed", (HISTORIES / "schedule-fire.json").read_text()
    )
    await replayer.replay_workflow(history)


async def test_a_fire_creates_its_run_and_waits_for_it(env: WorkflowEnvironment) -> None:
    async with firing(env) as (world, schedule, queue):
        result = await fire(env, queue)
        if os.environ.get("RUNYARD_RECORD_HISTORIES") == "1":
            handle = env.client.get_workflow_handle(FIRE_IDS[-1])
            history = await handle.fetch_history()
            (HISTORIES / "schedule-fire.json").write_text(history.to_json())
    assert result.status == "fired"
    assert result.run_status == "completed"
    assert world.runs[result.run_id or ""].status == "completed"
    assert schedule.pauses == []


async def test_a_second_fire_for_the_same_time_makes_no_second_run(
    env: WorkflowEnvironment,
) -> None:
    async with firing(env) as (world, _, queue):
        first = await fire(env, queue)
        again = await fire(env, queue)
        later = await fire(env, queue, AT.replace(hour=10))
    assert again.status == "duplicate"
    assert again.run_id == first.run_id
    assert later.status == "fired" and later.run_id != first.run_id
    assert len(world.runs) == 2


async def test_a_fire_that_cannot_be_created_is_skipped(env: WorkflowEnvironment) -> None:
    async with firing(env) as (world, schedule, queue):
        schedule.skip = "template_deleted"
        result = await fire(env, queue)
    assert result == FireResult(status="skipped", reason="template_deleted")
    assert world.runs == {}


async def test_a_fire_at_the_active_run_cap_is_skipped(env: WorkflowEnvironment) -> None:
    async with firing(env) as (world, schedule, queue):
        schedule.max_active_runs = 0
        result = await fire(env, queue)
    assert result.status == "skipped" and result.reason == "active_run_cap"
    assert schedule.skipped == ["CONCURRENT_RUN_LIMIT_EXCEEDED"]
    assert world.org_active_cap_hits == 1


@pytest.mark.parametrize("pause_on_failure", [True, False])
async def test_a_failed_run_pauses_the_schedule_when_asked(
    env: WorkflowEnvironment, pause_on_failure: bool
) -> None:
    async with firing(env) as (world, schedule, queue):
        world.provision_error = "SANDBOX_UNAVAILABLE"
        schedule.pause_on_failure = pause_on_failure
        result = await fire(env, queue)
    assert result.status == "fired" and result.run_status == "failed"
    if pause_on_failure:
        assert len(schedule.pauses) == 1
        assert result.run_id and result.run_id in schedule.pauses[0]
        assert "SANDBOX_UNAVAILABLE" in schedule.pauses[0]
    else:
        assert schedule.pauses == []


async def test_cancel_other_supersedes_the_run_in_flight(env: WorkflowEnvironment) -> None:
    """Temporal cancels the older fire (overlap cancel_other): its run ends cancelled
    with RUN_SUPERSEDED, and the fire ends cancelled."""
    async with firing(env) as (world, schedule, queue):
        world.block_tools = True
        schedule.script = [Turn(tools=["bash"])]
        handle = await env.client.start_workflow(
            ScheduleFireWorkflow.run,
            FireInput(schedule_id="sch_t", org_id="org_t", scheduled_at=AT),
            id="sch_t-" + secrets.token_hex(4),
            task_queue=queue,
        )
        for _ in range(200):
            if any(r.tools_started for r in world.runs.values()):
                break
            await asyncio.sleep(0.05)
        (run,) = world.runs.values()
        assert run.tools_started == ["bash"]
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        (run_id,) = world.runs
        child = env.client.get_workflow_handle(run_id)
        await record(
            env.client.get_workflow_handle(run_id, run_id=(await child.describe()).run_id),
            "superseded",
        )
    assert isinstance(failure.value.cause, CancelledError)
    assert run.status == "cancelled"
    assert run.error is not None and run.error["code"] == "RUN_SUPERSEDED"


async def test_a_fire_cancelled_before_its_run_starts_supersedes_it(
    env: WorkflowEnvironment,
) -> None:
    """Cancelled while its run is being created: the run is made and ends superseded
    without ever starting (no run is left queued)."""
    async with firing(env) as (world, schedule, queue):
        schedule.create_seconds = 1.0
        handle = await env.client.start_workflow(
            ScheduleFireWorkflow.run,
            FireInput(schedule_id="sch_t", org_id="org_t", scheduled_at=AT),
            id="sch_t-" + secrets.token_hex(4),
            task_queue=queue,
        )
        await schedule.created.wait()
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    (run,) = world.runs.values()
    assert run.status == "cancelled" and "run.started" not in run.events
    assert run.error is not None and run.error["code"] == "RUN_SUPERSEDED"
