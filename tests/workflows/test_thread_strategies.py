"""Thread strategies in ``RunWorkflow`` on the time-skipping test server: a superseded run
(``interrupt``/``rollback``) stops at its next turn boundary, its unfinished calls get an
error result, it ends ``cancelled`` with ``RUN_SUPERSEDED``, and a run of a thread
starts the next one waiting when it ends, however it ends."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from runyard.domain import RunStatus
from tests.workflows.conftest import RunHandle, record, running
from tests.workflows.fakes import Turn, World
from tests.workflows.test_run_workflow import until
from workflows.payloads import ExecRequest, FinishInput, FinishResult, TurnInput, TurnResult
from workflows.run import RunWorkflow
from workflows.thread_payloads import AdvanceInput, CloseCallsInput, SupersedeRequest

DONE = Turn([])
ASK = Turn(["ask_user"])


async def ended(handle: RunHandle) -> None:
    """Until the workflow has ended (a cancelled run's workflow ends cancelled)."""
    try:
        await handle.result()
    except WorkflowFailureError:
        pass


class ThreadWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.advanced: list[AdvanceInput] = []
        self.closed: list[CloseCallsInput] = []
        self.superseded_by: dict[str, str | None] = {}
        self.started: list[tuple[str, int]] = []

    @activity.defn(name="advance_thread")
    async def advance_thread(self, inp: AdvanceInput) -> None:
        self.advanced.append(inp)

    @activity.defn(name="close_unfinished_calls")
    async def close_unfinished_calls(self, inp: CloseCallsInput) -> None:
        self.closed.append(inp)

    @activity.defn(name="finish_run")
    async def finish_run(self, inp: FinishInput) -> FinishResult:
        self.superseded_by.setdefault(inp.run_id, inp.superseded_by)
        result: FinishResult = await World.finish_run(self, inp)
        return result

    @activity.defn(name="run_agent_turn")
    async def run_agent_turn(self, inp: TurnInput) -> TurnResult:
        self.started.append((inp.run_id, inp.turn))
        result: TurnResult = await World.run_agent_turn(self, inp)
        return result

    def activities(self) -> list[Any]:
        mine = [self.advance_thread, self.close_unfinished_calls, self.finish_run]
        mine.append(self.run_agent_turn)
        names = {a.__name__ for a in mine}
        return [a for a in super().activities() if a.__name__ not in names] + mine


async def test_an_interrupted_run_stops_at_the_turn_boundary(env: WorkflowEnvironment) -> None:
    world = ThreadWorld()
    async with running(env, world) as start:
        handle = await start(
            [Turn(["bash", "write_file"], seconds=1.0), Turn(["bash"]), DONE], thread_id="thr_1"
        )
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: (handle.id, 1) in world.started)  # the model call is under way
        taken = await handle.execute_update(RunWorkflow.supersede, SupersedeRequest(by="run_new"))
        assert taken.status == RunStatus.RUNNING
        await ended(handle)
        await record(handle, "superseded-while-running")
    run = world.runs[handle.id]
    assert run.status == RunStatus.CANCELLED
    assert run.error is not None and run.error["code"] == "RUN_SUPERSEDED"
    assert world.superseded_by[handle.id] == "run_new"
    # The turn in flight finished; none of its calls ran, each got an error result.
    assert run.tools_started == [] and world.started == [(handle.id, 1)]
    assert [(c.turn, "run_new" in c.message) for c in world.closed] == [(1, True)]
    assert run.sandbox_destroyed
    # A run of a thread starts the thread's next run when it ends.
    assert [(a.run_id, a.thread_id) for a in world.advanced] == [(handle.id, "thr_1")]


async def test_a_queued_run_superseded_ends_at_once(env: WorkflowEnvironment) -> None:
    world = ThreadWorld()
    async with running(env, world) as start:
        handle = await start([DONE], thread_id="thr_2")
        await handle.execute_update(RunWorkflow.supersede, SupersedeRequest(by="run_new"))
        await ended(handle)
    run = world.runs[handle.id]
    assert run.status == RunStatus.CANCELLED and run.error is not None
    assert run.error["code"] == "RUN_SUPERSEDED"
    assert not run.provision_started and world.closed == []
    assert [a.thread_id for a in world.advanced] == ["thr_2"]


async def test_a_waiting_run_superseded_closes_its_question(env: WorkflowEnvironment) -> None:
    world = ThreadWorld()
    async with running(env, world) as start:
        handle = await start([ASK, DONE], thread_id="thr_3")
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        await handle.execute_update(RunWorkflow.supersede, SupersedeRequest(by="run_new"))
        await ended(handle)
    run = world.runs[handle.id]
    assert run.status == RunStatus.CANCELLED and run.error is not None
    assert run.error["code"] == "RUN_SUPERSEDED"
    assert [c.turn for c in world.closed] == [1]  # the ask_user call gets its error result


async def test_every_ending_advances_the_thread_but_runs_outside_threads_do_not(
    env: WorkflowEnvironment,
) -> None:
    world = ThreadWorld()
    async with running(env, world) as start:
        handles = []
        for fields in ({"thread_id": "thr_4"}, {}):
            handle = await start([DONE], **fields)
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            await handle.result()
            handles.append(handle)
        in_thread = handles[0]
    assert world.runs[in_thread.id].status == RunStatus.COMPLETED
    assert [a.run_id for a in world.advanced] == [in_thread.id]
