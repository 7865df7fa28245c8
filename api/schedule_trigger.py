"""Trigger and backfill of a schedule: what Temporal's schedule API leaves to its caller.

Temporal's trigger answers nothing: the API finds the action it started (the new entry
of the schedule's recent or running actions) and then that fire's record in the store,
which the fire's activities write once the run has started or was skipped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlmodel import col
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
)

from runyard.db.engine import Database
from runyard.errors import OrchestratorUnavailable, error_for
from schedules.tables import ScheduleFire, ScheduleRow

TRIGGER_WAIT_SECONDS = 20.0


def _actions(desc: ScheduleDescription) -> set[str]:
    info = desc.info
    actions = [a.action for a in info.recent_actions] + list(info.running_actions)
    return {a.workflow_id for a in actions if isinstance(a, ScheduleActionExecutionStartWorkflow)}


async def trigger_and_wait(db: Database, client: Client, row: ScheduleRow) -> ScheduleFire:
    """Fire ``row`` now (whatever its overlap policy: the client asked for this one) and
    wait for the fire's record: its run, or its skip as the problem of its reason."""
    handle = client.get_schedule_handle(row.id)
    known = _actions(await handle.describe())
    # Temporal names a fire's workflow after the schedule and the second it was due: a
    # second trigger within the second of the last one would be that same fire. Wait
    # for the next second instead, so each trigger is a fire of its own.
    now = datetime.now(UTC)
    if f"{row.id}-{now:%Y-%m-%dT%H:%M:%SZ}" in known:
        await asyncio.sleep(1 - now.microsecond / 1_000_000 + 0.01)
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TRIGGER_WAIT_SECONDS
    workflow_id: str | None = None
    while loop.time() < deadline:
        if workflow_id is None:
            new = _actions(await handle.describe()) - known
            workflow_id = min(new) if new else None
        if workflow_id is not None:
            fire = await _fire(db, workflow_id)
            if fire is not None:
                if fire.run_id is None:
                    code, _, message = (fire.detail or "INTERNAL_ERROR: skipped").partition(": ")
                    raise error_for(code, f"the fire was skipped ({fire.reason}): {message}")
                return fire
        await asyncio.sleep(0.1)
    raise OrchestratorUnavailable(
        "the schedule was triggered but its fire was not recorded in time (is a worker "
        "running?); its run, or the reason it was skipped, will show in recentRuns"
    )


async def _fire(db: Database, workflow_id: str) -> ScheduleFire | None:
    query = select(ScheduleFire).where(col(ScheduleFire.workflow_id) == workflow_id)
    found: ScheduleFire | None = await db.read(lambda s: s.execute(query).scalars().first())
    return found


async def matching_times(
    client: Client, schedule_id: str, start: datetime, end: datetime
) -> list[datetime]:
    """The times the schedule's spec matches in [start, end], by Temporal's own reading."""
    req = ListScheduleMatchingTimesRequest(namespace=client.namespace, schedule_id=schedule_id)
    req.start_time.FromDatetime(start.astimezone(UTC).replace(tzinfo=None))
    req.end_time.FromDatetime(end.astimezone(UTC).replace(tzinfo=None))
    resp = await client.workflow_service.list_schedule_matching_times(
        req, retry=True, timeout=timedelta(seconds=10)
    )
    return [t.ToDatetime(tzinfo=UTC) for t in resp.start_time]
