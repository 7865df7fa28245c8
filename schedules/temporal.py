"""A schedule row as its Temporal Schedule (same id): built from the row, and read back
(next fires, pause state, remaining runs)."""

from __future__ import annotations

from datetime import datetime

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from schedules.payloads import FireInput
from schedules.spec import SpecBody, temporal_policy, temporal_spec
from schedules.tables import ScheduleRow
from schedules.workflow import ScheduleFireWorkflow


def temporal_paused(row: ScheduleRow) -> bool:
    """Temporal has one pause bit: paused, or disabled by the client."""
    return row.paused or not row.enabled


def latest_note(row: ScheduleRow) -> str | None:
    notes = row.notes or []
    return notes[-1]["note"] if notes else None


def schedule_of(row: ScheduleRow, task_queue: str, *, remaining: int | None = None) -> Schedule:
    """The Temporal Schedule of ``row``; ``remaining`` keeps a limited schedule's count."""
    limited = row.max_runs is not None
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ScheduleFireWorkflow.run,
            FireInput(schedule_id=row.id, org_id=row.org_id, max_active_runs=row.max_active_runs),
            id=row.id,
            task_queue=task_queue,
            static_summary=(row.name or row.id)[:200],
        ),
        spec=temporal_spec(SpecBody.model_validate(row.spec)),
        policy=temporal_policy(row.overlap, row.catchup_window_seconds),
        state=ScheduleState(
            note=latest_note(row),
            paused=temporal_paused(row),
            limited_actions=limited,
            remaining_actions=(remaining if remaining is not None else row.max_runs or 0)
            if limited
            else 0,
        ),
    )


async def describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def upcoming(desc: ScheduleDescription | None, row: ScheduleRow, n: int = 5) -> list[datetime]:
    """The next ``n`` fire times (none while paused or disabled, or once maxRuns is used)."""
    if desc is None or temporal_paused(row):
        return []
    state = desc.schedule.state
    times = list(desc.info.next_action_times)
    if state.limited_actions:
        times = times[: state.remaining_actions]
    return times[:n]
