"""What the ``/v1/schedules`` routes share: Temporal's schedule API as problems (502,
404, 400), the run body checked as ``POST /v1/runs`` checks it, and bringing the Temporal
Schedule to the row."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio.client import Client, ScheduleUpdate
from temporalio.service import RPCError, RPCStatusCode

from api.deps import TemporalDep
from api.errors import ProblemError
from api.ownership import load_owned
from api.schedule_schemas import ScheduleRunBody
from runyard.db.engine import Database
from runyard.errors import OrchestratorUnavailable, ScheduleNotFound, ScheduleSpecInvalid
from runyard.runs import RunService
from runyard.settings import Settings
from schedules.tables import ScheduleRow
from schedules.temporal import latest_note, schedule_of, temporal_paused

T = TypeVar("T")


async def temporal_call(call: Awaitable[T]) -> T:
    """A call to Temporal's schedule API; 502 when it cannot be reached."""
    try:
        return await call
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleNotFound(f"the Temporal schedule is gone: {exc.message}") from exc
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ScheduleSpecInvalid(exc.message, field="spec") from exc
        raise OrchestratorUnavailable(f"the workflow engine refused: {exc.message}") from exc


async def temporal_client(temporal: TemporalDep) -> Client:
    try:
        return (await temporal()).temporal
    except ProblemError as exc:
        raise OrchestratorUnavailable(exc.detail) from exc


async def load_schedule(db: Database, org_id: str, schedule_id: str) -> ScheduleRow:
    return await load_owned(db, ScheduleRow, org_id, schedule_id, "schedule")


async def check_run(
    runs: RunService, run: ScheduleRunBody, thread_id: str | None, org_id: str
) -> dict[str, Any]:
    """The run body, checked as ``POST /v1/runs`` checks it; stored as sent (camelCase)."""
    await runs.resolve(run.model_copy(update={"thread_id": thread_id}), org_id)
    return run.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"start"})


async def push(client: Client, row: ScheduleRow, settings: Settings, *, reset_runs: bool) -> None:
    """Bring the Temporal schedule to the row (the runs left kept unless maxRuns changed)."""

    def update(inp: Any) -> ScheduleUpdate:
        state = inp.description.schedule.state
        keep = None if reset_runs or not state.limited_actions else state.remaining_actions
        return ScheduleUpdate(schedule=schedule_of(row, settings.task_queue, remaining=keep))

    handle = client.get_schedule_handle(row.id)
    await temporal_call(handle.update(update))
    # The pause bit as the row says, whatever an update does with the state's.
    if temporal_paused(row):
        await temporal_call(handle.pause(note=latest_note(row) or "disabled"))
    else:
        await temporal_call(handle.unpause(note=latest_note(row) or "enabled"))
